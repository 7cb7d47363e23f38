//! `GET /v1/audit/export`: the caller's tenant's audit trail out of the log itself (not the search
//! view), in log-position order, as NDJSON that `annals verify` checks offline against the log's
//! public key (line formats: `crate::integrity::export_format`).
//!
//! Streamed in constant memory: the body reads the log a page at a time and writes each page's
//! lines as one chunk, never collecting; gzip (one sync flush per chunk) when the client accepts
//! it. Cut at one signed head (`tree_size`, echoed in the `Annals-Export-Tree-Size` header before
//! the first byte), so that `after_position` resumes a broken download with the very bytes the
//! unbroken export has from that point.

use std::io::Write as _;

use annals_integrity::{LeafIndex, SignedTreeHead, TreeSize};
use annals_store::{
    Direction, EventData, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom, RecordedEvent,
};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use utoipa::IntoParams;

use super::events::query_error;
use super::integrity::{hex, tree_error};
use crate::app::AppState;
use crate::auth::{Action, Principal, Tenant};
use crate::error::ApiError;
use crate::integrity::export_format::{self, data_value, ExportLine, Record, Selection, Trailer, EXPORT_FORMAT};
use crate::integrity::Integrity;

/// Events read from the log per chunk of the body.
const PAGE: usize = 512;
/// The event type an audit export holds as records.
const AUDIT_TYPE: &str = "audit.recorded";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `ndjson` (the default: what `annals verify` checks) or `csv` (the same lines as rows, with
    /// a header row; columns `position,kind,stream,revision,event_id,event_type,recorded_at,data,event_bytes,leaf`).
    format: Option<String>,
    /// The first log position the export covers (default 0).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    from_position: Option<u64>,
    /// Resume: only the lines after this position (the last one received), then the trailer.
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    after_position: Option<u64>,
    /// The size of a signed head to cut the export at (default: the tree now). A resume passes
    /// the `Annals-Export-Tree-Size` of the broken download.
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    tree_size: Option<u64>,
    /// Also carry the consistency proof from this earlier tree size to the export's head.
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    since_tree_size: Option<u64>,
    /// The actor's id.
    actor: Option<String>,
    /// An action (`template.updated`), or every action under a prefix (`template.*`).
    action: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    /// `success` or `failure`.
    outcome: Option<String>,
    /// Recorded at or after this time (RFC 3339; the event's `recorded_at`).
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// Recorded before this time (RFC 3339).
    to: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagesExportParams {
    /// `ndjson` (the default: what `annals verify` checks) or `csv`.
    format: Option<String>,
    /// The first log position the export covers (default 0).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    from_position: Option<u64>,
    /// Resume: only the lines after this position (the last one received), then the trailer.
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    after_position: Option<u64>,
    /// The size of a signed head to cut the export at (default: the tree now).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    tree_size: Option<u64>,
    /// Also carry the consistency proof from this earlier tree size to the export's head.
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    since_tree_size: Option<u64>,
}

/// What both exports take besides their selection.
struct Common {
    format: Option<String>,
    from_position: Option<u64>,
    after_position: Option<u64>,
    tree_size: Option<u64>,
    since_tree_size: Option<u64>,
}

/// `GET /v1/audit/export`.
#[utoipa::path(
    get,
    operation_id = "export_audit",
    path = "/v1/audit/export",
    tag = "audit",
    description = "The caller's tenant's audit trail, streamed from the log as NDJSON (or, with `format=csv`, the same lines as CSV rows under a header row: RFC 4180 quoting, cells starting with `=`, `+`, `-`, `@`, tab or CR prefixed with `'`) in position order: one line per log position of the range `from_position..tree_size` (`record`: an audit event with its exact event bytes; `other`: another event of the tenant, bytes only; `foreign`: another tenant's event, its leaf hash material only), then a `trailer` with the signed tree head, the tenant's tag, the range proof and optionally a consistency proof. `annals verify` checks it offline. Resume with `after_position` and `tree_size` (from the `Annals-Export-Tree-Size` header). Gzip when accepted. Each finished export is recorded in the audit trail (action `audit.log.exported`, stream `audit-audit_log-exports`). Filters (`actor`, `action` with `*`, `target_type`, `target_id`, `outcome`, `from`, `to` over `recorded_at`) choose which of the tenant's events are `record` lines; the trailer states them and the verifier applies them again to every line of the tenant.",
    params(ExportParams),
    responses(
        (status = 200, description = "The export", content(
            (String = "application/x-ndjson"),
            (String = "text/csv; charset=utf-8; header=present")),
            headers(("Annals-Export-Tree-Size" = u64, description = "The size of the signed head the export is cut at"))),
        (status = 400, description = "An invalid parameter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tree cannot answer, or stopping", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn audit(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(Action::Read)?;
    let Query(p) = params.map_err(query_error)?;
    let selection = Selection {
        event_types: vec![AUDIT_TYPE.into()],
        actor: p.actor,
        action: p.action,
        target_type: p.target_type,
        target_id: p.target_id,
        outcome: p.outcome,
        from: p.from,
        to: p.to,
    };
    let common = Common {
        format: p.format,
        from_position: p.from_position,
        after_position: p.after_position,
        tree_size: p.tree_size,
        since_tree_size: p.since_tree_size,
    };
    export(state, principal, &headers, common, selection).await
}

/// `GET /v1/messages/export`.
#[utoipa::path(
    get,
    operation_id = "export_messages",
    path = "/v1/messages/export",
    tag = "messages",
    description = "The caller's tenant's message log (every `message.*` event), streamed from the log like `GET /v1/audit/export` (same lines, trailer, resume, gzip, `format=csv`); the message search's filters (status, channel, recipient) are over the view's state, not over single events, and are not offered here.",
    params(MessagesExportParams),
    responses(
        (status = 200, description = "The export", content(
            (String = "application/x-ndjson"),
            (String = "text/csv; charset=utf-8; header=present")),
            headers(("Annals-Export-Tree-Size" = u64, description = "The size of the signed head the export is cut at"))),
        (status = 400, description = "An invalid parameter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tree cannot answer, or stopping", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn messages(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    params: Result<Query<MessagesExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(Action::Read)?;
    let Query(p) = params.map_err(query_error)?;
    let selection = Selection { event_types: vec!["message.*".into()], ..Selection::default() };
    let common = Common {
        format: p.format,
        from_position: p.from_position,
        after_position: p.after_position,
        tree_size: p.tree_size,
        since_tree_size: p.since_tree_size,
    };
    export(state, principal, &headers, common, selection).await
}

async fn export(
    state: AppState,
    principal: Principal,
    headers: &HeaderMap,
    p: Common,
    selection: Selection,
) -> Result<Response, ApiError> {
    let csv = match p.format.as_deref() {
        None | Some("ndjson") => false,
        Some("csv") => true,
        Some(format) => {
            return Err(ApiError::InvalidParameter {
                parameter: "format",
                detail: format!("format {format:?} is not one of ndjson, csv"),
            })
        }
    };
    let integrity = &state.integrity;
    let head = match p.tree_size {
        Some(n) => integrity.head_of_size(TreeSize::new(n)).ok_or_else(|| ApiError::InvalidParameter {
            parameter: "tree_size",
            detail: format!(
                "no head was signed for tree size {n}; resume with the Annals-Export-Tree-Size of the export"
            ),
        })?,
        None => integrity.current_head().map_err(|e| ApiError::Integrity(e.to_string()))?,
    };
    let size = head.tree_size.get();
    let from = p.from_position.unwrap_or(0);
    let consistency_proof = match p.since_tree_size {
        Some(since) if since > size => {
            return Err(ApiError::InvalidParameter {
                parameter: "since_tree_size",
                detail: format!("since_tree_size {since} is larger than the export's tree size {size}"),
            })
        }
        Some(since) => Some(
            integrity
                .consistency_proof(TreeSize::new(since), head.tree_size)
                .map_err(|e| tree_error(e, "since_tree_size"))?,
        ),
        None => None,
    };
    let range_proof = if from < size {
        Some(
            integrity
                .range_proof(LeafIndex::new(from), LeafIndex::new(size - 1), head.tree_size)
                .map_err(|e| tree_error(e, "from_position"))?,
        )
    } else {
        None
    };
    let tenant = principal.tenant.clone();
    let trailer = Trailer {
        format: EXPORT_FORMAT.into(),
        tenant: tenant.as_str().into(),
        tag: hex(&integrity.tag(tenant.as_str())),
        selection: selection.clone(),
        from_position: from,
        head,
        range_proof,
        consistency_proof,
    };
    let start = p.after_position.map_or(from, |after| after.saturating_add(1).max(from));
    let gzip = accepts_gzip(headers);
    let exported = Exported {
        key_id: principal.key_id.clone(),
        parameters: serde_json::json!({
            "format": if csv { "csv" } else { "ndjson" },
            "selection": selection,
            "from_position": from,
            "after_position": p.after_position,
            "since_tree_size": p.since_tree_size,
        }),
        records: 0,
    };
    // The header row starts the unbroken export only: a resume continues it.
    let header = (csv && p.after_position.is_none()).then(export_format::csv_header);
    let body = body(state, tenant, head, start, trailer, Encoding { gzip, csv, header }, exported);
    let mut response = body.into_response();
    let h = response.headers_mut();
    let content_type = if csv { "text/csv; charset=utf-8; header=present" } else { "application/x-ndjson" };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("annals-export-tree-size", HeaderValue::from(size));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|q| matches!(q.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
    })
}

/// Where the body stands: the next position to read, and what is left to write.
struct Cursor {
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
}

/// How the body is written: gzip or not, CSV (and its header row, unless resuming) or NDJSON.
struct Encoding {
    gzip: bool,
    csv: bool,
    header: Option<String>,
}

/// What the `audit.log.exported` entry of a finished export says: who, which parameters, how many
/// records this response carried.
struct Exported {
    key_id: String,
    parameters: serde_json::Value,
    records: u64,
}

fn body(
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
        let events = store
            .read_all(ReadFrom::At(Position(c.next)), Direction::Forwards, want, &EventFilter::all())
            .await
            .map_err(std::io::Error::other)?;
        for event in events.iter().take_while(|e| e.position.0 < c.end) {
            if event.position.0 != c.next {
                return Err(std::io::Error::other(format!(
                    "the log has position {} where {} was expected",
                    event.position.0, c.next
                )));
            }
            let line = line(&c.state.integrity, &c.tenant, &c.selection, event);
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

fn write_line(out: &mut Vec<u8>, line: &ExportLine, csv: bool) {
    if csv {
        out.extend_from_slice(export_format::csv_row(line).as_bytes());
    } else {
        serde_json::to_writer(&mut *out, line).expect("an export line serializes");
        out.push(b'\n');
    }
}

/// The line of one log position for `tenant`.
fn line(integrity: &Integrity, tenant: &Tenant, selection: &Selection, event: &RecordedEvent) -> ExportLine {
    let (bytes, leaf) = integrity.leaf_of(event);
    let position = event.position.0;
    if !event.stream.as_str().starts_with(&tenant.prefix()) {
        return ExportLine::Foreign { position, leaf: hex(&leaf) };
    }
    let event_bytes = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let data = data_value(&event.data);
    if !selection.selects(&event.event_type, &data, event.recorded_at) {
        return ExportLine::Other { position, event_bytes };
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
