//! The notifier's bookkeeping without actix: one queue of undelivered events per
//! `[[notify]]` entry (delivered one at a time, in order), retry backoff, the bound on
//! attempts and on queue length, and which alerts are open (so a `recovered` names the
//! event it ends). The notifier actor saves every change through the store.

use super::event::{Event, EventKind, Notification};
use crate::config::notify::NotifyConfig;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// One undelivered event for one sink, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// The sink's name ([`NotifyConfig::sink_name`]).
    pub sink: String,
    /// Order of events (over every run of the orchestrator).
    pub seq: u64,
    pub id: String,
    /// The JSON body.
    pub body: String,
    pub attempts: u32,
}

/// A change to the open alerts.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertChange {
    Open { key: String, id: String },
    Close { key: String },
}

#[derive(Debug)]
struct Pending {
    row: OutboxRow,
    /// In the state database (only then is it delivered).
    saved: bool,
}

struct Sink {
    cfg: NotifyConfig,
    name: String,
    queue: VecDeque<Pending>,
    in_flight: bool,
    /// A retry is scheduled: nothing is sent before it fires.
    waiting: bool,
}

/// What [`Outbox::record`] made of an event.
#[derive(Debug, Default, PartialEq)]
pub struct Recorded {
    /// New rows to save (one per sink that wants the event).
    pub rows: Vec<OutboxRow>,
    pub alert: Option<AlertChange>,
    /// Rows dropped to stay within `max_pending` (to delete).
    pub dropped: Vec<OutboxRow>,
}

/// What to do after a failed attempt.
#[derive(Debug, PartialEq)]
pub enum AfterFailure {
    /// Try again after this long (the row's attempts are to be saved).
    Retry(Duration, OutboxRow),
    /// Out of attempts: the row is dropped (to delete).
    GiveUp(OutboxRow),
}

pub struct Outbox {
    sinks: Vec<Sink>,
    orchestrator: String,
    /// Makes ids unique across runs (the start time of this run).
    run: String,
    next_seq: u64,
    /// Alert key → id of the event that opened it.
    open: HashMap<String, String>,
}

impl Outbox {
    /// The outbox of `sinks`, with what the state database kept: undelivered rows (those
    /// of sinks no longer configured are returned to be deleted) and open alerts.
    pub fn restore(
        sinks: &[NotifyConfig],
        orchestrator: &str,
        run_unix_ms: u64,
        rows: Vec<OutboxRow>,
        open: Vec<(String, String)>,
    ) -> (Outbox, Vec<OutboxRow>) {
        let mut sinks: Vec<Sink> = sinks
            .iter()
            .map(|cfg| Sink {
                name: cfg.sink_name(),
                cfg: cfg.clone(),
                queue: VecDeque::new(),
                in_flight: false,
                waiting: false,
            })
            .collect();
        let next_seq = rows.iter().map(|r| r.seq + 1).max().unwrap_or(0);
        let mut rows = rows;
        rows.sort_by_key(|r| r.seq);
        let mut orphans = Vec::new();
        for row in rows {
            match sinks.iter_mut().find(|s| s.name == row.sink) {
                Some(s) => s.queue.push_back(Pending { row, saved: true }),
                None => orphans.push(row),
            }
        }
        let outbox = Outbox {
            sinks,
            orchestrator: orchestrator.to_string(),
            run: format!("{run_unix_ms:x}"),
            next_seq,
            open: open.into_iter().collect(),
        };
        (outbox, orphans)
    }

    pub fn sink_count(&self) -> usize {
        self.sinks.len()
    }

    pub fn sink(&self, i: usize) -> &NotifyConfig {
        &self.sinks[i].cfg
    }

    pub fn sink_name(&self, i: usize) -> &str {
        &self.sinks[i].name
    }

    /// Events not delivered yet, over every sink.
    pub fn pending(&self) -> usize {
        self.sinks.iter().map(|s| s.queue.len()).sum()
    }

    /// Turns `event` into a body and queues it for every sink that wants it. A
    /// `recovered` with no open alert to end is dropped (nothing was announced).
    pub fn record(&mut self, event: Event, now_unix: u64) -> Recorded {
        let key = event.alert_key();
        let mut out = Recorded::default();
        let recovers_id = if event.kind == EventKind::Recovered {
            match self.open.remove(&key) {
                Some(id) => {
                    out.alert = Some(AlertChange::Close { key: key.clone() });
                    Some(id)
                }
                None => return out,
            }
        } else {
            None
        };
        // Still open (a drone offline again before it was back): said once — within
        // this run. An alert opened before the orchestrator started is said again: the
        // breaker and the healer do not remember it, so nothing would ever end it.
        let this_run = format!("{}-{}-", self.orchestrator, self.run);
        if event.kind.said_once()
            && self
                .open
                .get(&key)
                .is_some_and(|id| id.starts_with(&this_run))
        {
            return out;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = format!("{}-{}-{seq}", self.orchestrator, self.run);
        if event.kind.is_alert() {
            self.open.insert(key.clone(), id.clone());
            out.alert = Some(AlertChange::Open {
                key,
                id: id.clone(),
            });
        }
        let kind = event.kind;
        let recovers = event.recovers;
        let body = Notification::new(id.clone(), event, &self.orchestrator, now_unix, recovers_id);
        let body = match serde_json::to_string(&body) {
            Ok(b) => b,
            Err(_) => return out,
        };
        for s in &mut self.sinks {
            // A `recovered` goes where the event it ends went.
            if !s.cfg.wants(kind.as_str()) || recovers.is_some_and(|r| !s.cfg.wants(r.as_str())) {
                continue;
            }
            let row = OutboxRow {
                sink: s.name.clone(),
                seq,
                id: id.clone(),
                body: body.clone(),
                attempts: 0,
            };
            while s.queue.len() >= s.cfg.max_pending {
                // The oldest that is not being sent right now.
                let at = usize::from(s.in_flight);
                match s.queue.remove(at) {
                    Some(p) => out.dropped.push(p.row),
                    None => break,
                }
            }
            s.queue.push_back(Pending {
                row: row.clone(),
                saved: false,
            });
            out.rows.push(row);
        }
        out
    }

    /// The rows of `seq` are in the state database: they may be sent.
    pub fn saved(&mut self, seq: u64) {
        for s in &mut self.sinks {
            if let Some(p) = s.queue.iter_mut().find(|p| p.row.seq == seq) {
                p.saved = true;
            }
        }
    }

    /// The next row sink `i` should send now, marked in flight; None while one is in
    /// flight, a retry is pending, or the front is not saved yet.
    pub fn take_next(&mut self, i: usize) -> Option<OutboxRow> {
        let s = &mut self.sinks[i];
        if s.in_flight || s.waiting {
            return None;
        }
        let front = s.queue.front().filter(|p| p.saved)?;
        s.in_flight = true;
        Some(front.row.clone())
    }

    /// Sink `i` delivered `seq`: it leaves the queue (the row is to be deleted).
    pub fn delivered(&mut self, i: usize, seq: u64) -> Option<OutboxRow> {
        let s = &mut self.sinks[i];
        s.in_flight = false;
        if s.queue.front().is_some_and(|p| p.row.seq == seq) {
            return s.queue.pop_front().map(|p| p.row);
        }
        None
    }

    /// Sink `i` failed to deliver `seq`: when to try again, or that it is given up.
    pub fn failed(&mut self, i: usize, seq: u64) -> Option<AfterFailure> {
        let s = &mut self.sinks[i];
        s.in_flight = false;
        let front = s.queue.front_mut().filter(|p| p.row.seq == seq)?;
        front.row.attempts += 1;
        if front.row.attempts >= s.cfg.max_attempts {
            return s.queue.pop_front().map(|p| AfterFailure::GiveUp(p.row));
        }
        s.waiting = true;
        Some(AfterFailure::Retry(
            backoff(&s.cfg, front.row.attempts),
            front.row.clone(),
        ))
    }

    /// Sink `i`'s retry is due.
    pub fn retry_due(&mut self, i: usize) {
        self.sinks[i].waiting = false;
    }
}

/// `retry_s`, doubled per failure after the first, at most `max_retry_s`.
pub fn backoff(cfg: &NotifyConfig, attempts: u32) -> Duration {
    let factor = 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
    Duration::from_secs_f64((cfg.retry_s * factor).min(cfg.max_retry_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(url: &str, events: &[&str]) -> NotifyConfig {
        NotifyConfig {
            url: Some(url.into()),
            events: events.iter().map(|e| e.to_string()).collect(),
            max_attempts: 3,
            max_pending: 3,
            ..NotifyConfig::default()
        }
    }

    fn outbox(sinks: &[NotifyConfig]) -> Outbox {
        Outbox::restore(sinks, "o", 0xabc, Vec::new(), Vec::new()).0
    }

    #[test]
    fn each_sink_gets_what_it_asked_for_in_order_one_at_a_time() {
        let mut o = outbox(&[sink("http://a", &[]), sink("http://b", &["package_failed"])]);
        let r = o.record(Event::package_failed("a/b-1", "x"), 1);
        assert_eq!(r.rows.len(), 2);
        let r2 = o.record(Event::drone(EventKind::DroneOffline, "d1", None), 2);
        assert_eq!(r2.rows.len(), 1, "sink b did not ask for drone_offline");
        assert_eq!(o.take_next(0), None, "nothing is sent before it is saved");
        o.saved(r.rows[0].seq);
        o.saved(r2.rows[0].seq);
        let first = o.take_next(0).unwrap();
        assert_eq!(first.id, "o-abc-0");
        assert_eq!(o.take_next(0), None, "one in flight per sink");
        assert!(o.delivered(0, first.seq).is_some());
        assert_eq!(o.take_next(0).unwrap().id, "o-abc-1");
        assert_eq!(o.take_next(1).unwrap().id, "o-abc-0");
    }

    #[test]
    fn a_failure_backs_off_doubling_and_gives_up_after_max_attempts() {
        let mut o = outbox(&[sink("http://a", &[])]);
        let r = o.record(Event::central_fault("x"), 1);
        o.saved(r.rows[0].seq);
        let row = o.take_next(0).unwrap();
        match o.failed(0, row.seq) {
            Some(AfterFailure::Retry(d, row)) => {
                assert_eq!(d, Duration::from_secs(2));
                assert_eq!(row.attempts, 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(o.take_next(0), None, "waits for its retry");
        o.retry_due(0);
        let row = o.take_next(0).unwrap();
        assert!(
            matches!(o.failed(0, row.seq), Some(AfterFailure::Retry(d, _)) if d == Duration::from_secs(4))
        );
        o.retry_due(0);
        let row = o.take_next(0).unwrap();
        assert!(matches!(
            o.failed(0, row.seq),
            Some(AfterFailure::GiveUp(_))
        ));
        assert_eq!(o.pending(), 0);
        let cfg = NotifyConfig::default();
        assert_eq!(backoff(&cfg, 20), Duration::from_secs(300));
    }

    #[test]
    fn recovered_names_the_alert_it_ends_and_is_dropped_without_one() {
        let mut o = outbox(&[sink("http://a", &[])]);
        assert!(o
            .record(Event::recovered(EventKind::DroneOffline, Some("d1")), 1)
            .rows
            .is_empty());
        let down = o.record(Event::drone(EventKind::DroneOffline, "d1", None), 2);
        assert!(matches!(down.alert, Some(AlertChange::Open { .. })));
        let again = o.record(Event::drone(EventKind::DroneOffline, "d1", None), 3);
        assert!(again.rows.is_empty(), "an open alert is said once");
        let up = o.record(Event::recovered(EventKind::DroneOffline, Some("d1")), 4);
        let body: Notification = serde_json::from_str(&up.rows[0].body).unwrap();
        assert_eq!(body.recovers_id.as_deref(), Some(down.rows[0].id.as_str()));
        assert_eq!(body.recovers, Some(EventKind::DroneOffline));
    }

    #[test]
    fn alerts_of_an_earlier_run_are_said_again_and_recoveries_follow_their_alert() {
        let (mut o, _) = Outbox::restore(
            &[sink("http://a", &["drone_grounded", "recovered"])],
            "o",
            2,
            Vec::new(),
            vec![("drone_grounded:d1".to_string(), "o-1-5".to_string())],
        );
        let again = o.record(Event::drone(EventKind::DroneGrounded, "d1", None), 1);
        assert_eq!(again.rows.len(), 1, "open since an earlier run: said again");
        let twice = o.record(Event::drone(EventKind::DroneGrounded, "d1", None), 2);
        assert!(twice.rows.is_empty(), "open in this run: said once");
        // Not asked for drone_offline: nor for its recovery.
        o.record(Event::drone(EventKind::DroneOffline, "d2", None), 3);
        let up = o.record(Event::recovered(EventKind::DroneOffline, Some("d2")), 4);
        assert!(up.rows.is_empty() && up.alert.is_some());
        // A package that fails again after a retry is said again.
        let f1 = o.record(Event::package_failed("a/b-1", "x"), 5);
        let f2 = o.record(Event::package_failed("a/b-1", "y"), 6);
        assert_eq!((f1.alert.is_some(), f2.alert.is_some()), (true, true));
    }

    #[test]
    fn the_queue_is_bounded_dropping_the_oldest_not_the_one_in_flight() {
        let mut o = outbox(&[sink("http://a", &[])]);
        for i in 0..3 {
            let r = o.record(Event::package_failed(&format!("a/b-{i}"), "x"), 1);
            o.saved(r.rows[0].seq);
        }
        let sending = o.take_next(0).unwrap();
        let r = o.record(Event::package_failed("a/b-9", "x"), 1);
        assert_eq!(r.dropped.len(), 1);
        assert_eq!(r.dropped[0].seq, 1, "the oldest not in flight");
        assert_eq!(o.pending(), 3);
        assert!(o.delivered(0, sending.seq).is_some());
    }

    #[test]
    fn a_restart_keeps_order_ids_and_open_alerts_and_returns_rows_of_removed_sinks() {
        let rows = vec![
            OutboxRow {
                sink: "http://a".into(),
                seq: 7,
                id: "o-1-7".into(),
                body: "{}".into(),
                attempts: 2,
            },
            OutboxRow {
                sink: "http://a".into(),
                seq: 5,
                id: "o-1-5".into(),
                body: "{}".into(),
                attempts: 0,
            },
            OutboxRow {
                sink: "http://gone".into(),
                seq: 6,
                id: "o-1-6".into(),
                body: "{}".into(),
                attempts: 0,
            },
        ];
        let open = vec![("drone_offline:d1".to_string(), "o-1-5".to_string())];
        let (mut o, orphans) = Outbox::restore(&[sink("http://a", &[])], "o", 2, rows, open);
        assert_eq!(orphans.len(), 1);
        assert_eq!(o.take_next(0).unwrap().seq, 5);
        let up = o.record(Event::recovered(EventKind::DroneOffline, Some("d1")), 9);
        assert_eq!(up.rows[0].seq, 8, "numbering goes on after the stored rows");
        assert_eq!(up.rows[0].id, "o-2-8");
    }
}
