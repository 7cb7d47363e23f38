//! Committing a folded batch to the view, as the view's [`Capabilities`] allow, with retries;
//! and the one commit in flight that the runtime's pipeline keeps (`runtime/mod.rs`).
//!
//! A backend with `atomic_checkpoint` gets the documents and the checkpoint in one commit. One
//! without it (Elasticsearch) gets them in two, documents first: a crash between the two leaves
//! documents ahead of the checkpoint, and the events after the checkpoint are folded again on
//! the next start. That converges because the folds depend only on the set of a stream's events
//! (a document already holding an event is unchanged by it) and the view keeps a write only when
//! its version is newer: the replayed writes are no-ops. The other order would let the
//! checkpoint pass documents that were never written.
//!
//! [`Capabilities`]: crate::view_store::Capabilities

use std::sync::Arc;

use annals_store::Position;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::invalidation::InvalidatedKey;
use crate::view_store::{Checkpoint, ViewBatch, ViewDoc, ViewWriter};

use super::stop::{Backoff, Stop};

/// Commits `upserts` and `checkpoint` (see the module doc for the order), retrying failures
/// with backoff until they land — or, once shutdown is asked for, giving up: the batch is then
/// replayed from the checkpoint on the next start, which is safe (versions).
pub(super) async fn commit_with_retry(
    view: Arc<dyn ViewWriter>,
    upserts: Vec<ViewDoc>,
    checkpoint: Option<Checkpoint>,
    name: &'static str,
    shutdown: CancellationToken,
) -> Result<(), Stop> {
    let steps = if view.capabilities().atomic_checkpoint || upserts.is_empty() || checkpoint.is_none() {
        vec![ViewBatch { upserts, checkpoint }]
    } else {
        vec![ViewBatch { upserts, checkpoint: None }, ViewBatch { upserts: Vec::new(), checkpoint }]
    };
    for step in steps {
        retry(Arc::clone(&view), Arc::new(step), checkpoint.map(|c| c.position), name, &shutdown).await?;
    }
    Ok(())
}

async fn retry(
    view: Arc<dyn ViewWriter>,
    batch: Arc<ViewBatch>,
    position: Option<Position>,
    name: &'static str,
    shutdown: &CancellationToken,
) -> Result<(), Stop> {
    let mut backoff = Backoff::default();
    loop {
        let error = match view.commit(Arc::clone(&batch)).await {
            Ok(()) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if shutdown.is_cancelled() {
            warn!(projection = name, position = ?position, error = %error, "batch failed at shutdown; it will be replayed on the next start");
            return Err(Stop::Abandoned);
        }
        let delay = backoff.next_delay();
        warn!(projection = name, position = ?position, error = %error, delay_ms = delay.as_millis() as u64, "batch failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

/// The commit of one batch, running.
pub(super) struct InFlight {
    pub(super) task: tokio::task::JoinHandle<Result<(), Stop>>,
    /// The checkpoint it commits, if it moves it.
    pub(super) last: Option<Position>,
    pub(super) events: u64,
    pub(super) parked: u64,
    /// The cache keys its documents invalidate, handed out once it lands (`emit.rs`).
    pub(super) keys: Vec<(String, InvalidatedKey)>,
}

pub(super) struct InFlightDone {
    pub(super) last: Option<Position>,
    pub(super) events: u64,
    pub(super) parked: u64,
    pub(super) keys: Vec<(String, InvalidatedKey)>,
}

/// Waits for the commit in flight to land; never returns when there is none (for `select!`).
pub(super) async fn wait_for(in_flight: &mut Option<InFlight>) -> Option<Result<InFlightDone, Stop>> {
    let Some(running) = in_flight.as_mut() else { return std::future::pending().await };
    let result = (&mut running.task).await;
    let done = in_flight.take()?;
    Some(match result {
        Ok(Ok(())) => Ok(InFlightDone { last: done.last, events: done.events, parked: done.parked, keys: done.keys }),
        Ok(Err(stop)) => Err(stop),
        Err(e) => Err(Stop::Retry(format!("commit task failed: {e}"))),
    })
}
