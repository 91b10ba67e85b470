//! `GET /api/v1/openapi.json` of the gateway: its own paths and schemas (`openapi.json`
//! beside this file), with the schemas it shares with the orchestrator (`Status`,
//! `DroneInfo`, …) copied in from the orchestrator's document, so each is written once.
//! `tests/it/dashboard.rs` checks that it validates and names every gateway route.

use actix_web::http::header;
use actix_web::HttpResponse;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// The gateway's own part of the document.
const OWN: &str = include_str!("openapi.json");

/// The whole document, as served.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| merged(OWN, crate::http::orchestrator::openapi::OPENAPI_JSON))
}

/// `own` with every schema it refers to but does not define taken from `shared`
/// (transitively). Both are embedded and tested; should either not parse, `own` is
/// served as it is.
fn merged(own: &str, shared: &str) -> String {
    let (Ok(mut doc), Ok(shared)) = (
        serde_json::from_str::<Value>(own),
        serde_json::from_str::<Value>(shared),
    ) else {
        return own.to_string();
    };
    loop {
        let defined: BTreeSet<String> = doc["components"]["schemas"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let mut wanted = BTreeSet::new();
        refs(&doc, &mut wanted);
        let missing: Vec<String> = wanted.difference(&defined).cloned().collect();
        if missing.is_empty() {
            break;
        }
        let Some(schemas) = doc["components"]["schemas"].as_object_mut() else {
            break;
        };
        for name in missing {
            // A schema the orchestrator lacks too stays an empty one (never loops).
            let schema = shared["components"]["schemas"][&name].clone();
            let schema = if schema.is_null() {
                Value::Object(Default::default())
            } else {
                schema
            };
            schemas.insert(name, schema);
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| own.to_string())
}

/// Names of the schemas `v` refers to (`#/components/schemas/NAME`).
fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => {
                        if let Some(name) = r.strip_prefix("#/components/schemas/") {
                            out.insert(name.to_string());
                        }
                    }
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Served without a token: it describes the API, it holds no data.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_schemas_are_copied_in_transitively() {
        let doc: Value = serde_json::from_str(document()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        // Referred to by the gateway's own schemas, defined only by the orchestrator...
        for name in ["Status", "DroneInfo", "DroneCounts", "ErrorBody", "Health"] {
            assert!(schemas.contains_key(name), "{name}");
        }
        // ...and what those refer to in turn.
        let mut wanted = BTreeSet::new();
        refs(&doc, &mut wanted);
        for name in wanted {
            assert!(schemas.contains_key(&name), "dangling $ref to {name}");
        }
    }
}
