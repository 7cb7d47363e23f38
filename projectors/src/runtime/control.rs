//! Control of projections across processes: a rebuild is asked for, and reported done, by
//! events on the system stream `$projections`, so the process that takes the request (the API)
//! never shares memory with the one that runs projectors (ARCHITECTURE.md, "Rebuilds").
//!
//! The stream is small (a few events per rebuild) and is folded whole into a [`ControlState`]
//! per projection: which generation of the view serves, and which one is being built. A
//! request is appended with the expected revision of the state it was decided on, so two
//! concurrent requests cannot both start a rebuild: the second gets
//! [`ControlError::RebuildRunning`].

use annals_store::{
    Direction, EventData, EventStore, ExpectedRevision, ReadFrom, ReadStreamOutcome, StoreError, StreamId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The system stream of control events.
pub const CONTROL_STREAM: &str = "$projections";
pub const REBUILD_REQUESTED: &str = "$rebuild-requested";
pub const REBUILD_COMPLETED: &str = "$rebuild-completed";
pub const REBUILD_FAILED: &str = "$rebuild-failed";

/// The data of every control event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlEvent {
    pub projection: String,
    /// The generation the event is about.
    pub generation: u64,
    /// Why a rebuild failed (`$rebuild-failed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the control stream says of one projection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlState {
    /// The generation that serves reads (1 until a rebuild completes).
    pub generation: u64,
    /// The generation being built, if a rebuild was requested and has not ended.
    pub rebuilding: Option<Rebuilding>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebuilding {
    pub generation: u64,
    pub requested_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("projection {projection:?} is already being rebuilt (generation {generation})")]
    RebuildRunning { projection: String, generation: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state of `projection`, and the revision of the control stream it was read at.
pub async fn read_state(
    store: &dyn EventStore,
    projection: &str,
) -> Result<(ControlState, ExpectedRevision), StoreError> {
    let mut reader = ControlReader::new(projection);
    reader.refresh(store).await?;
    Ok((reader.state.clone(), reader.expected))
}

/// Follows the control stream for one projection: each `refresh` reads only the events appended
/// since the last one (the projection host refreshes a few times a second).
#[derive(Debug)]
pub struct ControlReader {
    projection: String,
    pub state: ControlState,
    /// The revision the state was read at (what a decision on it appends against).
    pub expected: ExpectedRevision,
    from: ReadFrom<annals_store::Revision>,
}

impl ControlReader {
    pub fn new(projection: &str) -> Self {
        ControlReader {
            projection: projection.to_owned(),
            state: ControlState { generation: 1, rebuilding: None },
            expected: ExpectedRevision::NoStream,
            from: ReadFrom::Start,
        }
    }

    /// Folds the events appended since the last refresh.
    pub async fn refresh(&mut self, store: &dyn EventStore) -> Result<&ControlState, StoreError> {
        let stream = control_stream();
        loop {
            let events = match store.read_stream(&stream, self.from, Direction::Forwards, 1_000).await? {
                ReadStreamOutcome::Events(events) => events,
                ReadStreamOutcome::StreamNotFound => return Ok(&self.state),
            };
            let Some(last) = events.last() else { return Ok(&self.state) };
            self.expected = ExpectedRevision::Exact(last.revision);
            self.from = ReadFrom::At(last.revision.next());
            let done = events.len() < 1_000;
            for event in &events {
                // Control events are written only by this module; one that does not decode is
                // skipped rather than stopping every projection.
                let Ok(data) = serde_json::from_slice::<ControlEvent>(&event.data) else { continue };
                if data.projection == self.projection {
                    apply(&mut self.state, &event.event_type, &data, event.recorded_at);
                }
            }
            if done {
                return Ok(&self.state);
            }
        }
    }
}

/// Asks for a rebuild of `projection`: the next generation, built beside the serving one.
pub async fn request_rebuild(store: &dyn EventStore, projection: &str) -> Result<u64, ControlError> {
    loop {
        let (state, expected) = read_state(store, projection).await?;
        if let Some(running) = state.rebuilding {
            return Err(ControlError::RebuildRunning {
                projection: projection.to_owned(),
                generation: running.generation,
            });
        }
        let generation = state.generation + 1;
        match append(store, REBUILD_REQUESTED, projection, generation, None, expected).await {
            Ok(()) => return Ok(generation),
            // Someone appended since we read — a concurrent request for this projection, or any
            // control event of another one (they share the stream): decide again on what is
            // there now, so only a rebuild that really runs is reported as running.
            Err(StoreError::WrongExpectedRevision { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Records that `generation` now serves `projection`.
pub async fn complete_rebuild(store: &dyn EventStore, projection: &str, generation: u64) -> Result<(), StoreError> {
    append(store, REBUILD_COMPLETED, projection, generation, None, ExpectedRevision::Any).await
}

/// Records that building `generation` failed; the serving generation stays.
pub async fn fail_rebuild(
    store: &dyn EventStore,
    projection: &str,
    generation: u64,
    error: String,
) -> Result<(), StoreError> {
    append(store, REBUILD_FAILED, projection, generation, Some(error), ExpectedRevision::Any).await
}

fn apply(state: &mut ControlState, event_type: &str, data: &ControlEvent, at: DateTime<Utc>) {
    match event_type {
        REBUILD_REQUESTED if data.generation > state.generation => {
            state.rebuilding = Some(Rebuilding { generation: data.generation, requested_at: at });
        }
        REBUILD_COMPLETED if data.generation >= state.generation => {
            state.generation = data.generation;
            state.rebuilding = None;
        }
        REBUILD_FAILED if state.rebuilding.as_ref().is_some_and(|r| r.generation == data.generation) => {
            state.rebuilding = None;
        }
        _ => {}
    }
}

async fn append(
    store: &dyn EventStore,
    event_type: &str,
    projection: &str,
    generation: u64,
    error: Option<String>,
    expected: ExpectedRevision,
) -> Result<(), StoreError> {
    let data = EventData::json(event_type, &ControlEvent { projection: projection.to_owned(), generation, error })?;
    store.append_to_stream(&control_stream(), expected, vec![data]).await.map(drop)
}

fn control_stream() -> StreamId {
    StreamId::new(CONTROL_STREAM).expect("`$projections` is a valid stream name")
}

#[cfg(test)]
mod tests {
    use annals_store::engine::{EmbeddedStore, EngineConfig};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn requests_at_once_start_one_rebuild_per_projection_and_never_report_a_phantom_one() {
        let tmp = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(EngineConfig::new(tmp.path())).await.unwrap();
        for round in 0..10u64 {
            // Two requests for `messages` and one for `audit`, interleaved on one stream.
            let (a, b, c) = tokio::join!(
                request_rebuild(&store, "messages"),
                request_rebuild(&store, "messages"),
                request_rebuild(&store, "audit"),
            );
            let generation = round + 2;
            assert_eq!(c.unwrap(), generation, "round {round}: the audit request is not blocked by messages'");
            let (won, lost) = match (a, b) {
                (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
                other => panic!("round {round}: exactly one messages request wins: {other:?}"),
            };
            assert_eq!(won, generation);
            // The loser is told of the rebuild that really runs.
            assert!(
                matches!(&lost, ControlError::RebuildRunning { generation: g, .. } if *g == generation),
                "round {round}: {lost:?}"
            );
            for projection in ["messages", "audit"] {
                complete_rebuild(&store, projection, generation).await.unwrap();
                let (state, _) = read_state(&store, projection).await.unwrap();
                assert_eq!((state.generation, state.rebuilding), (generation, None));
            }
        }
        store.close().await.unwrap();
    }
}
