//! `annals-schemas`: the event types of the two families annals knows — the **message log**
//! (`message.*`, streams `message-{message_id}`) and the **audit trail** (`audit.recorded`,
//! streams `audit-{target_type}-{target_id}`) — as Rust types, and their JSON Schemas.
//!
//! One source of truth: the Rust types. `generated()` turns them into JSON Schemas; the files in
//! `schemas/json/{type}.v{version}.json` are those schemas, committed, and a test fails when they
//! differ (`UPDATE_SCHEMAS=1 cargo test -p annals-schemas` rewrites them). A version, once
//! published, never changes: `schemas/json/PUBLISHED` records a SHA-256 of every published
//! file, and a test holds the files to it. A change to a type that is not backwards compatible
//! is a new version of it. Golden example payloads (`schemas/examples/`) are tested against every
//! version.
//!
//! The [`Registry`] validates event data against the committed schemas with compiled validators,
//! and checks that the version's Rust type reads it (stricter than the text where JSON Schema
//! cannot say what the type means, see `registry.rs`). [`structure`] is the check every appended
//! body passes, registered type or not. Pure: no I/O at run time (the schemas are compiled in),
//! no async.

pub mod audit;
pub mod demo;
pub mod message;
mod registry;
pub mod structure;

pub use registry::{Registry, SchemaInfo, Violation};

use schemars::JsonSchema;
use serde_json::Value;

/// The current version of every event type, generated from the Rust types:
/// `(type, version, schema)`.
pub fn generated() -> Vec<(&'static str, u32, Value)> {
    use audit::*;
    use message::*;
    vec![
        ("message.enqueued", 1, schema::<MessageEnqueued>("message.enqueued", 1)),
        ("message.routed", 1, schema::<MessageRouted>("message.routed", 1)),
        ("message.rendered", 1, schema::<MessageRendered>("message.rendered", 1)),
        ("message.sent", 1, schema::<MessageSent>("message.sent", 1)),
        ("message.delivered", 1, schema::<MessageDelivered>("message.delivered", 1)),
        ("message.opened", 1, schema::<MessageOpened>("message.opened", 1)),
        ("message.clicked", 1, schema::<MessageClicked>("message.clicked", 1)),
        ("message.undeliverable", 1, schema::<MessageUndeliverable>("message.undeliverable", 1)),
        ("message.canceled", 1, schema::<MessageCanceled>("message.canceled", 1)),
        ("message.throttled", 1, schema::<MessageThrottled>("message.throttled", 1)),
        ("audit.recorded", 1, schema::<AuditRecorded>("audit.recorded", 1)),
    ]
}

/// The schema of `T`, titled with its event type and version, with a stable `$id`.
fn schema<T: JsonSchema>(event_type: &str, version: u32) -> Value {
    let mut schema = schemars::schema_for!(T).to_value();
    let object = schema.as_object_mut().expect("a schema object");
    object.insert("$id".into(), format!("https://annals.dev/schemas/{event_type}.v{version}.json").into());
    object.insert("title".into(), format!("{event_type} v{version}").into());
    schema
}
