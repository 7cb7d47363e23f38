//! The `EventStore` contract: what every backend (the embedded engine, KurrentDB) promises. The
//! conformance suite in `conformance/` checks each promise against each backend.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::model::{
    AppendResult, Direction, EventData, EventFilter, ExpectedRevision, Position, ReadFrom, ReadStreamOutcome,
    RecordedEvent, Revision, StreamId, SubscribeFrom,
};

/// An append-only, totally ordered log of events grouped in streams.
///
/// Guarantees every implementation gives:
/// - **Atomic appends.** All events of one `append_to_stream` call become visible together, or none.
/// - **Durable acknowledgements.** Once `append_to_stream` returns `Ok`, the events survive a crash
///   of the process or the machine.
/// - **Order.** Revisions in a stream are contiguous from 0. Every event has a global `Position`;
///   positions are contiguous from 0 and strictly increase in commit order. `recorded_at` never
///   decreases along positions.
/// - **Idempotent retries, durably.** Re-sending an append whose event ids are all stored, in that
///   stream, at the revisions this append would have given them (for `Any` and `StreamExists`: at
///   any contiguous revisions, in order), returns the original `AppendResult` and writes nothing,
///   whatever the `ExpectedRevision` and across restarts. A batch whose ids are partly stored, or
///   stored elsewhere, fails with `IdempotencyConflict` and writes nothing. A retry is
///   recognised by its ids alone, as KurrentDB recognises it: the content is not compared (a
///   retry's metadata may rightly differ, e.g. its trace), so a new event needs a new id.
/// - **Event ids are scoped by namespace.** A stream's namespace is its name up to the first `/`
///   ([`StreamId::namespace`]; names without `/`, such as the system streams `$keys`, share the
///   empty namespace). The rules above hold within a namespace: an id stored in another stream
///   of the same namespace is `IdempotencyConflict`. Across namespaces ids never meet: the same
///   id in two namespaces is two events, an append never conflicts with, is answered as a retry
///   of, or learns anything about another namespace's ids. (The HTTP API puts every tenant's
///   streams under `{tenant}/`, so tenants neither see nor block each other's ids.)
/// - **Typed failures.** A wrong expected revision is `WrongExpectedRevision { expected, actual }`;
///   limits (event size, batch size, names, empty batches) have their own variants.
/// - **Subscriptions** deliver every matching event exactly once in position order: first from
///   history, then live, with no gap and no duplicate at the switch; `CaughtUp` is sent once, when
///   the subscriber first reaches the head. A slow subscriber never blocks appends and never
///   skips: it keeps reading from history until it catches up again.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if `expected` holds, atomically and durably.
    async fn append_to_stream(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError>;

    /// Reads up to `max_count` events of one stream, starting at `from` (included).
    /// A stream that has no event is `ReadStreamOutcome::StreamNotFound`.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: ReadFrom<Revision>,
        direction: Direction,
        max_count: usize,
    ) -> Result<ReadStreamOutcome, StoreError>;

    /// Reads up to `max_count` events of `$all` that match `filter`, starting at `from` (included).
    async fn read_all(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Follows `$all` (events matching `filter`) from `from`: history first, then live.
    async fn subscribe_to_all(
        &self,
        from: SubscribeFrom<Position>,
        filter: EventFilter,
    ) -> Result<Subscription, StoreError>;

    /// Follows one stream from `from`: history first, then live. The stream need not exist yet.
    async fn subscribe_to_stream(
        &self,
        stream: &StreamId,
        from: SubscribeFrom<Revision>,
    ) -> Result<Subscription, StoreError>;

    /// The position of the last committed event, or `None` for an empty store; `Closed` once
    /// the store takes no appends (closed, or its writer stopped).
    async fn head(&self) -> Result<Option<Position>, StoreError>;
}

/// One message of a subscription.
#[derive(Clone, PartialEq, Debug)]
pub enum SubscriptionMessage {
    Event(RecordedEvent),
    /// The subscriber has seen every event committed when it reached the head; sent once.
    CaughtUp,
}

/// A running subscription. Backends feed it through a bounded channel from a task of their own,
/// so a consumer that stops reading only stops that task, never the writer.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Result<Batch, StoreError>>,
    buffered: VecDeque<SubscriptionMessage>,
    task: tokio::task::AbortHandle,
    pace: Pace,
}

/// How often, at most, a live subscription's task reads the log: set by the consumer
/// ([`Subscription::pace`]), read by the backend's task between reads. Zero (the default) reads
/// after every publish.
#[derive(Clone, Debug, Default)]
pub struct Pace(Arc<AtomicU64>);

impl Pace {
    /// The pause a live subscription takes after each read, if any.
    pub fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    fn set(&self, interval: Duration) {
        self.0.store(u64::try_from(interval.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// What a backend's subscription task sends: events in order, possibly followed by `CaughtUp`.
pub type Batch = Vec<SubscriptionMessage>;

impl Subscription {
    /// A subscription fed by `task` through `rx`; the task is aborted when the subscription is
    /// dropped, and reads `pace` between its live reads.
    pub fn new(rx: mpsc::Receiver<Result<Batch, StoreError>>, task: tokio::task::AbortHandle, pace: Pace) -> Self {
        Subscription { rx, buffered: VecDeque::new(), task, pace }
    }

    /// Once live, read the log at most every `interval`: the events of the publishes in between
    /// come together in the next batch. Events, their order and `CaughtUp` are unchanged, and
    /// catching up (reading a backlog) is not slowed. For consumers that gain nothing from each
    /// group commit on its own: a projector commits its view every flush interval anyway, and
    /// the key ring only looks for other processes' changes. On this machine's two cores, every
    /// live subscription woken by every group commit was CPU taken from the appends that
    /// published them (BENCHMARKS.md, 2026-11-30 late night). A live tail that wants each event as soon as
    /// it is stored does not call this.
    pub fn pace(&mut self, interval: Duration) {
        self.pace.set(interval);
    }

    /// The next message. `Err(StoreError::Closed)` once the store is gone; any other error ends
    /// the subscription too.
    pub async fn next(&mut self) -> Result<SubscriptionMessage, StoreError> {
        loop {
            if let Some(message) = self.buffered.pop_front() {
                return Ok(message);
            }
            match self.rx.recv().await {
                Some(Ok(batch)) => self.buffered.extend(batch),
                Some(Err(e)) => return Err(e),
                None => return Err(StoreError::Closed),
            }
        }
    }

    /// The next event, skipping `CaughtUp`.
    pub async fn next_event(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let SubscriptionMessage::Event(event) = self.next().await? {
                return Ok(event);
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}
