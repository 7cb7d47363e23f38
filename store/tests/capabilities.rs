//! The conformance suite reads a backend's `Capabilities`: where one is off, the case checks the
//! weaker promise instead, and fails a backend that breaks that one.
//!
//! Why this exists: the embedded engine keeps every capability, so its own run of the suite
//! never takes the weaker branches; a backend that does (KurrentDB) must not be the first to run
//! them. `Stated` is the embedded engine stating fewer capabilities than it has, and answering
//! `distance` as a backend without the capability does (or, to check the check, as one that
//! says it cannot count and counts anyway).

use annals_store::conformance;
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{
    AllPage, AppendResult, Capabilities, Direction, EventData, EventFilter, EventStore, ExpectedRevision, PageLimits,
    Position, ReadFrom, ReadStreamOutcome, RecordedEvent, Revision, StoreError, StreamId, SubscribeFrom, Subscription,
};
use async_trait::async_trait;
use tempfile::TempDir;

/// The embedded engine with the capabilities `capabilities` (fewer than it has); `distance`
/// answers `None` where `counts_distance` is off, unless `counts_anyway`.
struct Stated {
    inner: EmbeddedStore,
    capabilities: Capabilities,
    counts_anyway: bool,
}

async fn stated(change: impl FnOnce(&mut Capabilities), counts_anyway: bool) -> (Stated, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let inner = EmbeddedStore::open(EngineConfig::new(dir.path().join("data"))).await.expect("open a store");
    let mut capabilities = inner.capabilities();
    change(&mut capabilities);
    (Stated { inner, capabilities, counts_anyway }, dir)
}

#[async_trait]
impl EventStore for Stated {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn append_to_stream(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        self.inner.append_to_stream(stream, expected, events).await
    }

    async fn read_stream_bounded(
        &self,
        stream: &StreamId,
        from: ReadFrom<Revision>,
        direction: Direction,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<ReadStreamOutcome, StoreError> {
        self.inner.read_stream_bounded(stream, from, direction, max_count, max_bytes).await
    }

    async fn read_all(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(from, direction, max_count, filter).await
    }

    async fn read_all_page(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        limits: PageLimits,
        filter: &EventFilter,
    ) -> Result<AllPage, StoreError> {
        self.inner.read_all_page(from, direction, limits, filter).await
    }

    async fn subscribe_to_all(
        &self,
        from: SubscribeFrom<Position>,
        filter: EventFilter,
    ) -> Result<Subscription, StoreError> {
        self.inner.subscribe_to_all(from, filter).await
    }

    async fn subscribe_to_stream(
        &self,
        stream: &StreamId,
        from: SubscribeFrom<Revision>,
    ) -> Result<Subscription, StoreError> {
        self.inner.subscribe_to_stream(stream, from).await
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        self.inner.head().await
    }

    async fn distance(&self, after: Option<Position>, through: Position) -> Result<Option<u64>, StoreError> {
        if self.capabilities.counts_distance || self.counts_anyway {
            self.inner.distance(after, through).await
        } else {
            Ok(None)
        }
    }

    async fn close(&self) -> Result<(), StoreError> {
        EventStore::close(&self.inner).await
    }
}

/// Without `counts_distance`, `distance` answering `None` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_counts_distance_none_is_the_answer() {
    let (store, _dir) = stated(|c| c.counts_distance = false, false).await;
    conformance::distance_counts_the_events_between(&store).await;
}

/// A backend that says it cannot count and counts anyway fails: the case checks what the
/// capability says, not whatever comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "distance without the counts_distance capability")]
async fn counting_without_saying_so_fails() {
    let (store, _dir) = stated(|c| c.counts_distance = false, true).await;
    conformance::distance_counts_the_events_between(&store).await;
}

/// Without `dense_positions` or `reads_from_any_position`, the read, append and "after" cases
/// check only what such a backend promises, and the embedded engine keeps that too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dense_positions_and_any_position_reads_the_weaker_checks_pass() {
    let weaker = |c: &mut Capabilities| {
        c.dense_positions = None;
        c.reads_from_any_position = false;
    };
    // Each case wants a fresh store.
    let (store, _dir) = stated(weaker, false).await;
    conformance::read_all_forwards_and_backwards(&store).await;
    let (store, _dir) = stated(weaker, false).await;
    conformance::reads_after_a_position_exclude_it(&store).await;
    let (store, _dir) = stated(weaker, false).await;
    conformance::append_and_read_back(&store).await;
}
