//! The JSON the API speaks: request bodies as they arrive and events as they leave. Kept apart
//! from the store's types so the wire format can stay stable while the store's vocabulary moves.

use annals_store::{AppendResult, EventData, ExpectedRevision, RecordedEvent, Revision};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use annals_schemas::{Registry, Violation};

use crate::auth::Tenant;
use crate::error::ApiError;

/// `POST /v1/streams/{stream}/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// `"any"` (the default), `"no_stream"`, `"stream_exists"`, or the stream's last revision.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::ExpectedRevision>)]
    pub expected_revision: Option<Box<RawValue>>,
    pub events: Vec<NewEvent>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Defaults to a fresh UUID v7; send your own to make retries idempotent.
    pub id: Option<Uuid>,
    /// The event type; registered types (`GET /v1/schemas`) are validated against their schema.
    #[serde(rename = "type")]
    pub event_type: String,
    /// A JSON object.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    /// A JSON object; `schema_version` picks the schema version (default 1); the request's
    /// `traceparent` is added unless present.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
}

impl AppendBody {
    pub fn expected(&self) -> Result<ExpectedRevision, ApiError> {
        let Some(raw) = &self.expected_revision else { return Ok(ExpectedRevision::Any) };
        match serde_json::from_str::<serde_json::Value>(raw.get()) {
            Ok(serde_json::Value::String(s)) => match s.as_str() {
                "any" => Ok(ExpectedRevision::Any),
                "no_stream" => Ok(ExpectedRevision::NoStream),
                "stream_exists" => Ok(ExpectedRevision::StreamExists),
                _ => Err(bad_expected(raw.get())),
            },
            Ok(serde_json::Value::Number(n)) => {
                whole_number(&n).map(|r| ExpectedRevision::Exact(Revision(r))).ok_or_else(|| bad_expected(raw.get()))
            }
            _ => Err(bad_expected(raw.get())),
        }
    }

    /// The events as the store takes them: ids filled in, `data` and `metadata` checked to be
    /// objects (the store itself takes any JSON; the API promises objects), and the request's
    /// `traceparent` added to each event's metadata unless the event has its own.
    pub fn into_events(self, traceparent: Option<&str>, schemas: &Schemas<'_>) -> Result<Vec<EventData>, ApiError> {
        self.events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let field = |name: &str| format!("/events/{i}/{name}");
                // The body's parser checked `data` to be JSON, so one that starts with `{` is an
                // object; nothing parses it again unless its type has a schema.
                if !e.data.get().starts_with('{') {
                    return Err(ApiError::MalformedBody(format!("{} must be a JSON object", field("data"))));
                }
                let mut metadata = match &e.metadata {
                    Some(m) => object(m, &field("metadata"))?,
                    None => serde_json::Map::new(),
                };
                schemas.check(i, &e.event_type, &e.data, &metadata)?;
                if let Some(tp) = traceparent {
                    metadata.entry("traceparent").or_insert_with(|| tp.into());
                }
                let id = e.id.unwrap_or_else(Uuid::now_v7);
                // The parser checked `data` and `metadata` to be JSON: they go to the store as sent.
                // The only thing this can refuse is the event type.
                let mut event = EventData::from_raw_json(id, e.event_type, e.data)
                    .map_err(|err| ApiError::InvalidField { pointer: field("type"), detail: err.to_string() })?;
                if !metadata.is_empty() {
                    event = match (e.metadata, traceparent) {
                        // Unchanged metadata is stored byte for byte as sent.
                        (Some(raw), None) => event.with_raw_metadata(raw),
                        _ => event
                            .with_metadata_bytes(serde_json::to_vec(&metadata).expect("a map serializes"))
                            .map_err(|err| ApiError::MalformedBody(format!("/events/{i}: {err}")))?,
                    };
                }
                Ok(event)
            })
            .collect()
    }
}

/// What appends are checked against: the registry, and whether unknown types are refused.
#[derive(Debug)]
pub struct Schemas<'a> {
    pub registry: &'a Registry,
    pub strict: bool,
}

impl Schemas<'_> {
    /// Checks event `index` against its type's schema, in the version its metadata names
    /// (`schema_version`, default 1). Types without a schema pass unless `strict`.
    fn check(
        &self,
        index: usize,
        event_type: &str,
        data: &RawValue,
        metadata: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), ApiError> {
        if !self.registry.knows(event_type) && !self.strict {
            return Ok(());
        }
        let version = match metadata.get("schema_version") {
            None => None,
            Some(v) => Some(v.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(|| {
                ApiError::MalformedBody(format!("/events/{index}/metadata/schema_version must be a whole number"))
            })?),
        };
        // The body's parser checked the JSON's grammar only; a value can still be beyond what
        // a JSON document model holds (deeper than 128 levels, a number beyond f64, a lone
        // surrogate escape).
        let data: serde_json::Value =
            serde_json::from_str(data.get()).map_err(|e| unreadable(&format!("/events/{index}/data"), &e))?;
        match self.registry.validate(event_type, version, &data) {
            Ok(()) => Ok(()),
            Err(Violation::Invalid { pointer, rule }) => Err(ApiError::SchemaViolation {
                index,
                event_type: event_type.to_owned(),
                version: version.unwrap_or(1),
                pointer: format!("/events/{index}/data{pointer}"),
                rule,
            }),
            Err(Violation::UnknownType) => Err(ApiError::UnknownSchema {
                index,
                event_type: event_type.to_owned(),
                reason: format!(
                    "event type {event_type} has no registered schema, and this server only takes registered types"
                ),
            }),
            Err(Violation::UnknownVersion { latest }) => Err(ApiError::UnknownSchema {
                index,
                event_type: event_type.to_owned(),
                reason: format!("{event_type} has no schema version {}; the latest is {latest}", version.unwrap_or(1)),
            }),
        }
    }
}

/// A request body that must be a JSON object, parsed as `T` (serde would also take a struct
/// written as an array of its fields, which no client means).
pub fn body_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice(body).map_err(|e| ApiError::MalformedBody(e.to_string())),
        Some(_) => Err(ApiError::MalformedBody("the body must be a JSON object".into())),
        None => Err(ApiError::MalformedBody("the body is empty; it must be a JSON object".into())),
    }
}

/// `raw` parsed as a JSON object, or a `400` naming `pointer`.
fn object(raw: &RawValue, pointer: &str) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::MalformedBody(format!("{pointer} must be a JSON object"))),
        Err(e) => Err(unreadable(pointer, &e)),
    }
}

fn bad_expected(got: &str) -> ApiError {
    ApiError::MalformedBody(format!(
        "/expected_revision must be \"any\", \"no_stream\", \"stream_exists\" or a revision (a whole number from 0 to {MAX_INTEGER}), got {got}"
    ))
}

/// The largest whole number the API takes (`contract.rs`, where the document states it).
pub use crate::contract::MAX_INTEGER;

/// `deserialize_with` for an optional whole-number query parameter: a number above
/// [`MAX_INTEGER`] is a `400` naming the parameter, as the document's `int64` says (serde alone
/// would take anything up to `u64::MAX`).
pub fn bounded<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    match Option::<u64>::deserialize(deserializer)? {
        None => Ok(None),
        Some(n) if n <= MAX_INTEGER => T::try_from(n).map(Some).map_err(|_| too_large()),
        Some(_) => Err(too_large()),
    }
}

/// `n` as a whole number from 0 to [`MAX_INTEGER`]. JSON Schema's `integer` is any number whose
/// value is whole, so `7.0` and `7e0` are the integer 7, as the document's readers take them.
pub fn whole_number(n: &serde_json::Number) -> Option<u64> {
    if let Some(n) = n.as_u64() {
        return (n <= MAX_INTEGER).then_some(n);
    }
    // Below 2^63 (= MAX_INTEGER + 1, exact as a double), a whole double is a `u64` exactly.
    n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9_223_372_036_854_775_808.0).map(|f| f as u64)
}

/// `deserialize_with` for an optional list of whole numbers in a body (`[1, 2.0]`), each from 0 to
/// [`MAX_INTEGER`].
pub fn whole_numbers<'de, D>(deserializer: D) -> Result<Option<Vec<u64>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let Some(numbers) = Option::<Vec<serde_json::Number>>::deserialize(deserializer)? else { return Ok(None) };
    numbers
        .iter()
        .map(|n| {
            whole_number(n)
                .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number from 0 to {MAX_INTEGER}")))
        })
        .collect::<Result<Vec<u64>, D::Error>>()
        .map(Some)
}

fn too_large<E: serde::de::Error>() -> E {
    E::custom(format!("must be a whole number from 0 to {MAX_INTEGER}"))
}

/// The `201` answer to an append (and to its retries).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Appended {
    pub stream: String,
    pub first_revision: u64,
    pub last_revision: u64,
    pub first_position: u64,
    pub last_position: u64,
}

impl Appended {
    pub fn new(r: AppendResult, tenant: &Tenant) -> Self {
        Appended {
            stream: tenant.client_name(r.stream.as_str()).to_owned(),
            first_revision: r.first_revision.0,
            last_revision: r.last_revision.0,
            first_position: r.first_position.code(),
            last_position: r.last_position.code(),
        }
    }
}

/// An event as reads return it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    pub id: Uuid,
    pub stream: String,
    pub revision: u64,
    pub position: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
    /// RFC 3339 with microseconds, UTC.
    pub recorded_at: String,
}

impl Event {
    /// The event as `tenant` sees it: its stream named without the tenant's prefix.
    pub fn new(e: RecordedEvent, tenant: &Tenant) -> Self {
        // The store keeps only valid JSON, so these conversions cannot fail on stored events.
        let raw = |bytes: &[u8]| {
            RawValue::from_string(String::from_utf8_lossy(bytes).into_owned())
                .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
        };
        Event {
            id: e.id,
            stream: tenant.client_name(e.stream.as_str()).to_owned(),
            revision: e.revision.0,
            position: e.position.code(),
            event_type: e.event_type,
            data: raw(&e.data),
            metadata: (!e.metadata.is_empty()).then(|| raw(&e.metadata)),
            recorded_at: e.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        }
    }
}

/// A page of events, with the link to the next page unless this one reached the end (a page
/// bounded in bytes or in events examined may hold fewer events than asked for).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page {
    pub events: Vec<Event>,
    pub next: Option<String>,
}

/// A `400` for JSON that is well-formed but that a document model cannot hold.
fn unreadable(pointer: &str, error: &serde_json::Error) -> ApiError {
    // serde_json ends its message with " at line L column C" of the value, not of the body.
    let message = error.to_string();
    let message = message.split(" at line ").next().unwrap_or_default();
    ApiError::MalformedBody(format!(
        "{pointer} cannot be read as a JSON value: {message} (at most 128 levels of nesting, numbers \
         within the range of a double, valid unicode escapes)"
    ))
}
