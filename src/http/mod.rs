//! The HTTP servers: the orchestrator's API ([`orchestrator`]) and the gateway's
//! ([`gateway`]), both over one error type ([`error::ApiError`]) and one dashboard page
//! ([`dashboard`]), served by [`serve`]. Handlers are thin: check the token, parse, send
//! one message to an actor, map the answer. The routes are listed in docs/contract.md §5.

pub mod auth;

/// `Content-Type` of `GET /metrics` (the orchestrator's and the drone's): OpenMetrics
/// text, as the `prometheus-client` crate encodes it.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub mod dashboard;
pub mod error;
pub mod gateway;
pub mod orchestrator;

use actix_web::web;

/// Binds `addr` and starts an HTTP server whose every worker serves `routes` with
/// `state`. `handle_signals`: SIGTERM/SIGINT stop it (the daemons) or not (tests).
/// Returns the running server and the port it got (port 0 asks for a free one).
pub fn serve<T: Send + Sync + 'static>(
    addr: std::net::SocketAddr,
    state: web::Data<T>,
    routes: fn(&mut web::ServiceConfig),
    handle_signals: bool,
) -> std::io::Result<(actix_web::dev::Server, u16)> {
    let listener = std::net::TcpListener::bind(addr)?;
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(addr.port());
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .configure(routes)
    })
    .shutdown_timeout(5)
    .listen(listener)?;
    if !handle_signals {
        server = server.disable_signals();
    }
    Ok((server.run(), port))
}

/// A request body that must be a JSON object. serde reads a struct from a JSON array too
/// (`[]` would be an empty heartbeat); every request body of both APIs is an object, so
/// anything else is refused (400) before a handler sees it. Unknown fields are ignored, so
/// newer clients can send fields an older server does not know.
#[derive(Debug)]
pub struct JsonObject<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Only<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Only(std::marker::PhantomData))
            .map(JsonObject)
    }
}

#[cfg(test)]
mod tests {
    use super::JsonObject;
    use crate::wire::orchestrator::HeartbeatRequest;

    #[test]
    fn only_json_objects_are_request_bodies() {
        let ok: JsonObject<HeartbeatRequest> =
            serde_json::from_str(r#"{"leases": [3], "log": [], "later": {"x": 1}}"#).unwrap();
        assert_eq!(ok.0.leases, vec![3]);
        for bad in ["[]", "[[[[", "1", "\"x\"", "null", "{{{{"] {
            let e = serde_json::from_str::<JsonObject<HeartbeatRequest>>(bad).unwrap_err();
            assert!(!e.to_string().is_empty(), "{bad}");
        }
        // Without the wrapper serde takes an array for the struct.
        assert!(serde_json::from_str::<HeartbeatRequest>("[]").is_ok());
    }
}
