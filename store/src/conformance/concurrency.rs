//! Concurrent readers and writers.
//!
//! Why this exists: the store is shared by many tasks; appends must stay atomic for readers
//! running meanwhile, racing `Exact` writers must get exactly one winner per revision, and
//! concurrent appenders must still get contiguous positions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::join_all;
use uuid::Uuid;

use super::{
    append, events, head, positions, read_stream, revisions, stream, stream_events, try_append, whole_log, within_for,
    Ledger, ALL, WAIT,
};
use crate::{
    AppendResult, CurrentRevision, Direction, EventData, EventStore, ExpectedRevision, Position, ReadFrom,
    ReadStreamOutcome, Revision, StoreError,
};

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
