//! The audit trail: search the `audit` view, open one entry.

use annals_projectors::view_store::Filter;
use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use annals_projectors::invalidation::{InvalidatedKey, KeyKind};
use annals_projectors::projection::audit_target;
use annals_projectors::AuditProjection;
use axum::response::{IntoResponse, Response};

use super::cached;
use super::params::QueryParams;
use super::path::PathParam;
use super::search::{self, Paging, SearchPage};
use crate::auth::{Action, Principal};
use crate::cache::CacheKey;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditSearch {
    /// The actor's id.
    actor: Option<String>,
    /// An action (`template.updated`), or every action under a prefix (`template.*`).
    action: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    /// `success` or `failure`.
    outcome: Option<String>,
    /// Full text over action, actor name, target name and reason: every word must match (words
    /// of any length; a `q` of only punctuation matches nothing).
    q: Option<String>,
    /// Recorded at or after this time (RFC 3339), from 1677-09-21T00:12:44Z to
    /// 2262-04-11T23:47:16Z (the times the view indexes; others are a 400 naming the parameter).
    from: Option<DateTime<Utc>>,
    /// Recorded before this time (RFC 3339), from 1677-09-21T00:12:44Z to
    /// 2262-04-11T23:47:16Z (the times the view indexes; others are a 400 naming the parameter).
    to: Option<DateTime<Utc>>,
    /// `newest` (default) or `oldest` first.
    sort: Option<String>,
    /// Entries per page (default 100, at most the server's `max_page`).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    limit: Option<usize>,
    /// From the previous page's `next` link (a cursor naming a time outside the view's range,
    /// 1677-09-21T00:12:44Z to 2262-04-11T23:47:16Z, is a 400).
    cursor: Option<String>,
    /// Read-your-writes: wait (up to 5 s, else `503` with `Retry-After`) until the view has
    /// applied this position, e.g. the `last_position` of the caller's append (a position the log
    /// has not reached is not applied: it is waited for the same way).
    #[serde(default, deserialize_with = "crate::wire::bounded")]
    min_position: Option<u64>,
}

/// `GET /v1/audit`: a page of the audit trail.
#[utoipa::path(
    get,
    operation_id = "search_audit",
    path = "/v1/audit",
    tag = "audit",
    description = "Audit entries of the caller's tenant, newest first by default (by `recorded_at`, ties by id); \
                   filters combine; pages follow `next` (a cursor on (recorded_at, id); entries never change, so \
                   every entry that existed when paging began is on exactly one page).",
    params(AuditSearch),
    responses(
        (status = 200, description = "A page of audit entries", body = SearchPage),
        (status = 400, description = "An invalid parameter", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The view is unavailable", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
    params: Result<QueryParams<AuditSearch>, ApiError>,
) -> Result<Response, ApiError> {
    principal.require(Action::Read)?;
    let QueryParams(p) = params?;
    search::wait_for(&state, &state.views.audit, p.min_position).await?;
    // The history of one target (`target_type` and `target_id`) is cached, invalidated by the
    // target's key; read-your-writes (`min_position`) asks the view itself.
    let key = match (&p.target_type, &p.target_id, p.min_position) {
        (Some(target_type), Some(target_id), None) => Some(CacheKey {
            view: AuditProjection::NAME,
            tenant: principal.tenant.as_str().to_owned(),
            depends_on: InvalidatedKey { kind: KeyKind::AuditTarget, value: audit_target(target_type, target_id) },
            variant: format!("search?{}", raw.as_deref().unwrap_or_default()),
        }),
        _ => None,
    };
    let audit = &state.views.audit;
    cached::answer(&state, audit, key, || page(&state, &principal, raw.as_deref(), p)).await
}

/// A page of the audit trail, as `GET /v1/audit` answers it.
async fn page(
    state: &AppState,
    principal: &Principal,
    raw: Option<&str>,
    p: AuditSearch,
) -> Result<Response, ApiError> {
    let mut filters = Vec::new();
    if let Some(action) = &p.action {
        filters.push(match action.strip_suffix('*') {
            Some(prefix) => Filter::Prefix { field: "action", prefix: prefix.to_owned() },
            None => Filter::Term { field: "action", values: vec![action.clone()] },
        });
    }
    check_outcome(p.outcome.as_deref())?;
    for (field, value) in
        [("actor", &p.actor), ("target_type", &p.target_type), ("target_id", &p.target_id), ("outcome", &p.outcome)]
    {
        if let Some(v) = value {
            filters.push(Filter::Term { field, values: vec![v.clone()] });
        }
    }
    let paging = Paging {
        from: p.from,
        to: p.to,
        q: p.q.as_deref(),
        sort: p.sort.as_deref(),
        limit: p.limit,
        cursor: p.cursor.as_deref(),
    };
    let query = search::view_query(
        &principal.tenant,
        state.settings.max_page,
        "recorded_at",
        filters,
        paging,
        vec!["outcome"],
    )?;
    let page = search::run(&state.views.audit.serving().reader, query).await?;
    Ok(Json(SearchPage::new(page, "/v1/audit", raw, &principal.tenant)).into_response())
}

/// `GET /v1/audit/{event_id}`: one audit entry.
#[utoipa::path(
    get,
    operation_id = "get_audit_entry",
    path = "/v1/audit/{event_id}",
    tag = "audit",
    params(("event_id" = String, Path, description = "The id of the `audit.recorded` event")),
    responses(
        (status = 200, description = "The audit entry", body = Object),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The view is unavailable", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(event_id): PathParam,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Action::Read)?;
    let doc = search::get(&state.views.audit.serving().reader, &principal.tenant, event_id.clone()).await?;
    let doc = doc.ok_or(ApiError::DocumentNotFound { kind: "audit_entry", id: event_id })?;
    Ok(Json(search::client_source(doc.source, &principal.tenant)))
}

/// `outcome=` as the audit search (and its export) takes it: `success` or `failure`.
pub(crate) fn check_outcome(outcome: Option<&str>) -> Result<(), ApiError> {
    match outcome {
        Some(outcome) if !matches!(outcome, "success" | "failure") => {
            let detail = format!("outcome must be success or failure, got {outcome:?}");
            Err(ApiError::InvalidParameter { parameter: "outcome", detail })
        }
        _ => Ok(()),
    }
}
