//! The one error type of the `store` crate. Every variant a caller can act on is typed (the HTTP API
//! maps them to statuses); I/O and corruption carry the file and offset involved.

use std::path::PathBuf;

use uuid::Uuid;

use crate::ids::{CurrentRevision, ExpectedRevision, StreamId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("wrong expected revision on stream {stream}: expected {expected}, actual {actual}")]
    WrongExpectedRevision { stream: StreamId, expected: ExpectedRevision, actual: CurrentRevision },

    /// Some of a batch's event ids are stored already, but not as an exact retry of an earlier
    /// append to this stream (same ids, same order, same revisions).
    #[error("event id {event_id} conflicts with a stored event: {reason}")]
    IdempotencyConflict { stream: StreamId, event_id: Uuid, reason: String },

    #[error("event id {event_id} appears more than once in the batch")]
    DuplicateIdInBatch { event_id: Uuid },

    #[error("event {index} of the batch is {size} bytes, more than the limit of {max} bytes")]
    EventTooLarge { index: usize, size: usize, max: usize },

    #[error("batch of {count} events and {bytes} bytes exceeds the limit of {max_events} events or {max_bytes} bytes")]
    BatchTooLarge { count: usize, bytes: usize, max_events: usize, max_bytes: usize },

    #[error("an append needs at least one event")]
    EmptyBatch,

    #[error("invalid stream name {name:?}: {reason}")]
    InvalidStreamName { name: String, reason: &'static str },

    #[error("invalid event type {event_type:?}: {reason}")]
    InvalidEventType { event_type: String, reason: &'static str },

    /// A stream name holding a character that could spoof it where it is shown (a control or
    /// format character, a noncharacter; `model::forbidden_character`). `index` counts
    /// characters from 0.
    #[error("invalid stream name {name:?}: character {index} is U+{:04X}, {class}, which stream names must not contain", u32::from(*character))]
    StreamNameCharacter { name: String, index: usize, character: char, class: &'static str },

    /// An event type holding such a character.
    #[error("invalid event type {event_type:?}: character {index} is U+{:04X}, {class}, which event types must not contain", u32::from(*character))]
    EventTypeCharacter { event_type: String, index: usize, character: char, class: &'static str },

    #[error("event {field} is not valid JSON: {reason}")]
    InvalidJson { field: &'static str, reason: String },

    /// Stored bytes failed their checksum or structure checks somewhere other than the torn tail
    /// that recovery truncates. The store refuses to guess; an operator has to look.
    #[error("corrupt log at {file}:{offset}: {reason}")]
    Corrupt { file: PathBuf, offset: u64, reason: String },

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("index: {0}")]
    Index(String),

    /// The data directory holds a log of a format this build does not know.
    #[error("unsupported format in {file}: {reason}")]
    UnsupportedFormat { file: PathBuf, reason: String },

    /// Another process holds the data directory.
    #[error("data directory {path} is locked by another process")]
    Locked { path: PathBuf },

    #[error("the store is closed")]
    Closed,

    /// The filesystem of the data directory is (nearly) full: the append was not written. Free
    /// space (or grow the volume) and retry with the same ids; appends resume on their own.
    #[error("storage full at {path}: {detail}")]
    StorageFull { path: PathBuf, detail: String },

    /// The backend cannot be reached or refuses work for now (a database server restarting, a
    /// connection pool with no connection, a cluster without a leader). Nothing was decided:
    /// retry the same call later (an append with the same ids).
    #[error("{backend} is unavailable: {reason}")]
    Unavailable { backend: &'static str, reason: String },

    /// The backend did not answer within `after`: the call may or may not have taken effect
    /// (an append retried with the same ids is recognised as a retry, never written twice).
    #[error("{backend} did not answer {operation} within {after:?}")]
    Timeout { backend: &'static str, operation: &'static str, after: std::time::Duration },
}

impl StoreError {
    /// Whether retrying the same call later can succeed with nothing changed by the caller
    /// (a full disk that gets space back), as opposed to a call that is wrong or a store that
    /// needs an operator.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::StorageFull { .. } | StoreError::Unavailable { .. } | StoreError::Timeout { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}

/// The index's errors, crate-private: no foreign error type is part of the public error (a
/// `From` impl would be public whatever its visibility), so the engine converts with
/// `.map_err(index_error)`.
pub(crate) fn index_error(e: fjall::Error) -> StoreError {
    StoreError::Index(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unreachable or slow backend is worth retrying (the API answers 503 with `Retry-After`);
    /// a wrong call is not.
    #[test]
    fn unavailable_and_timeout_are_transient() {
        let unavailable = StoreError::Unavailable { backend: "postgres", reason: "connection refused".into() };
        let timeout =
            StoreError::Timeout { backend: "postgres", operation: "append", after: std::time::Duration::from_secs(5) };
        assert!(unavailable.is_transient() && timeout.is_transient());
        assert!(!StoreError::EmptyBatch.is_transient() && !StoreError::Closed.is_transient());
    }
}
