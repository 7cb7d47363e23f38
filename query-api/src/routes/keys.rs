//! `/v1/keys`: create, list and revoke API keys. An `operator` key manages every tenant's keys; an
//! `admin` key those of its own tenant, and to it every other key (another tenant's, an
//! operator's) does not exist. The key's text is in the answer to its creation and nowhere else,
//! ever.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::path::PathParam;
use crate::auth::{Action, KeyInfo, NewKey, Principal, Role, Tenant};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v1/keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1 to 64 lowercase letters, digits, `-` or `_`.
    tenant: String,
    role: Role,
    /// What the key is for, shown in listings: at most 200 characters, no control characters.
    #[serde(default)]
    name: String,
}

/// Longest key name, in characters: a label for listings, not a document.
const MAX_NAME_CHARS: usize = 200;

/// `GET /v1/keys` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    keys: Vec<KeyInfo>,
}

/// `POST /v1/keys`: `201` with the new key, shown once. A tenant admin makes keys of its own
/// tenant only, and no operator keys.
#[utoipa::path(
    post,
    operation_id = "create_key",
    path = "/v1/keys",
    tag = "keys",
    request_body(content = CreateKey, content_type = "application/json"),
    responses(
        (status = 201, description = "The key; its text (`key`) is shown only now", body = NewKey),
        (status = 400, description = "Malformed body, an invalid tenant or role", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this: a tenant admin names another tenant (whether or not it exists) or the operator role", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the limit", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within the body timeout", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body whose content type is not application/json (or a +json type)", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    principal.require(Action::ManageTenantKeys)?;
    let body = body.map_err(|r| ApiError::body_rejected(r, state.settings.max_body_bytes))?;
    let request: CreateKey = crate::wire::body_object(&body)?;
    let tenant = Tenant::new(&request.tenant).map_err(|e| ApiError::MalformedBody(format!("/tenant: {e}")))?;
    principal.require_key_scope(&tenant, request.role)?;
    if request.name.chars().count() > MAX_NAME_CHARS || request.name.chars().any(char::is_control) {
        return Err(ApiError::MalformedBody(format!(
            "/name: a key's name has at most {MAX_NAME_CHARS} characters and no control characters"
        )));
    }
    let key =
        state.keys.create(state.store.as_ref(), tenant, request.role, request.name, &principal.key_id, None).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// `GET /v1/keys`: every key the caller manages (an operator: all; a tenant admin: its tenant's,
/// operator keys aside), revoked ones too, without secrets.
#[utoipa::path(
    get,
    operation_id = "list_keys",
    path = "/v1/keys",
    tag = "keys",
    responses((status = 200, description = "Every key the caller manages, oldest first", body = KeyList), (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn list(State(state): State<AppState>, principal: Principal) -> Result<Json<KeyList>, ApiError> {
    principal.require(Action::ManageTenantKeys)?;
    Ok(Json(KeyList { keys: state.keys.list(|key| principal.sees_key(key)) }))
}

/// `DELETE /v1/keys/{id}`: revokes the key; it stops working at once on this process and within
/// moments on the others.
#[utoipa::path(
    delete,
    operation_id = "revoke_key",
    path = "/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id (16 hex digits)")),
    responses(
        (status = 200, description = "The key, revoked (revoking again changes nothing)", body = KeyInfo),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key among those the caller manages", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last active operator key cannot be revoked", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(id): PathParam,
) -> Result<Json<KeyInfo>, ApiError> {
    principal.require(Action::ManageTenantKeys)?;
    Ok(Json(state.keys.revoke(state.store.as_ref(), &id, &principal.key_id, |key| principal.sees_key(key)).await?))
}
