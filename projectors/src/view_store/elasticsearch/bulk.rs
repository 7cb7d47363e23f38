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

use chrono::SecondsFormat;
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
/// `max_bytes` bytes (a single document larger than that goes alone rather than never).
pub fn bodies(
    index: &str,
    mode: WriteMode,
    docs: &[ViewDoc],
    which: &[usize],
    max_docs: usize,
    max_bytes: usize,
) -> Vec<BulkBody> {
    let mut out = Vec::new();
    let mut current = BulkBody { body: Vec::new(), docs: Vec::new() };
    let mut line = Vec::with_capacity(1024);
    for &i in which {
        line.clear();
        write_doc(&mut line, index, mode, &docs[i]);
        let full = current.docs.len() >= max_docs.max(1) || current.body.len() + line.len() > max_bytes;
        if full && !current.docs.is_empty() {
            out.push(std::mem::replace(&mut current, BulkBody { body: Vec::new(), docs: Vec::new() }));
        }
        current.body.extend_from_slice(&line);
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
    buf.extend_from_slice(doc.version.code().to_string().as_bytes());
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
        FieldValue::Time(t) => {
            buf.push(b'"');
            buf.extend_from_slice(t.to_rfc3339_opts(SecondsFormat::Nanos, true).as_bytes());
            buf.push(b'"');
        }
        FieldValue::Bool(b) => buf.extend_from_slice(if *b { b"true" } else { b"false" }),
    }
}
