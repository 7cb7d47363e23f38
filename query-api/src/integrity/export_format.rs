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
use serde_json::value::RawValue;

pub use super::selection::Selection;

/// The `format` of the trailer this build writes and verifies. 3: a record's `data` is
/// [`record_data`] of the event's stored bytes, checked byte for byte. (2 wrote `data`
/// re-serialized from its parsed value and checked it as a value, which a repeated key or an
/// over-long number could satisfy with other bytes; the trailer's `format` is not signed, so
/// verifying 2 as well would let an export be downgraded to the weaker check.)
pub const EXPORT_FORMAT: &str = "annals-export/3";

/// One line of an NDJSON export. Read back by `export_read` (a record's raw `data` does not
/// survive the buffering of a derived internally tagged enum).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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
/// `export_read::RecordIn` mirrors its fields.
#[derive(Debug, Clone, Serialize)]
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
    /// The event's data (JSON): [`record_data`] of the stored bytes.
    pub data: Box<RawValue>,
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

/// An event's data as a value: its JSON, or (never for the embedded store, which stores JSON) the
/// bytes as a lossy string.
fn data_value(data: &[u8]) -> serde_json::Value {
    serde_json::from_slice(data).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(data).into()))
}

/// An event's data as a record shows it: its JSON exactly as stored, with only the whitespace
/// between tokens removed when it spans lines (NDJSON: a record is one line; nothing else changes,
/// so numbers of any length and repeated keys stay as the producer wrote them), else (bytes that
/// are not JSON) a JSON string of them, lossy. A function of the bytes alone: the verifier
/// computes it again and asks for an exact match, so a changed byte of `data` fails verification.
pub fn record_data(data: &[u8]) -> Box<RawValue> {
    match serde_json::from_slice::<Box<RawValue>>(data) {
        Ok(raw) if raw.get().contains(['\n', '\r']) => {
            RawValue::from_string(without_whitespace(raw.get())).expect("JSON without its whitespace is JSON")
        }
        Ok(raw) => raw,
        Err(_) => serde_json::value::to_raw_value(&data_value(data)).expect("a JSON value serializes"),
    }
}

/// Valid JSON without the whitespace between its tokens (inside strings nothing is whitespace:
/// a line break there is always escaped).
fn without_whitespace(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ' ' | '\t' | '\n' | '\r' if !in_string => continue,
            _ => {}
        }
        out.push(c);
    }
    out
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
    let mut row = Vec::new();
    for (i, column) in CSV_COLUMNS.iter().enumerate() {
        if i > 0 {
            row.push(b',');
        }
        push_csv_cell(&mut row, column);
    }
    row.extend_from_slice(b"\r\n");
    String::from_utf8(row).expect("column names are UTF-8")
}

/// Appends the CSV row of an export line to `out` (RFC 4180: CRLF, quoted when needed; formula
/// cells neutralised). Straight into the response buffer, cell by cell: building a `String` per
/// cell and per row made CSV a quarter slower than NDJSON. `scratch` is any buffer the caller
/// keeps between rows (the event's JSON is written there before it is quoted).
pub fn write_csv_row(out: &mut Vec<u8>, scratch: &mut Vec<u8>, line: &ExportLine) {
    // Cells in `CSV_COLUMNS` order; empty ones are just their commas.
    let mut cells: [Cell<'_>; 11] = Default::default();
    let (position, revision);
    let recorded_at;
    match line {
        ExportLine::Record(r) => {
            position = r.position.to_string();
            revision = r.revision.to_string();
            recorded_at = r.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            scratch.clear();
            serde_json::to_writer(&mut *scratch, &r.data).expect("JSON values serialize");
            cells[0] = Cell::Text(&position);
            cells[1] = Cell::Text("record");
            cells[2] = Cell::Text(&r.stream);
            cells[3] = Cell::Text(&revision);
            cells[4] = Cell::Id(r.event_id);
            cells[5] = Cell::Text(&r.event_type);
            cells[6] = Cell::Text(&recorded_at);
            cells[7] = Cell::Scratch;
            cells[8] = Cell::Text(&r.event_bytes);
            cells[10] = Cell::Text(r.tree_leaf_hash.as_deref().unwrap_or_default());
        }
        ExportLine::Other { position: p, event_bytes, tree_leaf_hash } => {
            position = p.to_string();
            cells[0] = Cell::Text(&position);
            cells[1] = Cell::Text("other");
            cells[8] = Cell::Text(event_bytes);
            cells[10] = Cell::Text(tree_leaf_hash.as_deref().unwrap_or_default());
        }
        ExportLine::Foreign { position: p, leaf, tree_leaf_hash } => {
            position = p.to_string();
            cells[0] = Cell::Text(&position);
            cells[1] = Cell::Text("foreign");
            cells[9] = Cell::Text(leaf);
            cells[10] = Cell::Text(tree_leaf_hash.as_deref().unwrap_or_default());
        }
        ExportLine::Trailer(t) => {
            scratch.clear();
            serde_json::to_writer(&mut *scratch, t).expect("a trailer serializes");
            cells[1] = Cell::Text("trailer");
            cells[7] = Cell::Scratch;
        }
    }
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match cell {
            Cell::Empty => {}
            Cell::Text(text) => push_csv_cell(out, text),
            Cell::Id(id) => push_csv_cell(out, id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer())),
            Cell::Scratch => push_csv_cell(out, std::str::from_utf8(scratch).expect("serde_json writes UTF-8")),
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The CSV row of an export line, as [`write_csv_row`] appends it.
pub fn csv_row(line: &ExportLine) -> String {
    let mut row = Vec::new();
    write_csv_row(&mut row, &mut Vec::new(), line);
    String::from_utf8(row).expect("cells are UTF-8")
}

#[derive(Default)]
enum Cell<'a> {
    #[default]
    Empty,
    Text(&'a str),
    Id(uuid::Uuid),
    /// The JSON in the caller's scratch buffer.
    Scratch,
}

/// Appends one cell: a leading `'` when it starts with `=`, `+`, `-`, `@`, tab or CR (a
/// spreadsheet would take it for a formula), the whole quoted with `"` doubled when it holds a
/// comma, quote, CR or LF.
pub fn push_csv_cell(out: &mut Vec<u8>, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quoted = value.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if quoted {
        out.push(b'"');
    }
    if formula {
        out.push(b'\'');
    }
    if quoted {
        let mut rest = value.as_bytes();
        while let Some(at) = rest.iter().position(|&b| b == b'"') {
            out.extend_from_slice(&rest[..=at]);
            out.push(b'"');
            rest = &rest[at + 1..];
        }
        out.extend_from_slice(rest);
        out.push(b'"');
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

/// One cell as a string ([`push_csv_cell`]).
pub fn csv_cell(value: &str) -> String {
    let mut cell = Vec::new();
    push_csv_cell(&mut cell, value);
    String::from_utf8(cell).expect("cells are UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain way to write a row (a `String` per cell, as the first version did): the
    /// reference the streaming writer must match byte for byte.
    fn reference_row(line: &ExportLine) -> String {
        fn cell(value: &str) -> String {
            let neutral = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{value}")
            } else {
                value.to_owned()
            };
            if neutral.contains([',', '"', '\r', '\n']) {
                format!("\"{}\"", neutral.replace('"', "\"\""))
            } else {
                neutral
            }
        }
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
        let mut row = cells.iter().map(|c| cell(c)).collect::<Vec<_>>().join(",");
        row.push_str("\r\n");
        row
    }

    #[test]
    fn the_streaming_csv_writer_matches_the_reference_on_hostile_values() {
        let values = [
            "",
            "plain",
            "a,b",
            "say \"hi\"",
            "\"",
            "\"\"",
            "two\nlines",
            "cr\rhere",
            "=SUM(A1)",
            "+1",
            "-2",
            "@cmd",
            "\tx",
            "\rx",
            "=\"x\",y",
            "ünï\u{202e}cødé",
            "\u{feff}=bom",
            "a=1",
            "'",
            ",",
            "\r\n",
        ];
        let mut scratch = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let record = ExportLine::Record(Record {
                position: i as u64,
                event_bytes: format!("{value}b64"),
                stream: (*value).to_owned(),
                revision: 7,
                event_id: uuid::Uuid::from_u128(i as u128 * 0x1234_5678_9abc),
                event_type: format!("{value}.type"),
                recorded_at: chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 123_456_000).expect("time"),
                data: serde_json::value::to_raw_value(
                    &serde_json::json!({ "text": value, "n": i, "list": [value, null, true] }),
                )
                .expect("raw"),
                tree_leaf_hash: (i % 2 == 0).then(|| (*value).to_owned()),
            });
            let other = ExportLine::Other {
                position: i as u64,
                event_bytes: (*value).to_owned(),
                tree_leaf_hash: Some((*value).to_owned()),
            };
            let foreign =
                ExportLine::Foreign { position: u64::MAX - i as u64, leaf: (*value).to_owned(), tree_leaf_hash: None };
            for line in [record, other, foreign, ExportLine::Record(scalar_record(value))] {
                let mut row = b"previous row\r\n".to_vec();
                write_csv_row(&mut row, &mut scratch, &line);
                assert_eq!(String::from_utf8(row).expect("utf-8"), format!("previous row\r\n{}", reference_row(&line)));
            }
        }
    }

    /// A record whose data is a bare JSON string (what `data_value` makes of bytes that are not JSON).
    fn scalar_record(value: &str) -> Record {
        Record {
            position: 1,
            event_bytes: String::new(),
            stream: "s".into(),
            revision: 0,
            event_id: uuid::Uuid::nil(),
            event_type: "t".into(),
            recorded_at: chrono::DateTime::from_timestamp(0, 0).expect("time"),
            data: serde_json::value::to_raw_value(value).expect("raw"),
            tree_leaf_hash: None,
        }
    }

    #[test]
    fn record_data_keeps_the_json_as_written_and_only_drops_the_whitespace_of_several_lines() {
        for (stored, shown) in [
            (r#"{"a": 1,  "b":[true ,null]}"#, r#"{"a": 1,  "b":[true ,null]}"#),
            (
                "{\n  \"n\": 12345678901234567890123,\n  \"k\": 1, \"k\": 2\n}",
                r#"{"n":12345678901234567890123,"k":1,"k":2}"#,
            ),
            ("[\r\n\t\"a b\\\" \\\\\", \"\\n\" ]", r#"["a b\" \\","\n"]"#),
            ("\"x\"", "\"x\""),
            ("not json", "\"not json\""),
            ("two\nlines", "\"two\\nlines\""),
        ] {
            assert_eq!(record_data(stored.as_bytes()).get(), shown, "{stored:?}");
        }
    }

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
