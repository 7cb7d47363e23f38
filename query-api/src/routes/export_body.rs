//! The body of an export (`export.rs`): a stream that reads the log a page at a time and writes
//! each page's lines (NDJSON or CSV rows) as one chunk, gzip-compressed with a sync flush per
//! chunk when asked, then the trailer; once the trailer is written the export is recorded in the
//! tenant's audit trail. Constant memory: one page of events and one chunk at a time.

use std::collections::HashMap;
use std::io::Write as _;

use annals_integrity::{Hash, SignedTreeHead};
use annals_store::{
    DensePositions, Direction, EventData, EventFilter, EventStore, ExpectedRevision, ReadFrom, ReadStreamOutcome,
    RecordedEvent,
};
use axum::body::{Body, Bytes};
use base64::Engine as _;

use crate::auth::Tenant;
use crate::integrity::export_format::{self, data_value, ExportLine, Record, Selection, Trailer};
use crate::integrity::leaf::{self, leaf_hash};
use crate::integrity::selection::fold_into;
use crate::state::AppState;

/// The event type an audit export holds as records.
pub(super) const AUDIT_TYPE: &str = "audit.recorded";

/// Events read from the log per chunk of the body.
const PAGE: usize = 512;

/// Message streams whose selection a message export remembers (then forgets them all, and folds
/// a message again when it meets it again): bounds the export's memory.
const DECIDED: usize = 4096;

/// Where the body stands: the next position to read, and what is left to write.
pub(super) struct Cursor {
    state: AppState,
    tenant: Tenant,
    next: u64,
    end: u64,
    head: SignedTreeHead,
    trailer: Option<Trailer>,
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    selection: Selection,
    csv: bool,
    header: Option<String>,
    exported: Exported,
    /// A message export: per message stream met lately, whether its document at the head is selected.
    decided: HashMap<String, bool>,
    /// The tags of the namespaces met lately (an HMAC each: worth keeping across a page).
    tags: HashMap<String, [u8; 32]>,
}

/// How the body is written: gzip or not, CSV (and its header row, unless resuming) or NDJSON.
pub(super) struct Encoding {
    pub(super) gzip: bool,
    pub(super) csv: bool,
    pub(super) header: Option<String>,
}

/// What the `audit.log.exported` entry of a finished export says: who, which parameters, how many
/// records this response carried.
pub(super) struct Exported {
    pub(super) key_id: String,
    pub(super) parameters: serde_json::Value,
    pub(super) records: u64,
}

pub(super) fn body(
    state: AppState,
    tenant: Tenant,
    head: SignedTreeHead,
    start: u64,
    trailer: Trailer,
    encoding: Encoding,
    exported: Exported,
) -> Body {
    let Encoding { gzip, csv, header } = encoding;
    let gzip = gzip.then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let end = head.tree_size.get();
    let selection = trailer.selection.clone();
    let cursor = Cursor {
        state,
        tenant,
        next: start,
        end,
        head,
        trailer: Some(trailer),
        gzip,
        selection,
        csv,
        header,
        exported,
        decided: HashMap::new(),
        tags: HashMap::new(),
    };
    Body::from_stream(futures::stream::unfold(cursor, |mut c| async move {
        let chunk = match next_chunk(&mut c).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "audit export cut short");
                return Some((Err(e), Cursor { trailer: None, next: c.end, ..c }));
            }
        };
        Some((Ok::<Bytes, std::io::Error>(chunk), c))
    }))
}

/// The next chunk of the body: a page of lines, or the trailer; `None` once all is written.
async fn next_chunk(c: &mut Cursor) -> Result<Option<Bytes>, std::io::Error> {
    let mut out = Vec::with_capacity(64 * 1024);
    if let Some(header) = c.header.take() {
        out.extend_from_slice(header.as_bytes());
    }
    if c.next < c.end {
        let want = usize::try_from(c.end - c.next).unwrap_or(usize::MAX).min(PAGE);
        let store: &dyn EventStore = c.state.store.as_ref();
        let dense = dense_positions(store)?;
        let events = store
            .read_all(ReadFrom::At(dense.position(c.next)), Direction::Forwards, want, &EventFilter::all())
            .await
            .map_err(std::io::Error::other)?;
        let end = c.end;
        let in_range = events.iter().take_while(|e| dense.index(e.position) < end).count() as u64;
        // The tree's own leaf hashes: a line whose bytes no longer make it says so (the log was
        // changed after the tree took the event in), so that the verifier can name it.
        let stored = c.state.integrity.leaf_hashes(c.next, in_range).map_err(std::io::Error::other)?;
        for (event, stored) in events.iter().zip(stored) {
            if dense.index(event.position) != c.next {
                return Err(std::io::Error::other(format!(
                    "the log has position {} where {} was expected",
                    event.position, c.next
                )));
            }
            let own = event.stream.as_str().starts_with(&c.tenant.prefix());
            let selected = match own {
                false => false,
                true if c.selection.is_messages() => message_selected(c, event).await?,
                true => c.selection.selects_audit(event),
            };
            let namespace = leaf::namespace(event.stream.as_str());
            if !c.tags.contains_key(namespace) {
                if c.tags.len() >= DECIDED {
                    c.tags.clear();
                }
                c.tags.insert(namespace.to_owned(), c.state.integrity.tag(namespace));
            }
            let line = line(&c.tags[namespace], &c.tenant, selected, event, &stored);
            c.exported.records += u64::from(matches!(line, ExportLine::Record(_)));
            write_line(&mut out, &line, c.csv);
            c.next += 1;
        }
        if events.is_empty() {
            return Err(std::io::Error::other(format!("the log ends before position {}", c.next)));
        }
    } else if let Some(trailer) = c.trailer.take() {
        write_line(&mut out, &ExportLine::Trailer(Box::new(trailer)), c.csv);
        record_export(c).await;
    } else {
        return Ok(match c.gzip.take() {
            Some(encoder) => Some(Bytes::from(encoder.finish()?)),
            None => None,
        });
    }
    Ok(Some(match &mut c.gzip {
        Some(encoder) => {
            encoder.write_all(&out)?;
            encoder.flush()?;
            Bytes::from(std::mem::take(encoder.get_mut()))
        }
        None => Bytes::from(out),
    }))
}

/// The export walks the integrity tree's leaves, which are the log's dense positions.
fn dense_positions(store: &dyn EventStore) -> Result<DensePositions, std::io::Error> {
    store
        .capabilities()
        .dense_positions
        .ok_or_else(|| std::io::Error::other("the export needs a store with dense positions"))
}

fn write_line(out: &mut Vec<u8>, line: &ExportLine, csv: bool) {
    if csv {
        // A scratch buffer per thread: the CSV writer serializes the event's JSON there first.
        thread_local!(static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
        SCRATCH.with_borrow_mut(|scratch| export_format::write_csv_row(out, scratch, line));
    } else {
        serde_json::to_writer(&mut *out, line).expect("an export line serializes");
        out.push(b'\n');
    }
}

/// For a message export: whether `event` is a record, from its stream's document folded from the
/// stream's events before the export's head (the projector's fold; `selection` module).
async fn message_selected(c: &mut Cursor, event: &RecordedEvent) -> Result<bool, std::io::Error> {
    if !event.event_type.starts_with("message.") {
        return Ok(false);
    }
    if let Some(&selected) = c.decided.get(event.stream.as_str()) {
        return Ok(selected);
    }
    const READ: usize = 1_000;
    let dense = dense_positions(c.state.store.as_ref())?;
    let (mut doc, mut from) = (None, ReadFrom::Start);
    loop {
        let read = c.state.store.read_stream(&event.stream, from, Direction::Forwards, READ).await;
        let page = match read.map_err(std::io::Error::other)? {
            ReadStreamOutcome::StreamNotFound => break,
            ReadStreamOutcome::Events(page) => page,
        };
        let before_head: Vec<&RecordedEvent> = page.iter().take_while(|e| dense.index(e.position) < c.end).collect();
        before_head.iter().for_each(|e| fold_into(&mut doc, e));
        match page.last() {
            Some(last) if page.len() == READ && before_head.len() == READ => from = ReadFrom::After(last.revision),
            _ => break,
        }
    }
    let selected = c.selection.selects_message(event, doc.as_ref());
    if c.decided.len() >= DECIDED {
        c.decided.clear();
    }
    c.decided.insert(event.stream.as_str().to_owned(), selected);
    Ok(selected)
}

/// The line of one log position for `tenant`; `selected`: whether it is a record.
fn line(tag: &[u8; 32], tenant: &Tenant, selected: bool, event: &RecordedEvent, stored: &Hash) -> ExportLine {
    let bytes = leaf::event_bytes(event);
    let leaf = leaf::leaf(tag, &bytes);
    let position = event.position.code();
    let tree_leaf_hash = (leaf_hash(&leaf) != *stored).then(|| stored.to_hex());
    if !event.stream.as_str().starts_with(&tenant.prefix()) {
        return ExportLine::Foreign { position, leaf: hex(&leaf), tree_leaf_hash };
    }
    let event_bytes = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let data = data_value(&event.data);
    if !selected {
        return ExportLine::Other { position, event_bytes, tree_leaf_hash };
    }
    ExportLine::Record(Record {
        position,
        event_bytes,
        stream: tenant.client_name(event.stream.as_str()).to_owned(),
        revision: event.revision.0,
        event_id: event.id,
        event_type: event.event_type.clone(),
        recorded_at: event.recorded_at,
        data,
        tree_leaf_hash,
    })
}

/// Appends the `audit.log.exported` entry of a finished export to the tenant's audit trail (as an
/// `audit.recorded` event, so that the audit view and later exports show it). Its position is past
/// the export's head, so it changes nothing of this export nor of a resume of it. A failure is
/// logged, not the client's: the export itself is complete.
async fn record_export(c: &Cursor) {
    let data = serde_json::json!({
        "actor": { "id": c.exported.key_id, "type": "api_key" },
        "action": "audit.log.exported",
        "crud": "read",
        "target": { "type": "audit_log", "id": c.tenant.as_str() },
        "outcome": "success",
        "changes": { "after": {
            "parameters": c.exported.parameters,
            "records": c.exported.records,
            "tree_size": c.head.tree_size,
            "root_hash": c.head.root_hash,
        } },
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    let appended = async {
        let stream = c.tenant.stream("audit-audit_log-exports").map_err(|e| e.to_string())?;
        let event = EventData::json(AUDIT_TYPE, &data).map_err(|e| e.to_string())?;
        c.state.store.append_to_stream(&stream, ExpectedRevision::Any, vec![event]).await.map_err(|e| e.to_string())
    };
    if let Err(error) = appended.await {
        tracing::warn!(%error, tenant = %c.tenant, "cannot record the audit export");
    }
}

/// Lowercase hex, without a `format!` per byte (a foreign line's 64-byte leaf is on the hot path).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}
