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
//!
//! A backend may refuse single documents for their content (an Elasticsearch `400`: the
//! [`CommitOutcome`]'s rejected documents). Refusing is permanent, so retrying cannot help: the
//! event behind each (the one at the document's version) is parked with the backend's reason
//! here, after the documents' commit and before the checkpoint's, so the checkpoint never passes
//! an event that is neither in the view nor parked (invariant 14), and the projection goes on.
//!
//! [`Capabilities`]: crate::view_store::Capabilities
//! [`CommitOutcome`]: crate::view_store::CommitOutcome

use std::sync::Arc;

use annals_store::{Direction, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom, StreamId};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::invalidation::InvalidatedKey;
use crate::view_store::{Checkpoint, RejectedDoc, ViewBatch, ViewDoc, ViewWriter};

use super::parked;

use super::stop::{Backoff, Stop};

/// Commits `upserts` and `checkpoint` (see the module doc for the order), retrying failures
/// with backoff until they land — or, once shutdown is asked for, giving up: the batch is then
/// replayed from the checkpoint on the next start, which is safe (versions).
/// Where the events of rejected documents are parked: the store and the generation's parked stream.
pub(super) struct Parking {
    pub(super) store: Arc<dyn EventStore>,
    pub(super) stream: StreamId,
}

/// Returns how many events it parked for rejected documents.
pub(super) async fn commit_with_retry(
    view: Arc<dyn ViewWriter>,
    upserts: Vec<ViewDoc>,
    checkpoint: Option<Checkpoint>,
    name: &'static str,
    parking: Parking,
    shutdown: CancellationToken,
) -> Result<u64, Stop> {
    let steps = if view.capabilities().atomic_checkpoint || upserts.is_empty() || checkpoint.is_none() {
        vec![ViewBatch { upserts, checkpoint }]
    } else {
        vec![ViewBatch { upserts, checkpoint: None }, ViewBatch { upserts: Vec::new(), checkpoint }]
    };
    let mut parked = 0;
    for step in steps {
        parked +=
            retry(Arc::clone(&view), Arc::new(step), checkpoint.map(|c| c.position), name, &parking, &shutdown).await?;
    }
    Ok(parked)
}

/// Commits `batch` until it lands and the events of its rejected documents are parked (a failed
/// park commits the batch again: its durable documents answer as already applied).
async fn retry(
    view: Arc<dyn ViewWriter>,
    batch: Arc<ViewBatch>,
    position: Option<Position>,
    name: &'static str,
    parking: &Parking,
    shutdown: &CancellationToken,
) -> Result<u64, Stop> {
    let mut backoff = Backoff::default();
    loop {
        let error = match view.commit(Arc::clone(&batch)).await {
            Ok(outcome) => match park_rejected(parking, name, &outcome.rejected).await {
                Ok(()) => return Ok(outcome.rejected.len() as u64),
                Err(e) => e,
            },
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

/// Parks the event at each rejected document's version with the backend's reason.
async fn park_rejected(parking: &Parking, name: &'static str, rejected: &[RejectedDoc]) -> Result<(), String> {
    for doc in rejected {
        let events = parking
            .store
            .read_all(ReadFrom::At(doc.version), Direction::Forwards, 1, &EventFilter::all())
            .await
            .map_err(|e| e.to_string())?;
        let Some(event) = events.into_iter().find(|e| e.position == doc.version) else {
            // A version names the event that made the document; a log without it is not this view's.
            return Err(format!(
                "the event at position {} of rejected document {:?} is not in the log",
                doc.version, doc.id
            ));
        };
        warn!(projection = name, position = %doc.version, id = %doc.id, reason = %doc.reason, "parking an event whose document the view refused");
        let reason = format!("the view refused the document: {}", doc.reason);
        let data = parked::parked_entry(&parking.stream, name, &event, reason).map_err(|e| e.to_string())?;
        // One append per event: its id is derived from the stream and position, so a retry is idempotent.
        parking
            .store
            .append_to_stream(&parking.stream, ExpectedRevision::Any, vec![data])
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The commit of one batch, running.
pub(super) struct InFlight {
    pub(super) task: tokio::task::JoinHandle<Result<u64, Stop>>,
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
        Ok(Ok(rejected)) => {
            Ok(InFlightDone { last: done.last, events: done.events, parked: done.parked + rejected, keys: done.keys })
        }
        Ok(Err(stop)) => Err(stop),
        Err(e) => Err(Stop::Retry(format!("commit task failed: {e}"))),
    })
}
