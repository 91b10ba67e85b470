//! Bearer tokens: admin for control and submit, drone for the drone protocol, and an
//! optional read token. Compared in constant time (over SHA-256 digests, so the length of
//! the token does not leak either).

use super::error::ApiError;
use crate::config::orchestrator::Tokens;
use actix_web::http::header;
use actix_web::HttpRequest;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Read,
    Drone,
    Admin,
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

/// The admin token may do everything; the drone token the drone protocol and reads.
pub fn authorize(req: &HttpRequest, tokens: &Tokens, role: Role) -> Result<(), ApiError> {
    if role == Role::Read && tokens.read.is_none() {
        return Ok(());
    }
    let Some(given) = bearer(req) else {
        return Err(ApiError::Unauthorized);
    };
    let admin = same(given, &tokens.admin);
    let drone = same(given, &tokens.drone);
    let read = tokens.read.as_deref().is_some_and(|r| same(given, r));
    let ok = match role {
        Role::Admin => admin,
        Role::Drone => admin | drone,
        Role::Read => admin | drone | read,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}
