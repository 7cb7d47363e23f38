//! The registry of published event schemas, compiled once, used at every append. It serves the
//! committed files (compiled into the binary), not the Rust types, so that an old version keeps
//! validating exactly as published after its type has moved on to a new version.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// Every published `(type, version, schema file)`. A new version is a new line; no line changes.
const PUBLISHED: &[(&str, u32, &str)] = &[
    ("audit.recorded", 1, include_str!("../json/audit.recorded.v1.json")),
    ("message.canceled", 1, include_str!("../json/message.canceled.v1.json")),
    ("message.clicked", 1, include_str!("../json/message.clicked.v1.json")),
    ("message.delivered", 1, include_str!("../json/message.delivered.v1.json")),
    ("message.enqueued", 1, include_str!("../json/message.enqueued.v1.json")),
    ("message.opened", 1, include_str!("../json/message.opened.v1.json")),
    ("message.rendered", 1, include_str!("../json/message.rendered.v1.json")),
    ("message.routed", 1, include_str!("../json/message.routed.v1.json")),
    ("message.sent", 1, include_str!("../json/message.sent.v1.json")),
    ("message.throttled", 1, include_str!("../json/message.throttled.v1.json")),
    ("message.undeliverable", 1, include_str!("../json/message.undeliverable.v1.json")),
];

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
    entries: BTreeMap<(String, u32), (Value, jsonschema::Validator)>,
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
            .map(|(event_type, version, text)| {
                let schema: Value = serde_json::from_str(text).expect("committed schemas are JSON");
                let validator = jsonschema::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .unwrap_or_else(|e| panic!("the committed schema of {event_type} v{version} compiles: {e}"));
                (((*event_type).to_owned(), *version), (schema, validator))
            })
            .collect();
        Registry { entries }
    }

    /// Checks `data` of an event of `event_type` against the schema of `version` (1 when the
    /// event does not say: versions are opt-in, so a producer written for v1 stays valid).
    pub fn validate(&self, event_type: &str, version: Option<u32>, data: &Value) -> Result<(), Violation> {
        let version = version.unwrap_or(1);
        let Some((_, validator)) = self.entries.get(&(event_type.to_owned(), version)) else {
            return Err(match self.latest(event_type) {
                Some(latest) => Violation::UnknownVersion { latest },
                None => Violation::UnknownType,
            });
        };
        // The valid case is the common one, and `is_valid` stops at the first failure without
        // building error values; the error is computed only when there is one.
        if validator.is_valid(data) {
            return Ok(());
        }
        match validator.iter_errors(data).next() {
            None => Ok(()),
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
            .map(|((event_type, version), (schema, _))| SchemaInfo {
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
