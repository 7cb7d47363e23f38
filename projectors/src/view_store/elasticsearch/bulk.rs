//! `_bulk` bodies: newline-delimited JSON, one action line and one source line per document,
//! cut into requests bounded by count and by bytes. Built straight into a byte buffer (no
//! `Value` tree) because a rebuild serialises every document of the view through here.
//!
//! Action lines (elasticsearch-specification `_global/bulk/types.ts`, `OperationBase` /
//! `WriteOperation`; request example `_global/bulk/examples/request/BulkRequestExample1.yaml`):
//! - versioned views (messages): `{"index":{"_index":…,"_id":…,"routing":tenant,"version":code,
//!   "version_type":"external"}}`: a write whose version is not above the stored one is a `409`,
//!   which is how guarantee 2 (idempotent by version) holds on Elasticsearch;
//! - create-once views (audit: one document per event): `{"create":{"_index":…,"_id":…,
//!   "routing":tenant}}`: a `409` means the document is already there.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;

use crate::view_store::{FieldValue, ViewDoc};

/// How a view's documents are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// `index` with `version_type=external` and the position's code as version.
    ExternalVersion,
    /// `create`: documents written once and never changed.
    Create,
}

/// The `_id` of a view document: views key documents by (tenant, id), and the tenant's length
/// in front makes the pair unambiguous whatever either holds.
pub fn doc_id(tenant: &str, id: &str) -> String {
    format!("{}:{tenant}:{id}", tenant.len())
}

/// The `_id` of the checkpoint document: it starts with a letter, every view document's with a
/// digit, so the two never meet.
pub const CHECKPOINT_ID: &str = "checkpoint";

/// One `_bulk` request: its body and which of the batch's documents it carries, in order.
#[derive(Debug)]
pub struct BulkBody {
    pub body: Vec<u8>,
    pub docs: Vec<usize>,
}

#[derive(Serialize)]
struct Action<'a> {
    _index: &'a str,
    _id: &'a str,
    routing: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_type: Option<&'static str>,
}

/// The bodies carrying `which` (indexes into `docs`), each at most `max_docs` documents and
/// `max_bytes` bytes (a single document larger than that goes alone rather than never). Each
/// document is written straight into the body it goes in; one that would overflow it is moved
/// to the next body.
pub fn bodies(
    index: &str,
    mode: WriteMode,
    docs: &[ViewDoc],
    which: &[usize],
    max_docs: usize,
    max_bytes: usize,
) -> Vec<BulkBody> {
    let mut out = Vec::new();
    let mut current = BulkBody { body: Vec::with_capacity(max_bytes.min(1 << 20)), docs: Vec::new() };
    for &i in which {
        let start = current.body.len();
        write_doc(&mut current.body, index, mode, &docs[i]);
        let full = current.docs.len() >= max_docs.max(1) || current.body.len() > max_bytes;
        if full && !current.docs.is_empty() {
            let mut next = Vec::with_capacity(max_bytes.min(1 << 20));
            next.extend_from_slice(&current.body[start..]);
            current.body.truncate(start);
            out.push(std::mem::replace(&mut current, BulkBody { body: next, docs: Vec::new() }));
        }
        current.docs.push(i);
    }
    if !current.docs.is_empty() {
        out.push(current);
    }
    out
}

/// Appends one document's action and source lines.
pub fn write_doc(buf: &mut Vec<u8>, index: &str, mode: WriteMode, doc: &ViewDoc) {
    let id = doc_id(&doc.tenant, &doc.id);
    let action = Action {
        _index: index,
        _id: &id,
        routing: &doc.tenant,
        version: (mode == WriteMode::ExternalVersion).then(|| doc.version.code()),
        version_type: (mode == WriteMode::ExternalVersion).then_some("external"),
    };
    let op = match mode {
        WriteMode::ExternalVersion => "index",
        WriteMode::Create => "create",
    };
    buf.extend_from_slice(b"{\"");
    buf.extend_from_slice(op.as_bytes());
    buf.extend_from_slice(b"\":");
    serde_json::to_writer(&mut *buf, &action).expect("an action line serializes");
    buf.extend_from_slice(b"}\n");
    write_source(buf, doc);
    buf.push(b'\n');
}

/// The document as indexed: the reserved fields, the schema's fields (one value as a scalar,
/// several as an array), and the projection's JSON, untouched, under `source`.
pub fn write_source(buf: &mut Vec<u8>, doc: &ViewDoc) {
    buf.extend_from_slice(b"{\"tenant\":");
    serde_json::to_writer(&mut *buf, &doc.tenant).expect("a string serializes");
    buf.extend_from_slice(b",\"id\":");
    serde_json::to_writer(&mut *buf, &doc.id).expect("a string serializes");
    buf.extend_from_slice(b",\"version\":");
    write_u64(buf, doc.version.code());
    for (name, values) in &doc.fields {
        if values.is_empty() {
            continue;
        }
        buf.extend_from_slice(b",\"");
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b"\":");
        if let [one] = values.as_slice() {
            write_value(buf, one);
        } else {
            buf.push(b'[');
            for (n, value) in values.iter().enumerate() {
                if n > 0 {
                    buf.push(b',');
                }
                write_value(buf, value);
            }
            buf.push(b']');
        }
    }
    buf.extend_from_slice(b",\"source\":");
    buf.extend_from_slice(doc.source.get().as_bytes());
    buf.push(b'}');
}

fn write_value(buf: &mut Vec<u8>, value: &FieldValue) {
    match value {
        FieldValue::Str(s) => serde_json::to_writer(&mut *buf, s).expect("a string serializes"),
        FieldValue::Time(t) => write_time(buf, t),
        FieldValue::Bool(b) => buf.extend_from_slice(if *b { b"true" } else { b"false" }),
    }
}

fn write_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

/// `"YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"`, what `to_rfc3339_opts(Nanos, true)` writes, without its
/// allocation and formatting machinery (a rebuild writes two of these per document). Years
/// outside 0..=9999 take chrono's way.
fn write_time(buf: &mut Vec<u8>, t: &DateTime<Utc>) {
    let year = t.year();
    if !(0..=9999).contains(&year) {
        buf.push(b'"');
        buf.extend_from_slice(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true).as_bytes());
        buf.push(b'"');
        return;
    }
    let mut out = *b"\"0000-00-00T00:00:00.000000000Z\"";
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (0..width).rev() {
            out[at + i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(1, 4, year as u32);
    put(6, 2, t.month());
    put(9, 2, t.day());
    put(12, 2, t.hour());
    put(15, 2, t.minute());
    // A leap second is nanosecond >= 1e9 in chrono; RFC 3339 writes it as second 60.
    let (second, nanos) = match t.nanosecond() {
        n if n >= 1_000_000_000 => (t.second() + 1, n - 1_000_000_000),
        n => (t.second(), n),
    };
    put(18, 2, second);
    put(21, 9, nanos);
    buf.extend_from_slice(&out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SecondsFormat, TimeZone};

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let times = [
            Utc.with_ymd_and_hms(2026, 11, 23, 17, 4, 5).unwrap(),
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::nanoseconds(7),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap() + chrono::Duration::nanoseconds(999_999_999),
            Utc.with_ymd_and_hms(-12, 3, 4, 5, 6, 7).unwrap(),
        ];
        for t in times {
            let mut buf = Vec::new();
            write_time(&mut buf, &t);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                format!("\"{}\"", t.to_rfc3339_opts(SecondsFormat::Nanos, true))
            );
        }
        for n in [0, 7, 10, 99, 1_000_000, u64::MAX] {
            let mut buf = Vec::new();
            write_u64(&mut buf, n);
            assert_eq!(String::from_utf8(buf).unwrap(), n.to_string());
        }
    }
}
