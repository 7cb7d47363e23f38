//! The body of an export (`export.rs`): the log's positions a page at a time, each page's lines
//! (NDJSON or CSV rows) one chunk, gzip-compressed with a sync flush per chunk when asked, then the
//! trailer; once the trailer is written the export is recorded in the tenant's audit trail.
//!
//! Pages are prepared ahead (`export_page.rs`): while one chunk is being written to the client, the
//! next few pages ([`ahead`], fewer when pages are large: `BYTES_AHEAD`) are read and written on
//! their own tasks, and chunks leave strictly in log order. Memory stays constant whatever the
//! export's size. A client that stops reading stops the export at that bound (the body is polled
//! only as the connection drains); one that goes away drops the body, which aborts the pages in
//! flight, and so does a failed page.

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
/// benchmark, three per core no faster); at most four, because on a shared store each page in
/// flight holds a connection of the pool the appends use too (16 by default).
fn ahead() -> usize {
    static AHEAD: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *AHEAD.get_or_init(|| (std::thread::available_parallelism().map_or(2, |n| n.get()) * 2).clamp(2, 4))
}

/// The bytes of lines an export keeps in flight at most, going by the last page's size: pages of
/// large events (up to the store's event size limit each) are prepared one at a time.
const BYTES_AHEAD: usize = 32 * 1024 * 1024;

/// Where the body stands: the next position to plan a page at, the pages in flight, and what is
/// left to write.
pub(super) struct Cursor {
    export: Arc<Export>,
    next: u64,
    /// The pages being prepared, in log order.
    pages: VecDeque<Pending>,
    head: SignedTreeHead,
    trailer: Option<Trailer>,
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    header: Option<String>,
    exported: Exported,
    /// The size of the last page's lines (0 before the first): how many pages may be in flight.
    last_page_bytes: usize,
    /// Set once the body failed: nothing more is written.
    failed: bool,
}

/// A page being prepared. Dropped (the body dropped, or the export failed), it is aborted: a
/// dropped tokio handle would only detach the task. (A page already writing its lines on the
/// blocking pool finishes them; nothing reads them.)
struct Pending(JoinHandle<Result<Page, std::io::Error>>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.abort();
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
        pages: VecDeque::new(),
        head,
        trailer: Some(trailer),
        gzip,
        header,
        exported,
        last_page_bytes: 0,
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
                c.pages.clear();
                return Some((Err(e), c));
            }
        };
        Some((Ok::<Bytes, std::io::Error>(chunk), c))
    }))
}

/// Plans pages until as many are in flight as `ahead()` and `BYTES_AHEAD` allow (one until the
/// first page's size is known), or the export's range is all planned.
fn plan(c: &mut Cursor) {
    let limit = match c.last_page_bytes {
        0 => 1,
        bytes => (BYTES_AHEAD / bytes).clamp(1, ahead()),
    };
    while c.pages.len() < limit && c.next < c.export.end {
        let count = usize::try_from(c.export.end - c.next).unwrap_or(usize::MAX).min(PAGE);
        let page = tokio::spawn(export_page::prepare(Arc::clone(&c.export), c.next, count));
        c.pages.push_back(Pending(page));
        c.next += count as u64;
    }
}

/// The next chunk of the body: a page of lines, or the trailer; `None` once all is written.
async fn next_chunk(c: &mut Cursor) -> Result<Option<Bytes>, std::io::Error> {
    let mut out = c.header.take().map(String::into_bytes).unwrap_or_default();
    plan(c);
    if let Some(mut pending) = c.pages.pop_front() {
        // `pending` lives in this future: a body dropped while it waits aborts the page.
        let page = (&mut pending.0).await.map_err(std::io::Error::other)??;
        c.last_page_bytes = page.lines.len().max(1);
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
