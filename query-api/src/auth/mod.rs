//! Who is calling and what they may do. Every `/v1` request carries `Authorization: Bearer <key>`;
//! the key names one tenant and one role, and the tenant scopes everything the request touches:
//! it comes from the key, never from the request.
//!
//! Tenants are isolated by stream name: a tenant's stream `message-42` is stored as
//! `{tenant}/message-42`, reads of `$all` and live tails are filtered to the `{tenant}/` prefix,
//! and responses show names without it. A client cannot name another tenant's stream, because
//! whatever it names is put under its own prefix.

mod key_text;
mod keys;
mod live_token;

use std::sync::Arc;

use annals_store::{StoreError, StreamId};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

pub use key_text::{generate_token, is_well_formed};
pub use keys::{KeyInfo, KeyRing, NewKey};
pub use live_token::LiveToken;

use crate::error::ApiError;
use crate::state::AppState;

/// What a key may do. The table is `Role::allows`, the one place where roles are checked.
///
/// | role | may | tenants |
/// |---|---|---|
/// | `writer` | append | its own |
/// | `reader` | read (streams, the global log, live tails, views), mint live-tail tokens | its own |
/// | `admin` | what a writer and a reader may, and manage its tenant's keys (not operator keys) | its own |
/// | `operator` | manage every tenant's keys and the projections (progress, rebuilds, parked events) | all, but never their data |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Appends events to its tenant's streams.
    Writer,
    /// Reads its tenant's streams, global log, live tail and views.
    Reader,
    /// A tenant's administrator: appends, reads and manages the keys of its own tenant.
    Admin,
    /// Runs the system: keys of every tenant and the projections; reads no tenant's data.
    Operator,
}

/// What a request does, checked against the caller's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Append,
    Read,
    /// Open a live tail with a short-lived token instead of the key (`POST /v1/live-tokens`).
    MintLiveToken,
    /// Create, list and revoke keys of the caller's own tenant, other than operator keys.
    ManageTenantKeys,
    /// The same for every tenant, operator keys included.
    ManageAllKeys,
    /// Projections: progress, rebuilds, parked events and their replay (they span tenants).
    ManageProjections,
}

impl Role {
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Writer => matches!(action, Append),
            Role::Reader => matches!(action, Read | MintLiveToken),
            Role::Admin => matches!(action, Append | Read | MintLiveToken | ManageTenantKeys),
            // No `Read` nor `Append`: an operator key runs the system; it is no way into a
            // tenant's data (it could make itself a key of the tenant, and that is in `$keys`).
            Role::Operator => matches!(action, ManageTenantKeys | ManageAllKeys | ManageProjections),
        }
    }

    /// "a writer", "an operator": for messages.
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Writer => "a writer",
            Role::Reader => "a reader",
            Role::Admin => "an admin",
            Role::Operator => "an operator",
        }
    }

    /// The role as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }
}

impl Action {
    /// What the action is, for messages: "append events", "read", ...
    pub fn describe(self) -> &'static str {
        match self {
            Action::Append => "append events",
            Action::Read => "read events and views",
            Action::MintLiveToken => "mint live-tail tokens",
            Action::ManageTenantKeys => "manage keys",
            Action::ManageAllKeys => "manage another tenant's keys or operator keys",
            Action::ManageProjections => "manage projections",
        }
    }
}

/// A tenant's name: lowercase letters, digits, `-` and `_`, 1 to 64 of them, starting with a
/// letter or digit (so it can never be a system name or contain the `/` that ends the prefix).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tenant(Arc<str>);

impl Tenant {
    pub fn new(name: &str) -> Result<Tenant, String> {
        let valid_start = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let valid_rest = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if name.is_empty() || name.len() > 64 || !valid_start || !valid_rest {
            return Err(format!(
                "tenant {name:?} must be 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
            ));
        }
        Ok(Tenant(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The store's name for this tenant's stream `name`.
    pub fn stream(&self, name: &str) -> Result<StreamId, ApiError> {
        StreamId::new(format!("{}/{name}", self.0)).map_err(|e| ApiError::Store(self.client_error(e)))
    }

    /// A store error as the tenant must see it: stream names without the tenant's prefix (in the
    /// fields and so in the message).
    pub fn client_error(&self, e: StoreError) -> StoreError {
        let rename = |stream: StreamId| StreamId::new(self.client_name(stream.as_str())).unwrap_or(stream);
        match e {
            StoreError::WrongExpectedRevision { stream, expected, actual } => {
                StoreError::WrongExpectedRevision { stream: rename(stream), expected, actual }
            }
            StoreError::IdempotencyConflict { stream, event_id, reason } => {
                StoreError::IdempotencyConflict { stream: rename(stream), event_id, reason }
            }
            StoreError::InvalidStreamName { name, reason } => {
                let name = self.client_name(&name).to_owned();
                let reason = if reason == "must be at most 256 bytes" {
                    "is too long: a tenant's stream names must stay within 256 bytes with the tenant's name and a /"
                } else {
                    reason
                };
                StoreError::InvalidStreamName { name, reason }
            }
            other => other,
        }
    }

    /// The prefix of every stream of this tenant in the store.
    pub fn prefix(&self) -> String {
        format!("{}/", self.0)
    }

    /// The client's name of a stored stream of this tenant.
    pub fn client_name<'a>(&self, stored: &'a str) -> &'a str {
        stored.strip_prefix(self.0.as_ref()).and_then(|s| s.strip_prefix('/')).unwrap_or(stored)
    }
}

impl TryFrom<String> for Tenant {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Tenant::new(&s)
    }
}

impl From<Tenant> for String {
    fn from(t: Tenant) -> String {
        t.0.to_string()
    }
}

impl std::fmt::Display for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The caller, authenticated.
#[derive(Clone, Debug)]
pub struct Principal {
    pub key_id: String,
    pub tenant: Tenant,
    pub role: Role,
}

impl Principal {
    /// `403` unless the caller's role allows `action`.
    pub fn require(&self, action: Action) -> Result<(), ApiError> {
        if self.role.allows(action) {
            Ok(())
        } else {
            Err(ApiError::Forbidden { role: self.role, action })
        }
    }

    /// `403` unless the caller may make a key of `role` for `tenant`. The answer depends only on
    /// the caller's key and the request, never on whether `tenant` has keys or data: a tenant
    /// admin learns nothing of other tenants from it.
    pub fn require_key_scope(&self, tenant: &Tenant, role: Role) -> Result<(), ApiError> {
        self.require(Action::ManageTenantKeys)?;
        if *tenant != self.tenant || role == Role::Operator {
            self.require(Action::ManageAllKeys)?;
        }
        Ok(())
    }

    /// Whether the caller may see (list, revoke) the key `info`. A key it may not see is, to
    /// it, a key that does not exist (`404` like an unknown id).
    pub fn sees_key(&self, info: &KeyInfo) -> bool {
        self.role.allows(Action::ManageAllKeys)
            || (self.role.allows(Action::ManageTenantKeys)
                && info.tenant == self.tenant.as_str()
                && info.role != Role::Operator)
    }
}

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
