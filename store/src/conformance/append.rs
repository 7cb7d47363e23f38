//! Appends, revisions and positions, expected revisions, and the checks on a batch (empty, too
//! large).
//!
//! Why this exists: these are the write-side promises of `EventStore::append_to_stream` that a
//! single writer can observe — what one append stores and where, when an expected revision lets
//! it through, and which batches are refused outright.

use uuid::Uuid;

use super::{
    append, assert_log_is, assert_recorded, assert_wrong_expected, event, event_of_size, events, expected_result, head,
    read_stream, revisions, stream, stream_events, try_append, whole_log, Ledger, Limits, ALL,
};
use crate::{
    AppendResult, CurrentRevision, Direction, EventData, EventStore, ExpectedRevision, Position, ReadFrom,
    ReadStreamOutcome, Revision, StoreError,
};

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
// Batch validation and limits
// ---------------------------------------------------------------------------------------------

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
