//! The store's vocabulary, in KurrentDB's terms: streams, revisions, positions, expected revisions
//! (defined in `ids.rs`, re-exported here), the events a client sends and the events the store
//! records.
//!
//! Every type here validates itself on construction, so an `EventData` or a `StreamId` that exists
//! is one the store will accept (apart from the size limits, which are the store's configuration).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::StoreError;
pub(crate) use crate::ids::namespace_of;
pub use crate::ids::{CurrentRevision, ExpectedRevision, Position, Revision, StreamId};
use crate::names::{forbidden_character, validate_event_type};
pub use crate::names::{MAX_EVENT_TYPE_LEN, MAX_STREAM_NAME_LEN};
pub use crate::page::{AllPage, PageLimits};

impl StreamId {
    /// Validates `name` against the stream-name rules.
    pub fn new(name: impl AsRef<str>) -> Result<Self, StoreError> {
        let name = name.as_ref();
        if let Some((index, character, class)) = forbidden_character(name) {
            return Err(StoreError::StreamNameCharacter { name: name.to_owned(), index, character, class });
        }
        let reason = if name.is_empty() {
            Some("must not be empty")
        } else if name.len() > MAX_STREAM_NAME_LEN {
            Some("must be at most 256 bytes")
        } else if name.trim() != name {
            Some("must not start or end with whitespace")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(StoreError::InvalidStreamName { name: name.to_owned(), reason }),
            None => Ok(StreamId::from_log(name)),
        }
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        StreamId::new(name).map_err(serde::de::Error::custom)
    }
}

/// An event as a client proposes it. `data` and `metadata` are JSON (checked here, once, outside the
/// writer); an empty `metadata` means none.
#[derive(Clone, PartialEq, Debug)]
pub struct EventData {
    id: Uuid,
    event_type: String,
    data: Bytes,
    metadata: Bytes,
}

impl EventData {
    /// An event whose data is `data` serialized as JSON, with a fresh time-ordered (v7) id.
    pub fn json<T: Serialize + ?Sized>(event_type: impl Into<String>, data: &T) -> Result<Self, StoreError> {
        let data =
            serde_json::to_vec(data).map_err(|e| StoreError::InvalidJson { field: "data", reason: e.to_string() })?;
        Self::new(Uuid::now_v7(), event_type.into(), Bytes::from(data), Bytes::new())
    }

    /// An event whose data is already-encoded JSON; the bytes are checked to be one JSON value.
    pub fn from_json_bytes(event_type: impl Into<String>, data: impl Into<Bytes>) -> Result<Self, StoreError> {
        let data = data.into();
        check_json("data", &data)?;
        Self::new(Uuid::now_v7(), event_type.into(), data, Bytes::new())
    }

    /// An event whose data a JSON parser has already checked: a [`RawValue`] is valid JSON by
    /// construction, so the bytes are taken as they are, without a second parse or a copy
    /// (the HTTP API parses each request body once).
    pub fn from_raw_json(id: Uuid, event_type: impl Into<String>, data: Box<RawValue>) -> Result<Self, StoreError> {
        Self::new(id, event_type.into(), raw_bytes(data), Bytes::new())
    }

    /// Sets metadata a JSON parser has already checked (see [`EventData::from_raw_json`]).
    pub fn with_raw_metadata(mut self, metadata: Box<RawValue>) -> Self {
        self.metadata = raw_bytes(metadata);
        self
    }

    /// Sets the event id. Re-sending an event with the same id is an idempotent retry.
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Sets already-encoded JSON metadata (checked); empty bytes mean no metadata.
    pub fn with_metadata_bytes(mut self, metadata: impl Into<Bytes>) -> Result<Self, StoreError> {
        let metadata = metadata.into();
        if !metadata.is_empty() {
            check_json("metadata", &metadata)?;
        }
        self.metadata = metadata;
        Ok(self)
    }

    /// Sets metadata serialized as JSON.
    pub fn with_metadata<T: Serialize + ?Sized>(self, metadata: &T) -> Result<Self, StoreError> {
        let bytes = serde_json::to_vec(metadata)
            .map_err(|e| StoreError::InvalidJson { field: "metadata", reason: e.to_string() })?;
        self.with_metadata_bytes(bytes)
    }

    pub fn id(&self) -> Uuid {
        self.id
    }
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    pub fn data(&self) -> &Bytes {
        &self.data
    }
    pub fn metadata(&self) -> &Bytes {
        &self.metadata
    }

    /// Bytes this event takes in a record (the figure `max_event_size` limits).
    pub fn payload_len(&self) -> usize {
        self.event_type.len() + self.data.len() + self.metadata.len()
    }

    fn new(id: Uuid, event_type: String, data: Bytes, metadata: Bytes) -> Result<Self, StoreError> {
        validate_event_type(&event_type)?;
        Ok(EventData { id, event_type, data, metadata })
    }
}

/// An event as the store recorded it.
#[derive(Clone, PartialEq, Debug)]
pub struct RecordedEvent {
    pub id: Uuid,
    pub stream: StreamId,
    pub revision: Revision,
    pub position: Position,
    pub event_type: String,
    /// JSON.
    pub data: Bytes,
    /// JSON, or empty for none.
    pub metadata: Bytes,
    /// The server's clock when the event was committed; never decreases along the log.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The bytes this event holds (type + data + metadata): what byte bounds on reads count.
    pub fn size(&self) -> usize {
        self.event_type.len() + self.data.len() + self.metadata.len()
    }
}

/// Which way a read goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Forwards,
    Backwards,
}

/// Where a read starts. `Start` reads from the first event, `End` from the last (backwards) or
/// finds nothing (forwards); `At` includes the event there, `After` excludes it: it reads from the
/// next event in the read's direction (forwards: the first one after it; backwards: the last one
/// before it). `After` is how a caller says "go on past this event" without computing a position.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReadFrom<T> {
    Start,
    End,
    At(T),
    After(T),
}

/// Where a subscription starts: every event (`Start`), the events after a checkpoint (`After`),
/// the events from a position on, that one included (`At`: a client's resume point), or only
/// events appended from now on (`End`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SubscribeFrom<T> {
    Start,
    After(T),
    At(T),
    End,
}

/// Which events of `$all` a read or subscription sees. Within each list any prefix may match; when
/// both lists are set an event must match both. Empty lists match everything.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct EventFilter {
    pub event_type_prefixes: Vec<String>,
    pub stream_prefixes: Vec<String>,
}

impl EventFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    pub fn event_type_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.event_type_prefixes.push(prefix.into());
        self
    }

    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefixes.push(prefix.into());
        self
    }

    pub fn is_all(&self) -> bool {
        self.event_type_prefixes.is_empty() && self.stream_prefixes.is_empty()
    }

    /// The namespace every event this filter matches is in, when its stream prefixes pin one:
    /// each holds a `/` and all agree on the part before it (the API's tenant filter `acme/…`).
    /// Reads with such a filter can skip other namespaces' events without looking at them.
    pub fn namespace(&self) -> Option<&str> {
        let mut namespaces = self.stream_prefixes.iter().map(|p| p.split_once('/').map(|(ns, _)| ns));
        let first = namespaces.next()??;
        namespaces.all(|ns| ns == Some(first)).then_some(first)
    }

    pub fn matches(&self, stream: &str, event_type: &str) -> bool {
        let any =
            |prefixes: &[String], s: &str| prefixes.is_empty() || prefixes.iter().any(|p| s.starts_with(p.as_str()));
        any(&self.event_type_prefixes, event_type) && any(&self.stream_prefixes, stream)
    }
}

/// What an append did: the revisions and positions its events got. A retried append returns the
/// same value as the original.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AppendResult {
    pub stream: StreamId,
    pub first_revision: Revision,
    pub last_revision: Revision,
    pub first_position: Position,
    pub last_position: Position,
}

/// The outcome of `read_stream`: a stream that was never written to is not the same as an empty page.
#[derive(Clone, PartialEq, Debug)]
pub enum ReadStreamOutcome {
    StreamNotFound,
    Events(Vec<RecordedEvent>),
}

impl ReadStreamOutcome {
    /// The events, or none for a missing stream.
    pub fn into_events(self) -> Vec<RecordedEvent> {
        match self {
            ReadStreamOutcome::StreamNotFound => Vec::new(),
            ReadStreamOutcome::Events(events) => events,
        }
    }
}

fn raw_bytes(raw: Box<RawValue>) -> Bytes {
    let text: Box<str> = raw.into();
    Bytes::from(String::from(text))
}

fn check_json(field: &'static str, bytes: &[u8]) -> Result<(), StoreError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map(|_| ())
        .map_err(|e| StoreError::InvalidJson { field, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_json_is_stored_byte_for_byte() {
        let data: Box<RawValue> = serde_json::from_str(r#"{ "b": 1,  "a": [true, null] }"#).expect("json");
        let metadata: Box<RawValue> = serde_json::from_str(r#"{"traceparent":"x"}"#).expect("json");
        let id = Uuid::now_v7();
        let event = EventData::from_raw_json(id, "t", data).expect("valid type").with_raw_metadata(metadata);
        assert_eq!(event.id, id);
        assert_eq!(&event.data[..], br#"{ "b": 1,  "a": [true, null] }"#);
        assert_eq!(&event.metadata[..], br#"{"traceparent":"x"}"#);
        let empty_type: Box<RawValue> = serde_json::from_str("{}").expect("json");
        assert!(EventData::from_raw_json(id, "", empty_type).is_err(), "the event type is still checked");
    }
}
