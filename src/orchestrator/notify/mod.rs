//! Notifications (`[[notify]]`): the events ([`event`]), the outbox's bookkeeping
//! ([`outbox`]) and delivery to a webhook or a program ([`deliver`], over [`tls`] for an
//! https webhook). The [`crate::actors::orchestrator::notifier::Notifier`] actor puts
//! them together; docs/contract.md ("Notifications") has the body and the guarantees.

pub mod deliver;
pub mod event;
pub mod outbox;
pub mod tls;

pub use event::{Event, EventKind, Notification};
