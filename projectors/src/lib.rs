//! `annals-projectors`: turns the log into read views (issue 4). One folder per concern:
//!
//! - [`views`]: the view documents and the folds that build them from recorded events, pure (no
//!   I/O, no async), so that the projector, a rebuild and `GET /v1/messages/{id}?as_of=` derive a
//!   document with the same code and get the same answer;
//! - [`view_store`]: the contract view backends keep (async, a reader for the API and a writer for
//!   the projector, with the backend's `Capabilities`), and [`view_store::tantivy`], the embedded
//!   backend; its conformance suite is `view_store::testsuite` (feature `testsuite`);
//! - [`runtime`]: the projector loop (batches, checkpoints, parking, retries, partitioned
//!   workers), the same for live projection and rebuilds, and what it needs: what a projection
//!   is ([`runtime::projection`]), parked events, the control stream, status figures;
//! - [`host`]: serving a view in this process, with rebuilds into a new generation on request,
//!   over a [`host::ViewHosting`] (tantivy: a directory per generation and a `CURRENT` file), or
//!   following read-only a view another process projects ([`host::follow`]: an `api` process);
//! - [`invalidation`]: what a cache invalidation is, and the sink and feed traits its backends
//!   (in-process, Redis) implement;
//! - [`view_match`]: the view store's filters evaluated on one document in memory (what an export
//!   selects with, so that its records are exactly what the search returns).
//!
//! **API boundary**: other crates use what this file re-exports and the public items of those
//! modules; internal modules import each other by their own paths, never through these
//! re-exports.

pub mod background;
mod backoff;
pub mod error;
pub mod host;
pub mod invalidation;
pub mod runtime;
pub mod view_match;
pub mod view_store;
pub mod views;

// The runtime's modules at the paths other crates have always used.
pub use runtime::{control, parked, projection, status};

pub use error::{ApplyError, ViewError};
pub use host::{Generation, HostedView, OpenView, Rebuild, ViewHosting};
pub use projection::{AuditProjection, DocKey, MessagesProjection, Projection};
pub use runtime::{Projector, ProjectorConfig};
pub use status::{ProjectionStatus, StatusSnapshot};
pub use view_store::tantivy::TantivyViewStore;
pub use view_store::{Capabilities, ViewReader, ViewWriter};
pub use views::audit::{AuditDoc, AUDIT_RECORDED};
pub use views::message::{fold_message, fold_message_skipping, MessageDoc, MessageStatus};
pub use views::timeline::{MessageEventType, TimelineEntry};
pub use views::{message_stream_parts, split_tenant};
