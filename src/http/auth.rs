//! Bearer tokens: admin for control and submit; for the drone protocol an enrolled drone's
//! own token or the shared drone token; an optional read token. Fixed tokens are compared in
//! constant time (over SHA-256 digests, so the length does not leak either); a drone's own
//! token is found by its SHA-256.

use super::error::ApiError;
use crate::config::orchestrator::Tokens;
use crate::orchestrator::credentials::{Caller, DroneCredentials};
use actix_web::http::header;
use actix_web::HttpRequest;
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Read,
    Admin,
}

/// The tokens a server accepts.
pub struct Auth {
    pub tokens: Tokens,
    pub credentials: Arc<DroneCredentials>,
}

/// Constant-time token comparison (over SHA-256 digests, so lengths do not leak).
pub fn same(a: &str, b: &str) -> bool {
    let x = Sha256::digest(a.as_bytes());
    let y = Sha256::digest(b.as_bytes());
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// The bearer token of a request, if it carries one.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl Auth {
    /// Who a drone-protocol request acts as: the admin, the shared drone token (when it is
    /// on) or an enrolled drone.
    pub fn drone_caller(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        let given = bearer(req).ok_or(ApiError::Unauthorized)?;
        if same(given, &self.tokens.admin) {
            return Ok(Caller::Admin);
        }
        if self.tokens.drone.as_deref().is_some_and(|d| same(given, d)) {
            return Ok(Caller::Shared(self.credentials.clone()));
        }
        self.credentials
            .lookup(given)
            .map(|(enrolled, hash)| Caller::Drone {
                enrolled,
                hash,
                credentials: self.credentials.clone(),
            })
            .ok_or(ApiError::Unauthorized)
    }

    /// Admin endpoints need the admin token; reads any token this server knows (none when
    /// no read token is configured).
    pub fn authorize(&self, req: &HttpRequest, role: Role) -> Result<(), ApiError> {
        if role == Role::Read && self.tokens.read.is_none() {
            return Ok(());
        }
        let given = bearer(req).ok_or(ApiError::Unauthorized)?;
        let ok = match role {
            Role::Admin => same(given, &self.tokens.admin),
            Role::Read => {
                same(given, &self.tokens.admin)
                    | self.tokens.drone.as_deref().is_some_and(|d| same(given, d))
                    | self.tokens.read.as_deref().is_some_and(|r| same(given, r))
                    || self.credentials.lookup(given).is_some()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}
