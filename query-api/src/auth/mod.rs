//! Who is calling and what they may do. Every `/v1` request carries `Authorization: Bearer <key>`;
//! the key names one tenant and one role, and the tenant scopes everything the request touches:
//! it comes from the key, never from the request.
//!
//! Tenants are isolated by stream name: a tenant's stream `message-42` is stored as
//! `{tenant}/message-42`, reads of `$all` and live tails are filtered to the `{tenant}/` prefix,
//! and responses show names without it. A client cannot name another tenant's stream, because
//! whatever it names is put under its own prefix.

mod key_text;
pub(crate) mod keys;
mod live_token;
mod principal;
pub(crate) mod role;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

pub use key_text::{generate_token, is_well_formed};
pub use keys::{KeyInfo, KeyRing, NewKey};
pub use live_token::LiveToken;
pub use principal::{Principal, Tenant};
pub use role::{Action, Role};

use crate::error::ApiError;
use crate::state::AppState;

/// The one route that takes a live-tail token (`?access_token=`) instead of a key.
pub const LIVE_TAIL_ROUTE: &str = "/v1/events/live";

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // A browser's `EventSource` sends no Authorization header: the live tail, and only it,
        // takes a live-tail token in the query. The parameter is taken out of the URI here, so
        // the handler's own query parameters stay as they are (and other routes, which never
        // see it removed, refuse it as an unknown parameter or lack a key).
        let live_token = match parts.extensions.get::<axum::extract::MatchedPath>() {
            Some(path) if path.as_str() == LIVE_TAIL_ROUTE && parts.method == axum::http::Method::GET => {
                take_access_token(parts)
            }
            _ => None,
        };
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return match live_token {
                Some(token) => state.keys.authenticate_live_token(state.store.as_ref(), &token).await,
                None => Err(ApiError::Unauthorized("the request has no Authorization header".into())),
            };
        };
        let token = header
            .to_str()
            .ok()
            // The scheme's name is case-insensitive (RFC 9110 §11.1): `bearer` works as well.
            .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")))
            .map(|(_, key)| key)
            .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be \"Bearer <key>\"".into()))?;
        state.keys.authenticate(token.trim())
    }
}

/// Removes `access_token` from the request's query and returns its (last) value.
fn take_access_token(parts: &mut Parts) -> Option<String> {
    let query = parts.uri.query()?;
    let is_token = |pair: &&str| pair.split('=').next() == Some("access_token");
    let token = query.split('&').rfind(is_token)?.split_once('=').map(|(_, v)| v.to_owned())?;
    let rest: Vec<&str> = query.split('&').filter(|pair| !is_token(pair)).collect();
    let path_and_query =
        if rest.is_empty() { parts.uri.path().to_owned() } else { format!("{}?{}", parts.uri.path(), rest.join("&")) };
    let mut uri = parts.uri.clone().into_parts();
    uri.path_and_query = path_and_query.parse().ok();
    parts.uri = axum::http::Uri::from_parts(uri).ok()?;
    Some(token)
}
