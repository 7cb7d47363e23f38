//! The projector runtime: follows `$all` from a view's checkpoint and applies events to the view
//! in batches, for any [`Projection`]. Live projection and rebuilds run this same loop.
//!
//! # The contract it keeps (ARCHITECTURE.md, "Projector contract")
//!
//! - **Order**: events come from one `$all` subscription in position order, so the events of a
//!   stream are applied in revision order.
//! - **Exactly-once effect**: a batch's documents and the checkpoint (the position of its last
//!   event) are committed to the view in one atomic `ViewStore::commit`; the subscription then
//!   resumes after that checkpoint. A crash before the commit replays the batch; a replayed write
//!   whose version is not newer is a no-op in the view (document version = position).
//! - **Parking**: an event the projection cannot apply is appended, with the error, to the
//!   system stream `$parked-{view}` before the checkpoint passes it, and the batch goes on. Each
//!   parked event has an id derived from the view and the position, so parking it again after a
//!   crash is an idempotent retry, not a second entry.
//! - **Transient failures** (the view or the store) retry with jittered exponential backoff and
//!   never skip: a failed batch is retried whole; a broken subscription restarts from the last
//!   committed checkpoint.
//! - **Shutdown**: on cancellation the batch in hand is committed, then `run` returns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use annals_store::{EventData, EventStore, ExpectedRevision, Position, RecordedEvent, StreamId, SubscribeFrom};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::projection::{DocKey, Projection};
use crate::status::ProjectionStatus;
use crate::view_store::{Checkpoint, ViewBatch, ViewStore};
use crate::{ApplyError, ViewError};

/// How a projector batches.
#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    /// Events per batch at most (one view commit per batch).
    pub batch_size: usize,
    /// A batch is committed at the latest this long after its first event, so a quiet log is
    /// still searchable within a second.
    pub flush_interval: Duration,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig { batch_size: 1_000, flush_interval: Duration::from_millis(200) }
    }
}

/// One projection running against one view.
pub struct Projector<P: Projection> {
    store: Arc<dyn EventStore>,
    view: Arc<dyn ViewStore>,
    projection: Arc<P>,
    config: ProjectorConfig,
    status: Arc<ProjectionStatus>,
}

impl<P: Projection> Projector<P> {
    pub fn new(store: Arc<dyn EventStore>, view: Arc<dyn ViewStore>, projection: P, config: ProjectorConfig) -> Self {
        let status = Arc::new(ProjectionStatus::new(projection.schema().name));
        Projector { store, view, projection: Arc::new(projection), config, status }
    }

    /// Live figures of this projector (checkpoint, applied and parked events).
    pub fn status(&self) -> Arc<ProjectionStatus> {
        Arc::clone(&self.status)
    }

    /// Runs until `shutdown` is cancelled (then commits the batch in hand) or the store closes.
    pub async fn run(self, shutdown: CancellationToken) {
        let name = self.projection.schema().name;
        let mut backoff = Backoff::default();
        loop {
            match self.follow(&shutdown).await {
                Ok(()) => return,
                Err(Stop::Closed) => {
                    info!(projection = name, "store closed; projector stops");
                    return;
                }
                Err(Stop::Abandoned) => return,
                Err(Stop::Retry(reason)) => {
                    let delay = backoff.next_delay();
                    warn!(projection = name, error = %reason, delay_ms = delay.as_millis() as u64, "projector restarts from its checkpoint");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// One subscription from the committed checkpoint until shutdown or a failure.
    async fn follow(&self, shutdown: &CancellationToken) -> Result<(), Stop> {
        let checkpoint = self.blocking_view(|v| v.checkpoint()).await?;
        self.status.set_checkpoint(checkpoint.map(|c| c.position));
        let from = checkpoint.map_or(SubscribeFrom::Start, |c| SubscribeFrom::After(c.position));
        let mut subscription =
            self.store.subscribe_to_all(from, self.projection.filter()).await.map_err(Stop::store)?;
        let mut batch = Batch::default();
        loop {
            let deadline = batch.started.map(|t| t + self.config.flush_interval);
            tokio::select! {
                message = subscription.next() => match message.map_err(Stop::store)? {
                    annals_store::SubscriptionMessage::Event(event) => {
                        self.add(&mut batch, event).await?;
                        if batch.events >= self.config.batch_size {
                            self.flush(&mut batch, shutdown).await?;
                        }
                    }
                    annals_store::SubscriptionMessage::CaughtUp => self.status.set_caught_up(),
                },
                _ = sleep_until(deadline) => self.flush(&mut batch, shutdown).await?,
                _ = shutdown.cancelled() => {
                    self.flush(&mut batch, shutdown).await?;
                    return Ok(());
                }
            }
        }
    }

    /// Folds one event into the batch (or parks it).
    async fn add(&self, batch: &mut Batch<P::Doc>, event: RecordedEvent) -> Result<(), Stop> {
        batch.started.get_or_insert_with(Instant::now);
        batch.events += 1;
        batch.last = Some(event.position);
        let Some(key) = self.projection.doc_key(&event) else { return Ok(()) };
        let mut doc = match batch.docs.remove(&key) {
            Some(doc) => Some(doc),
            None => self.load(&key).await?,
        };
        // On failure `doc` is as it was: it stays in the batch, the event is parked.
        if let Err(error) = self.projection.apply(&mut doc, &event) {
            batch.parked.push((event, error));
        }
        if let Some(doc) = doc {
            batch.docs.insert(key, doc);
        }
        Ok(())
    }

    /// The committed document, decoded; one that cannot be decoded is rebuilt from this event on
    /// (and reported), rather than stopping the projection.
    async fn load(&self, key: &DocKey) -> Result<Option<P::Doc>, Stop> {
        let (tenant, id) = (key.tenant.clone(), key.id.clone());
        let Some(stored) = self.blocking_view(move |v| v.get(&tenant, &id)).await? else { return Ok(None) };
        match serde_json::from_value(stored.source) {
            Ok(doc) => Ok(Some(doc)),
            Err(e) => {
                warn!(projection = self.status.name, doc = %key.id, error = %e, "stored document does not decode; rebuilding it from later events");
                Ok(None)
            }
        }
    }

    /// Parks what could not be applied, then commits the documents with the checkpoint. A failed
    /// commit is retried until it succeeds — or, once shutdown is asked for, given up: the batch
    /// is then replayed from the checkpoint on the next start, which is safe (versions).
    async fn flush(&self, batch: &mut Batch<P::Doc>, shutdown: &CancellationToken) -> Result<(), Stop> {
        let Some(last) = batch.last else {
            batch.started = None;
            return Ok(());
        };
        for (event, error) in &batch.parked {
            self.park(event, error).await?;
        }
        let upserts = batch.docs.values().map(|doc| self.projection.to_view(doc)).collect();
        let view_batch = ViewBatch { upserts, checkpoint: Some(Checkpoint { position: last }) };
        let mut backoff = Backoff::default();
        loop {
            let attempt = view_batch.clone();
            match self.blocking_view(move |v| v.commit(attempt)).await {
                Ok(()) => break,
                Err(Stop::Retry(reason)) if shutdown.is_cancelled() => {
                    warn!(projection = self.status.name, position = last.0, error = %reason, "batch failed at shutdown; it will be replayed on the next start");
                    return Err(Stop::Abandoned);
                }
                Err(Stop::Retry(reason)) => {
                    let delay = backoff.next_delay();
                    warn!(projection = self.status.name, position = last.0, error = %reason, delay_ms = delay.as_millis() as u64, "batch failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                Err(stop) => return Err(stop),
            }
        }
        debug!(projection = self.status.name, position = last.0, events = batch.events, "batch committed");
        self.status.committed(last, batch.events as u64, batch.parked.len() as u64);
        *batch = Batch::default();
        Ok(())
    }

    async fn park(&self, event: &RecordedEvent, error: &ApplyError) -> Result<(), Stop> {
        let name = self.status.name;
        warn!(projection = name, position = event.position.0, stream = %event.stream, error = %error, "parking an event that cannot be applied");
        let parked = serde_json::json!({
            "projection": name,
            "position": event.position.0,
            "stream": event.stream.as_str(),
            "event_id": event.id,
            "event_type": event.event_type,
            "error": error.to_string(),
        });
        let data = EventData::json(PARKED_EVENT_TYPE, &parked)
            .map_err(Stop::store)?
            .with_id(uuid::Uuid::from_u64_pair(stable_hash(name), event.position.0));
        let stream = parked_stream(name).map_err(Stop::store)?;
        // One append per parked event: a retry after a crash re-sends exactly one stored id,
        // which the store answers as an idempotent retry.
        self.store.append_to_stream(&stream, ExpectedRevision::Any, vec![data]).await.map_err(Stop::store)?;
        Ok(())
    }

    async fn blocking_view<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn ViewStore) -> Result<T, ViewError> + Send + 'static,
    ) -> Result<T, Stop> {
        let view = Arc::clone(&self.view);
        match tokio::task::spawn_blocking(move || op(view.as_ref())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Stop::Retry(e.to_string())),
            Err(e) => Err(Stop::Retry(format!("view task failed: {e}"))),
        }
    }
}

impl<P: Projection> std::fmt::Debug for Projector<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("projection", &self.projection)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The event type of entries in `$parked-{view}`.
pub const PARKED_EVENT_TYPE: &str = "$parked";

/// The system stream where a view's parked events are recorded.
pub fn parked_stream(view: &str) -> Result<StreamId, annals_store::StoreError> {
    StreamId::new(format!("$parked-{view}"))
}

struct Batch<D> {
    docs: HashMap<DocKey, D>,
    parked: Vec<(RecordedEvent, ApplyError)>,
    events: usize,
    last: Option<Position>,
    started: Option<Instant>,
}

impl<D> Default for Batch<D> {
    fn default() -> Self {
        Batch { docs: HashMap::new(), parked: Vec::new(), events: 0, last: None, started: None }
    }
}

enum Stop {
    /// The store is gone: nothing to retry.
    Closed,
    /// Shutdown came while a batch could not be committed; it is left for the next start.
    Abandoned,
    Retry(String),
}

impl Stop {
    fn store(e: annals_store::StoreError) -> Stop {
        match e {
            annals_store::StoreError::Closed => Stop::Closed,
            other => Stop::Retry(other.to_string()),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Jittered exponential backoff, 50 ms doubling to 5 s ("full jitter": uniform in [d/2, d]).
#[derive(Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let ceiling = 50u64.saturating_mul(1 << self.attempt.min(7)).min(5_000);
        self.attempt += 1;
        let jitter = rand::random::<f64>() * 0.5 + 0.5;
        Duration::from_millis((ceiling as f64 * jitter) as u64)
    }
}

/// FNV-1a: stable across builds and processes (unlike `DefaultHasher`), for parked-event ids.
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
