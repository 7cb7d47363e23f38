//! The projector runtime: follows `$all` from a view's checkpoint and applies events to the view
//! in batches, for any [`Projection`]. Live projection and rebuilds run this same loop.
//!
//! # The contract it keeps (ARCHITECTURE.md, "Projector contract")
//!
//! - **Order**: events come from one `$all` subscription in position order, so the events of a
//!   stream are applied in revision order.
//! - **Exactly-once effect**: a batch's documents and the checkpoint (the position of its last
//!   event) are committed to the view in one atomic `ViewWriter::commit` when the view has
//!   `Capabilities::atomic_checkpoint`, else documents first and checkpoint after
//!   (`commit.rs`); the subscription then resumes after that checkpoint. A crash before the
//!   checkpoint is committed replays the batch; a replayed write whose version is not newer is a
//!   no-op in the view (document version = position), and the folds give the same document for
//!   an event they already hold.
//! - **Parking**: an event the projection cannot apply is appended, with the error, to the
//!   generation's parked stream (`parked.rs`) before the checkpoint passes it, and the batch goes
//!   on. Each parked event has an id derived from the stream and the position, so parking it
//!   again after a crash is an idempotent retry, not a second entry.
//! - **Replays** of parked events are requests in the parked stream that the subscription
//!   delivers in log order; the runtime applies the parked events when it meets one and commits
//!   them with the request's position as version and checkpoint (`parked.rs` says why).
//! - **Transient failures** (the view or the store) retry with jittered exponential backoff and
//!   never skip: a failed batch is retried whole; a broken subscription restarts from the last
//!   committed checkpoint.
//! - **Shutdown**: on cancellation the batch in hand is committed, then `run` returns.
//! - **Invalidations** (issue 15): once a batch's commit has landed, its documents' cache keys
//!   (`Projection::invalidated_keys`) are handed to the process's invalidation queues, one
//!   invalidation per tenant at the batch's last position, without waiting (`emit.rs`); a
//!   rebuilding generation hands out nothing until its switch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use annals_store::{
    Direction, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom, RecordedEvent, StreamId, SubscribeFrom,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::ApplyError;
use crate::invalidation::queue::Invalidations;
use crate::invalidation::InvalidatedKey;
use crate::view_store::{Checkpoint, ViewDoc, ViewWriter};
use commit::{commit_with_retry, wait_for, InFlight, InFlightDone, Parking};
use fold::{EventBatch, Order, Prepared};
use parked::{ReplayOutcome, ReplayRequest, Replayed};
use partition::Workers;
use projection::Projection;
use status::ProjectionStatus;
use stop::{Backoff, Stop};

mod commit;
pub mod control;
mod emit;
mod fold;
mod hash;
pub mod parked;
mod partition;
pub mod projection;
pub mod status;
mod stop;
pub(crate) mod unapplied;

pub use emit::Emission;

/// How a projector batches.
#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    /// Events per batch at most (one view commit per batch).
    pub batch_size: usize,
    /// A batch is committed at the latest this long after its first event, so a quiet log is
    /// still searchable within a second.
    pub flush_interval: Duration,
    /// Documents kept across batches (`fold.rs`, "The document cache"), per worker.
    pub cache_docs: usize,
    /// Workers that fold a batch at once, each owning the streams that hash to it
    /// (`partition.rs`); their output is committed together with one checkpoint.
    pub parallelism: usize,
    /// Once live, the subscription is read at most this often
    /// ([`annals_store::Subscription::pace`]): the events of the group commits in between come
    /// as one batch. Well under `flush_interval`, which bounds freshness anyway.
    pub live_pace: Duration,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        // Live traffic fills a batch by the interval long before the size: the size bounds
        // catch-up and rebuild batches, where each commit (segment flush and fsyncs) costs
        // milliseconds and fewer, larger segments also mean less merging.
        ProjectorConfig {
            batch_size: 20_000,
            flush_interval: Duration::from_millis(200),
            cache_docs: 50_000,
            parallelism: 1,
            live_pace: Duration::from_millis(10),
        }
    }
}

/// One projection running against one view.
pub struct Projector<P: Projection> {
    store: Arc<dyn EventStore>,
    view: Arc<dyn ViewWriter>,
    projection: Arc<P>,
    config: ProjectorConfig,
    status: Arc<ProjectionStatus>,
    /// The parked stream of the generation this projector writes (`parked.rs`).
    parked: StreamId,
    /// Where committed batches' invalidations go (`emit.rs`).
    emission: Arc<Emission>,
}

impl<P: Projection> Projector<P> {
    /// The cache holds at least two batches' documents whatever `config` says: the pipelined
    /// commit relies on it (see `follow`).
    pub fn new(
        store: Arc<dyn EventStore>,
        view: Arc<dyn ViewWriter>,
        projection: P,
        mut config: ProjectorConfig,
    ) -> Self {
        config.cache_docs = config.cache_docs.max(config.batch_size.saturating_mul(2));
        config.parallelism = config.parallelism.max(1);
        let name = projection.schema().name;
        let status = Arc::new(ProjectionStatus::new(name));
        let parked = parked::parked_stream(name, 1).expect("view names make valid stream names");
        let visible = view.capabilities().visible_on_return;
        let emission = Arc::new(Emission::new(Invalidations::default(), Arc::clone(&status), true, visible));
        Projector { store, view, projection: Arc::new(projection), config, status, parked, emission }
    }

    /// The projector of generation `generation` of the view (1 by default): it parks into, and
    /// takes replay requests from, that generation's parked stream.
    pub fn generation(mut self, generation: u64) -> Self {
        self.parked = parked::parked_stream(self.status.name, generation).expect("view names make valid stream names");
        self
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
    ///
    /// Pipelined: while batch N is committed (on the projectors' threads), batch N+1 is read and
    /// folded. At most one commit is in flight, and its documents are still in the cache (its
    /// capacity is at least twice the batch size, see [`Projector::new`]), so folding the next
    /// batch never reads a document from the view before its commit has landed.
    async fn follow(&self, shutdown: &CancellationToken) -> Result<(), Stop> {
        let checkpoint = self.view.checkpoint().await.map_err(Stop::view)?;
        self.status.set_checkpoint(checkpoint.map(|c| c.position));
        let from = checkpoint.map_or(SubscribeFrom::Start, |c| SubscribeFrom::After(c.position));
        let filter = self.projection.filter();
        let widened = parked::with_replay_requests(&filter);
        let mut subscription = self.store.subscribe_to_all(from, widened).await.map_err(Stop::store)?;
        subscription.pace(self.config.live_pace);
        self.view.bulk_load(true).await.map_err(Stop::view)?;
        // Per subscription: after a failure nothing uncommitted may be served from it.
        let mut workers = Workers::new(self.config.parallelism, self.config.cache_docs);
        let mut batch = EventBatch::default();
        let mut in_flight: Option<InFlight> = None;
        let mut started: Option<Instant> = None;
        loop {
            let deadline = started.map(|t| t + self.config.flush_interval);
            tokio::select! {
                message = subscription.next() => match message.map_err(Stop::store)? {
                    annals_store::SubscriptionMessage::Event(event) if !reads(&filter, &event) => {
                        if event.stream == self.parked && event.event_type == parked::REPLAY_REQUESTED {
                            // Everything before the request is applied first: log order.
                            self.flush(&mut batch, &mut workers, &mut in_flight, shutdown).await?;
                            started = None;
                            self.replay(&event, &mut workers, &mut in_flight, shutdown).await?;
                        } else {
                            // A parked stream's entry (this view's, another view's or another
                            // generation's), or an event let through by the widened filter.
                            started.get_or_insert_with(Instant::now);
                            batch.skip(event.position);
                        }
                    }
                    annals_store::SubscriptionMessage::Event(event) => {
                        started.get_or_insert_with(Instant::now);
                        batch.push(event);
                        if batch.events.len() >= self.config.batch_size {
                            self.flush(&mut batch, &mut workers, &mut in_flight, shutdown).await?;
                            started = None;
                        }
                    }
                    annals_store::SubscriptionMessage::CaughtUp => {
                        self.view.bulk_load(false).await.map_err(Stop::view)?;
                        self.status.set_caught_up();
                    }
                },
                _ = sleep_until(deadline) => {
                    self.flush(&mut batch, &mut workers, &mut in_flight, shutdown).await?;
                    started = None;
                }
                landed = wait_for(&mut in_flight) => self.landed(landed)?,
                _ = shutdown.cancelled() => {
                    self.flush(&mut batch, &mut workers, &mut in_flight, shutdown).await?;
                    return self.settle(&mut in_flight).await;
                }
            }
        }
    }

    /// Folds the batch into documents, parks what could not be applied, and starts the commit
    /// of the documents with the checkpoint once the previous commit has landed.
    async fn flush(
        &self,
        batch: &mut EventBatch,
        workers: &mut Workers<P::Doc>,
        in_flight: &mut Option<InFlight>,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        let Some(last) = batch.last else { return Ok(()) };
        batch.last = None;
        let count = batch.events.len() as u64;
        // Drained, not taken: the next batch reuses the buffer (growing a fresh one per batch
        // faulted in and zeroed new pages every time, a sixth of the live projector's CPU).
        let prepared =
            workers.fold(&self.projection, &self.view, &mut batch.events, Order::Log).await.map_err(Stop::Retry)?;
        // Parked before the checkpoint passes them, and before this commit starts.
        for (event, error) in &prepared.parked {
            self.park(event, error).await?;
        }
        let parked = prepared.parked.len() as u64;
        let keys = prepared.keys;
        self.start_commit(prepared.upserts, keys, Some(last), count, parked, in_flight, shutdown).await
    }

    /// Applies the parked events a replay request selects (`parked.rs`), in chunks of at most
    /// a batch, recording each chunk's outcomes and committing its documents with the request's
    /// position as version; then commits the request's position as the checkpoint. Called with
    /// the batch before the request flushed; it waits for that commit to land first, and for
    /// each chunk's, so the replay never folds against a view or cache a commit is still
    /// changing. Shutdown between chunks leaves the request for the next start, which redoes the
    /// replay whole (a no-op for what is in the view already).
    async fn replay(
        &self,
        request: &RecordedEvent,
        workers: &mut Workers<P::Doc>,
        in_flight: &mut Option<InFlight>,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        let (name, at) = (self.status.name, request.position);
        let wanted = match serde_json::from_slice::<ReplayRequest>(&request.data) {
            Ok(wanted) => wanted,
            Err(e) => {
                warn!(projection = name, position = %at, error = %e, "a replay request does not decode; skipped");
                return self.start_commit(Vec::new(), Vec::new(), Some(at), 0, 0, in_flight, shutdown).await;
            }
        };
        self.settle(in_flight).await?;
        let mut log = parked::ParkedLog::new(self.parked.clone());
        log.refresh(self.store.as_ref()).await.map_err(Stop::store)?;
        let selected = log.to_replay(at, wanted.positions.as_deref());
        info!(projection = name, position = %at, events = selected.len(), "replaying parked events");
        // Handed out with the request's checkpoint, once every chunk is in.
        let mut replayed_keys = Vec::new();
        for chunk in selected.chunks(self.config.batch_size) {
            if shutdown.is_cancelled() {
                return Err(Stop::Abandoned);
            }
            let (mut events, all) = (Vec::with_capacity(chunk.len()), EventFilter::all());
            for &position in chunk {
                let found = self.store.read_all(ReadFrom::At(position), Direction::Forwards, 1, &all);
                match found.await.map_err(Stop::store)?.into_iter().next() {
                    Some(event) if event.position == position => events.push(event),
                    _ => warn!(
                        projection = name,
                        position = %position,
                        "a parked event is not in the log; not replayed"
                    ),
                }
            }
            let positions: Vec<Position> = events.iter().map(|e| e.position).collect();
            let Prepared { mut upserts, parked: failed, keys } =
                workers.fold(&self.projection, &self.view, &mut events, Order::Replay).await.map_err(Stop::Retry)?;
            let mut failed: HashMap<Position, String> =
                failed.into_iter().map(|(event, error)| (event.position, error.to_string())).collect();
            let outcomes = positions.iter().map(|&position| {
                let error = failed.remove(&position);
                let outcome = if error.is_some() { ReplayOutcome::Failed } else { ReplayOutcome::Applied };
                parked::replayed_entry(
                    &self.parked,
                    &Replayed { position: position.code(), replayed_at: at.code(), outcome, error },
                )
            });
            let entries = outcomes.collect::<Result<Vec<_>, _>>().map_err(Stop::store)?;
            // Recorded before the documents are committed, as parking is.
            parked::record_outcomes(self.store.as_ref(), &self.parked, entries).await.map_err(Stop::store)?;
            // The documents were folded from older events: the request's position makes the
            // write newer than what the view holds (the view keeps only newer versions).
            for doc in &mut upserts {
                doc.version = doc.version.max(at);
            }
            replayed_keys.extend(keys);
            // Not the checkpoint yet: it passes the request only once every chunk is in.
            self.start_commit(upserts, Vec::new(), None, 0, 0, in_flight, shutdown).await?;
            self.settle(in_flight).await?;
        }
        let replayed = selected.len() as u64;
        self.start_commit(Vec::new(), replayed_keys, Some(at), replayed, 0, in_flight, shutdown).await?;
        self.settle(in_flight).await
    }

    /// Starts the commit of `upserts` with checkpoint `last` (or the view's current one), once
    /// the previous commit landed.
    #[allow(clippy::too_many_arguments)]
    async fn start_commit(
        &self,
        upserts: Vec<ViewDoc>,
        keys: Vec<(String, InvalidatedKey)>,
        last: Option<Position>,
        events: u64,
        parked: u64,
        in_flight: &mut Option<InFlight>,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        self.settle(in_flight).await?;
        let checkpoint = last.map(|position| Checkpoint { position });
        let view = Arc::clone(&self.view);
        let (name, shutdown) = (self.status.name, shutdown.clone());
        let parking = Parking { store: Arc::clone(&self.store), stream: self.parked.clone() };
        let task = tokio::spawn(commit_with_retry(view, upserts, checkpoint, name, parking, shutdown));
        *in_flight = Some(InFlight { task, last, events, parked, keys });
        Ok(())
    }

    /// Waits for the commit in flight, if any, to land.
    async fn settle(&self, in_flight: &mut Option<InFlight>) -> Result<(), Stop> {
        if in_flight.is_none() {
            return Ok(());
        }
        let landed = wait_for(in_flight).await;
        self.landed(landed)
    }

    /// Records a commit that has landed (or passes its failure on).
    fn landed(&self, landed: Option<Result<InFlightDone, Stop>>) -> Result<(), Stop> {
        let Some(done) = landed else { return Ok(()) };
        let done = done?;
        if let Some(last) = done.last {
            debug!(projection = self.status.name, position = %last, events = done.events, "batch committed");
            self.emission.landed(last, done.events, done.parked, done.keys);
        }
        Ok(())
    }

    async fn park(&self, event: &RecordedEvent, error: &ApplyError) -> Result<(), Stop> {
        let name = self.status.name;
        warn!(projection = name, position = %event.position, stream = %event.stream, error = %error, "parking an event that cannot be applied");
        let data = parked::parked_entry(&self.parked, name, event, error.to_string()).map_err(Stop::store)?;
        // One append per parked event: a retry after a crash re-sends exactly one stored id,
        // which the store answers as an idempotent retry.
        self.store.append_to_stream(&self.parked, ExpectedRevision::Any, vec![data]).await.map_err(Stop::store)?;
        Ok(())
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

/// Whether the projection applies `event`: it matches the projection's filter and is not an
/// entry of a parked stream (a projection that reads everything must not apply, and park, the
/// record of its own parking).
fn reads(filter: &EventFilter, event: &RecordedEvent) -> bool {
    filter.matches(event.stream.as_str(), &event.event_type) && !parked::is_parked_stream(&event.stream)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
