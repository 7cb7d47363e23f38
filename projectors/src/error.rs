//! The one error type of this crate's folds: why an event could not be applied to a view document.
//!
//! Every variant is permanent — applying the same event again fails the same way — so the
//! projector's answer to any of them is to park the event with the error and carry on, never to
//! retry. Each variant names the event's position so a parked event can be found in the log.

use annals_store::Position;

/// Why an event could not be applied to a view document. Never a panic: bad data in the log is
/// expected (types are opaque unless `strict_schemas`), and one bad event must not stop a
/// projection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The stream is not named `message-{message_id}` (optionally under a `{tenant}/` prefix), so
    /// there is no message id to key a `messages` document on.
    #[error("stream {stream:?} of the event at position {position} is not a message stream (`[{{tenant}}/]message-{{message_id}}`)")]
    NotAMessageStream { stream: String, position: Position },

    /// The event belongs to another stream than the document it was applied to: a routing bug in
    /// the caller, refused so two messages are never merged.
    #[error("event at position {position} of stream {actual:?} applied to the document of stream {expected:?}")]
    WrongStream { expected: String, actual: String, position: Position },

    /// The event type is not one this view knows (for example a newer `message.*` type). Parked,
    /// it can be replayed once the fold learns the type.
    #[error("event type {event_type:?} at position {position} is not one the {view} view applies")]
    UnknownEventType { view: &'static str, event_type: String, position: Position },

    /// The metadata names a `schema_version` this fold was not written for.
    #[error("{event_type} at position {position} has schema_version {found}, and only version 1 is known")]
    UnsupportedSchemaVersion { event_type: String, position: Position, found: String },

    /// The data does not decode as the event type's schema type.
    #[error("{event_type} at position {position} does not match its schema: {source}")]
    InvalidData {
        event_type: String,
        position: Position,
        #[source]
        source: serde_json::Error,
    },

    /// The data names another message than its stream does.
    #[error("event at position {position} of message {stream_message_id:?} names message {data_message_id:?}")]
    MessageIdMismatch { stream_message_id: String, data_message_id: String, position: Position },
}

impl ApplyError {
    /// The position of the event that could not be applied: the key of its parked record.
    pub fn position(&self) -> Position {
        match self {
            ApplyError::NotAMessageStream { position, .. }
            | ApplyError::WrongStream { position, .. }
            | ApplyError::UnknownEventType { position, .. }
            | ApplyError::UnsupportedSchemaVersion { position, .. }
            | ApplyError::InvalidData { position, .. }
            | ApplyError::MessageIdMismatch { position, .. } => *position,
        }
    }
}

/// Why a view store could not do what was asked. Unlike [`ApplyError`] (the event's fault, parked,
/// never retried), these are the view's fault and mostly transient: the projector retries them
/// with backoff and never skips the events of the failed batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// The backend failed (I/O, the index, the cluster); the batch may be retried.
    #[error("view {view}: {op} failed: {reason}")]
    Backend { view: &'static str, op: &'static str, reason: String },

    /// The query names a field the view does not have, or uses it in a way its kind does not allow.
    #[error("view {view}: {reason}")]
    BadQuery { view: &'static str, reason: String },

    /// A document or checkpoint stored in the view cannot be read back (the view should be rebuilt).
    #[error("view {view}: stored data is unreadable: {reason}")]
    Corrupt { view: &'static str, reason: String },

    /// The backend cannot be used as configured (an unreachable cluster, one too old, credentials
    /// lacking a privilege, an unreadable certificate): permanent until an operator changes the
    /// setting it names.
    #[error("views: setting {setting}: {reason}")]
    Config { setting: &'static str, reason: String },
}
