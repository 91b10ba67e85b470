//! The drone's link to its orchestrator as an explicit state machine: not registered
//! (waiting for the next try), registering, or registered with one orchestrator. It decides
//! when to register again, when to ask the gateway instead of the orchestrator it has, and
//! how long to back off; the agent does the calls. `C` is what a registered link keeps (the
//! agent's HTTP client; tests use a plain value).

use std::time::Duration;
use tokio::time::Instant;

/// After this many failed calls in a row, ask the gateway for another orchestrator.
pub const FAILURES_BEFORE_GATEWAY: u32 = 3;
/// Longest wait between registration attempts (and between retries of a report).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// 1, 2, 4 … seconds, at most [`MAX_BACKOFF`].
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(5)).min(MAX_BACKOFF)
}

/// A registered link.
#[derive(Debug, Clone)]
pub struct Link<C> {
    pub url: String,
    pub client: C,
    pub upload_target: String,
    pub heartbeat_every: Duration,
}

#[derive(Debug)]
enum State<C> {
    /// Not registered; the next attempt may start at `next_try`.
    Unregistered {
        next_try: Instant,
    },
    /// A registration is under way.
    Registering,
    Registered(Link<C>),
}

/// What a registration attempt should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Ask the gateway which orchestrator to use (else register with `current`).
    pub ask_gateway: bool,
    /// The orchestrator to use, or to fall back on when the gateway does not answer.
    pub current: Option<String>,
}

#[derive(Debug)]
pub struct Connection<C> {
    state: State<C>,
    /// The orchestrator to register with next: the configured one, the last one used, or
    /// the one the gateway pointed to.
    preferred: Option<String>,
    has_gateway: bool,
    /// Registration attempts that failed in a row.
    register_failures: u32,
    /// Calls to the registered orchestrator that got no answer, in a row.
    call_failures: u32,
}

impl<C> Connection<C> {
    pub fn new(configured: Option<String>, has_gateway: bool, now: Instant) -> Self {
        Connection {
            state: State::Unregistered { next_try: now },
            preferred: configured,
            has_gateway,
            register_failures: 0,
            call_failures: 0,
        }
    }

    pub fn link(&self) -> Option<&Link<C>> {
        match &self.state {
            State::Registered(l) => Some(l),
            _ => None,
        }
    }

    pub fn is_registered(&self) -> bool {
        self.link().is_some()
    }

    /// The orchestrator in use (or to be tried next).
    pub fn url(&self) -> Option<&str> {
        self.preferred.as_deref()
    }

    /// Starts a registration when none is under way, none exists and the backoff is over.
    pub fn begin(&mut self, now: Instant) -> Option<Attempt> {
        match self.state {
            State::Unregistered { next_try } if now >= next_try => {}
            _ => return None,
        }
        self.state = State::Registering;
        let ask_gateway = self.preferred.is_none()
            || (self.has_gateway && self.register_failures >= FAILURES_BEFORE_GATEWAY);
        Some(Attempt {
            ask_gateway,
            current: self.preferred.clone(),
        })
    }

    /// The registration went through.
    pub fn registered(&mut self, link: Link<C>) {
        self.preferred = Some(link.url.clone());
        self.register_failures = 0;
        self.call_failures = 0;
        self.state = State::Registered(link);
    }

    /// The registration failed: the next one waits. Returns how many failed in a row.
    pub fn register_failed(&mut self, now: Instant) -> u32 {
        self.register_failures += 1;
        self.state = State::Unregistered {
            next_try: now + backoff(self.register_failures),
        };
        self.register_failures
    }

    /// A call was answered.
    pub fn answered(&mut self) {
        self.call_failures = 0;
    }

    /// A call got no answer. With a gateway, after [`FAILURES_BEFORE_GATEWAY`] in a row the
    /// drone stops using this orchestrator and asks the gateway next; returns true then.
    pub fn unreachable(&mut self, now: Instant) -> bool {
        self.call_failures += 1;
        if self.call_failures < FAILURES_BEFORE_GATEWAY
            || !self.has_gateway
            || !self.is_registered()
        {
            return false;
        }
        self.call_failures = 0;
        self.register_failures = FAILURES_BEFORE_GATEWAY;
        self.state = State::Unregistered { next_try: now };
        true
    }

    /// The orchestrator does not know this drone (it answered 404): register again now.
    pub fn forgotten(&mut self, now: Instant) {
        if self.is_registered() {
            self.state = State::Unregistered { next_try: now };
        }
    }

    /// Move to `url` (the gateway knows it has work): register there now.
    pub fn move_to(&mut self, url: String, now: Instant) {
        self.preferred = Some(url);
        if !matches!(self.state, State::Registering) {
            self.state = State::Unregistered { next_try: now };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(url: &str) -> Link<()> {
        Link {
            url: url.into(),
            client: (),
            upload_target: "/staging".into(),
            heartbeat_every: Duration::from_secs(5),
        }
    }

    #[test]
    fn registers_once_at_a_time_and_backs_off_after_failures() {
        let t = Instant::now();
        let mut c = Connection::<()>::new(Some("http://o1".into()), false, t);
        let a = c.begin(t).unwrap();
        assert_eq!(
            a,
            Attempt {
                ask_gateway: false,
                current: Some("http://o1".into())
            }
        );
        assert!(c.begin(t).is_none(), "one registration at a time");
        assert_eq!(c.register_failed(t), 1);
        assert!(
            c.begin(t + Duration::from_millis(1500)).is_none(),
            "backing off 2 s"
        );
        assert!(c.begin(t + Duration::from_secs(2)).is_some());
        c.registered(link("http://o1"));
        assert!(c.is_registered());
        assert!(
            c.begin(t + Duration::from_secs(60)).is_none(),
            "registered already"
        );
        assert_eq!(backoff(10), MAX_BACKOFF);
    }

    #[test]
    fn without_an_orchestrator_it_asks_the_gateway() {
        let t = Instant::now();
        let mut c = Connection::<()>::new(None, true, t);
        assert!(c.begin(t).unwrap().ask_gateway);
    }

    #[test]
    fn an_unanswering_orchestrator_sends_the_drone_to_the_gateway() {
        let t = Instant::now();
        let mut c = Connection::<()>::new(Some("http://o1".into()), true, t);
        c.begin(t);
        c.registered(link("http://o1"));
        assert!(!c.unreachable(t));
        c.answered();
        assert!(!c.unreachable(t));
        assert!(!c.unreachable(t));
        assert!(c.unreachable(t), "third failure in a row");
        assert!(!c.is_registered());
        let a = c.begin(t).unwrap();
        assert!(a.ask_gateway);
        assert_eq!(
            a.current.as_deref(),
            Some("http://o1"),
            "kept as the fallback"
        );
    }

    #[test]
    fn without_a_gateway_it_keeps_its_orchestrator_through_outages() {
        let t = Instant::now();
        let mut c = Connection::<()>::new(Some("http://o1".into()), false, t);
        c.begin(t);
        c.registered(link("http://o1"));
        for _ in 0..10 {
            assert!(!c.unreachable(t));
        }
        assert!(c.is_registered());
    }

    #[test]
    fn forgotten_or_moved_it_registers_again_at_once() {
        let t = Instant::now();
        let mut c = Connection::<()>::new(Some("http://o1".into()), true, t);
        c.begin(t);
        c.registered(link("http://o1"));
        c.forgotten(t);
        assert_eq!(c.begin(t).unwrap().current.as_deref(), Some("http://o1"));
        c.registered(link("http://o1"));
        c.move_to("http://o2".into(), t);
        let a = c.begin(t).unwrap();
        assert_eq!(
            a,
            Attempt {
                ask_gateway: false,
                current: Some("http://o2".into())
            }
        );
        assert_eq!(c.url(), Some("http://o2"));
    }
}
