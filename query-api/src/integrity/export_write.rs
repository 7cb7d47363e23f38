//! An export's lines written straight from their parts, in NDJSON or CSV: `foreign` (another
//! tenant's event: a position and a leaf), `other` (the tenant's event the selection leaves out: a
//! position and its bytes) and `record`. Building an [`ExportLine`] of owned hex and base64
//! strings, then serializing it field by field, cost more than hashing the event, and checking a
//! record's data for JSON again after the selection had parsed it cost as much as base64. Hex and
//! base64 need neither escaping nor quoting in JSON or CSV, so they are written as they are; a
//! record's names go through serde_json's string escaping and the CSV cell writer. The tests hold
//! every line to serde's and [`write_csv_row`]'s bytes of the same [`ExportLine`], which stay the
//! definition.
//!
//! [`ExportLine`]: super::export_format::ExportLine
//! [`write_csv_row`]: super::export_format::write_csv_row

use std::borrow::Cow;

use annals_integrity::Hash;
use base64::Engine as _;

use super::export_format::{push_csv_cell, record_data};
use super::leaf::LEAF_LEN;

/// A `record` line's parts (the fields of [`super::export_format::Record`], borrowed).
#[derive(Debug)]
pub struct RecordParts<'a> {
    pub position: u64,
    /// The canonical event bytes (written as base64).
    pub event_bytes: &'a [u8],
    /// The stream's name as the tenant knows it.
    pub stream: &'a str,
    pub revision: u64,
    pub event_id: uuid::Uuid,
    pub event_type: &'a str,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// The record's `data`: [`record_data_text`] of the stored bytes.
    pub data: &'a str,
    pub tree_leaf_hash: Option<&'a Hash>,
}

/// [`record_data`] as text. `parsed`: the caller has parsed `data` as JSON already (the audit
/// selection decodes it), so that it need not be checked again: then the stored text is the
/// record's data whenever it holds no line break (JSON's spaces and tabs around it trimmed, as
/// [`record_data`] takes the value alone).
pub fn record_data_text(data: &[u8], parsed: bool) -> Cow<'_, str> {
    if parsed && !data.iter().any(|&b| b == b'\n' || b == b'\r') {
        if let Ok(text) = std::str::from_utf8(data) {
            return Cow::Borrowed(text.trim_matches([' ', '\t']));
        }
    }
    Cow::Owned(record_data(data).get().to_owned())
}

/// Appends the `record` line of `r`.
pub fn write_record(out: &mut Vec<u8>, csv: bool, r: &RecordParts<'_>) {
    let mut digits = itoa::Buffer::new();
    let mut uuid = uuid::Uuid::encode_buffer();
    let event_id = r.event_id.hyphenated().encode_lower(&mut uuid);
    let recorded_at = r.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    if csv {
        out.extend_from_slice(digits.format(r.position).as_bytes());
        out.extend_from_slice(b",record,");
        push_csv_cell(out, r.stream);
        out.push(b',');
        out.extend_from_slice(digits.format(r.revision).as_bytes());
        out.push(b',');
        out.extend_from_slice(event_id.as_bytes());
        out.push(b',');
        push_csv_cell(out, r.event_type);
        out.push(b',');
        push_csv_cell(out, &recorded_at);
        out.push(b',');
        push_csv_cell(out, r.data);
        out.push(b',');
        push_base64(out, r.event_bytes, true);
        out.extend_from_slice(b",,");
        end_csv(out, r.tree_leaf_hash);
    } else {
        out.extend_from_slice(br#"{"kind":"record","position":"#);
        out.extend_from_slice(digits.format(r.position).as_bytes());
        out.extend_from_slice(br#","event_bytes":""#);
        push_base64(out, r.event_bytes, false);
        out.extend_from_slice(br#"","stream":"#);
        serde_json::to_writer(&mut *out, r.stream).expect("a string serializes");
        out.extend_from_slice(br#","revision":"#);
        out.extend_from_slice(digits.format(r.revision).as_bytes());
        out.extend_from_slice(br#","event_id":""#);
        out.extend_from_slice(event_id.as_bytes());
        out.extend_from_slice(br#"","event_type":"#);
        serde_json::to_writer(&mut *out, r.event_type).expect("a string serializes");
        out.extend_from_slice(br#","recorded_at":""#);
        out.extend_from_slice(recorded_at.as_bytes());
        out.extend_from_slice(br#"","data":"#);
        out.extend_from_slice(r.data.as_bytes());
        end_json(out, r.tree_leaf_hash);
    }
}

/// Appends the `foreign` line of `position`: NDJSON, or a CSV row (`csv`).
pub fn write_foreign(
    out: &mut Vec<u8>,
    csv: bool,
    position: u64,
    leaf: &[u8; LEAF_LEN],
    tree_leaf_hash: Option<&Hash>,
) {
    let mut digits = itoa::Buffer::new();
    let position = digits.format(position).as_bytes();
    if csv {
        out.extend_from_slice(position);
        out.extend_from_slice(b",foreign,,,,,,,,");
        push_hex(out, leaf);
        out.push(b',');
        end_csv(out, tree_leaf_hash);
    } else {
        out.extend_from_slice(br#"{"kind":"foreign","position":"#);
        out.extend_from_slice(position);
        out.extend_from_slice(br#","leaf":""#);
        push_hex(out, leaf);
        out.push(b'"');
        end_json(out, tree_leaf_hash);
    }
}

/// Appends the `other` line of `position`, whose canonical event bytes are `event_bytes`.
pub fn write_other(out: &mut Vec<u8>, csv: bool, position: u64, event_bytes: &[u8], tree_leaf_hash: Option<&Hash>) {
    let mut digits = itoa::Buffer::new();
    let position = digits.format(position).as_bytes();
    if csv {
        out.extend_from_slice(position);
        out.extend_from_slice(b",other,,,,,,,");
        push_base64(out, event_bytes, true);
        out.extend_from_slice(b",,");
        end_csv(out, tree_leaf_hash);
    } else {
        out.extend_from_slice(br#"{"kind":"other","position":"#);
        out.extend_from_slice(position);
        out.extend_from_slice(br#","event_bytes":""#);
        push_base64(out, event_bytes, false);
        out.push(b'"');
        end_json(out, tree_leaf_hash);
    }
}

/// The last cell of a CSV row (`tree_leaf_hash`, empty when there is none) and the row's end.
fn end_csv(out: &mut Vec<u8>, tree_leaf_hash: Option<&Hash>) {
    if let Some(hash) = tree_leaf_hash {
        push_hex(out, hash.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The optional `tree_leaf_hash` member and the line's end.
fn end_json(out: &mut Vec<u8>, tree_leaf_hash: Option<&Hash>) {
    if let Some(hash) = tree_leaf_hash {
        out.extend_from_slice(br#","tree_leaf_hash":""#);
        push_hex(out, hash.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
}

/// Standard base64 with padding. As a CSV cell (`csv_cell`) it can only start with `+` of the
/// formula characters (`=` is padding, at the end), and then gets the same `'` as any cell.
fn push_base64(out: &mut Vec<u8>, bytes: &[u8], csv_cell: bool) {
    let engine = &base64::engine::general_purpose::STANDARD;
    // The first character is the alphabet's 62nd (`+`) when the first byte's top six bits are 62.
    if csv_cell && bytes.first().is_some_and(|b| b >> 2 == 62) {
        out.push(b'\'');
    }
    let start = out.len();
    out.resize(start + base64::encoded_len(bytes.len(), true).expect("an event's size fits"), 0);
    let written = engine.encode_slice(bytes, &mut out[start..]).expect("the buffer is the encoded length");
    out.truncate(start + written);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::export_format::{write_csv_row, ExportLine, Record};

    fn serde_ndjson(line: &ExportLine) -> Vec<u8> {
        let mut out = serde_json::to_vec(line).expect("serializes");
        out.push(b'\n');
        out
    }

    fn serde_csv(line: &ExportLine) -> Vec<u8> {
        let mut out = Vec::new();
        write_csv_row(&mut out, &mut Vec::new(), line);
        out
    }

    /// Deterministic pseudo-random bytes (xorshift), so that a failure reproduces.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn positions() -> [u64; 5] {
        [0, 1, 9, 1_234_567_890, u64::MAX]
    }

    #[test]
    fn foreign_lines_are_serde_s_and_the_csv_writer_s_bytes() {
        for (i, position) in positions().into_iter().enumerate() {
            for tree in [None, Some(Hash::from_bytes(bytes(i as u64 + 7, 32).try_into().expect("32")))] {
                let leaf: [u8; LEAF_LEN] = bytes(i as u64, LEAF_LEN).try_into().expect("64");
                let reference = ExportLine::Foreign {
                    position,
                    leaf: leaf.iter().map(|b| format!("{b:02x}")).collect(),
                    tree_leaf_hash: tree.map(|h| h.to_hex()),
                };
                for csv in [false, true] {
                    let mut out = b"before".to_vec();
                    write_foreign(&mut out, csv, position, &leaf, tree.as_ref());
                    let expected = if csv { serde_csv(&reference) } else { serde_ndjson(&reference) };
                    assert_eq!(String::from_utf8_lossy(&out[6..]), String::from_utf8_lossy(&expected), "csv: {csv}");
                }
            }
        }
    }

    #[test]
    fn other_lines_are_serde_s_and_the_csv_writer_s_bytes() {
        let engine = &base64::engine::general_purpose::STANDARD;
        // Lengths for every padding; first bytes whose base64 starts with `+` (a formula cell).
        let mut cases: Vec<Vec<u8>> = (0..12).map(|len| bytes(len as u64 + 3, len)).collect();
        cases.push(vec![0xf8, 0, 1, 2]);
        cases.push(vec![0xfb]);
        cases.push(bytes(99, 600));
        assert!(cases.iter().any(|c| engine.encode(c).starts_with('+')), "a case starts with `+`");
        for (i, event_bytes) in cases.iter().enumerate() {
            let position = positions()[i % 5];
            for tree in [None, Some(Hash::from_bytes(bytes(i as u64 + 11, 32).try_into().expect("32")))] {
                let reference = ExportLine::Other {
                    position,
                    event_bytes: engine.encode(event_bytes),
                    tree_leaf_hash: tree.map(|h| h.to_hex()),
                };
                for csv in [false, true] {
                    let mut out = b"before".to_vec();
                    write_other(&mut out, csv, position, event_bytes, tree.as_ref());
                    let expected = if csv { serde_csv(&reference) } else { serde_ndjson(&reference) };
                    assert_eq!(String::from_utf8_lossy(&out[6..]), String::from_utf8_lossy(&expected), "csv: {csv}");
                }
            }
        }
    }

    #[test]
    fn record_lines_are_serde_s_and_the_csv_writer_s_bytes() {
        let names = ["audit-1", "a,b", "say \"hi\"", "=SUM(A1)", "-x", "two\nlines", "ünï\u{202e}cødé", "\u{0}\u{1f}"];
        let datas = [r#"{"a":1}"#, r#"{"b": [true, null], "c":"=x,\"y\""}"#, r#""-1""#, "-1", r#"{"t":"\u00e9\n"}"#];
        let nanos = [0, 5, 123_000_000, 123_456_000, 123_456_789];
        for (i, name) in names.iter().enumerate() {
            for (j, data) in datas.iter().enumerate() {
                let tree = (j % 2 == 1).then(|| Hash::from_bytes(bytes(i as u64 + 5, 32).try_into().expect("32")));
                let event_bytes = bytes((i * 7 + j) as u64, 40 + i + j);
                let parts = RecordParts {
                    position: positions()[(i + j) % 5],
                    event_bytes: &event_bytes,
                    stream: name,
                    revision: positions()[j % 5],
                    event_id: uuid::Uuid::from_u128((i as u128) << 64 | j as u128),
                    event_type: name,
                    recorded_at: chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, nanos[j % 5])
                        .expect("time"),
                    data,
                    tree_leaf_hash: tree.as_ref(),
                };
                let reference = ExportLine::Record(Record {
                    position: parts.position,
                    event_bytes: base64::engine::general_purpose::STANDARD.encode(&event_bytes),
                    stream: (*name).to_owned(),
                    revision: parts.revision,
                    event_id: parts.event_id,
                    event_type: (*name).to_owned(),
                    recorded_at: parts.recorded_at,
                    data: record_data(data.as_bytes()),
                    tree_leaf_hash: tree.map(|h| h.to_hex()),
                });
                for csv in [false, true] {
                    let mut out = b"before".to_vec();
                    write_record(&mut out, csv, &parts);
                    let expected = if csv { serde_csv(&reference) } else { serde_ndjson(&reference) };
                    assert_eq!(String::from_utf8_lossy(&out[6..]), String::from_utf8_lossy(&expected), "csv: {csv}");
                }
            }
        }
    }

    #[test]
    fn record_data_text_is_record_data_whether_parsed_or_not() {
        let cases: [&[u8]; 9] = [
            br#"{"a":1}"#,
            br#"  {"a": 1}	"#,
            b"{\n  \"a\": 1\n}",
            b"{\"a\":1}\r\n",
            br#""\u00e9""#,
            b"not json",
            b"",
            b"\xff\xfe",
            b"1e999",
        ];
        for data in cases {
            let expected = record_data(data);
            assert_eq!(record_data_text(data, false), expected.get(), "{data:?}");
            // Only what parses is passed as parsed.
            if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok() {
                assert_eq!(record_data_text(data, true), expected.get(), "{data:?}");
            }
        }
    }
}
