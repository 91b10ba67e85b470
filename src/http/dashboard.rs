//! The dashboard: one page of HTML, CSS and plain JavaScript, embedded in the binary (no
//! build step, nothing fetched from elsewhere). It polls the read API with relative paths
//! only — `api/v1/status`, `api/v1/drones`, `api/v1/packages?state=&q=&offset=&limit=` and
//! `api/v1/packages/{category}/{pf}/log` — and never asks for the whole package list.
//!
//! The gateway serves the very same page (`src/http/gateway.rs` registers these three
//! handlers at the same paths): its merged `/api/v1/status` and `/api/v1/drones` fill the
//! counts and the drone table, and the page hides the package and failure panels because
//! `api/v1/packages` answers 404 there.

use actix_web::http::header;
use actix_web::HttpResponse;

pub const INDEX_HTML: &str = include_str!("dashboard/index.html");
pub const APP_JS: &str = include_str!("dashboard/app.js");
pub const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// Scripts and styles only from this origin, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

pub async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn app_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn style_css() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE_CSS)
}
