//! The conformance suite of the [`EventStore`] contract.
//!
//! # Why this exists
//!
//! The trait doc of [`EventStore`] lists promises (atomic appends, contiguous revisions and
//! positions, typed optimistic-concurrency failures, durable idempotent retries, gap-free
//! subscriptions, ...). Every backend — the embedded engine, KurrentDB — must keep all of them, and
//! the rest of annals (projectors, the query API) relies on them without knowing which backend runs.
//! Each promise is therefore checked here once, by a backend-agnostic async function, and every
//! backend runs every check through [`event_store_test_suite!`](crate::event_store_test_suite):
//!
//! ```ignore
//! // in a backend's integration tests; the crate needs tokio (macros, rt-multi-thread)
//! async fn fresh_store() -> (MyStore, TempDir) { /* a fresh, empty store + what keeps it alive */ }
//! annals_store::event_store_test_suite!(fresh_store);
//! // or, for a backend with other limits:
//! annals_store::event_store_test_suite!(fresh_store, limits = Limits { .. });
//! ```
//!
//! The factory is an async function (or closure) returning `(store, guard)`: a fresh, empty store,
//! and whatever must outlive it (a temporary directory, a container); the guard is dropped after
//! the store. The suite is compiled into the library so other crates can run it against their
//! backends; it therefore uses no dev-dependency and fails with plain panics naming the promise
//! that was broken. Every wait on the store is bounded by a timeout, so a bug fails instead of
//! hanging.
//!
//! Cases by topic: `append`, `idempotency`, `read`, `after` (reads past a position, `distance`),
//! `subscribe`, `concurrency`, `close` (re-exported here).
//!
//! # Capabilities
//!
//! The suite reads [`EventStore::capabilities`] the way it reads [`Limits`]: a case whose promise
//! a capability turns off checks the weaker promise instead (`distance` answers `None` without
//! `counts_distance`; an id in another stream is a new event without `cross_stream_id_conflicts`;
//! a read past the head is not asked without `reads_from_any_position`). No case restarts the
//! store, so `durable_idempotency` changes nothing here: a window (KurrentDB's) covers each case's
//! retries; durability across restarts is each backend's own test (`conformance_embedded`). The
//! cases name positions as a dense log has them (0, 1, 2, …); a backend without
//! `dense_positions` runs every case through [`DenseView`], which renumbers its events in log
//! order (checking that its positions strictly increase) and translates each position in and
//! out, so the same cases check order, atomicity and content there too (`store/tests/sparse.rs`
//! runs the whole suite on a sparse face of the embedded engine).

mod after;
mod append;
mod close;
mod concurrency;
mod dense_view;
mod idempotency;
mod macros;
mod paced;
mod pages;
mod read;
mod subscribe;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use crate::engine::EngineConfig;
use crate::{
    AppendResult, CurrentRevision, Direction, EventData, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom,
    ReadStreamOutcome, RecordedEvent, Revision, StoreError, StreamId,
};

pub use after::{distance_counts_the_events_between, reads_after_a_position_exclude_it};
pub use append::{
    append_and_read_back, batch_too_large_is_rejected, empty_batch_is_rejected, event_too_large_is_rejected,
    expected_revision_any, expected_revision_exact, expected_revision_no_stream, expected_revision_stream_exists,
    multi_event_append_is_one_contiguous_block, revisions_and_positions_are_contiguous,
};
pub use close::close_ends_subscriptions_and_later_calls;
pub use concurrency::{
    appends_are_atomic_for_concurrent_readers, concurrent_appenders_to_many_streams_get_contiguous_positions,
    concurrent_exact_appenders_one_winner_per_revision,
};
#[doc(hidden)]
pub use dense_view::DenseView;
pub use idempotency::{
    duplicate_id_in_batch_is_rejected, idempotent_retry_with_any, idempotent_retry_with_exact_after_later_appends,
    idempotent_retry_with_no_stream_after_later_appends, idempotent_retry_with_stream_exists,
    ids_are_scoped_by_namespace, ids_stored_in_another_stream_are_an_idempotency_conflict,
    large_batches_retry_and_conflict_like_small_ones, partial_overlap_is_an_idempotency_conflict,
};
pub use paced::paced_subscribers_receive_every_event_in_order;
pub use pages::{
    read_all_pages_continue_to_every_event_exactly_once, read_stream_bounded_in_bytes_continues_exactly,
    subscriptions_over_large_events_deliver_each_once,
};
pub use read::{
    head_tracks_the_last_position, read_all_forwards_and_backwards, read_all_with_filters,
    read_stream_forwards_backwards_and_from_revision, read_stream_of_missing_stream_is_not_found,
    recorded_at_never_decreases,
};
pub use subscribe::{
    catch_up_to_live_switch_has_no_gap_and_no_duplicate, slow_subscriber_receives_every_event_in_order,
    subscribe_to_all_after_position, subscribe_to_all_from_end, subscribe_to_all_from_start_catches_up_then_goes_live,
    subscribe_to_all_on_empty_store, subscribe_to_all_with_filter, subscribe_to_stream_before_it_exists,
    subscribe_to_stream_from_start_after_and_end,
};

/// The limits the backend under test enforces; the suite checks the typed errors at these limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted event (type + data + metadata), in bytes.
    pub max_event_size: usize,
    /// Most events in one append.
    pub max_batch_events: usize,
    /// Most bytes (sum of event sizes) in one append.
    pub max_batch_bytes: usize,
}

impl Limits {
    /// The limits of an embedded engine opened with `config`.
    pub fn of_engine(config: &EngineConfig) -> Self {
        Limits {
            max_event_size: config.max_event_size,
            max_batch_events: config.max_batch_events,
            max_batch_bytes: config.max_batch_bytes,
        }
    }
}

impl Default for Limits {
    /// The embedded engine's default limits.
    fn default() -> Self {
        Limits::of_engine(&EngineConfig::new(""))
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The longest the suite waits for any one thing (an append, a read, a subscription message).
const WAIT: Duration = Duration::from_secs(30);
/// `max_count` for "read everything" (every case stays far below it).
const ALL: usize = 100_000;

/// `fut`, or a panic naming `what` if it takes longer than `limit`.
async fn within_for<F: Future>(limit: Duration, what: impl Display, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

async fn within<F: Future>(what: impl Display, fut: F) -> F::Output {
    within_for(WAIT, what, fut).await
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream name")
}

/// A small JSON event `{"n": n}` with a fresh id.
fn event(event_type: &str, n: u64) -> EventData {
    EventData::json(event_type, &serde_json::json!({ "n": n })).expect("valid event")
}

/// `count` small events numbered from `first`.
fn events(event_type: &str, first: u64, count: u64) -> Vec<EventData> {
    (first..first + count).map(|n| event(event_type, n)).collect()
}

/// An event whose `payload_len` is exactly `size` bytes (data is a JSON string).
fn event_of_size(event_type: &str, size: usize) -> EventData {
    let overhead = event_type.len() + 2;
    assert!(size >= overhead, "an event of {size} bytes cannot have type {event_type:?}");
    let mut data = Vec::with_capacity(size - event_type.len());
    data.push(b'"');
    data.resize(size - event_type.len() - 1, b'a');
    data.push(b'"');
    let e = EventData::from_json_bytes(event_type, Bytes::from(data)).expect("valid event");
    assert_eq!(e.payload_len(), size);
    e
}

fn ids(events: &[EventData]) -> Vec<Uuid> {
    events.iter().map(EventData::id).collect()
}

fn expected_result(stream: &StreamId, first_revision: u64, first_position: u64, count: u64) -> AppendResult {
    AppendResult {
        stream: stream.clone(),
        first_revision: Revision(first_revision),
        last_revision: Revision(first_revision + count - 1),
        first_position: Position(first_position),
        last_position: Position(first_position + count - 1),
    }
}

async fn try_append<S: EventStore>(
    store: &S,
    stream: &StreamId,
    expected: ExpectedRevision,
    events: &[EventData],
) -> Result<AppendResult, StoreError> {
    within(
        format_args!("append of {} events to {stream} ({expected})", events.len()),
        store.append_to_stream(stream, expected, events.to_vec()),
    )
    .await
}

async fn append<S: EventStore>(
    store: &S,
    stream: &StreamId,
    expected: ExpectedRevision,
    events: &[EventData],
) -> AppendResult {
    match try_append(store, stream, expected, events).await {
        Ok(result) => {
            let n = events.len() as u64;
            assert_eq!(result.stream, *stream, "AppendResult names another stream");
            assert_eq!(
                result.last_revision.0 - result.first_revision.0 + 1,
                n,
                "AppendResult {result:?} does not span the {n} revisions of the batch"
            );
            if store.capabilities().dense_positions.is_some() {
                assert_eq!(
                    result.last_position.0 - result.first_position.0 + 1,
                    n,
                    "AppendResult {result:?} does not span {n} contiguous positions"
                );
            } else {
                assert!(result.last_position >= result.first_position, "AppendResult {result:?}: positions go back");
            }
            result
        }
        Err(e) => panic!("append of {} events to {stream} ({expected}) failed: {e:?}", events.len()),
    }
}

async fn read_stream<S: EventStore>(
    store: &S,
    stream: &StreamId,
    from: ReadFrom<Revision>,
    direction: Direction,
    max_count: usize,
) -> ReadStreamOutcome {
    let what = format!("read_stream({stream}, {from:?}, {direction:?}, {max_count})");
    match within(&what, store.read_stream(stream, from, direction, max_count)).await {
        Ok(outcome) => outcome,
        Err(e) => panic!("{what} failed: {e:?}"),
    }
}

/// The events of an existing stream (panics on `StreamNotFound`).
async fn stream_events<S: EventStore>(
    store: &S,
    stream: &StreamId,
    from: ReadFrom<Revision>,
    direction: Direction,
    max_count: usize,
) -> Vec<RecordedEvent> {
    match read_stream(store, stream, from, direction, max_count).await {
        ReadStreamOutcome::Events(events) => events,
        ReadStreamOutcome::StreamNotFound => {
            panic!("read_stream({stream}, {from:?}, {direction:?}, {max_count}): StreamNotFound for an existing stream")
        }
    }
}

async fn read_all<S: EventStore>(
    store: &S,
    from: ReadFrom<Position>,
    direction: Direction,
    max_count: usize,
    filter: &EventFilter,
) -> Vec<RecordedEvent> {
    let what = format!("read_all({from:?}, {direction:?}, {max_count}, {filter:?})");
    match within(&what, store.read_all(from, direction, max_count, filter)).await {
        Ok(events) => events,
        Err(e) => panic!("{what} failed: {e:?}"),
    }
}

async fn whole_log<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    read_all(store, ReadFrom::Start, Direction::Forwards, ALL, &EventFilter::all()).await
}

async fn head<S: EventStore>(store: &S) -> Option<Position> {
    match within("head()", store.head()).await {
        Ok(head) => head,
        Err(e) => panic!("head() failed: {e:?}"),
    }
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position.0).collect()
}

fn revisions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.revision.0).collect()
}

/// Checks that `recorded` is `sent` as stored at `stream`/`revision`/`position`.
fn assert_recorded(recorded: &RecordedEvent, sent: &EventData, stream: &StreamId, revision: u64, position: u64) {
    let ctx = format!("event {} ({stream}@{revision}, position {position})", sent.id());
    assert_eq!(recorded.id, sent.id(), "{ctx}: wrong id");
    assert_eq!(recorded.stream, *stream, "{ctx}: wrong stream");
    assert_eq!(recorded.revision, Revision(revision), "{ctx}: wrong revision");
    assert_eq!(recorded.position, Position(position), "{ctx}: wrong position");
    assert_eq!(recorded.event_type, sent.event_type(), "{ctx}: wrong event type");
    assert_eq!(recorded.data, *sent.data(), "{ctx}: wrong data");
    assert_eq!(recorded.metadata, *sent.metadata(), "{ctx}: wrong metadata");
}

/// What the suite appended, by position: the expected content of the log.
#[derive(Default)]
struct Ledger {
    by_position: BTreeMap<u64, (StreamId, u64, EventData)>,
}

impl Ledger {
    /// Records the events of a successful append at the places its result gives them.
    fn record(&mut self, result: &AppendResult, events: &[EventData]) {
        for (i, e) in events.iter().enumerate() {
            let position = result.first_position.0 + i as u64;
            let revision = result.first_revision.0 + i as u64;
            let previous = self.by_position.insert(position, (result.stream.clone(), revision, e.clone()));
            assert!(previous.is_none(), "two appends were given position {position}: {result:?}");
        }
    }

    fn len(&self) -> u64 {
        self.by_position.len() as u64
    }

    /// Positions of the recorded events that `keep` selects, ascending.
    fn positions_where(&self, keep: impl Fn(&StreamId, &EventData) -> bool) -> Vec<u64> {
        self.by_position.iter().filter(|(_, (s, _, e))| keep(s, e)).map(|(p, _)| *p).collect()
    }

    /// Checks that `actual` are exactly the recorded events at `positions`, in that order.
    fn check(&self, actual: &[RecordedEvent], positions_expected: &[u64], what: &str) {
        assert_eq!(positions(actual), positions_expected, "{what}: wrong positions");
        for (recorded, p) in actual.iter().zip(positions_expected) {
            let (s, rev, sent) = self.by_position.get(p).unwrap_or_else(|| panic!("{what}: nothing appended at {p}"));
            assert_recorded(recorded, sent, s, *rev, *p);
        }
    }
}

fn assert_wrong_expected(
    result: Result<AppendResult, StoreError>,
    stream: &StreamId,
    expected: ExpectedRevision,
    actual: CurrentRevision,
) {
    match result {
        Err(StoreError::WrongExpectedRevision { stream: s, expected: e, actual: a }) => {
            assert_eq!(s, *stream, "WrongExpectedRevision names the wrong stream");
            assert_eq!(e, expected, "WrongExpectedRevision reports the wrong expected revision");
            assert_eq!(a, actual, "WrongExpectedRevision on {stream} ({expected}) reports the wrong actual revision");
        }
        other => panic!(
            "append to {stream} with {expected}: expected WrongExpectedRevision {{ actual: {actual:?} }}, got {other:?}"
        ),
    }
}

/// Checks an `IdempotencyConflict` naming one of `stored` (the batch's ids that were stored) and
/// one of `streams`.
fn assert_idempotency_conflict(
    result: Result<AppendResult, StoreError>,
    streams: &[&StreamId],
    stored: &[Uuid],
    what: &str,
) {
    match result {
        Err(StoreError::IdempotencyConflict { stream, event_id, .. }) => {
            assert!(
                streams.contains(&&stream),
                "{what}: IdempotencyConflict names stream {stream}, expected one of {streams:?}"
            );
            assert!(
                stored.contains(&event_id),
                "{what}: IdempotencyConflict names event {event_id}, which is not one of the stored ids {stored:?}"
            );
        }
        other => panic!("{what}: expected IdempotencyConflict, got {other:?}"),
    }
}

/// Checks that the log is still exactly `ledger` (a failed append wrote nothing).
async fn assert_log_is<S: EventStore>(store: &S, ledger: &Ledger, what: &str) {
    let expected_head = ledger.len().checked_sub(1).map(Position);
    assert_eq!(head(store).await, expected_head, "{what}: head moved");
    let all: Vec<u64> = ledger.by_position.keys().copied().collect();
    ledger.check(&whole_log(store).await, &all, what);
}
