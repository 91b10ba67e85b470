//! What happened, as the actors that saw it tell the notifier, and the JSON body every
//! `[[notify]]` entry receives (docs/contract.md, "Notifications").

use crate::wire::orchestrator::PackageCounts;
use serde::{Deserialize, Serialize};

/// The kinds of event; their names are the contract's (`[[notify]] events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Every package of the set is built, failed or blocked (with counts).
    SetFinished,
    /// A package failed for good (atom, reason).
    PackageFailed,
    /// The breaker grounded a drone (drone, reason).
    DroneGrounded,
    /// A drone missed its heartbeats (drone).
    DroneOffline,
    /// The self-healing ladder could not bring an offline drone back (drone, reason).
    DroneNeedsHuman,
    /// Too many drones failing at once: the fault is central (reason).
    CentralFault,
    /// One of the above is over (`recovers` names which, `recovers_id` its event).
    Recovered,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SetFinished => "set_finished",
            EventKind::PackageFailed => "package_failed",
            EventKind::DroneGrounded => "drone_grounded",
            EventKind::DroneOffline => "drone_offline",
            EventKind::DroneNeedsHuman => "drone_needs_human",
            EventKind::CentralFault => "central_fault",
            EventKind::Recovered => "recovered",
        }
    }

    /// An alert stays open until its `recovered` (a finished set never does).
    pub fn is_alert(self) -> bool {
        !matches!(self, EventKind::SetFinished | EventKind::Recovered)
    }

    /// Said once while it is open (a drone that goes offline again before it was back);
    /// a package that fails again after a retry is said again.
    pub fn said_once(self) -> bool {
        self.is_alert() && self != EventKind::PackageFailed
    }
}

/// What an actor tells the notifier: the kind and its details.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub drone: Option<String>,
    pub atom: Option<String>,
    pub reason: Option<String>,
    pub counts: Option<PackageCounts>,
    /// With `Recovered`: what is over.
    pub recovers: Option<EventKind>,
}

impl Event {
    fn new(kind: EventKind) -> Self {
        Event {
            kind,
            drone: None,
            atom: None,
            reason: None,
            counts: None,
            recovers: None,
        }
    }

    pub fn set_finished(counts: PackageCounts) -> Self {
        Event {
            counts: Some(counts),
            ..Event::new(EventKind::SetFinished)
        }
    }

    pub fn package_failed(atom: &str, reason: &str) -> Self {
        Event {
            atom: Some(atom.into()),
            reason: Some(reason.into()),
            ..Event::new(EventKind::PackageFailed)
        }
    }

    /// `kind` is `DroneGrounded`, `DroneOffline` or `DroneNeedsHuman`.
    pub fn drone(kind: EventKind, drone: &str, reason: Option<String>) -> Self {
        Event {
            drone: Some(drone.into()),
            reason,
            ..Event::new(kind)
        }
    }

    pub fn central_fault(reason: &str) -> Self {
        Event {
            reason: Some(reason.into()),
            ..Event::new(EventKind::CentralFault)
        }
    }

    /// `of` for the drone or atom `subject` is over (`None`: the central fault).
    pub fn recovered(of: EventKind, subject: Option<&str>) -> Self {
        let mut e = Event::new(EventKind::Recovered);
        e.recovers = Some(of);
        match of {
            EventKind::PackageFailed => e.atom = subject.map(String::from),
            _ => e.drone = subject.map(String::from),
        }
        e
    }

    /// Which open alert this event opens or closes: its kind and subject.
    pub fn alert_key(&self) -> String {
        let kind = self.recovers.unwrap_or(self.kind);
        let subject = self.atom.as_deref().or(self.drone.as_deref()).unwrap_or("");
        format!("{}:{subject}", kind.as_str())
    }
}

/// The JSON body: the same bytes on every attempt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notification {
    /// Unique per event, the same on every retry (receivers deduplicate by it).
    pub id: String,
    pub event: EventKind,
    /// RFC 3339, UTC.
    pub time: String,
    pub time_unix: u64,
    /// The orchestrator's `name`.
    pub orchestrator: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub drone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub atom: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub counts: Option<PackageCounts>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recovers: Option<EventKind>,
    /// The `id` of the event this one recovers.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recovers_id: Option<String>,
}

impl Notification {
    pub fn new(
        id: String,
        e: Event,
        orchestrator: &str,
        time_unix: u64,
        recovers_id: Option<String>,
    ) -> Self {
        Notification {
            id,
            event: e.kind,
            time: crate::sys::clock::rfc3339(time_unix),
            time_unix,
            orchestrator: orchestrator.to_string(),
            drone: e.drone,
            atom: e.atom,
            reason: e.reason,
            counts: e.counts,
            recovers: e.recovers,
            recovers_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_named_as_the_config_names_it() {
        use EventKind::*;
        for k in [
            SetFinished,
            PackageFailed,
            DroneGrounded,
            DroneOffline,
            DroneNeedsHuman,
            CentralFault,
            Recovered,
        ] {
            assert!(crate::config::notify::EVENTS.contains(&k.as_str()));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(crate::config::notify::EVENTS.len(), 7);
    }

    #[test]
    fn the_body_carries_the_details_and_leaves_out_what_is_not_there() {
        let n = Notification::new(
            "o-1".into(),
            Event::package_failed("dev-libs/a-1", "compile error"),
            "o",
            86_400 * 365,
            None,
        );
        let v: serde_json::Value = serde_json::to_value(&n).unwrap();
        assert_eq!(v["event"], "package_failed");
        assert_eq!(v["atom"], "dev-libs/a-1");
        assert_eq!(v["time"], "1971-01-01T00:00:00Z");
        assert!(v.get("drone").is_none() && v.get("counts").is_none());
        let r = Event::recovered(EventKind::DroneOffline, Some("d1"));
        assert_eq!(
            r.alert_key(),
            Event::drone(EventKind::DroneOffline, "d1", None).alert_key()
        );
    }
}
