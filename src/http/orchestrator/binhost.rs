//! The binhost over HTTP: `GET /binhost/<path>` serves `binhost_dir` read-only (no
//! listing, no hidden or temporary files, nothing outside it; `Range`; `Last-Modified`
//! with If-Modified-Since answered 304 only on an exact match, which Portage's client
//! needs — docs/design.md, "The binhost index"), channels at `/binhost/<channel>/` (their
//! own index, their snapshot's files: docs/design.md, "Releases"), the signing key's
//! public half at `/binhost/key.asc`, and `POST /api/v1/binhost/verify`.

use super::State;
use crate::actors::orchestrator::binhost_index::{Verify, VerifyError};
use crate::http::auth::Role;
use crate::http::error::ApiError;
use crate::http::JsonObject;
use crate::orchestrator::publish::join_inside;
use crate::wire::orchestrator::{BinhostReport, BinhostVerifyRequest};
use actix_files::NamedFile;
use actix_web::http::header::{self, HttpDate};
use actix_web::{web, HttpRequest, HttpResponse};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

impl From<VerifyError> for ApiError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Loading => ApiError::Unavailable(e.to_string()),
            VerifyError::Io { .. } | VerifyError::Interrupted(_) => {
                ApiError::Unavailable(e.to_string())
            }
        }
    }
}

/// Where the binhost's public signing key is served (`/binhost/key.asc`).
pub const KEY_FILE: &str = "key.asc";

/// The public half of the signing key, ASCII-armored, for clients' keyrings.
fn public_key(state: &State) -> Result<HttpResponse, ApiError> {
    match &state.signer {
        Some(s) => Ok(HttpResponse::Ok()
            .content_type("application/pgp-keys")
            .insert_header(("X-Key-Fingerprint", s.fingerprint()))
            .body(s.public_key_armored().to_string())),
        None => Err(ApiError::NotFound(
            "this binhost is not signed ([signing] key is not set): there is no key.asc".into(),
        )),
    }
}

/// What `/binhost/<path>` names.
enum Lookup {
    File(Box<NamedFile>),
    /// A channel's `key.asc`.
    Key,
    Missing,
    NotServed,
}

fn not_found(rel: &str) -> ApiError {
    ApiError::NotFound(format!("no such file in the binhost: /binhost/{rel}"))
}

/// The file `rel` names inside `root`: no `..`, no hidden segment, and (after symbolic
/// links) still inside `root`.
fn resolve(root: &std::path::Path, rel: &str) -> Option<PathBuf> {
    if rel.split('/').any(|s| s.starts_with('.')) {
        return None;
    }
    let path = join_inside(root, rel)?;
    let real = path.canonicalize().ok()?;
    let root = root.canonicalize().ok()?;
    (real.starts_with(&root) && real.is_file()).then_some(real)
}

pub async fn file(
    req: HttpRequest,
    state: State,
    tail: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let rel = tail.into_inner();
    if rel == KEY_FILE {
        return public_key(&state);
    }
    let root = state.binhost_dir.clone();
    let releases = state.release_files.clone();
    let lookup = rel.clone();
    let found = web::block(move || {
        // `/binhost/<channel>/…`: a channel's index or one of its snapshot's files.
        if let (Some(r), Some((first, rest))) = (&releases, lookup.split_once('/')) {
            if r.is_channel(first) {
                if rest == KEY_FILE {
                    return Lookup::Key;
                }
                if rest.split('/').any(|s| s.starts_with('.')) {
                    return Lookup::Missing;
                }
                return r
                    .channel_file(first, rest)
                    .and_then(|p| NamedFile::open(p).ok())
                    .map_or(Lookup::Missing, |f| Lookup::File(Box::new(f)));
            }
        }
        let Some(root) = root else {
            return Lookup::NotServed;
        };
        resolve(&root, &lookup)
            .and_then(|p| NamedFile::open(p).ok())
            .map_or(Lookup::Missing, |f| Lookup::File(Box::new(f)))
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("the server is overloaded: {e}")))?;
    let file = match found {
        Lookup::File(f) => *f,
        Lookup::Key => return public_key(&state),
        Lookup::Missing => return Err(not_found(&rel)),
        Lookup::NotServed => {
            return Err(ApiError::NotFound(
                "this orchestrator does not serve its binhost ([binhost] serve = false)".into(),
            ))
        }
    };
    // Whole seconds, as HTTP dates are.
    let secs = file
        .metadata()
        .modified()
        .ok()
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let last_modified = HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs));
    let since = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<HttpDate>().ok());
    if since.is_some_and(|s| SystemTime::from(s) == SystemTime::from(last_modified)) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::LAST_MODIFIED, last_modified))
            .finish());
    }
    let content_type = if rel.ends_with("Packages") {
        actix_web::mime::TEXT_PLAIN_UTF_8
    } else {
        actix_web::mime::APPLICATION_OCTET_STREAM
    };
    let mut resp = file
        .use_etag(false)
        .use_last_modified(false)
        .disable_content_disposition()
        .set_content_type(content_type)
        .into_response(&req);
    resp.headers_mut().insert(
        header::LAST_MODIFIED,
        header::HeaderValue::from_str(&last_modified.to_string())
            .map_err(|e| ApiError::Unavailable(e.to_string()))?,
    );
    Ok(resp)
}

pub async fn verify(
    req: HttpRequest,
    state: State,
    body: web::Json<JsonObject<BinhostVerifyRequest>>,
) -> Result<web::Json<BinhostReport>, ApiError> {
    state.auth.authorize(&req, Role::Admin)?;
    let Some(index) = &state.binhost_index else {
        return Err(ApiError::NotFound(
            "this orchestrator writes no binhost index ([binhost] index = false)".into(),
        ));
    };
    let fix = body.into_inner().0.fix;
    let problems = index.send(Verify { fix }).await??;
    let entries = index
        .send(crate::actors::orchestrator::binhost_index::IndexStatus)
        .await?
        .entries;
    Ok(web::Json(BinhostReport {
        ok: problems.is_empty(),
        fixed: fix && !problems.is_empty(),
        problems,
        entries,
    }))
}
