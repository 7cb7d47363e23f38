//! The export's most frequent lines written straight from their parts: `foreign` (another
//! tenant's event: a position and a leaf) and `other` (the tenant's event the selection leaves
//! out: a position and its bytes). Most of a large export is these lines, and building an
//! [`ExportLine`] of owned hex and base64 strings, then serializing it field by field, cost more
//! than hashing the event. Their strings are hex and base64, which neither JSON nor CSV ever
//! escapes or quotes, so the bytes are written as they are; the tests check them against serde's
//! and [`write_csv_row`]'s bytes of the same [`ExportLine`], which stay the definition.
//!
//! [`ExportLine`]: super::export_format::ExportLine
//! [`write_csv_row`]: super::export_format::write_csv_row

use annals_integrity::Hash;
use base64::Engine as _;

use super::leaf::LEAF_LEN;

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
        if let Some(hash) = tree_leaf_hash {
            push_hex(out, hash.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
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
        if let Some(hash) = tree_leaf_hash {
            push_hex(out, hash.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(br#"{"kind":"other","position":"#);
        out.extend_from_slice(position);
        out.extend_from_slice(br#","event_bytes":""#);
        push_base64(out, event_bytes, false);
        out.push(b'"');
        end_json(out, tree_leaf_hash);
    }
}

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
    use crate::integrity::export_format::{write_csv_row, ExportLine};

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
}
