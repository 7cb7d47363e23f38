//! `annals-projectors`: turns the log into read views (issue 4).
//!
//! So far this holds the pure part: the view documents and the folds that build them from
//! recorded events ([`views`]), with no I/O and no async, so that the projector runtime, a rebuild
//! and `GET /v1/messages/{id}?as_of=` all derive a document with the same code and get the same
//! answer; and the [`view_store::ViewStore`] contract that view backends keep. The projector
//! runtime, the backends and invalidation sinks come next.

mod batch;
pub mod error;
pub mod projection;
pub mod runtime;
pub mod status;
pub mod tantivy_store;
pub mod view_store;
pub mod views;

pub use error::{ApplyError, ViewError};
pub use projection::{AuditProjection, DocKey, MessagesProjection, Projection};
pub use runtime::{Projector, ProjectorConfig};
pub use status::{ProjectionStatus, StatusSnapshot};
pub use tantivy_store::TantivyViewStore;
pub use views::audit::{AuditDoc, AUDIT_RECORDED};
pub use views::message::{fold_message, fold_message_skipping, MessageDoc, MessageStatus};
pub use views::timeline::{MessageEventType, TimelineEntry};
pub use views::{message_stream_parts, split_tenant};
