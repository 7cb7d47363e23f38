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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use uuid::Uuid;

use crate::engine::EngineConfig;
use crate::{
    AppendResult, CurrentRevision, Direction, EventData, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom,
    ReadStreamOutcome, RecordedEvent, Revision, StoreError, StreamId, SubscribeFrom, Subscription, SubscriptionMessage,
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

/// Stamps out one `#[tokio::test]` per conformance case for a backend, in a module named
/// `event_store_conformance`. `$factory` is an async function (or closure) taking no argument and
/// returning `(store, guard)`: a fresh, empty store and a value kept alive until the store is
/// dropped. The calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! event_store_test_suite {
    ($factory:expr) => {
        $crate::event_store_test_suite!($factory, limits = $crate::conformance::Limits::default());
    };
    ($factory:expr, limits = $limits:expr) => {
        #[allow(clippy::redundant_closure_call)]
        mod event_store_conformance {
            #[allow(unused_imports)]
            use super::*;

            $crate::__event_store_test_cases!($factory;
                append_and_read_back,
                multi_event_append_is_one_contiguous_block,
                appends_are_atomic_for_concurrent_readers,
                revisions_and_positions_are_contiguous,
                expected_revision_any,
                expected_revision_no_stream,
                expected_revision_stream_exists,
                expected_revision_exact,
                idempotent_retry_with_any,
                idempotent_retry_with_stream_exists,
                idempotent_retry_with_no_stream_after_later_appends,
                idempotent_retry_with_exact_after_later_appends,
                partial_overlap_is_an_idempotency_conflict,
                ids_stored_in_another_stream_are_an_idempotency_conflict,
                duplicate_id_in_batch_is_rejected,
                empty_batch_is_rejected,
                read_stream_forwards_backwards_and_from_revision,
                read_stream_of_missing_stream_is_not_found,
                read_all_forwards_and_backwards,
                read_all_with_filters,
                recorded_at_never_decreases,
                head_tracks_the_last_position,
                subscribe_to_all_from_start_catches_up_then_goes_live,
                subscribe_to_all_on_empty_store,
                subscribe_to_all_after_position,
                subscribe_to_all_from_end,
                subscribe_to_all_with_filter,
                catch_up_to_live_switch_has_no_gap_and_no_duplicate,
                subscribe_to_stream_before_it_exists,
                subscribe_to_stream_from_start_after_and_end,
                slow_subscriber_receives_every_event_in_order,
                concurrent_exact_appenders_one_winner_per_revision,
                concurrent_appenders_to_many_streams_get_contiguous_positions,
            );
            $crate::__event_store_test_cases!($factory, limits = $limits;
                event_too_large_is_rejected,
                batch_too_large_is_rejected,
            );
        }
    };
}

/// Implementation detail of [`event_store_test_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __event_store_test_cases {
    ($factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, guard) = ($factory)().await;
                $crate::conformance::$case(&store).await;
                drop(store);
                drop(guard);
            }
        )*
    };
    ($factory:expr, limits = $limits:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, guard) = ($factory)().await;
                let limits: $crate::conformance::Limits = $limits;
                $crate::conformance::$case(&store, &limits).await;
                drop(store);
                drop(guard);
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The longest the suite waits for any one thing (an append, a read, a subscription message).
const WAIT: Duration = Duration::from_secs(30);
/// How long a subscription must stay silent to count as "nothing more is coming".
const QUIET: Duration = Duration::from_millis(300);
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
            assert_eq!(
                result.last_position.0 - result.first_position.0 + 1,
                n,
                "AppendResult {result:?} does not span {n} contiguous positions"
            );
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

// ----- subscriptions -----

async fn next_message(sub: &mut Subscription, what: &str) -> SubscriptionMessage {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Err(_) => panic!("{what}: no subscription message within {WAIT:?}"),
        Ok(Err(e)) => panic!("{what}: subscription failed: {e:?}"),
        Ok(Ok(message)) => message,
    }
}

/// Reads events until `CaughtUp`, which must come within `WAIT`.
async fn read_until_caught_up(sub: &mut Subscription, what: &str) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    loop {
        match next_message(sub, what).await {
            SubscriptionMessage::Event(e) => events.push(e),
            SubscriptionMessage::CaughtUp => return events,
        }
    }
}

/// Reads exactly `n` events; a `CaughtUp` among them fails (it was sent already).
async fn read_live_events(sub: &mut Subscription, n: usize, what: &str) -> Vec<RecordedEvent> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        match next_message(sub, what).await {
            SubscriptionMessage::Event(e) => events.push(e),
            SubscriptionMessage::CaughtUp => {
                panic!("{what}: a second CaughtUp after {} live events (CaughtUp is sent once)", events.len())
            }
        }
    }
    events
}

/// Reads exactly `n` events and every `CaughtUp` that comes with them, then waits for the
/// `CaughtUp` if it did not come yet; returns the events and, for each `CaughtUp`, how many events
/// preceded it.
async fn read_events_and_caught_up(sub: &mut Subscription, n: usize, what: &str) -> (Vec<RecordedEvent>, Vec<usize>) {
    let mut events = Vec::with_capacity(n);
    let mut caught_up = Vec::new();
    while events.len() < n || caught_up.is_empty() {
        match next_message(sub, what).await {
            SubscriptionMessage::Event(e) => events.push(e),
            SubscriptionMessage::CaughtUp => caught_up.push(events.len()),
        }
    }
    (events, caught_up)
}

/// Checks that nothing more arrives for a while.
async fn assert_quiet(sub: &mut Subscription, what: &str) {
    if let Ok(message) = tokio::time::timeout(QUIET, sub.next()).await {
        panic!("{what}: expected no further message, got {message:?}");
    }
}

async fn subscribe_all<S: EventStore>(store: &S, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
    let what = format!("subscribe_to_all({from:?}, {filter:?})");
    match within(&what, store.subscribe_to_all(from, filter)).await {
        Ok(sub) => sub,
        Err(e) => panic!("{what} failed: {e:?}"),
    }
}

async fn subscribe_stream<S: EventStore>(store: &S, stream: &StreamId, from: SubscribeFrom<Revision>) -> Subscription {
    let what = format!("subscribe_to_stream({stream}, {from:?})");
    match within(&what, store.subscribe_to_stream(stream, from)).await {
        Ok(sub) => sub,
        Err(e) => panic!("{what} failed: {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Appends, revisions, positions
// ---------------------------------------------------------------------------------------------

/// One event appended to a new stream reads back field for field, from the stream and from `$all`.
pub async fn append_and_read_back<S: EventStore>(store: &S) {
    let s = stream("order-1");
    let placed = EventData::json("OrderPlaced", &serde_json::json!({ "sku": "abc", "qty": 2 }))
        .and_then(|e| e.with_metadata(&serde_json::json!({ "user": "u1" })))
        .expect("valid event");
    let result = append(store, &s, ExpectedRevision::Any, std::slice::from_ref(&placed)).await;
    assert_eq!(result, expected_result(&s, 0, 0, 1), "first event of the store");

    let read = stream_events(store, &s, ReadFrom::Start, Direction::Forwards, 10).await;
    assert_eq!(read.len(), 1, "read_stream after one append: {read:?}");
    assert_recorded(&read[0], &placed, &s, 0, 0);
    assert!(!read[0].metadata.is_empty(), "metadata was lost");

    let shipped = event("OrderShipped", 1);
    assert!(shipped.metadata().is_empty());
    let result = append(store, &s, ExpectedRevision::Any, std::slice::from_ref(&shipped)).await;
    assert_eq!(result, expected_result(&s, 1, 1, 1), "second event of the stream");

    let all = whole_log(store).await;
    assert_eq!(all.len(), 2, "read_all: {all:?}");
    assert_recorded(&all[0], &placed, &s, 0, 0);
    assert_recorded(&all[1], &shipped, &s, 1, 1);
    assert!(all[1].metadata.is_empty(), "an event without metadata must read back with empty metadata");
    assert_eq!(head(store).await, Some(Position(1)));
}

/// A multi-event append takes contiguous revisions and positions, and the next append (to this or
/// another stream) continues right after it.
pub async fn multi_event_append_is_one_contiguous_block<S: EventStore>(store: &S) {
    let (s1, s2) = (stream("block-1"), stream("block-2"));
    let mut ledger = Ledger::default();

    let a = events("A", 0, 5);
    let r = append(store, &s1, ExpectedRevision::NoStream, &a).await;
    assert_eq!(r, expected_result(&s1, 0, 0, 5));
    ledger.record(&r, &a);

    let b = events("B", 0, 3);
    let r = append(store, &s2, ExpectedRevision::Any, &b).await;
    assert_eq!(r, expected_result(&s2, 0, 5, 3));
    ledger.record(&r, &b);

    let c = events("C", 0, 2);
    let r = append(store, &s1, ExpectedRevision::Exact(Revision(4)), &c).await;
    assert_eq!(r, expected_result(&s1, 5, 8, 2));
    ledger.record(&r, &c);

    ledger.check(&whole_log(store).await, &(0..10).collect::<Vec<_>>(), "read_all");
    let s1_events = stream_events(store, &s1, ReadFrom::Start, Direction::Forwards, ALL).await;
    ledger.check(&s1_events, &[0, 1, 2, 3, 4, 8, 9], "read_stream(block-1)");
    let s2_events = stream_events(store, &s2, ReadFrom::Start, Direction::Forwards, ALL).await;
    ledger.check(&s2_events, &[5, 6, 7], "read_stream(block-2)");
}

/// Readers running while multi-event appends commit see each append whole or not at all, and
/// always a gap-free prefix of the log: a stream whose first append is not visible yet is
/// `StreamNotFound` (not an empty page), and reading a stream backwards from `End` starts at its
/// last visible event.
pub async fn appends_are_atomic_for_concurrent_readers<S: EventStore>(store: &S) {
    const APPENDS: u64 = 120;
    const BATCH: u64 = 25;
    const STREAMS: u64 = 12;
    let name = |i: u64| format!("atomic-{}", i % STREAMS);
    let done = AtomicBool::new(false);

    let writer = async {
        for i in 0..APPENDS {
            append(store, &stream(&name(i)), ExpectedRevision::Any, &events("Atomic", i * 100, BATCH)).await;
            tokio::task::yield_now().await;
        }
        done.store(true, Ordering::SeqCst);
    };

    let reader = async {
        let mut reads = 0u64;
        loop {
            let finished = done.load(Ordering::SeqCst);
            let log = whole_log(store).await;
            assert_eq!(
                positions(&log),
                (0..log.len() as u64).collect::<Vec<_>>(),
                "read_all during appends must be a gap-free prefix of the log"
            );
            assert_eq!(log.len() as u64 % BATCH, 0, "read_all saw part of an append: {} events", log.len());
            let mut per_stream: HashMap<&str, u64> = HashMap::new();
            for e in &log {
                *per_stream.entry(e.stream.as_str()).or_default() += 1;
            }
            for (s, n) in &per_stream {
                assert_eq!(*n % BATCH, 0, "read_all saw {n} events of {s}, not whole appends of {BATCH}");
            }
            for k in 0..STREAMS {
                let s = stream(&name(k));
                match read_stream(store, &s, ReadFrom::Start, Direction::Forwards, ALL).await {
                    ReadStreamOutcome::StreamNotFound => {}
                    ReadStreamOutcome::Events(events) => {
                        assert!(
                            !events.is_empty(),
                            "read_stream({s}) during its first append returned an empty page; a stream without \
                             visible events is StreamNotFound"
                        );
                        assert_eq!(events.len() as u64 % BATCH, 0, "read_stream({s}) saw part of an append");
                    }
                }
                match read_stream(store, &s, ReadFrom::End, Direction::Backwards, 1).await {
                    ReadStreamOutcome::StreamNotFound => {}
                    ReadStreamOutcome::Events(events) => {
                        assert_eq!(
                            events.len(),
                            1,
                            "read_stream({s}, End, Backwards, 1) during appends must return the last visible event"
                        );
                        assert_eq!(
                            events[0].revision.0 % BATCH,
                            BATCH - 1,
                            "read_stream({s}, End, Backwards, 1) returned revision {} inside an append",
                            events[0].revision
                        );
                    }
                }
            }
            reads += 1;
            if finished {
                assert_eq!(log.len() as u64, APPENDS * BATCH, "events missing after every append returned");
                return reads;
            }
            tokio::task::yield_now().await;
        }
    };

    let ((), reads) = within_for(WAIT * 4, "atomicity case", async { futures::join!(writer, reader) }).await;
    assert!(reads > 1, "the reader never ran during the appends");
}

/// Many appends of various sizes over a few streams: positions are exactly 0..n in commit order,
/// each stream's revisions exactly 0..k, and every `AppendResult` matches what reads return.
pub async fn revisions_and_positions_are_contiguous<S: EventStore>(store: &S) {
    let streams = [stream("contig-a"), stream("contig-b"), stream("contig-c")];
    let mut ledger = Ledger::default();
    let mut next_revision = [0u64; 3];
    for i in 0..30u64 {
        let k = (i % 3) as usize;
        let batch = events("Contig", i * 10, 1 + i % 4);
        let r = append(store, &streams[k], ExpectedRevision::Any, &batch).await;
        assert_eq!(r, expected_result(&streams[k], next_revision[k], ledger.len(), batch.len() as u64), "append {i}");
        next_revision[k] += batch.len() as u64;
        ledger.record(&r, &batch);
    }
    let all: Vec<u64> = (0..ledger.len()).collect();
    ledger.check(&whole_log(store).await, &all, "read_all");
    for (k, s) in streams.iter().enumerate() {
        let read = stream_events(store, s, ReadFrom::Start, Direction::Forwards, ALL).await;
        assert_eq!(revisions(&read), (0..next_revision[k]).collect::<Vec<_>>(), "revisions of {s}");
        ledger.check(&read, &ledger.positions_where(|st, _| st == s), &format!("read_stream({s})"));
    }
    assert_eq!(head(store).await, Some(Position(ledger.len() - 1)));
}

// ---------------------------------------------------------------------------------------------
// Expected revisions
// ---------------------------------------------------------------------------------------------

/// `Any` creates a missing stream and appends to an existing one.
pub async fn expected_revision_any<S: EventStore>(store: &S) {
    let s = stream("any-1");
    let a = events("A", 0, 2);
    assert_eq!(append(store, &s, ExpectedRevision::Any, &a).await, expected_result(&s, 0, 0, 2));
    let b = events("B", 0, 1);
    assert_eq!(append(store, &s, ExpectedRevision::Any, &b).await, expected_result(&s, 2, 2, 1));
    assert_eq!(revisions(&stream_events(store, &s, ReadFrom::Start, Direction::Forwards, ALL).await), [0, 1, 2]);
}

/// `NoStream` creates a missing stream; on an existing one it fails with the actual revision and
/// writes nothing.
pub async fn expected_revision_no_stream<S: EventStore>(store: &S) {
    let (s, other) = (stream("nostream-1"), stream("nostream-other"));
    let mut ledger = Ledger::default();
    let o = events("O", 0, 1);
    ledger.record(&append(store, &other, ExpectedRevision::Any, &o).await, &o);

    let a = events("A", 0, 1);
    let r = append(store, &s, ExpectedRevision::NoStream, &a).await;
    assert_eq!(r, expected_result(&s, 0, 1, 1), "NoStream on a missing stream (other streams exist)");
    ledger.record(&r, &a);

    let result = try_append(store, &s, ExpectedRevision::NoStream, &events("A", 1, 2)).await;
    assert_wrong_expected(result, &s, ExpectedRevision::NoStream, CurrentRevision::Current(Revision(0)));
    assert_log_is(store, &ledger, "after a failed NoStream append").await;

    let b = events("B", 0, 2);
    ledger.record(&append(store, &s, ExpectedRevision::Any, &b).await, &b);
    let result = try_append(store, &s, ExpectedRevision::NoStream, &events("A", 3, 1)).await;
    assert_wrong_expected(result, &s, ExpectedRevision::NoStream, CurrentRevision::Current(Revision(2)));
    assert_log_is(store, &ledger, "after a second failed NoStream append").await;
}

/// `StreamExists` fails on a missing stream (actual `NoStream`, nothing created) and appends to an
/// existing one.
pub async fn expected_revision_stream_exists<S: EventStore>(store: &S) {
    let (s, other) = (stream("exists-1"), stream("exists-other"));
    let result = try_append(store, &s, ExpectedRevision::StreamExists, &events("A", 0, 1)).await;
    assert_wrong_expected(result, &s, ExpectedRevision::StreamExists, CurrentRevision::NoStream);
    assert_eq!(head(store).await, None, "a failed append on an empty store wrote something");
    assert_eq!(
        read_stream(store, &s, ReadFrom::Start, Direction::Forwards, 10).await,
        ReadStreamOutcome::StreamNotFound,
        "a failed StreamExists append created the stream"
    );

    let mut ledger = Ledger::default();
    let o = events("O", 0, 2);
    ledger.record(&append(store, &other, ExpectedRevision::Any, &o).await, &o);
    let result = try_append(store, &s, ExpectedRevision::StreamExists, &events("A", 1, 1)).await;
    assert_wrong_expected(result, &s, ExpectedRevision::StreamExists, CurrentRevision::NoStream);
    assert_log_is(store, &ledger, "after a failed StreamExists append").await;

    let a = events("A", 2, 1);
    let r = append(store, &s, ExpectedRevision::Any, &a).await;
    ledger.record(&r, &a);
    let b = events("B", 0, 3);
    let r = append(store, &s, ExpectedRevision::StreamExists, &b).await;
    assert_eq!(r, expected_result(&s, 1, 3, 3), "StreamExists on an existing stream");
    ledger.record(&r, &b);
    assert_log_is(store, &ledger, "after StreamExists appends").await;
}

/// `Exact(r)` appends when the stream's last revision is `r` and fails otherwise (too low, too
/// high, missing stream) with the actual revision, writing nothing.
pub async fn expected_revision_exact<S: EventStore>(store: &S) {
    let s = stream("exact-1");
    let result = try_append(store, &s, ExpectedRevision::Exact(Revision(0)), &events("A", 0, 1)).await;
    assert_wrong_expected(result, &s, ExpectedRevision::Exact(Revision(0)), CurrentRevision::NoStream);
    assert_eq!(head(store).await, None, "a failed Exact append on an empty store wrote something");

    let mut ledger = Ledger::default();
    let a = events("A", 1, 3);
    ledger.record(&append(store, &s, ExpectedRevision::NoStream, &a).await, &a);
    let b = events("B", 0, 1);
    let r = append(store, &s, ExpectedRevision::Exact(Revision(2)), &b).await;
    assert_eq!(r, expected_result(&s, 3, 3, 1), "Exact(2) on a stream at revision 2");
    ledger.record(&r, &b);

    for wrong in [2, 0, 4, 10] {
        let expected = ExpectedRevision::Exact(Revision(wrong));
        let result = try_append(store, &s, expected, &events("C", wrong, 2)).await;
        assert_wrong_expected(result, &s, expected, CurrentRevision::Current(Revision(3)));
        assert_log_is(store, &ledger, &format!("after a failed {expected} append")).await;
    }

    let c = events("C", 100, 2);
    let r = append(store, &s, ExpectedRevision::Exact(Revision(3)), &c).await;
    assert_eq!(r, expected_result(&s, 4, 4, 2), "Exact(3) on a stream at revision 3");
    ledger.record(&r, &c);
    assert_log_is(store, &ledger, "after Exact appends").await;
}

// ---------------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------------

/// Sends `batch` again with `expected` (twice) and checks it returns `original` and writes nothing.
async fn assert_retry_returns_original<S: EventStore>(
    store: &S,
    s: &StreamId,
    expected: ExpectedRevision,
    batch: &[EventData],
    original: &AppendResult,
    ledger: &Ledger,
) {
    for attempt in 1..=2 {
        let what = format!("retry {attempt} of an append to {s} with {expected}");
        match try_append(store, s, expected, batch).await {
            Ok(result) => assert_eq!(result, *original, "{what}: must return the original AppendResult"),
            Err(e) => panic!("{what}: must return the original AppendResult, failed with {e:?}"),
        }
        assert_log_is(store, ledger, &format!("after {what}")).await;
    }
}

/// An append with `Any` retried (after other appends to this and other streams) returns the
/// original result and writes nothing.
pub async fn idempotent_retry_with_any<S: EventStore>(store: &S) {
    let (s, other) = (stream("retry-any"), stream("retry-any-other"));
    let mut ledger = Ledger::default();
    let first = events("First", 0, 1);
    ledger.record(&append(store, &s, ExpectedRevision::Any, &first).await, &first);
    let o = events("O", 0, 2);
    ledger.record(&append(store, &other, ExpectedRevision::Any, &o).await, &o);

    let batch = events("Retried", 0, 3);
    let original = append(store, &s, ExpectedRevision::Any, &batch).await;
    assert_eq!(original, expected_result(&s, 1, 3, 3));
    ledger.record(&original, &batch);
    assert_retry_returns_original(store, &s, ExpectedRevision::Any, &batch, &original, &ledger).await;

    let later = events("Later", 0, 2);
    ledger.record(&append(store, &s, ExpectedRevision::Any, &later).await, &later);
    let o = events("O", 2, 1);
    ledger.record(&append(store, &other, ExpectedRevision::Any, &o).await, &o);
    assert_retry_returns_original(store, &s, ExpectedRevision::Any, &batch, &original, &ledger).await;

    // With `Any` the stored ids may be at any contiguous revisions: batches first appended with
    // `NoStream` (revisions from 0) or `Exact` retry with `Any` too.
    let (created_in, created) = (stream("retry-any-created"), events("Created", 0, 2));
    let original = append(store, &created_in, ExpectedRevision::NoStream, &created).await;
    ledger.record(&original, &created);
    assert_retry_returns_original(store, &created_in, ExpectedRevision::Any, &created, &original, &ledger).await;
    let exact = events("Exact", 0, 2);
    let original = append(store, &created_in, ExpectedRevision::Exact(Revision(1)), &exact).await;
    ledger.record(&original, &exact);
    assert_retry_returns_original(store, &created_in, ExpectedRevision::Any, &exact, &original, &ledger).await;
}

/// An append with `StreamExists` retried (after later appends) returns the original result.
pub async fn idempotent_retry_with_stream_exists<S: EventStore>(store: &S) {
    let s = stream("retry-exists");
    let mut ledger = Ledger::default();
    let first = events("First", 0, 2);
    ledger.record(&append(store, &s, ExpectedRevision::NoStream, &first).await, &first);
    let batch = events("Retried", 0, 2);
    let original = append(store, &s, ExpectedRevision::StreamExists, &batch).await;
    assert_eq!(original, expected_result(&s, 2, 2, 2));
    ledger.record(&original, &batch);
    assert_retry_returns_original(store, &s, ExpectedRevision::StreamExists, &batch, &original, &ledger).await;

    let later = events("Later", 0, 3);
    ledger.record(&append(store, &s, ExpectedRevision::StreamExists, &later).await, &later);
    assert_retry_returns_original(store, &s, ExpectedRevision::StreamExists, &batch, &original, &ledger).await;

    // For `StreamExists` (and `Any`) the stored ids may be at any contiguous revisions — the
    // contract says so explicitly — including the first ones of a stream created by `NoStream`.
    let (created_in, created) = (stream("retry-exists-created"), events("Created", 0, 2));
    let original = append(store, &created_in, ExpectedRevision::NoStream, &created).await;
    ledger.record(&original, &created);
    assert_retry_returns_original(store, &created_in, ExpectedRevision::StreamExists, &created, &original, &ledger)
        .await;
}

/// An append with `NoStream` retried after later appends to the same stream (so `NoStream` no
/// longer holds) returns the original result, not `WrongExpectedRevision`.
pub async fn idempotent_retry_with_no_stream_after_later_appends<S: EventStore>(store: &S) {
    let (s, other) = (stream("retry-nostream"), stream("retry-nostream-other"));
    let mut ledger = Ledger::default();
    let o = events("O", 0, 1);
    ledger.record(&append(store, &other, ExpectedRevision::Any, &o).await, &o);

    let batch = events("Created", 0, 2);
    let original = append(store, &s, ExpectedRevision::NoStream, &batch).await;
    assert_eq!(original, expected_result(&s, 0, 1, 2));
    ledger.record(&original, &batch);
    assert_retry_returns_original(store, &s, ExpectedRevision::NoStream, &batch, &original, &ledger).await;

    let later = events("Later", 0, 2);
    ledger.record(&append(store, &s, ExpectedRevision::Exact(Revision(1)), &later).await, &later);
    let o = events("O", 1, 1);
    ledger.record(&append(store, &other, ExpectedRevision::Any, &o).await, &o);
    assert_retry_returns_original(store, &s, ExpectedRevision::NoStream, &batch, &original, &ledger).await;

    // A single-event NoStream append, too.
    let (s2, single) = (stream("retry-nostream-single"), events("Created", 9, 1));
    let original = append(store, &s2, ExpectedRevision::NoStream, &single).await;
    ledger.record(&original, &single);
    let later = events("Later", 9, 1);
    ledger.record(&append(store, &s2, ExpectedRevision::Any, &later).await, &later);
    assert_retry_returns_original(store, &s2, ExpectedRevision::NoStream, &single, &original, &ledger).await;
}

/// An append with `Exact(r)` retried after later appends to the same stream (so `Exact(r)` no
/// longer holds) returns the original result, not `WrongExpectedRevision`.
pub async fn idempotent_retry_with_exact_after_later_appends<S: EventStore>(store: &S) {
    let (s, other) = (stream("retry-exact"), stream("retry-exact-other"));
    let mut ledger = Ledger::default();
    let first = events("First", 0, 2);
    ledger.record(&append(store, &s, ExpectedRevision::NoStream, &first).await, &first);
    let o = events("O", 0, 1);
    ledger.record(&append(store, &other, ExpectedRevision::Any, &o).await, &o);

    let batch = events("Retried", 0, 3);
    let expected = ExpectedRevision::Exact(Revision(1));
    let original = append(store, &s, expected, &batch).await;
    assert_eq!(original, expected_result(&s, 2, 3, 3));
    ledger.record(&original, &batch);
    assert_retry_returns_original(store, &s, expected, &batch, &original, &ledger).await;

    let later = events("Later", 0, 1);
    ledger.record(&append(store, &s, ExpectedRevision::Exact(Revision(4)), &later).await, &later);
    let o = events("O", 1, 2);
    ledger.record(&append(store, &other, ExpectedRevision::Any, &o).await, &o);
    let later = events("Later", 1, 2);
    ledger.record(&append(store, &s, ExpectedRevision::Exact(Revision(5)), &later).await, &later);
    assert_retry_returns_original(store, &s, expected, &batch, &original, &ledger).await;

    // The retry does not disturb the stream's revision: the next Exact append still works.
    let next = events("Next", 0, 1);
    let r = append(store, &s, ExpectedRevision::Exact(Revision(7)), &next).await;
    assert_eq!(r, expected_result(&s, 8, ledger.len(), 1));
}

/// A batch whose ids are partly stored — or all stored but in another order — fails with
/// `IdempotencyConflict` and writes nothing, not even its new events.
pub async fn partial_overlap_is_an_idempotency_conflict<S: EventStore>(store: &S) {
    let s = stream("overlap-1");
    let mut ledger = Ledger::default();
    let stored = events("Stored", 0, 2);
    ledger.record(&append(store, &s, ExpectedRevision::NoStream, &stored).await, &stored);
    let (a, b) = (stored[0].clone(), stored[1].clone());
    let x = event("Fresh", 0);
    let y = event("Fresh", 1);

    let cases: Vec<(&str, ExpectedRevision, Vec<EventData>, Vec<Uuid>)> = vec![
        ("[stored, fresh] with Any", ExpectedRevision::Any, vec![a.clone(), x.clone()], vec![a.id()]),
        ("[fresh, stored] with Any", ExpectedRevision::Any, vec![x.clone(), b.clone()], vec![b.id()]),
        (
            "[stored, stored, fresh] with Any",
            ExpectedRevision::Any,
            vec![a.clone(), b.clone(), x.clone()],
            ids(&stored),
        ),
        ("[stored ids in another order] with Any", ExpectedRevision::Any, vec![b.clone(), a.clone()], ids(&stored)),
        (
            "[stored, fresh] with Exact(current)",
            ExpectedRevision::Exact(Revision(1)),
            vec![b.clone(), x.clone()],
            vec![b.id()],
        ),
        ("[stored, fresh] with StreamExists", ExpectedRevision::StreamExists, vec![a.clone(), y.clone()], vec![a.id()]),
        ("[fresh, stored, fresh] with Any", ExpectedRevision::Any, vec![x.clone(), a.clone(), y.clone()], vec![a.id()]),
    ];
    for (what, expected, batch, stored_ids) in cases {
        let result = try_append(store, &s, expected, &batch).await;
        assert_idempotency_conflict(result, &[&s], &stored_ids, what);
        assert_log_is(store, &ledger, &format!("after the conflicting batch {what}")).await;
    }

    // The fresh events of the failed batches were not stored: appending them now is new.
    let fresh = vec![x, y];
    let r = append(store, &s, ExpectedRevision::Exact(Revision(1)), &fresh).await;
    assert_eq!(r, expected_result(&s, 2, 2, 2), "the fresh events of rejected batches must be new");
    ledger.record(&r, &fresh);
    assert_log_is(store, &ledger, "after appending the fresh events").await;
}

/// Ids stored in one stream and sent to another fail with `IdempotencyConflict` (whole batch or
/// part of it) and write nothing: the other stream is not created.
pub async fn ids_stored_in_another_stream_are_an_idempotency_conflict<S: EventStore>(store: &S) {
    let (s1, s2) = (stream("elsewhere-1"), stream("elsewhere-2"));
    let mut ledger = Ledger::default();
    let stored = events("Stored", 0, 2);
    ledger.record(&append(store, &s1, ExpectedRevision::Any, &stored).await, &stored);
    let x = event("Fresh", 0);

    let cases: Vec<(&str, ExpectedRevision, Vec<EventData>)> = vec![
        ("the whole batch with Any", ExpectedRevision::Any, stored.clone()),
        ("the whole batch with NoStream", ExpectedRevision::NoStream, stored.clone()),
        ("one stored event with NoStream", ExpectedRevision::NoStream, vec![stored[1].clone()]),
        ("[fresh, stored] with Any", ExpectedRevision::Any, vec![x.clone(), stored[0].clone()]),
    ];
    for (what, expected, batch) in cases {
        let what = format!("{what} sent to {s2} while stored in {s1}");
        let result = try_append(store, &s2, expected, &batch).await;
        // Which stream the error names (the append's or the stored event's) is not specified.
        assert_idempotency_conflict(result, &[&s2, &s1], &ids(&stored), &what);
        assert_log_is(store, &ledger, &format!("after {what}")).await;
        assert_eq!(
            read_stream(store, &s2, ReadFrom::Start, Direction::Forwards, 10).await,
            ReadStreamOutcome::StreamNotFound,
            "{what}: the rejected append created the stream"
        );
    }
    let r = append(store, &s2, ExpectedRevision::NoStream, std::slice::from_ref(&x)).await;
    assert_eq!(r, expected_result(&s2, 0, 2, 1), "the fresh event of a rejected batch must be new");
}

/// The same id twice in one batch is `DuplicateIdInBatch` and writes nothing.
pub async fn duplicate_id_in_batch_is_rejected<S: EventStore>(store: &S) {
    let s = stream("dup-1");
    let a = event("A", 0);
    let b = event("B", 1);
    let a_again = event("A2", 2).with_id(a.id());
    let result = try_append(store, &s, ExpectedRevision::Any, &[a.clone(), b.clone(), a_again.clone()]).await;
    match result {
        Err(StoreError::DuplicateIdInBatch { event_id }) => assert_eq!(event_id, a.id()),
        other => panic!("a batch with a repeated id: expected DuplicateIdInBatch, got {other:?}"),
    }
    assert_eq!(head(store).await, None, "a rejected batch wrote something");
    assert_eq!(
        read_stream(store, &s, ReadFrom::Start, Direction::Forwards, 10).await,
        ReadStreamOutcome::StreamNotFound
    );

    let mut ledger = Ledger::default();
    let c = events("C", 0, 1);
    ledger.record(&append(store, &s, ExpectedRevision::Any, &c).await, &c);
    let result = try_append(store, &s, ExpectedRevision::Exact(Revision(0)), &[b.clone(), b.clone()]).await;
    match result {
        Err(StoreError::DuplicateIdInBatch { event_id }) => assert_eq!(event_id, b.id()),
        other => panic!("a batch of one event twice: expected DuplicateIdInBatch, got {other:?}"),
    }
    assert_log_is(store, &ledger, "after a batch with a repeated id").await;
    let r = append(store, &s, ExpectedRevision::Exact(Revision(0)), &[a, b]).await;
    assert_eq!(r, expected_result(&s, 1, 1, 2), "the events of the rejected batch must be new");
}

/// An append without events is `EmptyBatch` and creates nothing.
pub async fn empty_batch_is_rejected<S: EventStore>(store: &S) {
    let s = stream("empty-1");
    for expected in [ExpectedRevision::Any, ExpectedRevision::NoStream] {
        match try_append(store, &s, expected, &[]).await {
            Err(StoreError::EmptyBatch) => {}
            other => panic!("an empty append with {expected}: expected EmptyBatch, got {other:?}"),
        }
    }
    assert_eq!(head(store).await, None, "an empty append wrote something");
    assert_eq!(
        read_stream(store, &s, ReadFrom::Start, Direction::Forwards, 10).await,
        ReadStreamOutcome::StreamNotFound,
        "an empty append created the stream"
    );
    let mut ledger = Ledger::default();
    let a = events("A", 0, 1);
    ledger.record(&append(store, &s, ExpectedRevision::Any, &a).await, &a);
    for expected in [ExpectedRevision::Any, ExpectedRevision::StreamExists, ExpectedRevision::Exact(Revision(0))] {
        match try_append(store, &s, expected, &[]).await {
            Err(StoreError::EmptyBatch) => {}
            other => {
                panic!("an empty append to an existing stream with {expected}: expected EmptyBatch, got {other:?}")
            }
        }
    }
    assert_log_is(store, &ledger, "after empty appends").await;
}

/// An event over the size limit (by data or by metadata) is `EventTooLarge` naming its index in the
/// batch, and the batch writes nothing; an event of exactly the limit is accepted.
pub async fn event_too_large_is_rejected<S: EventStore>(store: &S, limits: &Limits) {
    let s = stream("large-1");
    let max = limits.max_event_size;
    let too_big = event_of_size("Big", max + 1);
    let result = try_append(store, &s, ExpectedRevision::Any, &[event("Small", 0), too_big, event("Small", 1)]).await;
    match result {
        Err(StoreError::EventTooLarge { index, size, max: m }) => {
            assert_eq!((index, size, m), (1, max + 1, max), "EventTooLarge {{ index, size, max }}")
        }
        other => panic!("an event of {} bytes (limit {max}): expected EventTooLarge, got {other:?}", max + 1),
    }
    assert_eq!(head(store).await, None, "a batch with an oversized event wrote something");

    // Metadata counts towards the size.
    let meta = vec![b'1'; max];
    let by_metadata = event("Meta", 0).with_metadata_bytes(meta).expect("valid metadata");
    let size = by_metadata.payload_len();
    match try_append(store, &s, ExpectedRevision::Any, &[by_metadata]).await {
        Err(StoreError::EventTooLarge { index, size: got, max: m }) => {
            assert_eq!((index, got, m), (0, size, max), "EventTooLarge {{ index, size, max }} for large metadata")
        }
        other => {
            panic!("an event of {size} bytes by its metadata (limit {max}): expected EventTooLarge, got {other:?}")
        }
    }
    assert_eq!(head(store).await, None, "an oversized event wrote something");
    assert_eq!(
        read_stream(store, &s, ReadFrom::Start, Direction::Forwards, 10).await,
        ReadStreamOutcome::StreamNotFound
    );

    let at_limit = event_of_size("Big", max);
    let r = append(store, &s, ExpectedRevision::NoStream, std::slice::from_ref(&at_limit)).await;
    assert_eq!(r, expected_result(&s, 0, 0, 1), "an event of exactly the limit must be accepted");
    let read = stream_events(store, &s, ReadFrom::Start, Direction::Forwards, 10).await;
    assert_eq!(read.len(), 1);
    assert_recorded(&read[0], &at_limit, &s, 0, 0);
}

/// A batch over the event-count or byte limit is `BatchTooLarge` and writes nothing; a batch of
/// exactly the event-count limit is accepted.
pub async fn batch_too_large_is_rejected<S: EventStore>(store: &S, limits: &Limits) {
    let s = stream("batch-1");
    let check = |result: Result<AppendResult, StoreError>, batch: &[EventData], what: &str| {
        let bytes: usize = batch.iter().map(EventData::payload_len).sum();
        match result {
            Err(StoreError::BatchTooLarge { count, bytes: b, max_events, max_bytes }) => assert_eq!(
                (count, b, max_events, max_bytes),
                (batch.len(), bytes, limits.max_batch_events, limits.max_batch_bytes),
                "{what}: BatchTooLarge {{ count, bytes, max_events, max_bytes }}"
            ),
            other => panic!("{what}: expected BatchTooLarge, got {other:?}"),
        }
    };

    let too_many = events("Tiny", 0, limits.max_batch_events as u64 + 1);
    let result = try_append(store, &s, ExpectedRevision::Any, &too_many).await;
    check(result, &too_many, &format!("{} events", too_many.len()));
    assert_eq!(head(store).await, None, "a batch of too many events wrote something");

    // Events within the event-size limit whose sum is over the byte limit (data shared, ids not).
    let count = limits.max_batch_bytes / limits.max_event_size + 1;
    if count <= limits.max_batch_events {
        let big = event_of_size("Big", limits.max_event_size);
        let too_heavy: Vec<EventData> = (0..count).map(|_| big.clone().with_id(Uuid::now_v7())).collect();
        let result = try_append(store, &s, ExpectedRevision::Any, &too_heavy).await;
        check(result, &too_heavy, &format!("{count} events of {} bytes", limits.max_event_size));
        assert_eq!(head(store).await, None, "a batch of too many bytes wrote something");
    }
    assert_eq!(
        read_stream(store, &s, ReadFrom::Start, Direction::Forwards, 10).await,
        ReadStreamOutcome::StreamNotFound
    );

    let at_limit = events("Tiny", 0, limits.max_batch_events as u64);
    let r = append(store, &s, ExpectedRevision::NoStream, &at_limit).await;
    assert_eq!(
        r,
        expected_result(&s, 0, 0, at_limit.len() as u64),
        "a batch of exactly max_batch_events events must be accepted"
    );
    let last = stream_events(store, &s, ReadFrom::End, Direction::Backwards, 1).await;
    assert_eq!(last.len(), 1);
    assert_recorded(&last[0], at_limit.last().unwrap(), &s, at_limit.len() as u64 - 1, at_limit.len() as u64 - 1);
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

/// `read_stream` forwards and backwards, from `Start`, `End` and a revision (included), with
/// `max_count`, over a stream interleaved with another one.
pub async fn read_stream_forwards_backwards_and_from_revision<S: EventStore>(store: &S) {
    let (s, other) = (stream("reads-1"), stream("reads-other"));
    let mut ledger = Ledger::default();
    for (k, (target, n)) in [(&s, 4u64), (&other, 2), (&s, 3), (&other, 1), (&s, 3)].into_iter().enumerate() {
        let batch = events("R", k as u64 * 10, n);
        ledger.record(&append(store, target, ExpectedRevision::Any, &batch).await, &batch);
    }
    // Positions of s's revisions 0..=9.
    let pos = ledger.positions_where(|st, _| *st == s);
    assert_eq!(pos.len(), 10);
    let at = |revs: &[usize]| revs.iter().map(|r| pos[*r]).collect::<Vec<u64>>();

    use Direction::{Backwards, Forwards};
    let cases: Vec<(ReadFrom<Revision>, Direction, usize, Vec<usize>)> = vec![
        (ReadFrom::Start, Forwards, ALL, (0..10).collect()),
        (ReadFrom::Start, Forwards, 3, vec![0, 1, 2]),
        (ReadFrom::End, Backwards, ALL, (0..10).rev().collect()),
        (ReadFrom::End, Backwards, 1, vec![9]),
        (ReadFrom::At(Revision(4)), Forwards, 3, vec![4, 5, 6]),
        (ReadFrom::At(Revision(4)), Forwards, ALL, (4..10).collect()),
        (ReadFrom::At(Revision(4)), Backwards, 3, vec![4, 3, 2]),
        (ReadFrom::At(Revision(1)), Backwards, 10, vec![1, 0]),
        (ReadFrom::At(Revision(0)), Backwards, 10, vec![0]),
        (ReadFrom::At(Revision(9)), Forwards, 10, vec![9]),
        (ReadFrom::At(Revision(9)), Backwards, 2, vec![9, 8]),
        (ReadFrom::At(Revision(10)), Forwards, 10, vec![]),
        (ReadFrom::At(Revision(1000)), Forwards, 10, vec![]),
        (ReadFrom::End, Forwards, 10, vec![]),
        (ReadFrom::Start, Backwards, 10, vec![0]),
        (ReadFrom::Start, Forwards, 0, vec![]),
        (ReadFrom::End, Backwards, 0, vec![]),
    ];
    for (from, direction, max_count, revs) in cases {
        let what = format!("read_stream({s}, {from:?}, {direction:?}, {max_count})");
        match read_stream(store, &s, from, direction, max_count).await {
            ReadStreamOutcome::Events(read) => {
                assert_eq!(revisions(&read), revs.iter().map(|r| *r as u64).collect::<Vec<_>>(), "{what}: revisions");
                ledger.check(&read, &at(&revs), &what);
            }
            ReadStreamOutcome::StreamNotFound => panic!("{what}: StreamNotFound for an existing stream"),
        }
    }
}

/// A stream that has no event is `StreamNotFound` in every direction and from every start, even
/// when streams with similar names exist.
pub async fn read_stream_of_missing_stream_is_not_found<S: EventStore>(store: &S) {
    let froms = [ReadFrom::Start, ReadFrom::End, ReadFrom::At(Revision(0)), ReadFrom::At(Revision(5))];
    let check = |name: &'static str| async move {
        for from in froms {
            for direction in [Direction::Forwards, Direction::Backwards] {
                let outcome = read_stream(store, &stream(name), from, direction, 10).await;
                assert_eq!(
                    outcome,
                    ReadStreamOutcome::StreamNotFound,
                    "read_stream({name}, {from:?}, {direction:?}) of a stream without events"
                );
            }
        }
    };
    check("ghost").await;
    for name in ["ghost-1", "ghost-10", "ghos"] {
        append(store, &stream(name), ExpectedRevision::Any, &events("G", 0, 2)).await;
    }
    check("ghost").await;
    check("ghost-").await;
    check("Ghost-1").await;
    check("ghost-100").await;
}

/// `read_all` forwards and backwards, from `Start`, `End` and a position (included), with
/// `max_count`, and on an empty store.
pub async fn read_all_forwards_and_backwards<S: EventStore>(store: &S) {
    use Direction::{Backwards, Forwards};
    let all = EventFilter::all();
    for (from, direction) in
        [(ReadFrom::Start, Forwards), (ReadFrom::End, Backwards), (ReadFrom::At(Position(0)), Forwards)]
    {
        let read = read_all(store, from, direction, 10, &all).await;
        assert!(read.is_empty(), "read_all({from:?}, {direction:?}) on an empty store: {read:?}");
    }

    let mut ledger = Ledger::default();
    for (k, name) in ["all-a", "all-b", "all-c", "all-a", "all-b"].into_iter().enumerate() {
        let batch = events("E", k as u64 * 10, 1 + k as u64 % 3);
        ledger.record(&append(store, &stream(name), ExpectedRevision::Any, &batch).await, &batch);
    }
    let n = ledger.len();
    assert_eq!(n, 9);
    let cases: Vec<(ReadFrom<Position>, Direction, usize, Vec<u64>)> = vec![
        (ReadFrom::Start, Forwards, ALL, (0..n).collect()),
        (ReadFrom::Start, Forwards, 3, vec![0, 1, 2]),
        (ReadFrom::End, Backwards, ALL, (0..n).rev().collect()),
        (ReadFrom::End, Backwards, 2, vec![n - 1, n - 2]),
        (ReadFrom::At(Position(5)), Forwards, 2, vec![5, 6]),
        (ReadFrom::At(Position(5)), Forwards, ALL, (5..n).collect()),
        (ReadFrom::At(Position(5)), Backwards, 4, vec![5, 4, 3, 2]),
        (ReadFrom::At(Position(0)), Backwards, 4, vec![0]),
        (ReadFrom::At(Position(n - 1)), Forwards, 4, vec![n - 1]),
        (ReadFrom::At(Position(n)), Forwards, 4, vec![]),
        (ReadFrom::At(Position(1000)), Forwards, 4, vec![]),
        (ReadFrom::End, Forwards, 4, vec![]),
        (ReadFrom::Start, Backwards, 4, vec![0]),
        (ReadFrom::Start, Forwards, 0, vec![]),
    ];
    for (from, direction, max_count, expected) in cases {
        let what = format!("read_all({from:?}, {direction:?}, {max_count})");
        ledger.check(&read_all(store, from, direction, max_count, &all).await, &expected, &what);
    }
}

/// `read_all` with event-type and stream-prefix filters: any prefix of a list matches, both lists
/// must match, `max_count` counts matching events, starting points work with filters.
pub async fn read_all_with_filters<S: EventStore>(store: &S) {
    use Direction::{Backwards, Forwards};
    let mut ledger = Ledger::default();
    let plan: [(&str, &str); 12] = [
        ("acct-1", "AccountOpened"),
        ("user-1", "UserCreated"),
        ("acct-2", "AccountOpened"),
        ("acct-1", "Deposited"),
        ("user-2", "UserCreated"),
        ("acct-10", "AccountOpened"),
        ("acct-1", "AccountClosed"),
        ("user-1", "AccountOpened"),
        ("acct-2", "Deposited"),
        ("xacct-1", "AccountOpened"),
        ("acct-2", "AccountClosed"),
        ("user-2", "Deposited"),
    ];
    for (i, (name, ty)) in plan.iter().enumerate() {
        let batch = vec![event(ty, i as u64)];
        ledger.record(&append(store, &stream(name), ExpectedRevision::Any, &batch).await, &batch);
    }
    let n = ledger.len();

    type Pred = fn(&str, &str) -> bool;
    let cases: Vec<(EventFilter, Pred)> = vec![
        (EventFilter::all().event_type_prefix("Account"), |_, t| t.starts_with("Account")),
        (EventFilter::all().event_type_prefix("AccountOpened"), |_, t| t == "AccountOpened"),
        (EventFilter::all().stream_prefix("acct-"), |s, _| s.starts_with("acct-")),
        (EventFilter::all().stream_prefix("acct-1"), |s, _| s == "acct-1" || s == "acct-10"),
        (EventFilter::all().stream_prefix("acct-").event_type_prefix("Account"), |s, t| {
            s.starts_with("acct-") && t.starts_with("Account")
        }),
        (EventFilter::all().event_type_prefix("UserCreated").event_type_prefix("Deposited"), |_, t| {
            t == "UserCreated" || t == "Deposited"
        }),
        (EventFilter::all().stream_prefix("user-").stream_prefix("acct-2").event_type_prefix("Deposited"), |s, t| {
            (s.starts_with("user-") || s == "acct-2") && t == "Deposited"
        }),
        (EventFilter::all().stream_prefix("nobody-"), |_, _| false),
        (EventFilter::all().event_type_prefix("account"), |_, _| false),
    ];
    for (filter, pred) in cases {
        let matching = ledger.positions_where(|s, e| pred(s.as_str(), e.event_type()));
        let rev: Vec<u64> = matching.iter().rev().copied().collect();
        let check = |read: Vec<RecordedEvent>, expected: Vec<u64>, what: &str| {
            ledger.check(&read, &expected, &format!("{what} with {filter:?}"));
        };
        check(read_all(store, ReadFrom::Start, Forwards, ALL, &filter).await, matching.clone(), "forwards");
        check(read_all(store, ReadFrom::End, Backwards, ALL, &filter).await, rev.clone(), "backwards");
        check(
            read_all(store, ReadFrom::Start, Forwards, 2, &filter).await,
            matching.iter().take(2).copied().collect(),
            "forwards, max_count 2 (counts matching events)",
        );
        check(
            read_all(store, ReadFrom::End, Backwards, 2, &filter).await,
            rev.iter().take(2).copied().collect(),
            "backwards, max_count 2",
        );
        for p in [0, 4, 7, n - 1] {
            check(
                read_all(store, ReadFrom::At(Position(p)), Forwards, ALL, &filter).await,
                matching.iter().filter(|m| **m >= p).copied().collect(),
                &format!("forwards from position {p}"),
            );
            check(
                read_all(store, ReadFrom::At(Position(p)), Backwards, ALL, &filter).await,
                rev.iter().filter(|m| **m <= p).copied().collect(),
                &format!("backwards from position {p}"),
            );
        }
    }
}

/// `recorded_at` never decreases along positions, is the same whichever read returns the event,
/// and is the server's clock (near now).
pub async fn recorded_at_never_decreases<S: EventStore>(store: &S) {
    let before = chrono::Utc::now();
    for round in 0..20u64 {
        let appends = (0..5u64).map(|k| {
            let s = stream(&format!("clock-{k}"));
            async move { append(store, &s, ExpectedRevision::Any, &events("Tick", round * 10 + k, 1 + k % 2)).await }
        });
        join_all(appends).await;
    }
    let after = chrono::Utc::now();
    let log = whole_log(store).await;
    assert_eq!(log.len(), 20 * 7);
    for pair in log.windows(2) {
        assert!(
            pair[0].recorded_at <= pair[1].recorded_at,
            "recorded_at decreases from position {} ({}) to {} ({})",
            pair[0].position,
            pair[0].recorded_at,
            pair[1].position,
            pair[1].recorded_at
        );
    }
    let slack = chrono::Duration::hours(1);
    for e in &log {
        assert!(
            e.recorded_at >= before - slack && e.recorded_at <= after + slack,
            "recorded_at {} of position {} is not the time of the append ({before} .. {after})",
            e.recorded_at,
            e.position
        );
    }
    let by_position: HashMap<u64, _> = log.iter().map(|e| (e.position.0, e.recorded_at)).collect();
    for k in 0..5u64 {
        let s = stream(&format!("clock-{k}"));
        for e in stream_events(store, &s, ReadFrom::Start, Direction::Forwards, ALL).await {
            assert_eq!(
                by_position[&e.position.0], e.recorded_at,
                "read_stream and read_all disagree on recorded_at of position {}",
                e.position
            );
        }
    }
}

/// `head()` is `None` on an empty store, then the position of the last committed event; failed
/// appends leave it alone.
pub async fn head_tracks_the_last_position<S: EventStore>(store: &S) {
    assert_eq!(head(store).await, None, "head of an empty store");
    let s = stream("head-1");
    append(store, &s, ExpectedRevision::NoStream, &events("H", 0, 3)).await;
    assert_eq!(head(store).await, Some(Position(2)));
    let _ = try_append(store, &s, ExpectedRevision::NoStream, &events("H", 3, 2)).await;
    assert_eq!(head(store).await, Some(Position(2)), "a failed append moved the head");
    append(store, &stream("head-2"), ExpectedRevision::Any, &events("H", 5, 3)).await;
    assert_eq!(head(store).await, Some(Position(5)));
    let last = read_all(store, ReadFrom::End, Direction::Backwards, 1, &EventFilter::all()).await;
    assert_eq!(positions(&last), [5], "head and the last event of read_all disagree");
}

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

/// From `Start`: every past event in order, one `CaughtUp`, then live events, none twice.
pub async fn subscribe_to_all_from_start_catches_up_then_goes_live<S: EventStore>(store: &S) {
    let mut ledger = Ledger::default();
    for k in 0..5u64 {
        let batch = events("Past", k * 10, 2);
        ledger.record(&append(store, &stream(&format!("sub-{}", k % 2)), ExpectedRevision::Any, &batch).await, &batch);
    }
    let mut sub = subscribe_all(store, SubscribeFrom::Start, EventFilter::all()).await;
    let history = read_until_caught_up(&mut sub, "subscribe_to_all(Start) catch-up").await;
    ledger.check(&history, &(0..10).collect::<Vec<_>>(), "subscribe_to_all(Start) history");

    for k in 0..3u64 {
        let batch = events("Live", k * 10, 1 + k);
        ledger.record(&append(store, &stream("sub-live"), ExpectedRevision::Any, &batch).await, &batch);
    }
    let live = read_live_events(&mut sub, 6, "subscribe_to_all(Start) live").await;
    ledger.check(&live, &(10..16).collect::<Vec<_>>(), "subscribe_to_all(Start) live events");
    assert_quiet(&mut sub, "subscribe_to_all(Start) after the last event").await;
}

/// From `Start` on an empty store: `CaughtUp` first, then live events.
pub async fn subscribe_to_all_on_empty_store<S: EventStore>(store: &S) {
    let mut sub = subscribe_all(store, SubscribeFrom::Start, EventFilter::all()).await;
    assert_eq!(
        next_message(&mut sub, "subscribe_to_all(Start) on an empty store").await,
        SubscriptionMessage::CaughtUp,
        "the first message on an empty store must be CaughtUp"
    );
    let mut ledger = Ledger::default();
    let batch = events("First", 0, 3);
    ledger.record(&append(store, &stream("empty-sub"), ExpectedRevision::NoStream, &batch).await, &batch);
    let live = read_live_events(&mut sub, 3, "subscribe_to_all on an empty store, live").await;
    ledger.check(&live, &[0, 1, 2], "live events after subscribing to an empty store");
    assert_quiet(&mut sub, "subscribe_to_all on an empty store").await;
}

/// From `After(p)`: the events after `p` (not `p` itself), `CaughtUp`, then live; `After(head)`
/// starts with `CaughtUp`.
pub async fn subscribe_to_all_after_position<S: EventStore>(store: &S) {
    let mut ledger = Ledger::default();
    let batch = events("Past", 0, 10);
    ledger.record(&append(store, &stream("after-1"), ExpectedRevision::Any, &batch).await, &batch);

    let mut sub = subscribe_all(store, SubscribeFrom::After(Position(4)), EventFilter::all()).await;
    let history = read_until_caught_up(&mut sub, "subscribe_to_all(After(4))").await;
    ledger.check(&history, &[5, 6, 7, 8, 9], "subscribe_to_all(After(4)) history");

    let mut at_head = subscribe_all(store, SubscribeFrom::After(Position(9)), EventFilter::all()).await;
    assert_eq!(
        next_message(&mut at_head, "subscribe_to_all(After(head))").await,
        SubscriptionMessage::CaughtUp,
        "subscribe_to_all(After(head)) must start with CaughtUp"
    );

    let batch = events("Live", 0, 2);
    ledger.record(&append(store, &stream("after-2"), ExpectedRevision::Any, &batch).await, &batch);
    for (sub, what) in [(&mut sub, "After(4)"), (&mut at_head, "After(head)")] {
        let live = read_live_events(sub, 2, what).await;
        ledger.check(&live, &[10, 11], &format!("subscribe_to_all({what}) live"));
        assert_quiet(sub, what).await;
    }
}

/// From `End`: no past event, exactly one `CaughtUp`, then every event appended afterwards.
pub async fn subscribe_to_all_from_end<S: EventStore>(store: &S) {
    let mut ledger = Ledger::default();
    let batch = events("Past", 0, 10);
    ledger.record(&append(store, &stream("end-1"), ExpectedRevision::Any, &batch).await, &batch);

    let mut sub = subscribe_all(store, SubscribeFrom::End, EventFilter::all()).await;
    assert_eq!(
        next_message(&mut sub, "subscribe_to_all(End)").await,
        SubscriptionMessage::CaughtUp,
        "subscribe_to_all(End) with nothing appended since must first send CaughtUp"
    );
    for k in 0..3u64 {
        let batch = events("Live", k, 2);
        ledger.record(&append(store, &stream("end-2"), ExpectedRevision::Any, &batch).await, &batch);
    }
    let live = read_live_events(&mut sub, 6, "subscribe_to_all(End) live").await;
    ledger.check(&live, &(10..16).collect::<Vec<_>>(), "subscribe_to_all(End) live");
    assert_quiet(&mut sub, "subscribe_to_all(End)").await;

    // From End while appends keep coming: only events after the subscription, CaughtUp once.
    let head_before = head(store).await.expect("not empty").0;
    let mut sub = subscribe_all(store, SubscribeFrom::End, EventFilter::all()).await;
    for k in 0..5u64 {
        let batch = events("More", k, 1);
        ledger.record(&append(store, &stream("end-3"), ExpectedRevision::Any, &batch).await, &batch);
    }
    let (live, caught_up) = read_events_and_caught_up(&mut sub, 5, "subscribe_to_all(End), second").await;
    assert_eq!(caught_up.len(), 1, "CaughtUp must be sent exactly once, got it after {caught_up:?} events");
    ledger.check(&live, &(head_before + 1..head_before + 6).collect::<Vec<_>>(), "subscribe_to_all(End) events");
    assert_quiet(&mut sub, "subscribe_to_all(End), second").await;
}

/// A filtered subscription delivers exactly the matching events, history then live, and sends
/// `CaughtUp` even when the last events do not match.
pub async fn subscribe_to_all_with_filter<S: EventStore>(store: &S) {
    let mut ledger = Ledger::default();
    let plan = [
        ("acct-1", "AccountOpened"),
        ("user-1", "UserCreated"),
        ("acct-2", "AccountOpened"),
        ("acct-1", "Deposited"),
        ("acct-2", "AccountClosed"),
        ("user-1", "AccountOpened"),
        ("user-2", "UserCreated"),
    ];
    let append_plan = |plan: &[(&str, &str)], seed: u64| -> Vec<(StreamId, Vec<EventData>)> {
        plan.iter().enumerate().map(|(i, (name, ty))| (stream(name), vec![event(ty, seed + i as u64)])).collect()
    };
    for (s, batch) in append_plan(&plan, 0) {
        ledger.record(&append(store, &s, ExpectedRevision::Any, &batch).await, &batch);
    }
    let filter = EventFilter::all().stream_prefix("acct-").event_type_prefix("Account");
    let pred = |s: &StreamId, e: &EventData| s.as_str().starts_with("acct-") && e.event_type().starts_with("Account");

    let mut from_start = subscribe_all(store, SubscribeFrom::Start, filter.clone()).await;
    let history = read_until_caught_up(&mut from_start, "filtered subscribe_to_all(Start)").await;
    ledger.check(&history, &ledger.positions_where(pred), "filtered subscribe_to_all(Start) history");

    // After a position that does not match (position 3 is acct-1 Deposited).
    let mut from_after = subscribe_all(store, SubscribeFrom::After(Position(3)), filter.clone()).await;
    let history = read_until_caught_up(&mut from_after, "filtered subscribe_to_all(After(3))").await;
    let expected: Vec<u64> = ledger.positions_where(pred).into_iter().filter(|p| *p > 3).collect();
    ledger.check(&history, &expected, "filtered subscribe_to_all(After(3)) history");

    let mut from_end = subscribe_all(store, SubscribeFrom::End, filter.clone()).await;
    assert_eq!(next_message(&mut from_end, "filtered subscribe_to_all(End)").await, SubscriptionMessage::CaughtUp);

    let n = ledger.len();
    const LIVE: [(&str, &str); 6] = [
        ("user-3", "UserCreated"),
        ("acct-3", "AccountOpened"),
        ("acct-3", "Deposited"),
        ("acct-1", "AccountClosed"),
        ("xacct-1", "AccountOpened"),
        ("acct-4", "Withdrawn"),
    ];
    for (s, batch) in append_plan(&LIVE, 100) {
        ledger.record(&append(store, &s, ExpectedRevision::Any, &batch).await, &batch);
    }
    let live_expected: Vec<u64> = ledger.positions_where(pred).into_iter().filter(|p| *p >= n).collect();
    assert_eq!(live_expected.len(), 2);
    for (sub, what) in [(&mut from_start, "Start"), (&mut from_after, "After(3)"), (&mut from_end, "End")] {
        let live = read_live_events(sub, live_expected.len(), what).await;
        ledger.check(&live, &live_expected, &format!("filtered subscribe_to_all({what}) live"));
        assert_quiet(sub, &format!("filtered subscribe_to_all({what})")).await;
    }
}

/// Appends keep coming while two subscribers (one filtered) catch up from thousands of events:
/// each gets every matching event exactly once, in position order, with exactly one `CaughtUp`
/// that comes after every event committed before it subscribed.
pub async fn catch_up_to_live_switch_has_no_gap_and_no_duplicate<S: EventStore>(store: &S) {
    const HISTORY_APPENDS: u64 = 30;
    const LIVE_APPENDS: u64 = 150;
    const BATCH: u64 = 10;
    const STREAMS: u64 = 3;
    let s = |k: u64| stream(&format!("switch-{}", k % STREAMS));
    for k in 0..HISTORY_APPENDS {
        append(store, &s(k), ExpectedRevision::Any, &events("Past", k * 100, BATCH * 10)).await;
    }
    let history = HISTORY_APPENDS * BATCH * 10;
    let total = history + LIVE_APPENDS * BATCH;
    // switch-0 receives appends k = 0, 3, 6, ...
    let filtered_total = |upto: u64| -> u64 {
        let past = (0..HISTORY_APPENDS).filter(|k| k % STREAMS == 0).count() as u64 * BATCH * 10;
        past + (HISTORY_APPENDS..HISTORY_APPENDS + upto).filter(|k| k % STREAMS == 0).count() as u64 * BATCH
    };

    let mut all_sub = subscribe_all(store, SubscribeFrom::Start, EventFilter::all()).await;
    let mut filtered_sub =
        subscribe_all(store, SubscribeFrom::Start, EventFilter::all().stream_prefix("switch-0")).await;

    let appender = async {
        for k in HISTORY_APPENDS..HISTORY_APPENDS + LIVE_APPENDS {
            append(store, &s(k), ExpectedRevision::Any, &events("Live", k * 100, BATCH)).await;
        }
    };
    let read_all_sub = async {
        let mut events = Vec::new();
        let mut caught_up = Vec::new();
        while (events.len() as u64) < total || caught_up.is_empty() {
            match next_message(&mut all_sub, "unfiltered subscriber").await {
                SubscriptionMessage::Event(e) => events.push(e),
                SubscriptionMessage::CaughtUp => caught_up.push(events.len()),
            }
            if events.len() % 500 == 0 {
                // Go a bit slower than the appender at first, so the switch happens under load.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        (events, caught_up)
    };
    let read_filtered = async {
        let expected = filtered_total(LIVE_APPENDS);
        let mut events = Vec::new();
        let mut caught_up = Vec::new();
        while (events.len() as u64) < expected || caught_up.is_empty() {
            match next_message(&mut filtered_sub, "filtered subscriber").await {
                SubscriptionMessage::Event(e) => events.push(e),
                SubscriptionMessage::CaughtUp => caught_up.push(events.len()),
            }
        }
        (events, caught_up)
    };
    let ((), (all_events, all_caught_up), (filtered_events, filtered_caught_up)) =
        within_for(WAIT * 4, "catch-up/live switch case", async {
            futures::join!(appender, read_all_sub, read_filtered)
        })
        .await;

    assert_eq!(
        positions(&all_events),
        (0..total).collect::<Vec<_>>(),
        "the unfiltered subscriber must get every position exactly once, in order"
    );
    assert_eq!(all_caught_up.len(), 1, "CaughtUp must be sent exactly once (sent after {all_caught_up:?} events)");
    assert!(
        all_caught_up[0] as u64 >= history,
        "CaughtUp came after {} events, before the {history} events committed before subscribing",
        all_caught_up[0]
    );
    let log = whole_log(store).await;
    assert_eq!(all_events, log, "subscription events differ from read_all");

    let expected_filtered: Vec<RecordedEvent> =
        log.iter().filter(|e| e.stream.as_str() == "switch-0").cloned().collect();
    assert_eq!(
        positions(&filtered_events),
        positions(&expected_filtered),
        "the filtered subscriber must get every matching position exactly once, in order"
    );
    assert_eq!(filtered_events, expected_filtered);
    assert_eq!(filtered_caught_up.len(), 1, "filtered: CaughtUp must be sent exactly once ({filtered_caught_up:?})");
    assert!(filtered_caught_up[0] as u64 >= filtered_total(0), "filtered: CaughtUp before the history was delivered");

    assert_quiet(&mut all_sub, "unfiltered subscriber after everything").await;
    assert_quiet(&mut filtered_sub, "filtered subscriber after everything").await;
}

/// A subscription to a stream that does not exist yet sends `CaughtUp`, then exactly that
/// stream's events once it is created, and nothing of other streams.
pub async fn subscribe_to_stream_before_it_exists<S: EventStore>(store: &S) {
    let (s, other, similar) = (stream("later"), stream("other"), stream("later-2"));
    append(store, &other, ExpectedRevision::Any, &events("O", 0, 3)).await;
    let mut sub = subscribe_stream(store, &s, SubscribeFrom::Start).await;
    assert_eq!(
        next_message(&mut sub, "subscribe_to_stream of a missing stream").await,
        SubscriptionMessage::CaughtUp,
        "subscribe_to_stream of a missing stream must first send CaughtUp"
    );
    let mut ledger = Ledger::default();
    let plan: [(&StreamId, u64); 6] = [(&other, 2), (&s, 2), (&similar, 1), (&s, 1), (&other, 1), (&s, 3)];
    let mut seed = 100;
    for (target, n) in plan {
        let batch = events("E", seed, n);
        seed += 10;
        let r = append(store, target, ExpectedRevision::Any, &batch).await;
        ledger.record(&r, &batch);
    }
    let live = read_live_events(&mut sub, 6, "subscribe_to_stream(later) live").await;
    assert_eq!(revisions(&live), [0, 1, 2, 3, 4, 5]);
    ledger.check(&live, &ledger.positions_where(|st, _| *st == s), "subscribe_to_stream(later)");
    assert_quiet(&mut sub, "subscribe_to_stream(later)").await;
}

/// `subscribe_to_stream` from `Start`, `After(r)` and `End`: history, `CaughtUp`, live.
pub async fn subscribe_to_stream_from_start_after_and_end<S: EventStore>(store: &S) {
    let (s, other) = (stream("ss-1"), stream("ss-other"));
    let mut ledger = Ledger::default();
    for (target, n) in [(&s, 2u64), (&other, 2), (&s, 3)] {
        let batch = events("E", ledger.len(), n);
        ledger.record(&append(store, target, ExpectedRevision::Any, &batch).await, &batch);
    }
    let of_s = ledger.positions_where(|st, _| *st == s);

    let mut from_start = subscribe_stream(store, &s, SubscribeFrom::Start).await;
    let history = read_until_caught_up(&mut from_start, "subscribe_to_stream(Start)").await;
    ledger.check(&history, &of_s, "subscribe_to_stream(Start) history");

    let mut from_after = subscribe_stream(store, &s, SubscribeFrom::After(Revision(2))).await;
    let history = read_until_caught_up(&mut from_after, "subscribe_to_stream(After(2))").await;
    assert_eq!(revisions(&history), [3, 4]);
    ledger.check(&history, &of_s[3..], "subscribe_to_stream(After(2)) history");

    let mut from_last = subscribe_stream(store, &s, SubscribeFrom::After(Revision(4))).await;
    assert_eq!(next_message(&mut from_last, "subscribe_to_stream(After(last))").await, SubscriptionMessage::CaughtUp);

    let mut from_end = subscribe_stream(store, &s, SubscribeFrom::End).await;
    assert_eq!(next_message(&mut from_end, "subscribe_to_stream(End)").await, SubscriptionMessage::CaughtUp);

    for (target, n) in [(&other, 1u64), (&s, 2), (&other, 2)] {
        let batch = events("L", ledger.len(), n);
        ledger.record(&append(store, target, ExpectedRevision::Any, &batch).await, &batch);
    }
    let live = ledger.positions_where(|st, _| *st == s)[5..].to_vec();
    for (sub, what) in [
        (&mut from_start, "Start"),
        (&mut from_after, "After(2)"),
        (&mut from_last, "After(last)"),
        (&mut from_end, "End"),
    ] {
        let events = read_live_events(sub, 2, what).await;
        assert_eq!(revisions(&events), [5, 6], "subscribe_to_stream({what}) live revisions");
        ledger.check(&events, &live, &format!("subscribe_to_stream({what}) live"));
        assert_quiet(sub, &format!("subscribe_to_stream({what})")).await;
    }
}

/// Subscribers that do not read while thousands of appends commit neither block the appends nor
/// lose anything: afterwards they get every event, in order, exactly once.
pub async fn slow_subscriber_receives_every_event_in_order<S: EventStore>(store: &S) {
    const ROUNDS: u64 = 150;
    const PER_ROUND: u64 = 16;
    const BATCH: u64 = 2;
    let watched = stream("slow-3");
    let mut all_sub = subscribe_all(store, SubscribeFrom::Start, EventFilter::all()).await;
    let mut stream_sub = subscribe_stream(store, &watched, SubscribeFrom::Start).await;
    let mut end_sub = subscribe_all(store, SubscribeFrom::End, EventFilter::all()).await;

    let appends = async {
        for round in 0..ROUNDS {
            let batch = (0..PER_ROUND).map(|k| {
                let s = stream(&format!("slow-{k}"));
                async move { append(store, &s, ExpectedRevision::Any, &events("Slow", round * 100 + k, BATCH)).await }
            });
            join_all(batch).await;
        }
    };
    within_for(WAIT * 6, "appends while subscribers do not read (a slow subscriber must not block appends)", appends)
        .await;
    let total = ROUNDS * PER_ROUND * BATCH;
    assert_eq!(head(store).await, Some(Position(total - 1)));
    let log = whole_log(store).await;

    let (events, caught_up) = read_events_and_caught_up(&mut all_sub, total as usize, "slow subscriber (Start)").await;
    assert_eq!(positions(&events), (0..total).collect::<Vec<_>>(), "slow subscriber: positions");
    assert_eq!(events, log, "slow subscriber: events differ from read_all");
    assert_eq!(caught_up.len(), 1, "slow subscriber: CaughtUp sent {} times", caught_up.len());
    assert_quiet(&mut all_sub, "slow subscriber (Start)").await;

    let (events, caught_up) = read_events_and_caught_up(&mut end_sub, total as usize, "slow subscriber (End)").await;
    assert_eq!(positions(&events), (0..total).collect::<Vec<_>>(), "slow subscriber from End: positions");
    assert_eq!(caught_up.len(), 1, "slow subscriber from End: CaughtUp sent {} times", caught_up.len());
    assert_quiet(&mut end_sub, "slow subscriber (End)").await;

    let expected: Vec<RecordedEvent> = log.iter().filter(|e| e.stream == watched).cloned().collect();
    let (events, caught_up) =
        read_events_and_caught_up(&mut stream_sub, expected.len(), "slow stream subscriber").await;
    assert_eq!(revisions(&events), (0..expected.len() as u64).collect::<Vec<_>>(), "slow stream subscriber");
    assert_eq!(events, expected, "slow stream subscriber: events differ from read_all");
    assert_eq!(caught_up.len(), 1, "slow stream subscriber: CaughtUp sent {} times", caught_up.len());
    assert_quiet(&mut stream_sub, "slow stream subscriber").await;
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

/// Writers racing on one stream with `Exact` (then `NoStream` for the first): exactly one wins
/// each revision, losers get `WrongExpectedRevision` with the true current revision.
pub async fn concurrent_exact_appenders_one_winner_per_revision<S: EventStore>(store: &S) {
    const WRITERS: u64 = 8;
    const WINS_EACH: usize = 8;
    let s = stream("contended");
    let writers = (0..WRITERS).map(|w| {
        let s = &s;
        async move {
            let mut known: Option<u64> = None;
            let mut wins: Vec<(AppendResult, Vec<EventData>)> = Vec::new();
            let mut no_stream_wins = 0;
            let mut n = 0u64;
            while wins.len() < WINS_EACH {
                let batch = events(&format!("Writer{w}"), n, 1 + n % 2);
                n += 1;
                let expected = known.map_or(ExpectedRevision::NoStream, |r| ExpectedRevision::Exact(Revision(r)));
                match try_append(store, s, expected, &batch).await {
                    Ok(r) => {
                        assert_eq!(
                            r.first_revision,
                            Revision(known.map_or(0, |k| k + 1)),
                            "writer {w}: {expected} succeeded at the wrong revision"
                        );
                        assert_eq!(r.last_revision.0 - r.first_revision.0 + 1, batch.len() as u64);
                        if known.is_none() {
                            no_stream_wins += 1;
                        }
                        known = Some(r.last_revision.0);
                        wins.push((r, batch));
                    }
                    Err(StoreError::WrongExpectedRevision { stream: es, expected: e, actual }) => {
                        assert_eq!((&es, e), (s, expected), "writer {w}: WrongExpectedRevision fields");
                        match actual {
                            CurrentRevision::Current(a) => {
                                assert!(
                                    known.is_none_or(|k| a.0 > k),
                                    "writer {w}: {expected} failed but the actual revision {a} is not past it"
                                );
                                known = Some(a.0);
                            }
                            CurrentRevision::NoStream => {
                                panic!("writer {w}: {expected} failed with actual NoStream")
                            }
                        }
                    }
                    Err(e) => panic!("writer {w}: unexpected error {e:?}"),
                }
            }
            (wins, no_stream_wins)
        }
    });
    let results = within_for(WAIT * 4, "racing Exact writers", join_all(writers)).await;
    let no_stream_wins: u64 = results.iter().map(|(_, n)| *n).sum();
    assert_eq!(no_stream_wins, 1, "exactly one NoStream append may create the stream");

    let mut owner: BTreeMap<u64, (u64, Uuid)> = BTreeMap::new();
    let mut ledger = Ledger::default();
    for (w, (wins, _)) in results.iter().enumerate() {
        for (r, batch) in wins {
            ledger.record(r, batch);
            for (i, e) in batch.iter().enumerate() {
                let revision = r.first_revision.0 + i as u64;
                if let Some((other, _)) = owner.insert(revision, (w as u64, e.id())) {
                    panic!("revision {revision} was won by writers {other} and {w}");
                }
            }
        }
    }
    let total = owner.len() as u64;
    assert_eq!(owner.keys().copied().collect::<Vec<_>>(), (0..total).collect::<Vec<_>>(), "won revisions have gaps");
    let read = stream_events(store, &s, ReadFrom::Start, Direction::Forwards, ALL).await;
    assert_eq!(revisions(&read), (0..total).collect::<Vec<_>>());
    for e in &read {
        assert_eq!(e.id, owner[&e.revision.0].1, "revision {} holds another writer's event", e.revision);
    }
    ledger.check(&whole_log(store).await, &(0..total).collect::<Vec<_>>(), "read_all after the race");
}

/// Many writers on many streams at once: every append gets its own contiguous positions, together
/// exactly 0..n, matching `read_all`; each stream's revisions are contiguous.
pub async fn concurrent_appenders_to_many_streams_get_contiguous_positions<S: EventStore>(store: &S) {
    const STREAMS: u64 = 16;
    const APPENDS_EACH: u64 = 20;
    let writers = (0..STREAMS).map(|k| async move {
        let s = stream(&format!("many-{k}"));
        let mut done = Vec::new();
        let mut next = 0u64;
        for i in 0..APPENDS_EACH {
            let batch = events("Many", k * 1000 + i * 10, 1 + (k + i) % 3);
            let expected =
                if i == 0 { ExpectedRevision::NoStream } else { ExpectedRevision::Exact(Revision(next - 1)) };
            let r = append(store, &s, expected, &batch).await;
            assert_eq!(r.first_revision, Revision(next), "{s}: revisions");
            next += batch.len() as u64;
            done.push((r, batch));
        }
        (s, next, done)
    });
    let results = within_for(WAIT * 4, "concurrent writers", join_all(writers)).await;

    let mut ledger = Ledger::default();
    for (_, _, done) in &results {
        for (r, batch) in done {
            ledger.record(r, batch);
        }
    }
    let total = ledger.len();
    let all: Vec<u64> = (0..total).collect();
    assert_eq!(ledger.by_position.keys().copied().collect::<Vec<_>>(), all, "positions of all appends have gaps");
    ledger.check(&whole_log(store).await, &all, "read_all after concurrent appends");
    assert_eq!(head(store).await, Some(Position(total - 1)));
    let mut seen_ids = HashSet::new();
    for (s, count, _) in &results {
        let read = stream_events(store, s, ReadFrom::Start, Direction::Forwards, ALL).await;
        assert_eq!(revisions(&read), (0..*count).collect::<Vec<_>>(), "{s}: revisions");
        assert!(read.windows(2).all(|w| w[0].position < w[1].position), "{s}: positions do not follow revisions");
        ledger.check(&read, &ledger.positions_where(|st, _| st == s), &format!("read_stream({s})"));
        seen_ids.extend(read.iter().map(|e| e.id));
    }
    assert_eq!(seen_ids.len() as u64, total);
}
