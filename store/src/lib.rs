//! `annals-store`: the event log that everything in annals is derived from.
//!
//! - [`EventStore`] is the contract, in KurrentDB's vocabulary (`append_to_stream`, `read_stream`,
//!   `read_all`, `subscribe_to_all`); its doc comment lists the guarantees.
//! - [`engine::EmbeddedStore`] is our own engine: segment files of checksummed records, group
//!   commit with one `fdatasync` per group, indexes derived from the log in fjall. See the module
//!   doc of [`engine`] for the on-disk format and the recovery procedure.
//! - [`Capabilities`] says what a backend promises beyond the contract (dense positions, durable
//!   idempotency for every expected revision, …); [`Position`] is opaque outside its backend.
//! - `conformance` (behind the `testsuite` feature, so release binaries do not carry it) is the
//!   test suite every backend must pass.
//! - `postgres::PostgresStore` (feature `postgres`) keeps the same contract in a PostgreSQL
//!   database that several processes share; see the module doc of `postgres`.

mod batch_check;
mod capabilities;
#[cfg(feature = "testsuite")]
pub mod conformance;
pub mod engine;
mod error;
mod event_store;
mod ids;
mod model;
mod names;
mod page;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use capabilities::{Capabilities, DensePositions};
pub use error::StoreError;
pub use event_store::{Batch, EventStore, Pace, Subscription, SubscriptionMessage};
pub use model::{
    AllPage, AppendResult, CurrentRevision, Direction, EventData, EventFilter, ExpectedRevision, PageLimits, Position,
    ReadFrom, ReadStreamOutcome, RecordedEvent, Revision, StreamId, SubscribeFrom, MAX_EVENT_TYPE_LEN,
    MAX_STREAM_NAME_LEN,
};
pub use names::forbidden_character;
