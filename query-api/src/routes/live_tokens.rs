//! `POST /v1/live-tokens`: short-lived tokens with which a browser opens the live tail
//! (`EventSource` cannot send an `Authorization` header, and an API key must not be put in a
//! URL). What a token may do and how it is checked: `auth/live_token.rs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::auth::{LiveToken, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v1/live-tokens`: a token for `GET /v1/events/live?access_token=…`.
#[utoipa::path(
    post,
    operation_id = "mint_live_token",
    path = "/v1/live-tokens",
    tag = "events",
    description = "Mints a short-lived token that opens the live tail of the key's tenant: `GET /v1/events/live?access_token=…`, \
                   for browsers, whose `EventSource` cannot send an `Authorization` header. The token is accepted by the \
                   live tail only and reads only. It opens tails until `expires_at` (`ANNALS_LIVE_TOKEN_TTL_SECS`, default \
                   300); a tail opened in time runs on. Revoking the minting key refuses its tokens and ends their tails. \
                   Reader and admin keys.",
    responses(
        (status = 201, description = "The token", body = LiveToken),
        (status = 401, description = "No key, an unknown key or a revoked key", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key's role may not do this (writers, operators)", body = crate::openapi::Problem, content_type = "application/problem+json")
    ),
    security(("api_key" = []))
)]
pub async fn mint(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<(StatusCode, Json<LiveToken>), ApiError> {
    let token = state.keys.mint_live_token(state.store.as_ref(), &principal, state.settings.live_token_ttl).await?;
    Ok((StatusCode::CREATED, Json(token)))
}
