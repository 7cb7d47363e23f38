//! The caller of a request once authenticated: its key, its tenant and its role, and the
//! tenant's prefix that scopes every stream it names.

use std::sync::Arc;

use annals_store::{StoreError, StreamId};
use serde::{Deserialize, Serialize};

use super::role::{Action, Role};
use crate::error::ApiError;

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
}
