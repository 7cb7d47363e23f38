//! The whole conformance suite on a backend with sparse positions.
//!
//! Why this exists: KurrentDB's positions are byte offsets, and a read from a position that is
//! no event's fails. `Sparse` is the embedded engine showing the same face — event `i` has
//! position `3i + 5`, a read from any other position is an error, and it states no dense
//! positions, no count of events between positions and no reads from any position — so the suite
//! (which then runs every case through `conformance::DenseView`) is proven to run unchanged on
//! such a backend before one exists.

use std::path::Path;

use annals_store::conformance::Limits;
use annals_store::engine::{EmbeddedStore, EngineConfig, DENSE};
use annals_store::{
    AllPage, AppendResult, Capabilities, Direction, EventData, EventFilter, EventStore, ExpectedRevision, Pace,
    PageLimits, Position, ReadFrom, ReadStreamOutcome, RecordedEvent, Revision, StoreError, StreamId, SubscribeFrom,
    Subscription, SubscriptionMessage,
};
use async_trait::async_trait;
use tempfile::TempDir;
use tokio::sync::mpsc;

struct Sparse(EmbeddedStore);

/// The sparse position of the engine's position `p`.
fn sparse(p: Position) -> Position {
    Position::from_code(3 * DENSE.index(p) + 5)
}

/// The engine's position of the sparse position `p`, which must be one `sparse` makes.
fn dense(p: Position) -> Result<Position, StoreError> {
    match p.code().checked_sub(5) {
        Some(c) if c % 3 == 0 => Ok(DENSE.position(c / 3)),
        _ => Err(StoreError::Index(format!("{p} is not the position of an event"))),
    }
}

fn read_from(from: ReadFrom<Position>) -> Result<ReadFrom<Position>, StoreError> {
    Ok(match from {
        ReadFrom::Start => ReadFrom::Start,
        ReadFrom::End => ReadFrom::End,
        ReadFrom::At(p) => ReadFrom::At(dense(p)?),
        ReadFrom::After(p) => ReadFrom::After(dense(p)?),
    })
}

fn events(events: Vec<RecordedEvent>) -> Vec<RecordedEvent> {
    events.into_iter().map(|e| RecordedEvent { position: sparse(e.position), ..e }).collect()
}

fn relay(mut inner: Subscription) -> Subscription {
    let (tx, rx) = mpsc::channel(2);
    let task = tokio::spawn(async move {
        loop {
            let message = inner.next().await.map(|m| match m {
                SubscriptionMessage::Event(e) => {
                    vec![SubscriptionMessage::Event(RecordedEvent { position: sparse(e.position), ..e })]
                }
                SubscriptionMessage::CaughtUp => vec![SubscriptionMessage::CaughtUp],
            });
            let end = message.is_err();
            if tx.send(message).await.is_err() || end {
                return;
            }
        }
    });
    Subscription::new(rx, task.abort_handle(), Pace::default())
}

#[async_trait]
impl EventStore for Sparse {
    fn capabilities(&self) -> Capabilities {
        let mut capabilities = self.0.capabilities();
        capabilities.dense_positions = None;
        capabilities.counts_distance = false;
        capabilities.reads_from_any_position = false;
        capabilities
    }

    async fn append_to_stream(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        batch: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        let r = self.0.append_to_stream(stream, expected, batch).await?;
        Ok(AppendResult { first_position: sparse(r.first_position), last_position: sparse(r.last_position), ..r })
    }

    async fn read_stream_bounded(
        &self,
        stream: &StreamId,
        from: ReadFrom<Revision>,
        direction: Direction,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<ReadStreamOutcome, StoreError> {
        Ok(match self.0.read_stream_bounded(stream, from, direction, max_count, max_bytes).await? {
            ReadStreamOutcome::Events(found) => ReadStreamOutcome::Events(events(found)),
            ReadStreamOutcome::StreamNotFound => ReadStreamOutcome::StreamNotFound,
        })
    }

    async fn read_all(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(events(self.0.read_all(read_from(from)?, direction, max_count, filter).await?))
    }

    async fn read_all_page(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        limits: PageLimits,
        filter: &EventFilter,
    ) -> Result<AllPage, StoreError> {
        let page = self.0.read_all_page(read_from(from)?, direction, limits, filter).await?;
        Ok(AllPage { next: page.next.map(sparse), events: events(page.events), ..page })
    }

    async fn subscribe_to_all(
        &self,
        from: SubscribeFrom<Position>,
        filter: EventFilter,
    ) -> Result<Subscription, StoreError> {
        let from = match from {
            SubscribeFrom::Start => SubscribeFrom::Start,
            SubscribeFrom::End => SubscribeFrom::End,
            SubscribeFrom::After(p) => SubscribeFrom::After(dense(p)?),
            SubscribeFrom::At(p) => SubscribeFrom::At(dense(p)?),
        };
        Ok(relay(self.0.subscribe_to_all(from, filter).await?))
    }

    async fn subscribe_to_stream(
        &self,
        stream: &StreamId,
        from: SubscribeFrom<Revision>,
    ) -> Result<Subscription, StoreError> {
        Ok(relay(self.0.subscribe_to_stream(stream, from).await?))
    }

    async fn writable(&self) -> Result<(), StoreError> {
        self.0.writable().await
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        Ok(self.0.head().await?.map(sparse))
    }

    async fn distance(&self, _after: Option<Position>, _through: Position) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    async fn close(&self) -> Result<(), StoreError> {
        EventStore::close(&self.0).await
    }
}

fn config(dir: &Path) -> EngineConfig {
    EngineConfig::new(dir).segment_size(64 * 1024)
}

async fn sparse_store() -> (Sparse, TempDir) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = EmbeddedStore::open(config(&dir.path().join("data"))).await.expect("open a fresh store");
    (Sparse(store), dir)
}

annals_store::event_store_test_suite!(sparse_store, limits = Limits::of_engine(&config(Path::new("unused"))));

/// The face is sparse indeed: positions are not 0, 1, 2, and a read from between two fails.
#[tokio::test]
async fn the_sparse_face_is_sparse() {
    let (store, _dir) = sparse_store().await;
    let s = StreamId::new("s").unwrap();
    let batch = vec![EventData::json("t", &1).unwrap(), EventData::json("t", &2).unwrap()];
    let r = store.append_to_stream(&s, ExpectedRevision::NoStream, batch).await.unwrap();
    assert_eq!((r.first_position.code(), r.last_position.code()), (5, 8));
    let all = EventFilter::all();
    let between = store.read_all(ReadFrom::At(Position::from_code(6)), Direction::Forwards, 1, &all).await;
    assert!(between.is_err(), "a read from a position no event has fails");
}
