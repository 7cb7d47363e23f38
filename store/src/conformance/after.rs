//! Reads past a position (`ReadFrom::After`, `SubscribeFrom::At`), the store's count of events
//! between two positions (`distance`), and the capabilities a backend states.
//!
//! Why this exists: positions are opaque outside their backend (they may be sparse), so callers
//! say "after this event" and "how far behind" instead of computing `p + 1` or `head - p`. These
//! cases check those answers against the log itself, using only positions the store handed out,
//! so they hold on dense and sparse backends alike; what only dense positions promise is checked
//! where the backend states [`Capabilities::dense_positions`](crate::Capabilities).

use super::subscribe::{read_until_caught_up, subscribe_all};
use super::{append, events, read_all, read_stream, stream, whole_log, within, ALL};
use crate::{
    Direction, EventFilter, EventStore, ExpectedRevision, PageLimits, ReadFrom, ReadStreamOutcome, RecordedEvent,
    Revision, SubscribeFrom,
};

fn ids(events: &[RecordedEvent]) -> Vec<uuid::Uuid> {
    events.iter().map(|e| e.id).collect()
}

/// `ReadFrom::After(p)` is the next event in the read's direction, `p` excluded, for `$all`
/// (`read_all` and `read_all_page`) and streams; `SubscribeFrom::At(p)` starts at `p`, included.
pub async fn reads_after_a_position_exclude_it<S: EventStore>(store: &S) {
    let (s, other) = (stream("after-1"), stream("after-other"));
    for (k, target) in [&s, &other, &s, &other, &s].into_iter().enumerate() {
        append(store, target, ExpectedRevision::Any, &events("A", k as u64 * 10, 1 + k as u64 % 2)).await;
    }
    let log = whole_log(store).await;
    let n = log.len();
    assert_eq!(n, 7);
    for (i, event) in log.iter().enumerate() {
        let p = event.position;
        let forwards = read_all(store, ReadFrom::After(p), Direction::Forwards, ALL, &EventFilter::all()).await;
        assert_eq!(ids(&forwards), ids(&log[i + 1..]), "read_all(After({p}), Forwards): the events after it");
        let backwards = read_all(store, ReadFrom::After(p), Direction::Backwards, ALL, &EventFilter::all()).await;
        let before: Vec<_> = log[..i].iter().rev().cloned().collect();
        assert_eq!(ids(&backwards), ids(&before), "read_all(After({p}), Backwards): the events before it");
        let page = within(
            "read_all_page(After)",
            store.read_all_page(ReadFrom::After(p), Direction::Forwards, PageLimits::count(2), &EventFilter::all()),
        )
        .await
        .expect("read_all_page(After)");
        assert_eq!(ids(&page.events), ids(&log[i + 1..(i + 3).min(n)]), "read_all_page(After({p}), Forwards)");

        let mut sub = subscribe_all(store, SubscribeFrom::At(p), EventFilter::all()).await;
        let delivered = read_until_caught_up(&mut sub, "subscribe_to_all(At)").await;
        assert_eq!(ids(&delivered), ids(&log[i..]), "subscribe_to_all(At({p})): from it, included");
    }

    let stream_events = |outcome: ReadStreamOutcome| ids(&outcome.into_events());
    let all_of_s: Vec<_> = log.iter().filter(|e| e.stream == s).cloned().collect();
    assert_eq!(all_of_s.len(), 3);
    for r in 0..3u64 {
        let forwards = read_stream(store, &s, ReadFrom::After(Revision(r)), Direction::Forwards, ALL).await;
        assert_eq!(stream_events(forwards), ids(&all_of_s[r as usize + 1..]), "read_stream(After({r}), Forwards)");
        let backwards = read_stream(store, &s, ReadFrom::After(Revision(r)), Direction::Backwards, ALL).await;
        let before: Vec<_> = all_of_s[..r as usize].iter().rev().cloned().collect();
        assert_eq!(stream_events(backwards), ids(&before), "read_stream(After({r}), Backwards)");
    }
}

/// `distance(after, through)` counts the events after `after` up to `through` where the backend
/// says it can ([`Capabilities::counts_distance`](crate::Capabilities)), and is `None` where it
/// says it cannot; positions the backend calls dense are the indexes of their events.
pub async fn distance_counts_the_events_between<S: EventStore>(store: &S) {
    let capabilities = store.capabilities();
    for (k, name) in ["dist-a", "dist-b", "dist-a"].into_iter().enumerate() {
        append(store, &stream(name), ExpectedRevision::Any, &events("D", k as u64 * 10, 2 + k as u64)).await;
    }
    let log = whole_log(store).await;
    let distance = |after, through| async move {
        within("distance", store.distance(after, through)).await.expect("distance answers")
    };
    for (j, through) in log.iter().enumerate() {
        let from_start = distance(None, through.position).await;
        for (i, after) in log.iter().enumerate() {
            let between = distance(Some(after.position), through.position).await;
            if capabilities.counts_distance {
                let want = j.saturating_sub(i) as u64;
                assert_eq!(between, Some(want), "distance({}, {})", after.position, through.position);
            } else {
                assert_eq!(between, None, "distance without the counts_distance capability");
            }
        }
        if capabilities.counts_distance {
            assert_eq!(from_start, Some(j as u64 + 1), "distance(None, {})", through.position);
        }
    }
    if let Some(dense) = capabilities.dense_positions {
        for (i, event) in log.iter().enumerate() {
            assert_eq!(dense.index(event.position), i as u64, "dense positions: event {i}'s index");
            assert_eq!(dense.position(i as u64), event.position, "dense positions: the position of index {i}");
        }
    }
}
