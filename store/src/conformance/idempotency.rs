//! Idempotent retries and event-id conflicts.
//!
//! Why this exists: a client that lost the answer to an append retries it, and must get the
//! original result with nothing written twice, whatever expected revision it sent and whatever
//! was appended since; ids reused in another batch or stream must fail with a typed error.
//! Ids are scoped by the stream's namespace (the name up to its first `/`, which the API uses as
//! the tenant): one namespace never sees, blocks or answers for another's ids.

use uuid::Uuid;

use super::{
    append, assert_idempotency_conflict, assert_log_is, event, events, expected_result, head, ids, read_stream, stream,
    try_append, Ledger,
};
use crate::{
    AppendResult, Direction, EventData, EventStore, ExpectedRevision, ReadFrom, ReadStreamOutcome, Revision,
    StoreError, StreamId,
};

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
    if !store.capabilities().cross_stream_id_conflicts {
        // The weaker promise: the store cannot see the other stream's ids, so the batch is new
        // events of this stream, and the stored ones are untouched.
        let r = append(store, &s2, ExpectedRevision::NoStream, &stored).await;
        assert_eq!((r.first_revision, r.last_revision), (Revision(0), Revision(1)), "{s2}: new events");
        let again = read_stream(store, &s1, ReadFrom::Start, Direction::Forwards, 10).await.into_events();
        assert_eq!(again.iter().map(|e| e.id).collect::<Vec<_>>(), ids(&stored), "{s1} is unchanged");
        return;
    }

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

/// Large batches: an exact retry returns the original result, and a batch that overlaps stored ids
/// in any place is a conflict — for time-ordered (v7) ids, for scattered (v4) ids, and for a batch
/// whose id span brackets many ids stored elsewhere (backends may look ids up by range).
pub async fn large_batches_retry_and_conflict_like_small_ones<S: EventStore>(store: &S) {
    let s = stream("large-retry");
    let mut ledger = Ledger::default();
    let v7 = events("Big", 0, 300);
    let r = append(store, &s, ExpectedRevision::NoStream, &v7).await;
    ledger.record(&r, &v7);
    let v4: Vec<EventData> = events("Scattered", 0, 40).into_iter().map(|e| e.with_id(Uuid::new_v4())).collect();
    let r4 = append(store, &s, ExpectedRevision::Exact(Revision(299)), &v4).await;
    ledger.record(&r4, &v4);

    assert_retry_returns_original(store, &s, ExpectedRevision::NoStream, &v7, &r, &ledger).await;
    assert_retry_returns_original(store, &s, ExpectedRevision::Exact(Revision(299)), &v4, &r4, &ledger).await;

    // One stored id anywhere in a large batch of fresh ones is a conflict.
    for at in [0usize, 17, 39] {
        let mut batch = events("Fresh", 1000, 40);
        batch[at] = v7[150].clone();
        let result = try_append(store, &s, ExpectedRevision::Any, &batch).await;
        assert_idempotency_conflict(result, &[&s], &[v7[150].id()], &format!("stored id at index {at} of 40"));
        let mut batch: Vec<EventData> =
            events("Fresh", 2000, 40).into_iter().map(|e| e.with_id(Uuid::new_v4())).collect();
        batch[at] = v4[at].clone();
        let result = try_append(store, &s, ExpectedRevision::Any, &batch).await;
        assert_idempotency_conflict(result, &[&s], &[v4[at].id()], &format!("stored v4 id at index {at} of 40"));
        assert_log_is(store, &ledger, "after conflicting large batches").await;
    }

    // A fresh batch whose first and last ids were made before and after 100 stored ones: its id
    // span holds many stored ids, none of its own.
    let before = events("Bracket", 0, 1);
    let other = stream("large-retry-other");
    let middle = events("Middle", 0, 100);
    let r_other = append(store, &other, ExpectedRevision::NoStream, &middle).await;
    ledger.record(&r_other, &middle);
    let mut bracket = before;
    bracket.extend(events("Bracket", 1, 9));
    let r_bracket = append(store, &s, ExpectedRevision::Any, &bracket).await;
    assert_eq!(r_bracket.first_revision, Revision(340), "a fresh bracketing batch is new");
    ledger.record(&r_bracket, &bracket);
    // And with one of the bracketed stored ids inside, it conflicts.
    let mut bracket2 = events("Bracket2", 0, 1);
    let more = events("Middle2", 0, 50);
    let r_more = append(store, &other, ExpectedRevision::Any, &more).await;
    ledger.record(&r_more, &more);
    bracket2.extend(events("Bracket2", 1, 8));
    bracket2.push(more[25].clone());
    let result = try_append(store, &s, ExpectedRevision::Any, &bracket2).await;
    assert_idempotency_conflict(result, &[&s, &other], &[more[25].id()], "bracketing batch with a stored id");
    assert_log_is(store, &ledger, "after the bracketing batches").await;
}

/// The same ids in two namespaces (stream names up to their first `/`) are two sets of events:
/// both appends succeed and are readable, a retry in each namespace answers that namespace's
/// original result, and within a namespace another stream is still a conflict that names only
/// that namespace's streams. Names without `/` (system streams) share the empty namespace.
pub async fn ids_are_scoped_by_namespace<S: EventStore>(store: &S) {
    let (a, b, b_other, plain) = (stream("ns-a/order-1"), stream("ns-b/order-1"), stream("ns-b/order-2"), stream("ns"));
    let mut ledger = Ledger::default();
    let shared = Uuid::new_v4();
    // The nil id, which deterministic-id clients hit first, is just another id.
    let in_a = vec![event("A", 0).with_id(shared), event("A", 1).with_id(Uuid::nil())];
    let ra = append(store, &a, ExpectedRevision::NoStream, &in_a).await;
    ledger.record(&ra, &in_a);
    let in_b = vec![event("B", 0).with_id(shared), event("B", 1).with_id(Uuid::nil())];
    let rb = match try_append(store, &b, ExpectedRevision::NoStream, &in_b).await {
        Ok(r) => r,
        Err(e) => panic!("ids stored in namespace ns-a must not matter in ns-b: {e:?}"),
    };
    assert_eq!(rb, expected_result(&b, 0, 2, 2), "the same ids in another namespace are new events");
    ledger.record(&rb, &in_b);
    let in_plain = vec![event("P", 0).with_id(shared)];
    let rp = append(store, &plain, ExpectedRevision::Any, &in_plain).await;
    assert_eq!(rp, expected_result(&plain, 0, 4, 1), "the empty namespace is a namespace too");
    ledger.record(&rp, &in_plain);
    assert_log_is(store, &ledger, "after the same ids in three namespaces").await;

    assert_retry_returns_original(store, &a, ExpectedRevision::Any, &in_a, &ra, &ledger).await;
    assert_retry_returns_original(store, &b, ExpectedRevision::NoStream, &in_b, &rb, &ledger).await;
    assert_retry_returns_original(store, &plain, ExpectedRevision::Any, &in_plain, &rp, &ledger).await;
    // A's batch sent to B's stream is not a retry there (the ids are B's own, at other content
    // but the same revisions: a retry is recognised by ids, so this answers B's original).
    let a_in_b = try_append(store, &b, ExpectedRevision::Any, &in_a).await.expect("B's own ids: B's retry");
    assert_eq!(a_in_b, rb, "a retry answers from its own namespace only");

    // Within namespace ns-b, another stream is a conflict, naming ns-b's streams only.
    let result = try_append(store, &b_other, ExpectedRevision::Any, &in_b).await;
    assert_idempotency_conflict(result, &[&b_other, &b], &ids(&in_b), "B's ids sent to another stream of ns-b");
    assert_log_is(store, &ledger, "after a conflict within ns-b").await;
    for (s, sent) in [(&a, &in_a), (&b, &in_b)] {
        let read = read_stream(store, s, ReadFrom::Start, Direction::Forwards, 10).await.into_events();
        assert_eq!(read.iter().map(|e| e.id).collect::<Vec<_>>(), ids(sent), "{s} holds its own events");
    }
}
