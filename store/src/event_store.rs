//! The `EventStore` contract: what every backend (the embedded engine, KurrentDB) promises. The
//! conformance suite in `conformance/` checks each promise against each backend.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::capabilities::Capabilities;
use crate::error::StoreError;
use crate::model::{
    AllPage, AppendResult, Direction, EventData, EventFilter, ExpectedRevision, PageLimits, Position, ReadFrom,
    ReadStreamOutcome, RecordedEvent, Revision, StreamId, SubscribeFrom,
};

/// An append-only, totally ordered log of events grouped in streams.
///
/// Guarantees every implementation gives:
/// - **Atomic appends.** All events of one `append_to_stream` call become visible together, or none.
/// - **Durable acknowledgements.** Once `append_to_stream` returns `Ok`, the events survive a crash
///   of the process or the machine.
/// - **Order.** Revisions in a stream are contiguous from 0. Every event has a global `Position`;
///   positions strictly increase in commit order (and are contiguous from 0 where the backend has
///   [`Capabilities::dense_positions`]; callers never compute with them: see [`Position`]).
///   `recorded_at` never decreases along positions.
/// - **Idempotent retries, durably.** Re-sending an append whose event ids are all stored, in that
///   stream, at the revisions this append would have given them (for `Any` and `StreamExists`: at
///   any contiguous revisions, in order), returns the original `AppendResult` and writes nothing,
///   whatever the `ExpectedRevision` and across restarts (for `Any`/`StreamExists`: only within
///   the backend's window without [`Capabilities::durable_idempotency`]). A batch whose ids are partly stored, or
///   stored elsewhere, fails with `IdempotencyConflict` and writes nothing. A retry is
///   recognised by its ids alone, as KurrentDB recognises it: the content is not compared (a
///   retry's metadata may rightly differ, e.g. its trace), so a new event needs a new id.
/// - **Event ids are scoped by namespace.** A stream's namespace is its name up to the first `/`
///   ([`StreamId::namespace`]; names without `/`, such as the system streams `$keys`, share the
///   empty namespace). The rules above hold within a namespace: an id stored in another stream
///   of the same namespace is `IdempotencyConflict` (where the backend has
///   [`Capabilities::cross_stream_id_conflicts`]). Across namespaces ids never meet: the same
///   id in two namespaces is two events, an append never conflicts with, is answered as a retry
///   of, or learns anything about another namespace's ids. (The HTTP API puts every tenant's
///   streams under `{tenant}/`, so tenants neither see nor block each other's ids.)
/// - **Typed failures.** A wrong expected revision is `WrongExpectedRevision { expected, actual }`;
///   limits (event size, batch size, names, empty batches) have their own variants. A backend
///   that cannot be reached says `Unavailable` or `Timeout` ([`StoreError::is_transient`]).
/// - **Subscriptions** deliver every matching event exactly once in position order: first from
///   history, then live, with no gap and no duplicate at the switch; `CaughtUp` is sent once, when
///   the subscriber first reaches the head. A slow subscriber never blocks appends and never
///   skips: it keeps reading from history until it catches up again.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// What this backend promises beyond the contract above (constant for a store's life).
    fn capabilities(&self) -> Capabilities;

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
    ) -> Result<ReadStreamOutcome, StoreError> {
        self.read_stream_bounded(stream, from, direction, max_count, usize::MAX).await
    }

    /// `read_stream` bounded in bytes too: it stops before the event that would take the events
    /// returned past `max_bytes` ([`RecordedEvent::size`]), but always returns at least one
    /// event when the stream has one at `from`. A page shorter than `max_count` is therefore not
    /// the stream's end: read on from the revision after (forwards) or before (backwards) the
    /// last event returned until a page comes back empty. The one a backend implements (and
    /// `read_stream` calls, unbounded in bytes): a backend bounds its own memory by it.
    async fn read_stream_bounded(
        &self,
        stream: &StreamId,
        from: ReadFrom<Revision>,
        direction: Direction,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<ReadStreamOutcome, StoreError>;

    /// Reads up to `max_count` events of `$all` that match `filter`, starting at `from` (included).
    async fn read_all(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads one page of `$all` that match `filter` from `from` (included), bounded in events,
    /// in bytes and in events examined ([`PageLimits`]): whichever bound comes first ends the
    /// page, which holds at least one event when one matches within the scan bound. The page
    /// says where to read on (`next`) and whether it reached the end; reading on from `next`
    /// never skips or repeats an event. A page may hold fewer than `max_count` events (even none)
    /// and not be the end: only `reached_end` says that.
    ///
    /// Why not just `read_all`: `read_all` holds `max_count` events whatever their size (1,000
    /// events of 1 MB are a GB), and with a rare filter it reads on until it finds them. The
    /// default implementation reads through `read_all` and so bounds only what it returns;
    /// backends override it to bound the work too.
    async fn read_all_page(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        limits: PageLimits,
        filter: &EventFilter,
    ) -> Result<AllPage, StoreError> {
        let mut events = self.read_all(from, direction, limits.max_count, filter).await?;
        let examined = events.len();
        let full = events.len() == limits.max_count;
        let mut bytes = 0usize;
        let keep = events
            .iter()
            .position(|e| {
                bytes = bytes.saturating_add(e.size());
                bytes > limits.max_bytes
            })
            .map_or(events.len(), |i| i.max(1));
        let trimmed = keep < events.len();
        events.truncate(keep);
        // This default computes `next` with dense positions' arithmetic: a backend without
        // `Capabilities::dense_positions` overrides `read_all_page`.
        let at_zero = direction == Direction::Backwards && events.last().is_some_and(|e| e.position.0 == 0);
        let reached_end = (!full && !trimmed) || at_zero;
        let next = match (direction, events.last()) {
            (Direction::Forwards, Some(last)) if !reached_end => Some(last.position.next()),
            (Direction::Backwards, Some(last)) if !reached_end => last.position.0.checked_sub(1).map(Position),
            // At the end: on from the last event found, or from where the read began (not from
            // the head asked now, which may have moved past events this read did not see).
            (Direction::Forwards, Some(last)) => Some(last.position.next()),
            (Direction::Forwards, None) => match from {
                ReadFrom::Start => Some(Position(0)),
                ReadFrom::At(p) => Some(p),
                ReadFrom::After(p) => Some(p.next()),
                ReadFrom::End => self.head().await?.map(Position::next).or(Some(Position(0))),
            },
            (Direction::Backwards, _) => None,
        };
        Ok(AllPage { events, next, reached_end, examined })
    }

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

    /// `Ok` while the store takes appends; else why not: `Closed`, `StorageFull` while the
    /// data directory's filesystem is short of space (transient: appends resume by themselves
    /// once space is freed, and this checks afresh), or the error of a failed commit after which
    /// only a reopen lets recovery decide what is on disk. What `/readyz` reports.
    async fn writable(&self) -> Result<(), StoreError> {
        self.head().await.map(|_| ())
    }

    /// The position of the last committed event, or `None` for an empty store; `Closed` once
    /// the store takes no appends (closed, or its writer stopped).
    async fn head(&self) -> Result<Option<Position>, StoreError>;

    /// How many events lie after `after` up to `through` (included): a lag in events, e.g.
    /// `distance(checkpoint, head)`; `after: None` counts from the first event. `Some(0)` when
    /// `through` is not past `after`. `None` where the backend cannot count them (without
    /// [`Capabilities::counts_distance`]): report the lag in seconds (`recorded_at`) only. The
    /// way to say "how far behind" without computing with positions.
    async fn distance(&self, after: Option<Position>, through: Position) -> Result<Option<u64>, StoreError>;

    /// Stops taking appends, lets those in progress finish, ends subscriptions with `Closed` and
    /// releases what the store holds (files, connections). Every later call answers `Closed`;
    /// closing twice is harmless.
    async fn close(&self) -> Result<(), StoreError>;
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
