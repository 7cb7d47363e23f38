//! `GET /v1/audit/export`: the caller's tenant's audit trail out of the log itself (not the search
//! view), in log-position order, as NDJSON that `annals verify` checks offline against the log's
//! public key (line formats: `crate::integrity::export_format`).
//!
//! Streamed in constant memory: the body reads the log a page at a time and writes each page's
//! lines as one chunk, never collecting; gzip (one sync flush per chunk) when the client accepts
//! it. Cut at one signed head (`tree_size`, echoed in the `Annals-Export-Tree-Size` header before
//! the first byte), so that `after_position` resumes a broken download with the very bytes the
//! unbroken export has from that point.

use annals_integrity::{LeafIndex, TreeSize};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::audit::check_outcome;
use super::export_body::{self, AUDIT_TYPE};
use super::integrity::{hex, tree_error};
use super::messages::statuses;
use super::params::QueryParams;
use super::search::within_index;
use crate::auth::{Action, Principal};
use crate::error::ApiError;
use crate::integrity::export_format::{self, Selection, Trailer, EXPORT_FORMAT};
use crate::integrity::selection::MESSAGE_TYPES;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    #[param(value_type = Option<ExportFormat>, inline)]
    /// `ndjson` (the default: what `annals verify` checks) or `csv` (the same lines as rows, with
    /// a header row; columns `position,kind,stream,revision,event_id,event_type,recorded_at,data,event_bytes,leaf,tree_leaf_hash`).
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
    /// Full text over action, actor name, target name and reason, as `GET /v1/audit`'s `q`.
    q: Option<String>,
    /// Recorded at or after this time (RFC 3339; the event's `recorded_at`), from
    /// 1677-09-21T00:12:44Z to 2262-04-11T23:47:16Z as `GET /v1/audit`'s.
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// Recorded before this time (RFC 3339), within the same range.
    to: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagesExportParams {
    /// `ndjson` (the default: what `annals verify` checks) or `csv`.
    #[param(value_type = Option<ExportFormat>, inline)]
    format: Option<String>,
    /// The first log position the export covers: only 0 (the default), since a message's state,
    /// which the filters select on, is its whole history.
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
    /// Comma-separated statuses (ENQUEUED, ROUTED, SENT, DELIVERED, OPENED, CLICKED,
    /// UNDELIVERABLE, CANCELED, THROTTLED), as `GET /v1/messages`'s: the message's status at the
    /// export's head must be one of them.
    status: Option<String>,
    /// A recipient id, email or phone, exactly.
    recipient: Option<String>,
    channel: Option<String>,
    provider: Option<String>,
    /// A template id.
    template: Option<String>,
    tag: Option<String>,
    /// Messages with (true) or without (false) a delivery error.
    has_errors: Option<bool>,
    /// Full text over subject, recipient and template, as `GET /v1/messages`'s `q`.
    q: Option<String>,
    /// Created (first event recorded) at or after this time (RFC 3339), from
    /// 1677-09-21T00:12:44Z to 2262-04-11T23:47:16Z as `GET /v1/messages`'s.
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// Created before this time (RFC 3339), within the same range.
    to: Option<chrono::DateTime<chrono::Utc>>,
}

/// The formats of an export (for the document; the handler checks the text and names `format`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ExportFormat {
    Ndjson,
    Csv,
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
    description = "The caller's tenant's audit trail, streamed from the log as NDJSON (or, with `format=csv`, the same lines as CSV rows under a header row: RFC 4180 quoting, cells starting with `=`, `+`, `-`, `@`, tab or CR prefixed with `'`) in position order: one line per log position of the range `from_position..tree_size` (`record`: an audit event with its exact event bytes and its `data` as appended (without the whitespace between tokens when it spans several lines); `other`: another event of the tenant, bytes only; `foreign`: another tenant's event, its leaf hash material only), then a `trailer` with the signed tree head, the tenant's tag, the range proof and optionally a consistency proof. `annals verify` checks it offline. Resume with `after_position` and `tree_size` (from the `Annals-Export-Tree-Size` header). Gzip when accepted. Each finished export is recorded in the audit trail (action `audit.log.exported`, stream `audit-audit_log-exports`). Filters: those of `GET /v1/audit`, same names, same checks and problems (`actor`, `action` with `*`, `target_type`, `target_id`, `outcome`, `q` full text, `from`, `to` over `recorded_at`); the `record` lines are exactly the entries paging through that search returns (the audit view's documents of the log's events, filtered with the view's semantics); the trailer states the filters and the verifier applies them again to every line of the tenant.",
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
    params: Result<QueryParams<ExportParams>, ApiError>,
) -> Result<Response, ApiError> {
    principal.require(Action::Read)?;
    let QueryParams(p) = params?;
    // The search route's checks, in its order and words (`routes::audit::search`).
    check_outcome(p.outcome.as_deref())?;
    within_index("from", p.from)?;
    within_index("to", p.to)?;
    let selection = Selection {
        event_types: vec![AUDIT_TYPE.into()],
        actor: p.actor,
        action: p.action,
        target_type: p.target_type,
        target_id: p.target_id,
        outcome: p.outcome,
        q: p.q,
        from: p.from,
        to: p.to,
        ..Selection::default()
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
    description = "The caller's tenant's message log, streamed from the log like `GET /v1/audit/export` (same lines, trailer, resume, gzip, `format=csv`). Filters: those of `GET /v1/messages`, same names, same checks and problems (`status`, `recipient`, `channel`, `provider`, `template`, `tag`, `has_errors`, `q`, `from`/`to` over the message's creation); each is over the message's state at the export's head (its `message.*` events up to `tree_size`, folded as the messages view folds them), and every `message.*` event of a selected message is a `record` line: the messages with records are exactly those paging through that search returns once the view has reached the head. Events the view parks are `other` lines. The export starts at position 0 (`from_position` > 0 is a 400): the verifier folds every message again to apply the filters.",
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
    params: Result<QueryParams<MessagesExportParams>, ApiError>,
) -> Result<Response, ApiError> {
    principal.require(Action::Read)?;
    let QueryParams(p) = params?;
    if p.from_position.is_some_and(|from| from > 0) {
        return Err(ApiError::InvalidParameter {
            parameter: "from_position",
            detail:
                "a message export starts at position 0: the filters select on each message's state, its whole history"
                    .into(),
        });
    }
    // The search route's checks, in its order and words (`routes::messages::search`).
    let status = match &p.status {
        Some(list) => Some(statuses(list)?),
        None => None,
    };
    within_index("from", p.from)?;
    within_index("to", p.to)?;
    let selection = Selection {
        event_types: vec![MESSAGE_TYPES.into()],
        status,
        recipient: p.recipient,
        channel: p.channel,
        provider: p.provider,
        template: p.template,
        tag: p.tag,
        has_errors: p.has_errors,
        q: p.q,
        from: p.from,
        to: p.to,
        ..Selection::default()
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
    let exported = export_body::Exported {
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
    let body =
        export_body::body(state, tenant, head, start, trailer, export_body::Encoding { gzip, csv, header }, exported);
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
