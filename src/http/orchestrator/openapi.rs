//! `GET /api/v1/openapi.json`: the OpenAPI 3.0 description of every orchestrator endpoint,
//! hand-written beside this file and embedded in the binary. `tests/it/dashboard.rs` checks
//! that it validates, that it names every route registered in `routes`, and that its
//! schemas use exactly the field names of `crate::wire::orchestrator`.

use actix_web::http::header;
use actix_web::HttpResponse;

/// The document itself.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Served without a token: it describes the API, it holds no data.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(OPENAPI_JSON)
}
