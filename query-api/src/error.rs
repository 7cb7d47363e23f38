//! The crate's errors. `Error` is what building and running the application can fail with (a
//! port in use, a bad admin key, a view or the integrity tree that will not open); `ApiError` is
//! what a request can fail with, and this file is the one place where each becomes an HTTP status and an
//! `application/problem+json` body (RFC 9457) with `type`, `title`, `status`, `detail` and the
//! fields specific to the problem.

use annals_store::{CurrentRevision, ExpectedRevision, StoreError};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use tracing::{error, warn};

/// Startup and shutdown failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("invalid setting ANNALS_ADMIN_KEY: {0}")]
    AdminKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("read views: {0}")]
    Views(String),
    #[error("integrity tree: {0}")]
    Integrity(String),
}

/// The error of a body that did not arrive in time (`edge.rs` sets the deadline);
/// `ApiError::body_rejected` makes it a `408`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0} seconds")]
pub struct BodyTimedOut(pub u64);

/// A request that failed. Each variant is one problem type.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not the JSON the endpoint takes (syntax, shape, or a field's value).
    #[error("{0}")]
    MalformedBody(String),
    /// One field of the body is not valid; `pointer` (RFC 6901) names it, e.g. `/events/0/type`.
    #[error("{pointer}: {detail}")]
    InvalidField { pointer: String, detail: String },
    /// The body is JSON, but `pointer` holds what no reader holds the same way (a duplicate key,
    /// a lone surrogate, nesting past the limit, a number beyond f64): `structure::check`.
    #[error("{detail}")]
    UnreadableJson { pointer: String, detail: String },
    /// A path or query parameter is not valid.
    #[error("{detail}")]
    InvalidParameter { parameter: &'static str, detail: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("stream {0} does not exist")]
    StreamNotFound(String),
    /// The query string or a path parameter does not parse (an unknown parameter, a number that
    /// is not one); `parameter` names it when the parser said which.
    #[error("{detail}")]
    InvalidQuery { parameter: Option<String>, detail: String },
    #[error("no route for {0}")]
    NotFound(String),
    #[error("{0} is not allowed on this route")]
    MethodNotAllowed(String),
    /// Event data that breaks its type's schema.
    #[error("event {index} ({event_type} v{version}): {rule}")]
    SchemaViolation { index: usize, event_type: String, version: u32, pointer: String, rule: String },
    /// An event type without a schema, in strict mode; or a schema version that does not exist.
    #[error("event {index}: {reason}")]
    UnknownSchema { index: usize, event_type: String, reason: String },
    #[error("no schema is registered for event type {0}")]
    SchemaNotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{} key may not {}", role.with_article(), action.describe())]
    Forbidden { role: crate::auth::role::Role, action: crate::auth::role::Action },
    #[error("there is no key {0}")]
    KeyNotFound(String),
    #[error("key {0} is the last active operator key; create another operator key before revoking it")]
    LastAdminKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A read view failed; its query was fine.
    #[error(transparent)]
    View(#[from] annals_projectors::ViewError),
    /// `min_position` was not applied to the view in time (read-your-writes).
    #[error("the {view} view has not applied position {position} yet; retry shortly")]
    NotYetApplied { view: &'static str, position: u64 },
    /// A view document of the caller's tenant that does not exist (a message, an audit entry).
    #[error("{kind} {id} does not exist")]
    DocumentNotFound { kind: &'static str, id: String },
    /// A rebuild was asked for while one runs.
    #[error("projection {projection} is already being rebuilt (generation {generation}); wait for it to finish")]
    RebuildRunning { projection: String, generation: u64 },
    /// The store takes no appends now (`/readyz`): its disk is full, or a failed commit needs a
    /// restart.
    #[error("the store takes no appends: {0}")]
    NotReady(StoreError),
    /// A request hyper could not parse (request line, header syntax): answered before routing.
    #[error("{0}")]
    MalformedRequest(String),
    #[error("{0}")]
    UriTooLong(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    /// A body that did not arrive within the body timeout.
    #[error("the request body did not arrive within {0} seconds")]
    BodyTimeout(u64),
    /// A body sent with a content type other than JSON (`None`: no `content-type` at all).
    #[error("this route takes application/json (or a +json type), not {}", content_type.as_deref().unwrap_or("a body without a content-type"))]
    UnsupportedMediaType { content_type: Option<String> },
    /// As many live tails are reading history as the server allows at once.
    #[error("{limit} live tails are catching up already; retry shortly")]
    TooManyCatchUpTails { limit: usize },
    /// A resume point past the log's head: no event was ever sent with it.
    #[error("{parameter} {position} is past the last position in the log ({head}): no event has it yet")]
    PositionPastHead { parameter: &'static str, position: u64, head: String },
    /// A replay named positions that are not parked events waiting for one.
    #[error("projection {projection} has no parked event waiting at position(s) {positions:?}")]
    NotParked { projection: String, positions: Vec<u64> },
    /// This process has no invalidation feed (role `api` without a shared backend).
    #[error("this process has no invalidation feed: invalidations need a shared backend (such as Redis) for an api process beside projector processes, or role all")]
    InvalidationsUnavailable,
    /// The invalidation feed failed when a follower started (its backend is unreachable).
    #[error("the invalidation feed is unavailable: {0}")]
    InvalidationFeed(String),
    /// The integrity tree's files failed it (transient I/O, or a tree to rebuild from the log).
    #[error("the integrity tree cannot answer: {0}")]
    Integrity(String),
}

impl ApiError {
    fn problem(&self) -> (StatusCode, &'static str, &'static str, Map<String, Value>) {
        use StoreError as S;
        let mut extra = Map::new();
        let (status, kind, title) = match self {
            ApiError::MalformedBody(_) => (StatusCode::BAD_REQUEST, "malformed-body", "Malformed request body"),
            ApiError::InvalidField { pointer, .. } | ApiError::UnreadableJson { pointer, .. } => {
                extra.insert("pointer".into(), json!(pointer));
                (StatusCode::BAD_REQUEST, "malformed-body", "Malformed request body")
            }
            ApiError::InvalidParameter { parameter, .. } => {
                extra.insert("parameter".into(), json!(parameter));
                (StatusCode::BAD_REQUEST, "invalid-parameter", "Invalid parameter")
            }
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large"),
            ApiError::StreamNotFound(stream) => {
                extra.insert("stream".into(), json!(stream));
                (StatusCode::NOT_FOUND, "stream-not-found", "Stream not found")
            }
            ApiError::InvalidQuery { parameter, .. } => {
                if let Some(parameter) = parameter {
                    extra.insert("parameter".into(), json!(parameter));
                }
                (StatusCode::BAD_REQUEST, "invalid-parameter", "Invalid parameter")
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Integrity(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "integrity-unavailable", "Integrity tree unavailable")
            }
            ApiError::SchemaViolation { event_type, version, pointer, rule, .. } => {
                extra.insert("event_type".into(), json!(event_type));
                extra.insert("schema_version".into(), json!(version));
                extra.insert("pointer".into(), json!(pointer));
                extra.insert("rule".into(), json!(rule));
                (StatusCode::UNPROCESSABLE_ENTITY, "schema-violation", "Event data violates its schema")
            }
            ApiError::UnknownSchema { event_type, .. } => {
                extra.insert("event_type".into(), json!(event_type));
                (StatusCode::UNPROCESSABLE_ENTITY, "unknown-schema", "No schema for this event")
            }
            ApiError::SchemaNotFound(event_type) => {
                extra.insert("event_type".into(), json!(event_type));
                (StatusCode::NOT_FOUND, "schema-not-found", "Schema not found")
            }
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::KeyNotFound(id) => {
                extra.insert("key_id".into(), json!(id));
                (StatusCode::NOT_FOUND, "key-not-found", "Key not found")
            }
            ApiError::LastAdminKey(id) => {
                extra.insert("key_id".into(), json!(id));
                (StatusCode::CONFLICT, "last-operator-key", "Last operator key")
            }
            ApiError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed")
            }
            ApiError::DocumentNotFound { kind, id } => {
                extra.insert((*kind).into(), json!(id));
                (StatusCode::NOT_FOUND, "document-not-found", "Not found")
            }
            ApiError::NotYetApplied { position, .. } => {
                extra.insert("min_position".into(), json!(position));
                (StatusCode::SERVICE_UNAVAILABLE, "not-yet-applied", "Not yet in the view")
            }
            ApiError::RebuildRunning { projection, generation } => {
                extra.insert("projection".into(), json!(projection));
                extra.insert("generation".into(), json!(generation));
                (StatusCode::CONFLICT, "rebuild-running", "A rebuild is already running")
            }
            ApiError::NotParked { projection, positions } => {
                extra.insert("projection".into(), json!(projection));
                extra.insert("positions".into(), json!(positions));
                (StatusCode::UNPROCESSABLE_ENTITY, "not-parked", "Not a parked event")
            }
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready"),
            ApiError::MalformedRequest(_) => (StatusCode::BAD_REQUEST, "malformed-request", "Malformed request"),
            ApiError::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri-too-long", "URI too long"),
            ApiError::HeadersTooLarge(_) => {
                (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large", "Request headers too large")
            }
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "body-timeout", "Request body too slow"),
            ApiError::UnsupportedMediaType { content_type } => {
                extra.insert("content_type".into(), json!(content_type));
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            ApiError::InvalidationFeed(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "invalidations-unavailable", "The invalidation feed is unavailable")
            }
            ApiError::InvalidationsUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "invalidations-unavailable", "No invalidation feed")
            }
            ApiError::TooManyCatchUpTails { limit } => {
                extra.insert("limit".into(), json!(limit));
                (StatusCode::SERVICE_UNAVAILABLE, "too-many-catch-up-tails", "Too many live tails catching up")
            }
            ApiError::PositionPastHead { parameter, .. } => {
                extra.insert("parameter".into(), json!(parameter));
                (StatusCode::BAD_REQUEST, "invalid-parameter", "Invalid parameter")
            }
            ApiError::View(annals_projectors::ViewError::BadQuery { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid-parameter", "Invalid parameter")
            }
            ApiError::View(_) => (StatusCode::SERVICE_UNAVAILABLE, "view-unavailable", "The view is unavailable"),
            ApiError::Store(e) => match e {
                S::WrongExpectedRevision { stream, expected, actual } => {
                    extra.insert("stream".into(), json!(stream.as_str()));
                    extra.insert("expected".into(), expected_json(*expected));
                    extra.insert("actual".into(), actual_json(*actual));
                    (StatusCode::CONFLICT, "wrong-expected-revision", "Wrong expected revision")
                }
                S::IdempotencyConflict { stream, event_id, .. } => {
                    extra.insert("stream".into(), json!(stream.as_str()));
                    extra.insert("event_id".into(), json!(event_id));
                    (StatusCode::CONFLICT, "idempotency-conflict", "Event ids already used elsewhere")
                }
                S::InvalidStreamName { .. } | S::StreamNameCharacter { .. } => {
                    extra.insert("parameter".into(), json!("stream"));
                    (StatusCode::BAD_REQUEST, "invalid-stream-name", "Invalid stream name")
                }
                S::EmptyBatch
                | S::DuplicateIdInBatch { .. }
                | S::InvalidEventType { .. }
                | S::EventTypeCharacter { .. }
                | S::InvalidJson { .. } => (StatusCode::BAD_REQUEST, "malformed-body", "Malformed request body"),
                S::EventTooLarge { .. } | S::BatchTooLarge { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large")
                }
                S::Closed => (StatusCode::SERVICE_UNAVAILABLE, "shutting-down", "The store is closing"),
                S::StorageFull { .. } => {
                    (StatusCode::INSUFFICIENT_STORAGE, "insufficient-storage", "The store's disk is full")
                }
                // A backend that cannot be reached or did not answer in time: nothing is wrong
                // with the request, so 503 with `Retry-After`, never 500.
                S::Unavailable { .. } | S::Timeout { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", "The store is unavailable")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
            },
        };
        (status, kind, title, extra)
    }
}

impl ApiError {
    /// A request body that could not be read: `413` past the body limit, else `400`. Every route
    /// that takes a body maps its rejection here, so the limit answers the same everywhere.
    pub fn body_rejected(rejection: axum::extract::rejection::BytesRejection, limit: usize) -> ApiError {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge(format!("the request body is larger than the limit of {limit} bytes"))
            }
            _ => {
                // A body cut off by the body timeout (`edge::TimedBody`) is the client's slowness,
                // not malformed JSON.
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
                while let Some(error) = source {
                    if let Some(timed_out) = error.downcast_ref::<BodyTimedOut>() {
                        return ApiError::BodyTimeout(timed_out.0);
                    }
                    source = error.source();
                }
                ApiError::MalformedBody(rejection.body_text())
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        self.problem().0
    }
}

impl ApiError {
    /// The status and the problem document, for the few answers written outside axum (the
    /// server loop's answers to requests hyper cannot parse) as for every handler's.
    pub fn document(&self) -> (StatusCode, Value) {
        let (status, kind, title, extra) = self.problem();
        // Internal details (paths, I/O errors) are logged, not sent.
        let hidden = status == StatusCode::INTERNAL_SERVER_ERROR
            || (matches!(self, ApiError::View(_)) && status == StatusCode::SERVICE_UNAVAILABLE);
        // The backend's reason (a host, a connection error) is logged, not sent.
        let unavailable = matches!(self, ApiError::Store(StoreError::Unavailable { .. } | StoreError::Timeout { .. }));
        let detail = if unavailable {
            warn!(error = %self, "the store is unavailable");
            "the store is unavailable for now; retry after the Retry-After seconds".to_owned()
        } else if hidden {
            error!(error = %self, "request failed");
            "the server failed to handle the request; the error is in its log".to_owned()
        } else {
            self.to_string()
        };
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("https://annals.dev/problems/{kind}")));
        body.insert("title".into(), json!(title));
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(detail));
        body.extend(extra);
        (status, Value::Object(body))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.document();
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response();
        if matches!(self, ApiError::Store(StoreError::StorageFull { .. }))
            || matches!(&self, ApiError::NotReady(e) if e.is_transient())
            || matches!(self, ApiError::Store(StoreError::Unavailable { .. } | StoreError::Timeout { .. }))
        {
            // Space comes back when an operator frees it, a backend when it restarts: retrying
            // sooner only costs a request.
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        if matches!(
            self,
            ApiError::NotYetApplied { .. } | ApiError::TooManyCatchUpTails { .. } | ApiError::InvalidationFeed(_)
        ) {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// `ExpectedRevision` as the API spells it in requests.
pub fn expected_json(expected: ExpectedRevision) -> Value {
    match expected {
        ExpectedRevision::Any => json!("any"),
        ExpectedRevision::NoStream => json!("no_stream"),
        ExpectedRevision::StreamExists => json!("stream_exists"),
        ExpectedRevision::Exact(r) => json!(r.0),
    }
}

fn actual_json(actual: CurrentRevision) -> Value {
    match actual {
        CurrentRevision::NoStream => json!("no_stream"),
        CurrentRevision::Current(r) => json!(r.0),
    }
}

#[cfg(test)]
mod tests {
    use annals_store::{CurrentRevision, ExpectedRevision, Revision, StreamId};
    use utoipa::PartialSchema;

    use super::*;

    /// A store that cannot be reached (or does not answer in time) is a `503` problem document
    /// with `Retry-After`, never a `500`, and its reason (hosts, connection errors) stays in the
    /// log.
    #[test]
    fn an_unavailable_store_is_503_with_retry_after() {
        let errors = [
            StoreError::Unavailable { backend: "postgres", reason: "connection refused by db.internal:5432".into() },
            StoreError::Timeout { backend: "postgres", operation: "append", after: std::time::Duration::from_secs(5) },
        ];
        for error in errors {
            let response = ApiError::Store(error).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "5");
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
            let (_, body) =
                ApiError::Store(StoreError::Unavailable { backend: "postgres", reason: "db.internal".into() })
                    .document();
            assert_eq!(body["type"], "https://annals.dev/problems/store-unavailable");
            assert_eq!(body["status"], 503);
            assert!(!body["detail"].as_str().unwrap().contains("db.internal"), "{body}");
        }
    }

    /// Every field a problem body can carry is in the documented `Problem` schema.
    #[test]
    fn every_problem_field_is_documented() {
        let schema = serde_json::to_value(crate::openapi::Problem::schema()).unwrap();
        let documented: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        let stream = || StreamId::new("s").unwrap();
        let samples = [
            ApiError::InvalidParameter { parameter: "limit", detail: String::new() },
            ApiError::InvalidQuery { parameter: Some("limit".into()), detail: String::new() },
            ApiError::InvalidField { pointer: "/events/0/type".into(), detail: String::new() },
            ApiError::StreamNotFound("s".into()),
            ApiError::UnreadableJson { pointer: "/events/0/data/a".into(), detail: String::new() },
            ApiError::SchemaViolation {
                index: 0,
                event_type: "t".into(),
                version: 1,
                pointer: "/a".into(),
                rule: "r".into(),
            },
            ApiError::UnknownSchema { index: 0, event_type: "t".into(), reason: String::new() },
            ApiError::SchemaNotFound("t".into()),
            ApiError::KeyNotFound("k".into()),
            ApiError::LastAdminKey("k".into()),
            ApiError::DocumentNotFound { kind: "message", id: "m".into() },
            ApiError::DocumentNotFound { kind: "audit_entry", id: "e".into() },
            ApiError::DocumentNotFound { kind: "projection", id: "p".into() },
            ApiError::NotYetApplied { view: "messages", position: 3 },
            ApiError::RebuildRunning { projection: "messages".into(), generation: 2 },
            ApiError::NotParked { projection: "messages".into(), positions: vec![1] },
            ApiError::Store(StoreError::WrongExpectedRevision {
                stream: stream(),
                expected: ExpectedRevision::Exact(Revision(1)),
                actual: CurrentRevision::NoStream,
            }),
            ApiError::Store(StoreError::IdempotencyConflict {
                stream: stream(),
                event_id: uuid::Uuid::nil(),
                reason: String::new(),
            }),
            ApiError::Store(StoreError::InvalidStreamName { name: String::new(), reason: "" }),
        ];
        for error in samples {
            let (_, kind, _, extra) = error.problem();
            for field in extra.keys() {
                assert!(documented.contains(&field.as_str()), "{kind}: field {field} is not in the Problem schema");
            }
        }
    }
}
