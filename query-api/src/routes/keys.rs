//! `/v1/keys`: create, list and revoke API keys (admin only). The key's text is in the answer to
//! its creation and nowhere else, ever.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::{Action, KeyInfo, NewKey, Principal, Role, Tenant};
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    tenant: String,
    role: Role,
    #[serde(default)]
    name: String,
}

/// `POST /v1/keys`: `201` with the new key, shown once.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    principal.require(Action::ManageKeys)?;
    let body = body.map_err(|r| ApiError::MalformedBody(r.body_text()))?;
    let request: CreateKey = serde_json::from_slice(&body).map_err(|e| ApiError::MalformedBody(e.to_string()))?;
    let tenant = Tenant::new(&request.tenant).map_err(|e| ApiError::MalformedBody(format!("/tenant: {e}")))?;
    let key =
        state.keys.create(state.store.as_ref(), tenant, request.role, request.name, &principal.key_id, None).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// `GET /v1/keys`: every key, revoked ones too, without secrets.
pub async fn list(State(state): State<AppState>, principal: Principal) -> Result<Json<Value>, ApiError> {
    principal.require(Action::ManageKeys)?;
    Ok(Json(json!({ "keys": state.keys.list() })))
}

/// `DELETE /v1/keys/{id}`: revokes the key; it stops working at once on this process and within
/// moments on the others.
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<KeyInfo>, ApiError> {
    principal.require(Action::ManageKeys)?;
    Ok(Json(state.keys.revoke(state.store.as_ref(), &id, &principal.key_id).await?))
}
