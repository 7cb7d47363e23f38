//! The registry of published event schemas, compiled once, used at every append. It serves the
//! committed files (compiled into the binary), not the Rust types, so that an old version keeps
//! validating exactly as published after its type has moved on to a new version.
//!
//! # Stricter than the text, never looser
//!
//! Data passes when the published schema takes it **and** the Rust type of that version reads
//! it (`serde`, as every consumer of the log does, the projectors first). The two disagree where
//! JSON Schema cannot say what a Rust type means: `1.0` is an `integer` to JSON Schema but no
//! `u32` to serde, and `"format": "uint32"` is only an annotation to a JSON Schema validator, so
//! `4294967296` passes the text. An append the schema took and the type could not read was
//! acknowledged and then parked by every view (issue 13). The Rust types are the source of
//! truth, so their reading is the last word; the published text does not change (its SHA-256 is
//! pinned in `json/PUBLISHED`, and what it says — `integer`, `uint32` — is what the type holds).
//! A new version of a type keeps the old version's Rust type for its line below.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::audit::AuditRecorded;
use crate::message::*;

/// Whether the Rust type of a published version reads the data.
type Reads = fn(&Value) -> Result<(), Violation>;

/// Every published `(type, version, schema file, its Rust type)`. A new version is a new line;
/// no line changes.
const PUBLISHED: &[(&str, u32, &str, Reads)] = &[
    ("audit.recorded", 1, include_str!("../json/audit.recorded.v1.json"), reads::<AuditRecorded>),
    ("message.canceled", 1, include_str!("../json/message.canceled.v1.json"), reads::<MessageCanceled>),
    ("message.clicked", 1, include_str!("../json/message.clicked.v1.json"), reads::<MessageClicked>),
    ("message.delivered", 1, include_str!("../json/message.delivered.v1.json"), reads::<MessageDelivered>),
    ("message.enqueued", 1, include_str!("../json/message.enqueued.v1.json"), reads::<MessageEnqueued>),
    ("message.opened", 1, include_str!("../json/message.opened.v1.json"), reads::<MessageOpened>),
    ("message.rendered", 1, include_str!("../json/message.rendered.v1.json"), reads::<MessageRendered>),
    ("message.routed", 1, include_str!("../json/message.routed.v1.json"), reads::<MessageRouted>),
    ("message.sent", 1, include_str!("../json/message.sent.v1.json"), reads::<MessageSent>),
    ("message.throttled", 1, include_str!("../json/message.throttled.v1.json"), reads::<MessageThrottled>),
    ("message.undeliverable", 1, include_str!("../json/message.undeliverable.v1.json"), reads::<MessageUndeliverable>),
];

/// `T` reads `data`, or the pointer and serde's words for where it does not.
fn reads<T: DeserializeOwned>(data: &Value) -> Result<(), Violation> {
    // The common case reads once; only a failure reads again, to find the path.
    if T::deserialize(data).is_ok() {
        return Ok(());
    }
    match serde_path_to_error::deserialize::<_, T>(data) {
        Ok(_) => Ok(()),
        Err(error) => {
            let mut pointer = String::new();
            for segment in error.path().iter() {
                use serde_path_to_error::Segment;
                pointer.push('/');
                match segment {
                    Segment::Seq { index } => pointer.push_str(&index.to_string()),
                    Segment::Map { key } => pointer.push_str(&key.replace('~', "~0").replace('/', "~1")),
                    Segment::Enum { variant } => pointer.push_str(variant),
                    Segment::Unknown => pointer.pop().map(drop).unwrap_or(()),
                }
            }
            Err(Violation::Invalid {
                pointer,
                rule: format!(
                    "{}: the schema's text lets this through, the type it is generated from (which readers decode \
                     with) does not; whole numbers are written without a fraction, within their format",
                    error.inner()
                ),
            })
        }
    }
}

/// Why data does not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// No schema is registered for the type.
    UnknownType,
    /// The type is registered, but not in this version.
    UnknownVersion { latest: u32 },
    /// The data breaks a rule of the schema at `pointer` (a JSON pointer into the data).
    Invalid { pointer: String, rule: String },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::UnknownType => write!(f, "no schema is registered for this event type"),
            Violation::UnknownVersion { latest } => write!(f, "no such schema version (the latest is {latest})"),
            Violation::Invalid { pointer, rule } => write!(f, "at {pointer:?}: {rule}"),
        }
    }
}

/// A registered schema, as `GET /v1/schemas` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct SchemaInfo {
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub schema: Value,
}

/// The compiled validators of every published schema.
pub struct Registry {
    entries: BTreeMap<(String, u32), (Value, jsonschema::Validator, Reads)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("schemas", &self.entries.keys().collect::<Vec<_>>()).finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// Compiles every published schema (formats such as `email` and `date-time` are checked).
    pub fn new() -> Registry {
        let entries = PUBLISHED
            .iter()
            .map(|(event_type, version, text, reads)| {
                let schema: Value = serde_json::from_str(text).expect("committed schemas are JSON");
                let validator = jsonschema::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .unwrap_or_else(|e| panic!("the committed schema of {event_type} v{version} compiles: {e}"));
                (((*event_type).to_owned(), *version), (schema, validator, *reads))
            })
            .collect();
        Registry { entries }
    }

    /// Checks `data` of an event of `event_type` against the schema of `version` (1 when the
    /// event does not say: versions are opt-in, so a producer written for v1 stays valid), and
    /// that the version's Rust type reads it (see the module doc).
    pub fn validate(&self, event_type: &str, version: Option<u32>, data: &Value) -> Result<(), Violation> {
        let version = version.unwrap_or(1);
        let Some((_, validator, reads)) = self.entries.get(&(event_type.to_owned(), version)) else {
            return Err(match self.latest(event_type) {
                Some(latest) => Violation::UnknownVersion { latest },
                None => Violation::UnknownType,
            });
        };
        // The valid case is the common one, and `is_valid` stops at the first failure without
        // building error values; the error is computed only when there is one.
        if validator.is_valid(data) {
            return reads(data);
        }
        match validator.iter_errors(data).next() {
            None => reads(data),
            Some(error) => {
                Err(Violation::Invalid { pointer: error.instance_path().to_string(), rule: error.to_string() })
            }
        }
    }

    /// Whether the type is registered (in any version).
    pub fn knows(&self, event_type: &str) -> bool {
        self.latest(event_type).is_some()
    }

    /// Every registered schema, by type then version.
    pub fn schemas(&self) -> Vec<SchemaInfo> {
        self.entries
            .iter()
            .map(|((event_type, version), (schema, _, _))| SchemaInfo {
                event_type: event_type.clone(),
                version: *version,
                schema: schema.clone(),
            })
            .collect()
    }

    fn latest(&self, event_type: &str) -> Option<u32> {
        self.entries.keys().filter(|(t, _)| t == event_type).map(|(_, v)| *v).max()
    }
}
