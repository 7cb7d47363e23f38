//! Reads: `read_stream`, `read_all` (with filters), `head` and `recorded_at`.
//!
//! Why this exists: projectors and the query API page through streams and `$all` in both
//! directions from any starting point; these cases pin down exactly what each read returns.

use std::collections::HashMap;

use futures::future::join_all;

use super::{
    append, event, events, head, positions, read_all, read_stream, revisions, stream, stream_events, try_append,
    whole_log, Ledger, ALL,
};
use crate::{
    Direction, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom, ReadStreamOutcome, RecordedEvent,
    Revision,
};

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
        (ReadFrom::End, Forwards, 4, vec![]),
        (ReadFrom::Start, Backwards, 4, vec![0]),
        (ReadFrom::Start, Forwards, 0, vec![]),
    ];
    // Past the head is no position the store handed out: only asked where any position may be
    // read from (KurrentDB fails a read from a non-boundary).
    let past_head: Vec<(ReadFrom<Position>, Direction, usize, Vec<u64>)> =
        vec![(ReadFrom::At(Position(n)), Forwards, 4, vec![]), (ReadFrom::At(Position(1000)), Forwards, 4, vec![])];
    let cases =
        if store.capabilities().reads_from_any_position { cases.into_iter().chain(past_head).collect() } else { cases };
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
