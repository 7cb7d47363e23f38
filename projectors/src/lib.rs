//! `annals-projectors`: turns the log into read views (issue 4).
//!
//! - [`views`]: the view documents and the folds that build them from recorded events, pure (no
//!   I/O, no async), so that the projector, a rebuild and `GET /v1/messages/{id}?as_of=` derive a
//!   document with the same code and get the same answer;
//! - [`projection`]: what a projection is to the runtime; [`runtime`]: the projector loop
//!   (batches, checkpoints, parking, retries), the same for live projection and rebuilds;
//! - [`view_store`]: the contract view backends keep, and [`tantivy_store`], the embedded one;
//! - [`host`], [`generations`] and [`control`]: serving a view in this process, with rebuilds
//!   into a new generation on request (a control event on `$projections`).

pub mod background;
mod batch;
pub mod control;
pub mod error;
pub mod generations;
pub mod host;
pub mod parked;
mod partition;
pub mod projection;
pub mod runtime;
pub mod status;
pub mod tantivy_store;
mod unapplied;
pub mod view_match;
pub mod view_store;
pub mod views;

pub use error::{ApplyError, ViewError};
pub use host::{Generation, HostedView, OpenView, Rebuild};
pub use projection::{AuditProjection, DocKey, MessagesProjection, Projection};
pub use runtime::{Projector, ProjectorConfig};
pub use status::{ProjectionStatus, StatusSnapshot};
pub use tantivy_store::TantivyViewStore;
pub use views::audit::{AuditDoc, AUDIT_RECORDED};
pub use views::message::{fold_message, fold_message_skipping, MessageDoc, MessageStatus};
pub use views::timeline::{MessageEventType, TimelineEntry};
pub use views::{message_stream_parts, split_tenant};

/// FNV-1a: stable across builds and processes (unlike `DefaultHasher`), for ids derived from
/// names (parked entries) and for routing streams to partitioned workers.
pub(crate) fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
