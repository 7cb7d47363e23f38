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
                       Every /v1 route needs `Authorization: Bearer <key>`; errors are application/problem+json. \
                       Positions and revisions are int64 (0 to 2^63-1), exact in a double below 2^53."
    ),
    modifiers(&BearerAuth),
    components(schemas(
        Problem,
        ExpectedRevision,
        Direction,
        crate::documents::Message,
        crate::documents::AuditEntry,
        InvalidationView
    )),
    tags(
        (name = "streams", description = "Append to and read one stream"),
        (name = "events", description = "The global log ($all) of the caller's tenant"),
        (name = "schemas", description = "Registered event types and their JSON Schemas"),
        (name = "messages", description = "The message log view: search, one message, its history"),
        (name = "audit", description = "The audit trail view"),
        (name = "integrity", description = "The Merkle tree over the log: public key, signed tree heads, inclusion and consistency proofs"),
        (name = "invalidations", description = "Cache invalidations projected from the log, as Server-Sent Events"),
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
/// server stops (the store is closing), the store is unavailable or a view is, and `415` where it takes a body. Run on the document the routes
/// made, since the handlers' annotations list only what is particular to them.
pub fn complete(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let unavailable = ResponseBuilder::new()
        .description(
            "The server is stopping (the store is closing), the store cannot be reached for now \
             (`store-unavailable`, with `Retry-After`) or a view is unavailable; retry",
        )
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
        )
        .build();
    // A body that is not JSON (issue 13: `415` for any content type but `application/json` and
    // `+json`); listed here so that every operation with a body documents it.
    let unsupported = ResponseBuilder::new()
        .description("The body's content type is not JSON (`application/json` or a `+json` type)")
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
            if operation.request_body.is_some() {
                operation.responses.responses.entry("415".into()).or_insert_with(|| unsupported.clone().into());
            }
        }
    }
}

/// The document `GET /openapi.json` serves: what the routes' annotations say ([`complete`]d),
/// with what validation checks beyond the types (`contract.rs`) and what JSON-level rewriting
/// states better than annotations can (the view documents' pages, the live tail's events).
pub fn document(mut api: utoipa::openapi::OpenApi) -> String {
    complete(&mut api);
    let mut doc = serde_json::to_value(&api).expect("the OpenAPI document serializes");
    crate::contract::constrain(&mut doc);
    typed_documents(&mut doc);
    live_events(&mut doc);
    invalidation_events(&mut doc);
    links(&mut doc);
    serde_json::to_string(&doc).expect("the OpenAPI document serializes")
}

/// The searches answer pages of `Message`s and `AuditEntry`s, the lookups one of each: the
/// shared `SearchPage` (`routes/search.rs`) holds untyped items, so each search gets a copy of
/// it whose items are typed.
fn typed_documents(doc: &mut serde_json::Value) {
    use serde_json::json;
    let page = doc["components"]["schemas"]["SearchPage"].clone();
    for (path, document, page_name) in
        [("/v1/messages", "Message", "MessagePage"), ("/v1/audit", "AuditEntry", "AuditPage")]
    {
        let mut typed = page.clone();
        typed["properties"]["items"]["items"] = json!({ "$ref": format!("#/components/schemas/{document}") });
        typed["description"] = json!(format!("A page of {document} documents."));
        doc["components"]["schemas"][page_name] = typed;
        doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
            json!({ "$ref": format!("#/components/schemas/{page_name}") });
    }
    // The untyped page, referenced by nothing now, would only be a useless model in clients.
    if !doc.to_string().contains("\"#/components/schemas/SearchPage\"") {
        if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
            schemas.remove("SearchPage");
        }
    }
    for (path, document) in [("/v1/messages/{id}", "Message"), ("/v1/audit/{event_id}", "AuditEntry")] {
        doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
            json!({ "$ref": format!("#/components/schemas/{document}") });
    }
}

/// OpenAPI links from an answer to the operations that take what it names, for generated
/// clients and for schemathesis' stateful phase (which follows them to reach real documents).
fn links(doc: &mut serde_json::Value) {
    use serde_json::json;
    let table = [
        (
            "/v1/streams/{stream}/events",
            "post",
            "201",
            "ReadStream",
            "read_stream",
            json!({ "stream": "$response.body#/stream" }),
        ),
        (
            "/v1/messages",
            "get",
            "200",
            "GetMessage",
            "get_message",
            json!({ "id": "$response.body#/items/0/message_id" }),
        ),
        (
            "/v1/messages",
            "get",
            "200",
            "GetMessageHistory",
            "get_message_history",
            json!({ "id": "$response.body#/items/0/message_id" }),
        ),
        (
            "/v1/audit",
            "get",
            "200",
            "GetAuditEntry",
            "get_audit_entry",
            json!({ "event_id": "$response.body#/items/0/event_id" }),
        ),
        ("/v1/keys", "post", "201", "RevokeKey", "revoke_key", json!({ "id": "$response.body#/id" })),
    ];
    for (path, method, status, name, operation, parameters) in table {
        let response = &mut doc["paths"][path][method]["responses"][status];
        assert!(response.is_object(), "a link from {method} {path} {status}, which is not documented");
        response["links"][name] = json!({ "operationId": operation, "parameters": parameters });
    }
}

/// `GET /v1/events/live` answers `text/event-stream`. OpenAPI 3.1 describes each event of such a
/// stream by the media type's `schema`, an event being an object of its SSE fields: `event`
/// (`message` when the server names none), `id` (the last one seen, for an event without its own)
/// and `data`, whose JSON content `contentMediaType`/`contentSchema` describe (JSON Schema
/// 2020-12, as OpenAPI 3.2 spells SSE). The events:
/// - an event of the log: no `event` name, so `message`; `id` its position (what
///   `Last-Event-ID` resumes after), `data` the event as reads return it;
/// - `caught-up`, once, when the history up to the head has been sent and new events follow as
///   they commit; `data` is `{}`.
///
/// Heartbeats are SSE comments (`: heartbeat`), which are no events.
fn live_events(doc: &mut serde_json::Value) {
    use serde_json::json;
    let position = json!({ "type": "string", "pattern": "^[0-9]+$" });
    doc["components"]["schemas"]["LiveEvent"] = json!({
        "description": "One Server-Sent Event of `GET /v1/events/live`, as its SSE fields.",
        "oneOf": [
            {
                "description": "An event of the log; `id` is its position.",
                "type": "object",
                "required": ["event", "id", "data"],
                "properties": {
                    "event": { "type": "string", "const": "message" },
                    "id": position,
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": { "$ref": "#/components/schemas/Event" }
                    }
                }
            },
            {
                "description": "The history has been sent; what follows is live. `id` is the last event's, if any.",
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": { "type": "string", "const": "caught-up" },
                    "id": position,
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": { "type": "object", "maxProperties": 0 }
                    }
                }
            }
        ]
    });
    let ok = &mut doc["paths"]["/v1/events/live"]["get"]["responses"]["200"];
    ok["description"] = json!(
        "An event stream: events of the log (SSE `id`: the position, `data`: the event as reads return it), \
         one `caught-up` event once the history is sent, and `: heartbeat` comments while idle"
    );
    ok["content"]["text/event-stream"]["schema"] = json!({ "$ref": "#/components/schemas/LiveEvent" });
}

/// The `InvalidationEvent` schema: the SSE fields of `GET /v1/invalidations`, with each
/// `data`'s JSON (an `annals_projectors::invalidation::Invalidation`) as its content schema.
fn invalidation_events(doc: &mut serde_json::Value) {
    use serde_json::json;
    let position = json!({ "type": "string", "pattern": "^[0-9]+$" });
    let int = json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX });
    let common = |scope: &str, extra: serde_json::Value| {
        let mut properties = json!({
            "tenant": { "type": ["string", "null"], "description": "The tenant; null: every tenant (whole-view only)." },
            "view": { "$ref": "#/components/schemas/InvalidationView" },
            "position": int,
            "scope": { "type": "string", "const": scope }
        });
        let mut required = vec!["tenant", "view", "position", "scope"];
        for (name, schema) in extra.as_object().expect("an object") {
            properties[name] = schema.clone();
            required.push(if name == "keys" { "keys" } else { "reason" });
        }
        json!({ "type": "object", "required": required, "properties": properties })
    };
    let key = json!({
        "type": "object",
        "required": ["kind", "value"],
        "properties": {
            "kind": { "type": "string", "enum": ["message", "recipient", "audit_target", "actor"] },
            "value": { "type": "string" }
        }
    });
    let keys = common("keys", json!({ "keys": { "type": "array", "items": key } }));
    let reasons = json!({ "type": "string", "enum": ["overflow", "rebuild", "trimmed", "resumed"] });
    let flush = common("whole_view", json!({ "reason": reasons }));
    let event = |name: &str, description: &str, data: serde_json::Value| {
        json!({
            "description": description,
            "type": "object",
            "required": ["event", "id", "data"],
            "properties": {
                "event": { "type": "string", "const": name },
                "id": position,
                "data": { "type": "string", "contentMediaType": "application/json", "contentSchema": data }
            }
        })
    };
    doc["components"]["schemas"]["InvalidationEvent"] = json!({
        "description": "One Server-Sent Event of `GET /v1/invalidations`, as its SSE fields; `id` is the position.",
        "oneOf": [
            event("invalidation", "These keys of the tenant changed at or before `position`.", keys),
            event("flush", "Drop everything cached from the view (for the tenant, or every tenant when null).", flush)
        ]
    });
    let ok = &mut doc["paths"]["/v1/invalidations"]["get"]["responses"]["200"];
    ok["content"]["text/event-stream"]["schema"] = json!({ "$ref": "#/components/schemas/InvalidationEvent" });
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

/// A view with invalidations (`GET /v1/invalidations?view=`). Here, beside the other schema
/// types routes share, so that this document's module never imports a route's.
#[derive(Clone, Copy, Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvalidationView {
    Messages,
    Audit,
}
