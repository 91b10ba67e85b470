//! Drone identity (docs/design.md, "Drone identity"): the enrolled drones' credentials and
//! who a drone-protocol request acts as.
//!
//! [`DroneCredentials`] keeps a SHA-256 of each enrolled drone's token (never the token)
//! in the state database and a copy in memory that the HTTP layer reads on every request.
//! Enrolling and revoking write the database first (one at a time), then the copy.
//! [`Caller`] is what a request's token makes it: the admin, the shared drone token, or one
//! enrolled drone; [`Caller::may_act_for`] is the one ownership rule every drone endpoint
//! and the queue's lease checks apply.

use crate::actors::orchestrator::store::{
    CredentialRow, DeleteCredential, SaveCredential, Store, StoreError,
};
use crate::domain::check_drone_name;
use actix::Addr;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Prefix of a drone's own token, so one found in a config file or a log says what it is.
pub const TOKEN_PREFIX: &str = "bsd_";

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{0}")]
    InvalidName(String),
    #[error("host `{0}` is not a host name")]
    InvalidHost(String),
    #[error("drone {0} is not enrolled")]
    NotEnrolled(String),
    #[error("cannot make a token: {0}")]
    Random(#[source] std::io::Error),
    #[error("cannot store the credential: {0}")]
    Store(#[source] StoreError),
    #[error("cannot store the credential: the state database is not answering: {0}")]
    StoreGone(#[source] actix::MailboxError),
}

/// One enrolled drone.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrolled {
    pub name: String,
    /// The host the operator enrolled it for (the CLI's ssh goes there).
    pub host: Option<String>,
    pub enrolled_unix: u64,
}

/// A newly issued credential: the token is shown once and kept nowhere.
#[derive(Debug)]
pub struct Issued {
    pub enrolled: Enrolled,
    pub token: String,
    /// It replaced a credential the drone had.
    pub replaced: bool,
}

#[derive(Default)]
struct Table {
    by_hash: HashMap<[u8; 32], Arc<Enrolled>>,
    by_name: HashMap<String, [u8; 32]>,
}

impl Table {
    fn insert(&mut self, hash: [u8; 32], e: Enrolled) -> bool {
        let replaced = self.remove(&e.name);
        self.by_name.insert(e.name.clone(), hash);
        self.by_hash.insert(hash, Arc::new(e));
        replaced
    }

    fn remove(&mut self, name: &str) -> bool {
        match self.by_name.remove(name) {
            Some(old) => {
                self.by_hash.remove(&old);
                true
            }
            None => false,
        }
    }
}

pub struct DroneCredentials {
    table: RwLock<Table>,
    store: Option<Addr<Store>>,
    /// Enrolments and revocations one at a time, so the copy ends as the database does.
    writes: tokio::sync::Mutex<()>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl DroneCredentials {
    /// The stored credentials; `store` is where enrolments are written (`None`: memory only,
    /// for tests).
    pub fn new(rows: Vec<CredentialRow>, store: Option<Addr<Store>>) -> (Self, Vec<String>) {
        let mut table = Table::default();
        let mut unusable = Vec::new();
        for row in rows {
            match unhex(&row.token_sha256) {
                Some(hash) => {
                    table.insert(
                        hash,
                        Enrolled {
                            name: row.name,
                            host: row.host,
                            enrolled_unix: row.enrolled_unix,
                        },
                    );
                }
                None => unusable.push(row.name),
            }
        }
        let creds = DroneCredentials {
            table: RwLock::new(table),
            store,
            writes: tokio::sync::Mutex::new(()),
        };
        (creds, unusable)
    }

    /// The drone a token belongs to.
    pub fn lookup(&self, token: &str) -> Option<Arc<Enrolled>> {
        self.table.read().by_hash.get(&digest(token)).cloned()
    }

    pub fn get(&self, name: &str) -> Option<Enrolled> {
        let t = self.table.read();
        let hash = t.by_name.get(name)?;
        t.by_hash.get(hash).map(|e| (**e).clone())
    }

    pub fn is_enrolled(&self, name: &str) -> bool {
        self.table.read().by_name.contains_key(name)
    }

    /// Every enrolled drone, by name.
    pub fn list(&self) -> Vec<Enrolled> {
        let t = self.table.read();
        let mut v: Vec<Enrolled> = t.by_hash.values().map(|e| (**e).clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Issues `name` a new token (replacing the one it had), stored hashed.
    pub async fn enroll(
        &self,
        name: &str,
        host: Option<String>,
    ) -> Result<Issued, CredentialError> {
        check_drone_name(name).map_err(|e| CredentialError::InvalidName(e.to_string()))?;
        let host = host.map(|h| h.trim().to_string()).filter(|h| !h.is_empty());
        if let Some(h) = &host {
            if h.len() > 255
                || h.starts_with('-')
                || h.contains(|c: char| c.is_whitespace() || c.is_control())
            {
                return Err(CredentialError::InvalidHost(h.clone()));
            }
        }
        let token = format!(
            "{TOKEN_PREFIX}{}",
            crate::sys::random::hex_token(32).map_err(CredentialError::Random)?
        );
        let hash = digest(&token);
        let enrolled = Enrolled {
            name: name.to_string(),
            host,
            enrolled_unix: crate::sys::clock::unix_now(),
        };
        let _one_at_a_time = self.writes.lock().await;
        if let Some(store) = &self.store {
            store
                .send(SaveCredential(CredentialRow {
                    name: enrolled.name.clone(),
                    token_sha256: crate::sys::digest::hex(&hash),
                    host: enrolled.host.clone(),
                    enrolled_unix: enrolled.enrolled_unix,
                }))
                .await
                .map_err(CredentialError::StoreGone)?
                .map_err(CredentialError::Store)?;
        }
        let replaced = self.table.write().insert(hash, enrolled.clone());
        Ok(Issued {
            enrolled,
            token,
            replaced,
        })
    }

    /// Removes `name`'s credential: its token stops working at once.
    pub async fn revoke(&self, name: &str) -> Result<(), CredentialError> {
        let _one_at_a_time = self.writes.lock().await;
        if !self.is_enrolled(name) {
            return Err(CredentialError::NotEnrolled(name.to_string()));
        }
        if let Some(store) = &self.store {
            store
                .send(DeleteCredential {
                    name: name.to_string(),
                })
                .await
                .map_err(CredentialError::StoreGone)?
                .map_err(CredentialError::Store)?;
        }
        self.table.write().remove(name);
        Ok(())
    }
}

/// Which credential a drone session registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Admin,
    Shared,
    Own,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Admin => "admin",
            CredentialKind::Shared => "shared",
            CredentialKind::Own => "own",
        }
    }
}

/// Who a drone-protocol request acts as.
#[derive(Clone)]
pub enum Caller {
    /// The admin token: may act for any drone.
    Admin,
    /// The shared drone token: may act for any drone that is not enrolled.
    Shared(Arc<DroneCredentials>),
    /// An enrolled drone's own token: only for that drone.
    Drone(Arc<Enrolled>),
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A request for another drone than its credential's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{caller} may not act for drone {drone}{why}")]
pub struct Forbidden {
    /// Who the credential belongs to.
    pub caller: String,
    /// The drone the request acted for.
    pub drone: String,
    why: &'static str,
}

impl Caller {
    pub fn kind(&self) -> CredentialKind {
        match self {
            Caller::Admin => CredentialKind::Admin,
            Caller::Shared(_) => CredentialKind::Shared,
            Caller::Drone(_) => CredentialKind::Own,
        }
    }

    /// The enrolled drone's name, for its own token.
    pub fn drone(&self) -> Option<&str> {
        match self {
            Caller::Drone(e) => Some(&e.name),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Caller::Admin => "the admin token".into(),
            Caller::Shared(_) => "the shared drone token".into(),
            Caller::Drone(e) => format!("drone {}'s token", e.name),
        }
    }

    /// Whether this credential may register, heartbeat, claim and report for `drone` (and
    /// its leases).
    pub fn may_act_for(&self, drone: &str) -> Result<(), Forbidden> {
        let why = match self {
            Caller::Admin => return Ok(()),
            Caller::Drone(e) if e.name == drone => return Ok(()),
            Caller::Drone(_) => "",
            Caller::Shared(c) if !c.is_enrolled(drone) => return Ok(()),
            Caller::Shared(_) => " (it is enrolled: it uses its own token)",
        };
        Err(Forbidden {
            caller: self.describe(),
            drone: drone.to_string(),
            why,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Arc<DroneCredentials> {
        Arc::new(DroneCredentials::new(vec![], None).0)
    }

    #[actix_web::test]
    async fn a_token_is_its_drones_only_and_stops_working_when_revoked() {
        let c = creds();
        let a = c.enroll("drone-a", Some("a.lan".into())).await.unwrap();
        assert!(a.token.starts_with(TOKEN_PREFIX) && a.token.len() == 68);
        assert!(!a.replaced);
        let who = c.lookup(&a.token).unwrap();
        assert_eq!(who.name, "drone-a");
        assert_eq!(who.host.as_deref(), Some("a.lan"));
        let caller = Caller::Drone(who);
        assert!(caller.may_act_for("drone-a").is_ok());
        let e = caller.may_act_for("drone-b").unwrap_err();
        assert_eq!(
            (e.caller.as_str(), e.drone.as_str()),
            ("drone drone-a's token", "drone-b")
        );

        // The shared token may no longer act for an enrolled drone, still for the others.
        let shared = Caller::Shared(c.clone());
        assert!(shared.may_act_for("drone-a").is_err());
        assert!(shared.may_act_for("drone-b").is_ok());
        assert!(Caller::Admin.may_act_for("drone-a").is_ok());

        // Enrolling again replaces the token.
        let again = c.enroll("drone-a", None).await.unwrap();
        assert!(again.replaced);
        assert!(c.lookup(&a.token).is_none());
        assert!(c.lookup(&again.token).is_some());
        c.revoke("drone-a").await.unwrap();
        assert!(c.lookup(&again.token).is_none());
        assert!(shared.may_act_for("drone-a").is_ok());
        assert!(matches!(
            c.revoke("drone-a").await,
            Err(CredentialError::NotEnrolled(_))
        ));
    }

    #[actix_web::test]
    async fn bad_names_and_hosts_are_refused() {
        let c = creds();
        assert!(matches!(
            c.enroll("../x", None).await,
            Err(CredentialError::InvalidName(_))
        ));
        assert!(matches!(
            c.enroll("d", Some("-oProxyCommand=x".into())).await,
            Err(CredentialError::InvalidHost(_))
        ));
        assert!(c.list().is_empty());
    }

    #[test]
    fn stored_rows_load_and_a_damaged_one_is_named() {
        let token = "bsd_x";
        let rows = vec![
            CredentialRow {
                name: "a".into(),
                token_sha256: crate::sys::digest::hex(&digest(token)),
                host: None,
                enrolled_unix: 1,
            },
            CredentialRow {
                name: "b".into(),
                token_sha256: "zz".into(),
                host: None,
                enrolled_unix: 1,
            },
        ];
        let (c, unusable) = DroneCredentials::new(rows, None);
        assert_eq!(unusable, vec!["b".to_string()]);
        assert_eq!(
            c.lookup(token).map(|e| e.name.clone()).as_deref(),
            Some("a")
        );
        assert_eq!(c.list().len(), 1);
    }
}
