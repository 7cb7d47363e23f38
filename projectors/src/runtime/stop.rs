//! Why one subscription of the projector ended, and how long it waits before the next: shared by
//! the loop (`mod.rs`) and the commits it starts (`commit.rs`).

pub(super) enum Stop {
    /// The store is gone: nothing to retry.
    Closed,
    /// Shutdown came while a batch could not be committed; it is left for the next start.
    Abandoned,
    Retry(String),
}

impl Stop {
    pub(super) fn store(e: annals_store::StoreError) -> Stop {
        match e {
            annals_store::StoreError::Closed => Stop::Closed,
            other => Stop::Retry(other.to_string()),
        }
    }

    pub(super) fn view(e: crate::error::ViewError) -> Stop {
        Stop::Retry(e.to_string())
    }
}

/// The backoff between retries (`crate::backoff`, shared with the invalidation dispatchers).
pub(super) use crate::backoff::Backoff;
