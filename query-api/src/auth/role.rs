//! The roles a key can have and the actions a request does, with the one table that matches
//! them (`Role::allows`). A file of its own, importing nothing of the crate, because the error
//! type names a role and an action in its `403` while everything in `auth/` returns that error.

use serde::{Deserialize, Serialize};

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
