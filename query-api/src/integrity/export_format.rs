//! The lines of an export (NDJSON), shared by the export route that writes them and by
//! `annals verify` that checks them offline.
//!
//! An export covers the log positions `from_position..tree_size` of one signed head, one line per
//! position, in position order, then one trailer line:
//!
//! - `record`: an event of the caller's tenant of the exported type — its canonical event bytes
//!   (base64, `leaf::event_bytes`) and, for people, the decoded fields;
//! - `other`: an event of the caller's tenant of another type — its event bytes only, so that the
//!   verifier can see it is indeed of another type (a record cannot be hidden as one);
//! - `foreign`: an event of another tenant — its leaf only (`tag ‖ digest`, hex): another tag
//!   than the tenant's, and a digest of bytes the reader never sees;
//! - `trailer`: the tenant, its tag, the signed head, the range proof of the positions to the
//!   head, and (when asked with `since_tree_size`) a consistency proof from an earlier head.
//!
//! A resumed export (`after_position=P`) is the same lines after position P, then the same trailer:
//! the unbroken export's bytes from that point.

use annals_integrity::{ConsistencyProof, RangeProof, SignedTreeHead};
use serde::{Deserialize, Serialize};

pub use super::selection::Selection;

/// The `format` of the trailer (2: the selection is the search route's, applied to the view's
/// documents, `super::selection`).
pub const EXPORT_FORMAT: &str = "annals-export/2";

/// One line of an NDJSON export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExportLine {
    Record(Record),
    Other {
        position: u64,
        event_bytes: String,
        /// As [`Record::tree_leaf_hash`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tree_leaf_hash: Option<String>,
    },
    Foreign {
        position: u64,
        leaf: String,
        /// As [`Record::tree_leaf_hash`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tree_leaf_hash: Option<String>,
    },
    Trailer(Box<Trailer>),
}

/// An exported event: leaf index, exact bytes, and the decoded fields (checked against the bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The leaf index: the event's log position.
    pub position: u64,
    /// Base64 of the canonical event bytes.
    pub event_bytes: String,
    /// The stream's name as the tenant knows it (without the tenant's prefix).
    pub stream: String,
    pub revision: u64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// The event's data (JSON).
    pub data: serde_json::Value,
    /// Only when the leaf hash the tree holds at this position (hex) differs from the one of this
    /// line's bytes: the log was changed after the tree took the event in. The verifier checks
    /// the range proof with the tree's hash and names this line as the first bad record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_leaf_hash: Option<String>,
}

/// What ends an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    pub format: String,
    pub tenant: String,
    /// The tenant's tag (hex): the first half of every leaf of the tenant.
    pub tag: String,
    /// Which of the tenant's events are `record` lines (the others are `other` lines): the
    /// verifier applies it again to every line's event bytes.
    pub selection: Selection,
    /// The first position covered.
    pub from_position: u64,
    /// The head the export was cut against: it covers positions `from_position..head.tree_size`.
    pub head: SignedTreeHead,
    /// The range proof of those positions to the head; none when the range is empty.
    pub range_proof: Option<RangeProof>,
    /// From `since_tree_size`: the proof that the head extends that earlier one.
    pub consistency_proof: Option<ConsistencyProof>,
}

/// An event's data as a record shows it: its JSON, or (never for the embedded store, which
/// stores JSON) the bytes as a lossy string.
pub fn data_value(data: &[u8]) -> serde_json::Value {
    serde_json::from_slice(data).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(data).into()))
}

/// The columns of `format=csv`, in order (stable: new columns only ever go at the end). One row per
/// line of the NDJSON export, the same fields: `data` is the event's JSON, and the trailer's row
/// has `kind` = `trailer` and the trailer's JSON in `data`.
pub const CSV_COLUMNS: [&str; 11] = [
    "position",
    "kind",
    "stream",
    "revision",
    "event_id",
    "event_type",
    "recorded_at",
    "data",
    "event_bytes",
    "leaf",
    "tree_leaf_hash",
];

/// The header row of `format=csv`.
pub fn csv_header() -> String {
    csv_row_of(CSV_COLUMNS.iter().map(|c| (*c).to_owned()))
}

/// The CSV row of an export line (RFC 4180: CRLF, quoted when needed; formula cells neutralised).
pub fn csv_row(line: &ExportLine) -> String {
    let mut cells: [String; 11] = Default::default();
    match line {
        ExportLine::Record(r) => {
            cells[0] = r.position.to_string();
            cells[1] = "record".into();
            cells[2] = r.stream.clone();
            cells[3] = r.revision.to_string();
            cells[4] = r.event_id.to_string();
            cells[5] = r.event_type.clone();
            cells[6] = r.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            cells[7] = r.data.to_string();
            cells[8] = r.event_bytes.clone();
            cells[10] = r.tree_leaf_hash.clone().unwrap_or_default();
        }
        ExportLine::Other { position, event_bytes, tree_leaf_hash } => {
            cells[0] = position.to_string();
            cells[1] = "other".into();
            cells[8] = event_bytes.clone();
            cells[10] = tree_leaf_hash.clone().unwrap_or_default();
        }
        ExportLine::Foreign { position, leaf, tree_leaf_hash } => {
            cells[0] = position.to_string();
            cells[1] = "foreign".into();
            cells[9] = leaf.clone();
            cells[10] = tree_leaf_hash.clone().unwrap_or_default();
        }
        ExportLine::Trailer(t) => {
            cells[1] = "trailer".into();
            cells[7] = serde_json::to_string(t).expect("a trailer serializes");
        }
    }
    csv_row_of(cells.into_iter())
}

fn csv_row_of(cells: impl Iterator<Item = String>) -> String {
    let mut row = String::new();
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            row.push(',');
        }
        row.push_str(&csv_cell(&cell));
    }
    row.push_str("\r\n");
    row
}

/// One cell: a leading `'` when it starts with `=`, `+`, `-`, `@`, tab or CR (a spreadsheet would
/// take it for a formula), then quoted with `"` doubled when it holds a comma, quote, CR or LF.
pub fn csv_cell(value: &str) -> String {
    let neutral =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() };
    if neutral.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        for formula in ["=SUM(A1)", "+1", "-2", "@cmd", "\tx", "\rx"] {
            assert!(csv_cell(formula).trim_start_matches('"').starts_with('\''), "{formula:?}");
        }
        // Exactly: the `'` first, then RFC 4180 quoting where the cell needs it (CR does).
        assert_eq!(csv_cell("\tcmd"), "'\tcmd");
        assert_eq!(csv_cell("\rcmd"), "\"'\rcmd\"");
        assert_eq!(csv_cell("-2"), "'-2");
        assert_eq!(csv_cell("@cmd"), "'@cmd");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("a=1"), "a=1", "only a leading character counts");
        assert_eq!(csv_cell("=HYPERLINK(\"x\",\"y\")"), "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\"");
        assert_eq!(
            csv_header(),
            "position,kind,stream,revision,event_id,event_type,recorded_at,data,event_bytes,leaf,tree_leaf_hash\r\n"
        );
    }
}
