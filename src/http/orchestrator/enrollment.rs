//! Drones' own credentials (admin): enroll (a new token, shown once), revoke, list.

use super::State;
use crate::http::auth::Role;
use crate::http::error::ApiError;
use crate::http::JsonObject;
use crate::orchestrator::credentials::CredentialError;
use crate::wire::orchestrator::{
    EnrollRequest, EnrolledDrone, Enrollment, EnrollmentList, RevokeRequest, Revoked,
};
use actix_web::{web, HttpRequest};
use slog::info;

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> Self {
        let m = e.to_string();
        match e {
            CredentialError::InvalidName(_)
            | CredentialError::InvalidHost(_)
            | CredentialError::InvalidToken => ApiError::BadRequest(m),
            CredentialError::NotEnrolled(_) => ApiError::NotFound(m),
            CredentialError::Random(_)
            | CredentialError::Store(_)
            | CredentialError::StoreGone(_) => ApiError::Unavailable(m),
        }
    }
}

pub async fn enroll(
    req: HttpRequest,
    state: State,
    name: web::Path<String>,
    body: web::Json<JsonObject<EnrollRequest>>,
) -> Result<web::Json<Enrollment>, ApiError> {
    state.auth.authorize(&req, Role::Admin)?;
    let body = body.into_inner().0;
    let issued = state
        .auth
        .credentials
        .enroll(&name, body.host, body.token)
        .await?;
    info!(state.log, "drone enrolled"; "drone" => &issued.enrolled.name,
          "host" => issued.enrolled.host.as_deref().unwrap_or(""), "replaced" => issued.replaced);
    Ok(web::Json(Enrollment {
        name: issued.enrolled.name,
        token: issued.token,
        host: issued.enrolled.host,
        replaced: issued.replaced,
    }))
}

pub async fn revoke(
    req: HttpRequest,
    state: State,
    name: web::Path<String>,
    body: web::Json<JsonObject<RevokeRequest>>,
) -> Result<web::Json<Revoked>, ApiError> {
    state.auth.authorize(&req, Role::Admin)?;
    let name = name.into_inner();
    let forget = body.into_inner().0.forget;
    state.auth.credentials.revoke(&name, forget).await?;
    info!(state.log, "drone credential revoked"; "drone" => &name, "forgotten" => forget);
    Ok(web::Json(Revoked {
        name,
        revoked: true,
        forgotten: forget,
    }))
}

pub async fn list(req: HttpRequest, state: State) -> Result<web::Json<EnrollmentList>, ApiError> {
    state.auth.authorize(&req, Role::Admin)?;
    let drones = state
        .auth
        .credentials
        .list()
        .into_iter()
        .map(|e| EnrolledDrone {
            name: e.name,
            host: e.host,
            enrolled_unix: e.enrolled_unix,
            revoked: e.revoked,
        })
        .collect();
    Ok(web::Json(EnrollmentList { drones }))
}
