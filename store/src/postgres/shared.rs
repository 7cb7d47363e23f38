//! What the writer task, the `LISTEN` task and subscriptions share with the `PostgresStore`
//! handle: its own file so that those modules and `store.rs` (which starts them) do not import
//! each other in a circle.

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::PostgresConfig;
use super::pool_error;
use crate::error::StoreError;

/// What the writer, the listener and subscriptions share.
pub(super) struct Shared {
    pub config: PostgresConfig,
    pub pool: Pool,
    /// Bumped after every commit seen (ours at once, others' through NOTIFY) and after the
    /// LISTEN connection comes back: subscriptions re-read when it changes.
    pub wake: watch::Sender<u64>,
    /// Cancelled by `close` or when the last handle is dropped.
    pub cancel: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Shared {
    /// A pooled connection, or why not (`Closed` once the store is closed).
    pub async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        if self.cancel.is_cancelled() {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(pool_error)
    }

    pub fn wake_all(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }
}
