//! The hosting contract: where a view's generations live, which one serves, and how a rebuild
//! switches to a new one and removes the old. The rebuild protocol (`host/mod.rs`) is written
//! against it, so another backend brings its own: tantivy keeps a directory per generation and
//! a `CURRENT` file (`host/tantivy.rs`); Elasticsearch would keep an index per generation
//! (`{view}-gen-{N}`) and an alias naming the serving one, switched by one `_aliases` request.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::ViewError;
use crate::view_store::{ViewHalves, ViewReader};

/// The generations of one view. Generation numbers start at 1 and only grow (the control
/// stream hands them out, `runtime/control.rs`).
#[async_trait]
pub trait ViewHosting: Send + Sync + std::fmt::Debug {
    /// The view's name (`messages`, `audit`).
    fn name(&self) -> &'static str;

    /// The serving generation: what the last [`switch`](ViewHosting::switch) named, or 1 for a
    /// view never switched. An unreadable record is an error, never a silent generation 1.
    async fn current(&self) -> Result<u64, ViewError>;

    /// Opens generation `generation` for its projector and its readers, creating it empty if it
    /// does not exist (with the view's schema).
    async fn open(&self, generation: u64) -> Result<ViewHalves, ViewError>;

    /// Opens generation `generation` to read only, beside the process that writes it (an API
    /// process that runs no projector): no writer lock, reads and checkpoint following the
    /// writer's commits.
    async fn open_reader(&self, generation: u64) -> Result<Arc<dyn ViewReader>, ViewError>;

    /// Whether generation `generation` has been made (by [`open`](ViewHosting::open)): a reader
    /// in another process opens a rebuild's generation only once its projector has.
    async fn exists(&self, generation: u64) -> Result<bool, ViewError>;

    /// Makes `generation` the serving one, durably and at once: after a crash, `current` names
    /// either the old generation or the new one, and a reader that opens the view afterwards
    /// reads the one named.
    async fn switch(&self, generation: u64) -> Result<(), ViewError>;

    /// Removes every generation but those in `keep` (and whatever a view from before
    /// generations left); returns what it removed, named for the log.
    async fn remove_others(&self, keep: &[u64]) -> Result<Vec<String>, ViewError>;
}
