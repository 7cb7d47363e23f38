//! The read views' documents and the pure folds that build them from recorded events.
//!
//! Kept free of I/O and async so the same functions serve the live projector, a rebuild from
//! position 0 and `as_of` reads folded straight from the store: a view is only ever derived one
//! way. The documents are plain serde values; how a view store indexes them is its own business.
//!
//! - [`message`]: the `messages` view, one [`message::MessageDoc`] per message stream.
//! - [`timeline`]: one entry per applied event of a message, the whole input of its document.
//! - [`audit`]: the `audit` view, one [`audit::AuditDoc`] per `audit.recorded` event.

pub mod audit;
pub mod message;
pub mod message_status;
pub mod timeline;

use annals_store::RecordedEvent;
use serde::de::DeserializeOwned;

use crate::error::ApplyError;

/// The stream-name prefix of a message stream (after the tenant prefix, if any).
const MESSAGE_STREAM_PREFIX: &str = "message-";

/// Splits a stored stream name into `(tenant, name)`: the tenant is what comes before the first
/// `/` (tenant names never contain one, see `query-api`'s `Tenant`), empty when there is none.
///
/// Views keep the tenant as a field because they are shared by all tenants and every query
/// filters on it; the store itself knows nothing of tenants.
pub fn split_tenant(stream: &str) -> (&str, &str) {
    match stream.split_once('/') {
        Some((tenant, name)) => (tenant, name),
        None => ("", stream),
    }
}

/// `(tenant, message_id)` of a message stream `[{tenant}/]message-{message_id}`, or `None` when
/// the stream is not one (including an empty message id).
pub fn message_stream_parts(stream: &str) -> Option<(&str, &str)> {
    let (tenant, name) = split_tenant(stream);
    let message_id = name.strip_prefix(MESSAGE_STREAM_PREFIX)?;
    (!message_id.is_empty()).then_some((tenant, message_id))
}

/// Decodes the event's data as its schema type `T`, after checking that the metadata does not ask
/// for a schema version other than 1 (the only one there is): decoding a v2 payload with the v1
/// type could succeed and mean something else.
fn decode<T: DeserializeOwned>(event: &RecordedEvent) -> Result<T, ApplyError> {
    check_schema_version(event)?;
    serde_json::from_slice(&event.data).map_err(|source| ApplyError::InvalidData {
        event_type: event.event_type.clone(),
        position: event.position,
        source,
    })
}

/// Accepts events whose metadata has no `schema_version` or says 1; versions are opt-in, as in
/// the write path's validation (`Registry::validate`).
fn check_schema_version(event: &RecordedEvent) -> Result<(), ApplyError> {
    if event.metadata.is_empty() {
        return Ok(());
    }
    // Metadata that is not an object (the store only promises JSON) carries no version.
    let Ok(serde_json::Value::Object(metadata)) = serde_json::from_slice::<serde_json::Value>(&event.metadata) else {
        return Ok(());
    };
    match metadata.get("schema_version") {
        None => Ok(()),
        Some(version) if version.as_u64() == Some(1) => Ok(()),
        Some(version) => Err(ApplyError::UnsupportedSchemaVersion {
            event_type: event.event_type.clone(),
            position: event.position,
            found: version.to_string(),
        }),
    }
}
