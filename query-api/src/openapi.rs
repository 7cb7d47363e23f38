//! The OpenAPI document (`GET /openapi.json`), generated from the code: every route is registered
//! through `utoipa_axum::routes!` in `routes/mod.rs`, which adds its `#[utoipa::path]` to the
//! document as it adds it to the router, so a route cannot exist undocumented. This file holds
//! what the handlers' annotations share: the document's header, the bearer scheme, and schemas
//! of values that are JSON but not typed in Rust (the expected revision, the problem body).

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "annals",
        description = "Event-sourced audit log: append events, read streams and the global log, follow it live, \
                       search the message log and the audit trail. \
                       Every /v1 route needs `Authorization: Bearer <key>`; errors are application/problem+json."
    ),
    modifiers(&BearerAuth),
    components(schemas(Problem, ExpectedRevision, Direction)),
    tags(
        (name = "streams", description = "Append to and read one stream"),
        (name = "events", description = "The global log ($all) of the caller's tenant"),
        (name = "schemas", description = "Registered event types and their JSON Schemas"),
        (name = "messages", description = "The message log view: search, one message, its history"),
        (name = "audit", description = "The audit trail view"),
        (name = "projections", description = "Where each view's projection stands (admin)"),
        (name = "keys", description = "API keys (admin)"),
        (name = "operations", description = "Health, readiness, metrics, this document")
    )
)]
pub struct ApiDoc;

/// An error, as RFC 9457 describes: `type` names the problem; further fields depend on it
/// (`expected` and `actual` on `wrong-expected-revision`, `pointer` and `rule` on
/// `schema-violation`, `parameter` on `invalid-parameter`, …).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // documents the body `ApiError` writes
pub struct Problem {
    /// A URL naming the problem, e.g. `https://annals.dev/problems/wrong-expected-revision`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// `"any"` (the default), `"no_stream"`, `"stream_exists"`, or the revision the stream's last
/// event must have.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ExpectedRevision {
    Named(NamedExpectation),
    Exact(u64),
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum NamedExpectation {
    Any,
    NoStream,
    StreamExists,
}

/// Which way a stream read goes.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum Direction {
    Forwards,
    Backwards,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("annals key").build()),
        );
    }
}
