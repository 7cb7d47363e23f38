//! Cache invalidations projected from the log (issue 15): what an invalidation is, and the two
//! seams every invalidation backend hangs on — a [`InvalidationSink`] that the projector hands
//! committed keys to, and an [`InvalidationFeed`] that readers (the API's response cache, the SSE
//! route, a Redis-fed API process) follow.
//!
//! # Where invalidations come from
//! A projector, after a batch's commit is **visible to queries** (its `ViewWriter::commit` has
//! returned, and with refresh-based backends the documents were written with `refresh=wait_for`),
//! hands one [`Invalidation`] per (tenant, batch) — the keys of the documents the batch changed,
//! with the position of the batch's last event — to a bounded queue, and goes on: it never waits
//! on a sink. A queue that overflows is collapsed into one [`Scope::WholeView`] invalidation per
//! affected tenant, never a silent drop. A rebuild's generation emits nothing per document; its
//! switch emits one whole-view invalidation for every tenant (`tenant: None`).
//!
//! # What a consumer may rely on
//! 1. **After visibility**: a reader that queries the view as soon as it receives an
//!    invalidation sees the state at the invalidation's position or later.
//! 2. **At least once, in position order per key**; a duplicate is harmless (invalidating twice
//!    drops nothing a cache should keep).
//! 3. **Position floors**: every invalidation carries its [`Position`], and every view document
//!    its version, so a cache refuses a fill whose document version is older than the last
//!    invalidation it received for that key (the slow reader that refills a stale value).
//!    What the code taught: the position an invalidation carries is its *batch's* last one, past
//!    the version of every document of the batch but one, so a floor compared with a document's
//!    own version would refuse fresh fills for ever. The version a fill is compared with is the
//!    view's committed checkpoint read *before* the answer (view-store guarantee 4 makes the
//!    answer at least that new), which is exactly comparable: an invalidation's position is the
//!    checkpoint of the commit it announces (query-api `cache/`).
//! 4. **No silent gap**: a consumer that cannot be given what it missed (a queue overflowed, a
//!    resume point was trimmed away, a sink's checkpoint is behind the view after a restart)
//!    gets a whole-view invalidation (a "flush") instead.
//! 5. **Tenant scope**: an invalidation names one tenant's keys, or (`tenant: None`) a whole
//!    view of every tenant, which says nothing of any tenant's data. A feed served to a tenant
//!    carries only its own and the `None` ones.
//!
//! # The parts
//! - `runtime/emit.rs` hands a landed commit's keys out (the projection names them:
//!   `Projection::invalidated_keys`); `host/` turns a rebuilt generation's on at its switch.
//! - [`queue`]: the bounded queue per sink, collapsing into whole-view invalidations when full.
//! - [`dispatch`]: one task per sink, in order, transient failures retried with backoff, and the
//!   `Resumed` flush at start when the sink is behind the view.
//! - [`memory`]: the in-process sink and feed (a ring per view, broadcast to followers).
//! - `redis/` (feature `redis`): the sink and feed several processes share.

pub mod dispatch;
pub mod memory;
pub mod queue;

use std::fmt;

use annals_store::Position;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What kind of thing an invalidated key names. A cache builds its entry names from the kind
/// and the value (Redis: key templates such as `annals:{tenant}:message:{message_id}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// A message id (the `messages` view's document).
    Message,
    /// A recipient whose message list changed.
    Recipient,
    /// An audit target (`{target_type}:{target_id}`) whose history changed.
    AuditTarget,
    /// An actor whose audit history changed.
    Actor,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Message => "message",
            KeyKind::Recipient => "recipient",
            KeyKind::AuditTarget => "audit_target",
            KeyKind::Actor => "actor",
        })
    }
}

/// One invalidated key of one tenant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InvalidatedKey {
    pub kind: KeyKind,
    pub value: String,
}

/// What an invalidation drops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Scope {
    /// These keys (sorted, without duplicates).
    Keys { keys: Vec<InvalidatedKey> },
    /// Everything cached from the view (for the tenant, or for every tenant when the
    /// invalidation's tenant is `None`): a queue overflowed, a resume point was trimmed, a
    /// rebuild switched generations.
    WholeView { reason: FlushReason },
}

/// Why a whole view was invalidated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushReason {
    /// The bounded queue to a sink was full: the keys in it were collapsed.
    Overflow,
    /// A rebuild's generation became the serving one.
    Rebuild,
    /// A consumer's resume point is older than what is retained.
    Trimmed,
    /// A sink's own checkpoint was behind the view's (a restart lost what was queued).
    Resumed,
}

/// One invalidation: keys of one view (of one tenant, or all) that changed at or before
/// `position`, visible to queries by the time it is handed out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    /// `None`: every tenant (only for [`Scope::WholeView`]).
    pub tenant: Option<String>,
    /// The view's name (`messages`, `audit`).
    pub view: String,
    /// The position of the last event whose effect this invalidation announces.
    pub position: Position,
    #[serde(flatten)]
    pub scope: Scope,
}

/// Why a sink or a feed failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidationError {
    /// The backend (Redis) cannot be reached or answered with an error worth retrying.
    #[error("invalidation backend {backend} unavailable: {reason}")]
    Unavailable { backend: &'static str, reason: String },
    /// The backend refused the request in a way a retry will not change (bad configuration).
    #[error("invalidation backend {backend} refused: {reason}")]
    Refused { backend: &'static str, reason: String },
}

impl InvalidationError {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, InvalidationError::Unavailable { .. })
    }
}

/// Where a projector's invalidations go (the in-process feed, Redis). The dispatcher that calls
/// it (one task per sink, fed by a bounded queue) retries transient failures with backoff and
/// never blocks the projection.
///
/// Contract: `deliver` is called with invalidations of one view in position order; it may be
/// called again with invalidations it already delivered (after a failure or a restart) and
/// must treat them as harmless duplicates. Once it returns `Ok`, [`InvalidationSink::checkpoint`]
/// for that view is at least the last delivered position, durably where the backend is durable.
#[async_trait]
pub trait InvalidationSink: Send + Sync + fmt::Debug {
    /// A short name for logs and metrics (`in_process`, `redis`).
    fn name(&self) -> &'static str;

    async fn deliver(&self, batch: &[Invalidation]) -> Result<(), InvalidationError>;

    /// The last position delivered for `view`; `None` if nothing was. At start, a dispatcher
    /// whose sink is behind the view's checkpoint sends one [`FlushReason::Resumed`]
    /// whole-view invalidation at the view's checkpoint (guarantee 4).
    async fn checkpoint(&self, view: &str) -> Result<Option<Position>, InvalidationError>;
}

/// A resumable stream of one view's invalidations, in position order, that readers follow (the
/// API's cache and its `GET /v1/invalidations` route). One per view, because the views'
/// projectors advance independently: only within a view do positions order invalidations.
/// Resuming from a position older than what the feed retains yields a [`FlushReason::Trimmed`]
/// whole-view invalidation first (guarantee 4).
#[async_trait]
pub trait InvalidationFeed: Send + Sync + fmt::Debug {
    /// The invalidations of `view` after `after` (`None`: from now on), forever. The stream ends
    /// with an error when the feed's backend fails; the follower resumes after the last
    /// position it received.
    async fn follow(
        &self,
        view: &str,
        after: Option<Position>,
    ) -> Result<futures::stream::BoxStream<'static, Result<Invalidation, InvalidationError>>, InvalidationError>;
}

#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "testsuite")]
pub mod testsuite;
