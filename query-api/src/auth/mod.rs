//! Who is calling and what they may do. Every `/v1` request carries `Authorization: Bearer <key>`;
//! the key names one tenant and one role, and the tenant scopes everything the request touches:
//! it comes from the key, never from the request.
//!
//! Tenants are isolated by stream name: a tenant's stream `message-42` is stored as
//! `{tenant}/message-42`, reads of `$all` and live tails are filtered to the `{tenant}/` prefix,
//! and responses show names without it. A client cannot name another tenant's stream, because
//! whatever it names is put under its own prefix.

mod keys;

use std::sync::Arc;

use annals_store::{StoreError, StreamId};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

pub use keys::{generate_token, is_well_formed, KeyInfo, KeyRing, NewKey};

use crate::app::AppState;
use crate::error::ApiError;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Appends events.
    Writer,
    /// Reads streams, the global log and views.
    Reader,
    /// Everything, including keys and projections, for every tenant.
    Admin,
}

/// What a request does, checked against the caller's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Append,
    Read,
    ManageKeys,
    ManageProjections,
}

impl Role {
    pub fn allows(self, action: Action) -> bool {
        matches!((self, action), (Role::Admin, _) | (Role::Writer, Action::Append) | (Role::Reader, Action::Read))
    }

    /// The role as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }
}

impl Action {
    /// What the action is, for messages: "append events", "read", ...
    pub fn describe(self) -> &'static str {
        match self {
            Action::Append => "append events",
            Action::Read => "read events and views",
            Action::ManageKeys => "manage keys",
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
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("the request has no Authorization header".into()))?;
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
