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
        (name = "projections", description = "Where each view's projection stands, rebuilds, parked events (operator keys)"),
        (name = "keys", description = "API keys (operator keys: every tenant's; admin keys: their tenant's)"),
        (name = "operations", description = "Health, readiness, metrics, this document")
    )
)]
pub struct ApiDoc;

/// An error, as RFC 9457 describes: `type` names the problem; the optional fields below come with
/// the problem types named in their descriptions.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // documents the body `ApiError` writes
pub struct Problem {
    /// A URL naming the problem, e.g. `https://annals.dev/problems/wrong-expected-revision`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// `invalid-parameter`, `invalid-stream-name`: the parameter at fault.
    pub parameter: Option<String>,
    /// `wrong-expected-revision`, `idempotency-conflict`, `stream-not-found`: the stream.
    pub stream: Option<String>,
    /// `wrong-expected-revision`: the revision the request expected.
    pub expected: Option<ExpectedRevision>,
    /// `wrong-expected-revision`: the stream's revision, or `"no_stream"`.
    pub actual: Option<ActualRevision>,
    /// `idempotency-conflict`: an event id already stored in another stream, at other revisions,
    /// or in a batch only part of which is stored (a retry is recognised by its ids alone).
    pub event_id: Option<String>,
    /// `schema-violation`, `unknown-schema`, `schema-not-found`: the event type.
    pub event_type: Option<String>,
    /// `schema-violation`: the version of the type's schema that was checked.
    pub schema_version: Option<u32>,
    /// `schema-violation`: a JSON pointer into the request body to the offending value.
    pub pointer: Option<String>,
    /// `schema-violation`: the schema's rule that the value breaks.
    pub rule: Option<String>,
    /// `key-not-found`, `last-operator-key`: the key's id.
    pub key_id: Option<String>,
    /// `document-not-found`: the message id asked for.
    pub message: Option<String>,
    /// `document-not-found`: the audit entry (event id) asked for.
    pub audit_entry: Option<String>,
    /// `document-not-found`, `rebuild-running`, `not-parked`: the projection.
    pub projection: Option<String>,
    /// `rebuild-running`: the generation being built.
    pub generation: Option<u64>,
    /// `not-parked`: the positions that are not parked events.
    pub positions: Option<Vec<u64>>,
    /// `not-yet-applied`: the position the view has not reached yet.
    pub min_position: Option<u64>,
}

/// Adds what every `/v1` operation may answer without its handler saying so: `503` while the
/// server stops (the store is closing) or a view is unavailable. Run on the document the routes
/// made, since the handlers' annotations list only what is particular to them.
pub fn complete(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let unavailable = ResponseBuilder::new()
        .description("The server is stopping (the store is closing) or a view is unavailable; retry")
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
        )
        .build();
    for (_, item) in api.paths.paths.iter_mut().filter(|(path, _)| path.starts_with("/v1/")) {
        for operation in
            [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch].into_iter().flatten()
        {
            operation.responses.responses.entry("503".into()).or_insert_with(|| unavailable.clone().into());
        }
    }
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

/// Where a stream stands: the revision of its last event, or `"no_stream"`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ActualRevision {
    Named(NoStream),
    Revision(u64),
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum NoStream {
    NoStream,
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
