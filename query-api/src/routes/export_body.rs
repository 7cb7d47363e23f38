//! The body of an export (`export.rs`): the log's positions a page at a time, each page's lines
//! (NDJSON or CSV rows) one chunk, gzip-compressed with a sync flush per chunk when asked, then the
//! trailer; once the trailer is written the export is recorded in the tenant's audit trail.
//!
//! Pages are prepared ahead (`export_page.rs`): while one chunk is being written to the client, the
//! next [`ahead`] pages are read and written on their own tasks, and chunks leave strictly in log
//! order. Memory stays constant whatever the export's size: at most `ahead() + 1` pages of events
//! and lines. A client that stops reading stops the export at that bound (the body is polled only
//! as the connection drains); one that goes away drops the body, which aborts the pages in flight.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::Arc;

use annals_integrity::SignedTreeHead;
use annals_store::{EventData, ExpectedRevision};
use axum::body::{Body, Bytes};
use tokio::task::JoinHandle;

use super::export_page::{self, Export, Page, PAGE};
use crate::auth::Tenant;
use crate::integrity::export_format::{ExportLine, Trailer};
use crate::state::AppState;

/// The event type an audit export holds as records.
pub(super) const AUDIT_TYPE: &str = "audit.recorded";

/// Pages prepared ahead of the one being written: two per core, so that while one page of a core
/// waits for its read the other is being written (one per core measured 15 % slower in the export
/// benchmark, three per core no faster); four at least, sixteen at most.
fn ahead() -> usize {
    static AHEAD: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *AHEAD.get_or_init(|| (std::thread::available_parallelism().map_or(2, |n| n.get()) * 2).clamp(4, 16))
}

/// Where the body stands: the next position to plan a page at, the pages in flight, and what is
/// left to write.
pub(super) struct Cursor {
    export: Arc<Export>,
    next: u64,
    pages: InFlight,
    head: SignedTreeHead,
    trailer: Option<Trailer>,
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    header: Option<String>,
    exported: Exported,
    /// Set once the body failed: nothing more is written.
    failed: bool,
}

/// The pages being prepared, in log order. Dropped with the body: what is still running is aborted.
struct InFlight(VecDeque<JoinHandle<Result<Page, std::io::Error>>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
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
    let export = Arc::new(Export::new(state, tenant, trailer.selection.clone(), csv, head.tree_size.get()));
    let cursor = Cursor {
        export,
        next: start,
        pages: InFlight(VecDeque::new()),
        head,
        trailer: Some(trailer),
        gzip,
        header,
        exported,
        failed: false,
    };
    Body::from_stream(futures::stream::unfold(cursor, |mut c| async move {
        if c.failed {
            return None;
        }
        let chunk = match next_chunk(&mut c).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "audit export cut short");
                c.failed = true;
                c.pages.0.clear();
                return Some((Err(e), c));
            }
        };
        Some((Ok::<Bytes, std::io::Error>(chunk), c))
    }))
}

/// Plans pages until `ahead()` are in flight or the export's range is all planned.
fn plan(c: &mut Cursor) {
    while c.pages.0.len() < ahead() && c.next < c.export.end {
        let count = usize::try_from(c.export.end - c.next).unwrap_or(usize::MAX).min(PAGE);
        c.pages.0.push_back(tokio::spawn(export_page::prepare(Arc::clone(&c.export), c.next, count)));
        c.next += count as u64;
    }
}

/// The next chunk of the body: a page of lines, or the trailer; `None` once all is written.
async fn next_chunk(c: &mut Cursor) -> Result<Option<Bytes>, std::io::Error> {
    let mut out = c.header.take().map(String::into_bytes).unwrap_or_default();
    plan(c);
    if let Some(page) = c.pages.0.pop_front() {
        let page = page.await.map_err(std::io::Error::other)??;
        plan(c);
        c.exported.records += page.records;
        if out.is_empty() {
            out = page.lines;
        } else {
            out.extend_from_slice(&page.lines);
        }
    } else if let Some(trailer) = c.trailer.take() {
        export_page::write_line(&mut out, &ExportLine::Trailer(Box::new(trailer)), c.export.csv);
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

/// Appends the `audit.log.exported` entry of a finished export to the tenant's audit trail (as an
/// `audit.recorded` event, so that the audit view and later exports show it). Its position is past
/// the export's head, so it changes nothing of this export nor of a resume of it. A failure is
/// logged, not the client's: the export itself is complete.
async fn record_export(c: &Cursor) {
    let data = serde_json::json!({
        "actor": { "id": c.exported.key_id, "type": "api_key" },
        "action": "audit.log.exported",
        "crud": "read",
        "target": { "type": "audit_log", "id": c.export.tenant.as_str() },
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
        let stream = c.export.tenant.stream("audit-audit_log-exports").map_err(|e| e.to_string())?;
        let event = EventData::json(AUDIT_TYPE, &data).map_err(|e| e.to_string())?;
        c.export
            .state
            .store
            .append_to_stream(&stream, ExpectedRevision::Any, vec![event])
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(error) = appended.await {
        tracing::warn!(%error, tenant = %c.export.tenant, "cannot record the audit export");
    }
}
