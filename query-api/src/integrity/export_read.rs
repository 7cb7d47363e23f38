//! Reading an NDJSON export line back into an [`ExportLine`] (the verifier's side).
//!
//! Why by hand: a derived internally tagged enum buffers a line's fields before it knows the
//! variant, and a record's `data` is a raw JSON value (`export_format::record_data`: the stored
//! bytes exactly, so that the verifier can ask for an exact match), which serde_json cannot
//! rebuild from that buffer. So the line is taken as raw JSON, its `kind` looked at, and the line
//! read again as that kind: a record as [`RecordIn`] (a plain struct, which keeps `data` raw), any
//! other kind as the derived [`OtherLine`]. Unknown fields are refused either way.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::export_format::{ExportLine, Record, Trailer};

impl<'de> Deserialize<'de> for ExportLine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Kind {
            kind: String,
        }
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let kind: Kind = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        if kind.kind == "record" {
            let r: RecordIn = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
            return Ok(ExportLine::Record(Record {
                position: r.position,
                event_bytes: r.event_bytes,
                stream: r.stream,
                revision: r.revision,
                event_id: r.event_id,
                event_type: r.event_type,
                recorded_at: r.recorded_at,
                data: r.data,
                tree_leaf_hash: r.tree_leaf_hash,
            }));
        }
        Ok(match serde_json::from_str::<OtherLine>(raw.get()).map_err(D::Error::custom)? {
            OtherLine::Other { position, event_bytes, tree_leaf_hash } => {
                ExportLine::Other { position, event_bytes, tree_leaf_hash }
            }
            OtherLine::Foreign { position, leaf, tree_leaf_hash } => {
                ExportLine::Foreign { position, leaf, tree_leaf_hash }
            }
            OtherLine::Trailer(trailer) => ExportLine::Trailer(trailer),
        })
    }
}

/// A `record` line: [`Record`]'s fields and the `kind`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIn {
    #[serde(rename = "kind")]
    _kind: serde::de::IgnoredAny,
    position: u64,
    event_bytes: String,
    stream: String,
    revision: u64,
    event_id: uuid::Uuid,
    event_type: String,
    recorded_at: chrono::DateTime<chrono::Utc>,
    data: Box<RawValue>,
    #[serde(default)]
    tree_leaf_hash: Option<String>,
}

/// Every other kind of line, as [`ExportLine`] serializes them.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum OtherLine {
    Other {
        position: u64,
        event_bytes: String,
        #[serde(default)]
        tree_leaf_hash: Option<String>,
    },
    Foreign {
        position: u64,
        leaf: String,
        #[serde(default)]
        tree_leaf_hash: Option<String>,
    },
    Trailer(Box<Trailer>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_with_its_data_exactly_as_written() {
        let data = r#"{"b": 1, "a":[true ,null],"é":"\u00e9"}"#;
        let line = ExportLine::Record(Record {
            position: 7,
            event_bytes: "AQ==".into(),
            stream: "audit-x".into(),
            revision: 3,
            event_id: uuid::Uuid::from_u128(42),
            event_type: "audit.recorded".into(),
            recorded_at: chrono::DateTime::from_timestamp(1_700_000_000, 5).expect("time"),
            data: RawValue::from_string(data.to_owned()).expect("json"),
            tree_leaf_hash: None,
        });
        let text = serde_json::to_string(&line).expect("serializes");
        let ExportLine::Record(back) = serde_json::from_str::<ExportLine>(&text).expect("reads") else {
            panic!("a record")
        };
        assert_eq!(back.data.get(), data);
        assert_eq!(serde_json::to_string(&ExportLine::Record(back)).expect("serializes"), text);
    }

    #[test]
    fn unknown_kinds_and_fields_are_refused() {
        for text in [
            r#"{"kind":"nope","position":1}"#,
            r#"{"kind":"other","position":1,"event_bytes":"AQ==","extra":1}"#,
            r#"{"kind":"record","position":1,"event_bytes":"","stream":"s","revision":0,"event_id":"00000000-0000-0000-0000-000000000000","event_type":"t","recorded_at":"2026-01-01T00:00:00Z","data":{},"extra":1}"#,
            r#"{"position":1}"#,
        ] {
            assert!(serde_json::from_str::<ExportLine>(text).is_err(), "{text}");
        }
        let other = r#"{"kind":"other","position":1,"event_bytes":"AQ=="}"#;
        assert!(matches!(serde_json::from_str::<ExportLine>(other), Ok(ExportLine::Other { position: 1, .. })));
    }
}
