//! Drone identity (docs/design.md, "Drone identity"): the enrolled drones' credentials and
//! who a drone-protocol request acts as.
//!
//! [`DroneCredentials`] keeps a SHA-256 of each enrolled drone's token (never the token)
//! in the state database and a copy in memory that the HTTP layer reads on every request.
//! Enrolling and revoking write the database first (one at a time), then the copy. A
//! revoked drone stays known, without a token, so the shared token cannot act for it
//! either until it is enrolled again.
//! [`Caller`] is what a request's token makes it: the admin, the shared drone token, or one
//! enrolled drone; [`Caller::may_act_for`] is the one ownership rule every drone endpoint
//! and the queue's lease checks apply.

use crate::actors::orchestrator::store::{
    CredentialRow, DeleteCredential, SaveCredential, Store, StoreError,
};
use crate::domain::{check_drone_name, BadDroneName};
use actix::Addr;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Prefix of a drone's own token, so one found in a config file or a log says what it is.
pub const TOKEN_PREFIX: &str = "bsd_";

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    InvalidName(#[from] BadDroneName),
    #[error("host `{0}` is not a host name")]
    InvalidHost(String),
    #[error("a drone token must be 32-256 printable ASCII characters without spaces")]
    InvalidToken,
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
    /// Its token was revoked (or its stored hash cannot be read): no token works for it.
    pub revoked: bool,
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
    /// Every enrolled drone, with its token's hash (`None`: revoked).
    by_name: HashMap<String, (Option<[u8; 32]>, Arc<Enrolled>)>,
}

impl Table {
    /// Sets `e`'s token (`None`: revoked); answers whether it had a working one.
    fn set(&mut self, hash: Option<[u8; 32]>, e: Enrolled) -> bool {
        let had = match self.by_name.remove(&e.name) {
            Some((Some(old), _)) => {
                self.by_hash.remove(&old);
                true
            }
            _ => false,
        };
        let e = Arc::new(e);
        if let Some(h) = hash {
            self.by_hash.insert(h, e.clone());
        }
        self.by_name.insert(e.name.clone(), (hash, e));
        had
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
            let hash = row.token_sha256.as_deref().map(unhex);
            // A hash that cannot be read locks the drone out rather than open it to the
            // shared token.
            if hash == Some(None) {
                unusable.push(row.name.clone());
            }
            let hash = hash.flatten();
            table.set(
                hash,
                Enrolled {
                    name: row.name,
                    host: row.host,
                    enrolled_unix: row.enrolled_unix,
                    revoked: hash.is_none(),
                },
            );
        }
        let creds = DroneCredentials {
            table: RwLock::new(table),
            store,
            writes: tokio::sync::Mutex::new(()),
        };
        (creds, unusable)
    }

    /// The drone a token belongs to, and the token's hash.
    pub fn lookup(&self, token: &str) -> Option<(Arc<Enrolled>, [u8; 32])> {
        let hash = digest(token);
        self.table
            .read()
            .by_hash
            .get(&hash)
            .map(|e| (e.clone(), hash))
    }

    /// Whether `hash` is still `name`'s token (not revoked or replaced since).
    fn still_valid(&self, name: &str, hash: &[u8; 32]) -> bool {
        matches!(self.table.read().by_name.get(name), Some((Some(h), _)) if h == hash)
    }

    pub fn get(&self, name: &str) -> Option<Enrolled> {
        self.table
            .read()
            .by_name
            .get(name)
            .map(|(_, e)| (**e).clone())
    }

    /// Enrolled (a revoked drone too: the shared token may not act for it).
    pub fn is_enrolled(&self, name: &str) -> bool {
        self.table.read().by_name.contains_key(name)
    }

    /// Every enrolled drone (revoked ones too), by name.
    pub fn list(&self) -> Vec<Enrolled> {
        let t = self.table.read();
        let mut v: Vec<Enrolled> = t.by_name.values().map(|(_, e)| (**e).clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Gives `name` a token (replacing the one it had), stored hashed: `token` when the
    /// caller brings one (the same token for every orchestrator of a swarm), else a new
    /// random one.
    pub async fn enroll(
        &self,
        name: &str,
        host: Option<String>,
        token: Option<String>,
    ) -> Result<Issued, CredentialError> {
        check_drone_name(name)?;
        let host = host.map(|h| h.trim().to_string()).filter(|h| !h.is_empty());
        if let Some(h) = &host {
            if h.len() > 255
                || h.starts_with('-')
                || h.contains(|c: char| c.is_whitespace() || c.is_control())
            {
                return Err(CredentialError::InvalidHost(h.clone()));
            }
        }
        let token = match token {
            Some(t) => {
                if !(32..=256).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(CredentialError::InvalidToken);
                }
                t
            }
            None => new_token().map_err(CredentialError::Random)?,
        };
        let hash = digest(&token);
        let enrolled = Enrolled {
            name: name.to_string(),
            host,
            enrolled_unix: crate::sys::clock::unix_now(),
            revoked: false,
        };
        let _one_at_a_time = self.writes.lock().await;
        if let Some(store) = &self.store {
            store
                .send(SaveCredential(CredentialRow {
                    name: enrolled.name.clone(),
                    token_sha256: Some(crate::sys::digest::hex(&hash)),
                    host: enrolled.host.clone(),
                    enrolled_unix: enrolled.enrolled_unix,
                }))
                .await
                .map_err(CredentialError::StoreGone)?
                .map_err(CredentialError::Store)?;
        }
        let replaced = self.table.write().set(Some(hash), enrolled.clone());
        Ok(Issued {
            enrolled,
            token,
            replaced,
        })
    }

    /// Revokes `name`'s token: it stops working at once (requests already on their way
    /// are refused where they are checked). The drone stays enrolled without a token, so
    /// the shared token cannot act for it either; `forget` removes it altogether.
    pub async fn revoke(&self, name: &str, forget: bool) -> Result<(), CredentialError> {
        let _one_at_a_time = self.writes.lock().await;
        let Some(mut e) = self.get(name) else {
            return Err(CredentialError::NotEnrolled(name.to_string()));
        };
        if let Some(store) = &self.store {
            let done = if forget {
                store
                    .send(DeleteCredential {
                        name: name.to_string(),
                    })
                    .await
                    .map(|r| r.map(drop))
            } else {
                store
                    .send(SaveCredential(CredentialRow {
                        name: e.name.clone(),
                        token_sha256: None,
                        host: e.host.clone(),
                        enrolled_unix: e.enrolled_unix,
                    }))
                    .await
            };
            done.map_err(CredentialError::StoreGone)?
                .map_err(CredentialError::Store)?;
        }
        let mut t = self.table.write();
        if forget {
            if let Some((Some(h), _)) = t.by_name.remove(name) {
                t.by_hash.remove(&h);
            }
        } else {
            e.revoked = true;
            t.set(None, e);
        }
        Ok(())
    }
}

/// A new drone token: [`TOKEN_PREFIX`] and 32 random bytes in hex.
pub fn new_token() -> std::io::Result<String> {
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        crate::sys::random::hex_token(32)?
    ))
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
    /// An enrolled drone's own token: only for that drone, and only while it is still
    /// the drone's token.
    Drone {
        enrolled: Arc<Enrolled>,
        hash: [u8; 32],
        credentials: Arc<DroneCredentials>,
    },
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
            Caller::Drone { .. } => CredentialKind::Own,
        }
    }

    /// The enrolled drone's name, for its own token.
    pub fn drone(&self) -> Option<&str> {
        match self {
            Caller::Drone { enrolled, .. } => Some(&enrolled.name),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Caller::Admin => "the admin token".into(),
            Caller::Shared(_) => "the shared drone token".into(),
            Caller::Drone { enrolled, .. } => format!("drone {}'s token", enrolled.name),
        }
    }

    /// Whether this credential may register, heartbeat, claim and report for `drone` (and
    /// its leases).
    pub fn may_act_for(&self, drone: &str) -> Result<(), Forbidden> {
        let why = match self {
            Caller::Admin => return Ok(()),
            Caller::Drone {
                enrolled,
                hash,
                credentials,
            } if enrolled.name == drone => {
                if credentials.still_valid(drone, hash) {
                    return Ok(());
                }
                " (the token was revoked or replaced meanwhile)"
            }
            Caller::Drone { .. } => "",
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

    fn caller(c: &Arc<DroneCredentials>, token: &str) -> Caller {
        let (enrolled, hash) = c.lookup(token).unwrap();
        Caller::Drone {
            enrolled,
            hash,
            credentials: c.clone(),
        }
    }

    #[actix_web::test]
    async fn a_token_is_its_drones_only_and_stops_working_when_revoked() {
        let c = creds();
        let a = c
            .enroll("drone-a", Some("a.lan".into()), None)
            .await
            .unwrap();
        assert!(a.token.starts_with(TOKEN_PREFIX) && a.token.len() == 68);
        assert!(!a.replaced);
        let (who, _) = c.lookup(&a.token).unwrap();
        assert_eq!(who.name, "drone-a");
        assert_eq!(who.host.as_deref(), Some("a.lan"));
        let as_a = caller(&c, &a.token);
        assert!(as_a.may_act_for("drone-a").is_ok());
        let e = as_a.may_act_for("drone-b").unwrap_err();
        assert_eq!(
            (e.caller.as_str(), e.drone.as_str()),
            ("drone drone-a's token", "drone-b")
        );

        // The shared token may no longer act for an enrolled drone, still for the others.
        let shared = Caller::Shared(c.clone());
        assert!(shared.may_act_for("drone-a").is_err());
        assert!(shared.may_act_for("drone-b").is_ok());
        assert!(Caller::Admin.may_act_for("drone-a").is_ok());

        // Enrolling again replaces the token; a caller resolved before is refused after.
        let again = c.enroll("drone-a", None, None).await.unwrap();
        assert!(again.replaced);
        assert!(c.lookup(&a.token).is_none());
        assert!(as_a.may_act_for("drone-a").is_err(), "replaced in flight");
        let as_a = caller(&c, &again.token);
        c.revoke("drone-a", false).await.unwrap();
        assert!(c.lookup(&again.token).is_none());
        assert!(as_a.may_act_for("drone-a").is_err(), "revoked in flight");
        // Revoked, it stays enrolled: the shared token still may not act for it.
        assert!(shared.may_act_for("drone-a").is_err());
        assert!(c.get("drone-a").is_some_and(|e| e.revoked));
        // Forgotten, it is a drone like any other.
        c.revoke("drone-a", true).await.unwrap();
        assert!(shared.may_act_for("drone-a").is_ok());
        assert!(matches!(
            c.revoke("drone-a", false).await,
            Err(CredentialError::NotEnrolled(_))
        ));
    }

    #[actix_web::test]
    async fn a_token_can_be_brought_for_every_orchestrator_of_a_swarm() {
        let c = creds();
        let t = "bsd_".to_string() + &"ab".repeat(32);
        let issued = c.enroll("d", None, Some(t.clone())).await.unwrap();
        assert_eq!(issued.token, t);
        assert!(c.lookup(&t).is_some());
        for bad in ["short", &"x y".repeat(20), &"\u{e9}".repeat(40)] {
            assert!(matches!(
                c.enroll("d", None, Some(bad.to_string())).await,
                Err(CredentialError::InvalidToken)
            ));
        }
    }

    #[actix_web::test]
    async fn bad_names_and_hosts_are_refused() {
        let c = creds();
        assert!(matches!(
            c.enroll("../x", None, None).await,
            Err(CredentialError::InvalidName(_))
        ));
        assert!(matches!(
            c.enroll("d", Some("-oProxyCommand=x".into()), None).await,
            Err(CredentialError::InvalidHost(_))
        ));
        assert!(c.list().is_empty());
    }

    #[test]
    fn stored_rows_load_and_a_damaged_one_locks_its_drone_out() {
        let token = "bsd_x";
        let row = |name: &str, hash: Option<String>| CredentialRow {
            name: name.into(),
            token_sha256: hash,
            host: None,
            enrolled_unix: 1,
        };
        let rows = vec![
            row("a", Some(crate::sys::digest::hex(&digest(token)))),
            row("b", Some("zz".into())),
            row("c", None),
        ];
        let (c, unusable) = DroneCredentials::new(rows, None);
        assert_eq!(unusable, vec!["b".to_string()]);
        assert_eq!(
            c.lookup(token).map(|(e, _)| e.name.clone()).as_deref(),
            Some("a")
        );
        let c = Arc::new(c);
        for locked in ["b", "c"] {
            assert!(c.get(locked).is_some_and(|e| e.revoked));
            assert!(Caller::Shared(c.clone()).may_act_for(locked).is_err());
        }
        assert_eq!(c.list().len(), 3);
    }
}
