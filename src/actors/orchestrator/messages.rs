//! Messages that go against the direction of the actors' dependencies: the registry owns
//! the sessions and the queue, so what a session tells the registry and what the queue
//! tells a drone travel as these types through `Recipient`s, and none of the three imports
//! an actor that imports it back. The queue and the binhost index talk both ways the same
//! way (`AddToIndex`, `Indexed`).

use crate::actors::orchestrator::store::DroneRow;
use crate::orchestrator::binhost::index::Entry;
use crate::orchestrator::binhost::live::Capture;
use crate::orchestrator::credentials::CredentialKind;
use crate::wire::orchestrator::DroneCommand;
use actix::Message;

/// A command for a drone, delivered with its next heartbeat (queue → registry → session).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForDrone {
    pub drone: String,
    pub command: DroneCommand,
}

/// What the registry knows of a session, pushed by the session on every change.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub name: String,
    pub aliases: Vec<String>,
    pub host: String,
    pub slots: u32,
    pub version: String,
    pub restart_command: Vec<String>,
    pub paused: bool,
    pub online: bool,
    pub last_seen_unix: Option<u64>,
    /// The host it had before it last registered from another one (not stored).
    pub previous_host: Option<String>,
    /// The credential it registered with (`None`: restored at start-up, not registered
    /// since).
    pub credential: Option<CredentialKind>,
    /// The build environment it last reported (None: none).
    pub environment: Option<std::sync::Arc<crate::domain::environment::DroneEnvironment>>,
}

impl SessionSummary {
    pub fn row(&self) -> DroneRow {
        DroneRow {
            name: self.name.clone(),
            aliases: self.aliases.clone(),
            host: self.host.clone(),
            slots: self.slots,
            version: self.version.clone(),
            restart_command: self.restart_command.clone(),
            paused: self.paused,
            last_seen_unix: self.last_seen_unix,
            environment: self
                .environment
                .as_deref()
                .and_then(|e| serde_json::to_string(e).ok()),
        }
    }
}

/// A session's summary changed (session → registry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionChanged(pub SessionSummary);

/// Index entries of packages whose publish is committed (queue → binhost index).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddToIndex(pub Vec<(u32, Entry)>);

/// An index that lists these packages is live on disk (binhost index → queue): their
/// dependents may go.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Indexed {
    pub pkgs: Vec<u32>,
}

/// After the queue read its state back (a failed commit), every built package is
/// unindexed in its memory again: which of these `(pkg, path)` a live index lists (queue →
/// binhost index; answered with `Indexed`, the others once indexed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relist(pub Vec<(u32, String)>);

/// The live index at this moment, for a snapshot or retention (release manager → binhost
/// index; `None` while the index is still being read back after the start).
#[derive(Message)]
#[rtype(result = "Option<Capture>")]
pub struct CaptureIndex;

/// A drone went offline or came back (registry → healer). `host`: the host the operator
/// enrolled it for, else the one it announced.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct DroneLiveness {
    pub drone: String,
    pub online: bool,
    pub host: String,
    pub restart_command: Vec<String>,
}
