//! Bounded pages: `read_all_page` and `read_stream_bounded`, over several namespaces.
//!
//! Why this exists: pages bounded in count only held a GB of 1 MB events, and a filtered read
//! scanned other tenants' events until it filled. A bounded page may be short without being the
//! end, so what must hold is that following `next` reads every matching event exactly once, in
//! order, whatever the bounds, and that a namespace-pinned filter (the API's `acme/…`) sees
//! exactly its namespace's events.

use serde_json::json;

use super::{append, read_all, stream, within, Ledger, ALL};
use crate::{
    Direction, EventData, EventFilter, EventStore, ExpectedRevision, PageLimits, ReadFrom, ReadStreamOutcome,
    RecordedEvent, Revision,
};

/// An event whose data is about `size` bytes.
fn sized(event_type: &str, n: u64, size: usize) -> EventData {
    EventData::json(event_type, &json!({ "n": n, "pad": "x".repeat(size) })).expect("valid event")
}

async fn page_all<S: EventStore>(
    store: &S,
    direction: Direction,
    limits: PageLimits,
    filter: &EventFilter,
) -> Vec<RecordedEvent> {
    let mut from = match direction {
        Direction::Forwards => ReadFrom::Start,
        Direction::Backwards => ReadFrom::End,
    };
    let mut out: Vec<RecordedEvent> = Vec::new();
    for step in 0..10_000 {
        let what = format!("page {step} of {filter:?} {direction:?} with {limits:?}");
        let page = match within(&what, store.read_all_page(from, direction, limits, filter)).await {
            Ok(page) => page,
            Err(e) => panic!("{what}: {e:?}"),
        };
        assert!(page.events.len() <= limits.max_count, "{what}: {} events", page.events.len());
        let bytes: usize = page.events.iter().map(RecordedEvent::size).sum();
        assert!(page.events.len() <= 1 || bytes <= limits.max_bytes, "{what}: {bytes} bytes");
        assert!(page.events.iter().all(|e| filter.matches(e.stream.as_str(), &e.event_type)), "{what}");
        out.extend(page.events);
        if page.reached_end {
            return out;
        }
        let next = page.next.unwrap_or_else(|| panic!("{what}: not the end, yet no next"));
        from = ReadFrom::At(next);
    }
    panic!("paging {filter:?} never reached the end")
}

/// Following `next` from `read_all_page` returns exactly what one unbounded `read_all` returns,
/// forwards and backwards, for filters pinning a namespace or not, under every kind of bound.
pub async fn read_all_pages_continue_to_every_event_exactly_once<S: EventStore>(store: &S) {
    let mut ledger = Ledger::default();
    let streams = [stream("pg-a/order-1"), stream("pg-b/order-1"), stream("pg-a/order-2"), stream("pg-plain")];
    for k in 0..24u64 {
        let target = &streams[(k * 7 % 5 % 4) as usize];
        let batch: Vec<EventData> = (0..(k % 3 + 1))
            .map(|i| sized(if k % 4 == 0 { "rare" } else { "common" }, k * 10 + i, (k as usize % 5) * 300))
            .collect();
        ledger.record(&append(store, target, ExpectedRevision::Any, &batch).await, &batch);
    }
    let filters = [
        EventFilter::all(),
        EventFilter::all().stream_prefix("pg-a/"),
        EventFilter::all().stream_prefix("pg-a/order-2"),
        EventFilter::all().stream_prefix("pg-b/").event_type_prefix("rare"),
        EventFilter::all().stream_prefix("pg-a/").stream_prefix("pg-b/"),
        EventFilter::all().event_type_prefix("rare"),
        EventFilter::all().stream_prefix("pg-nobody/"),
    ];
    let bounds = [
        PageLimits::count(3),
        PageLimits { max_count: 100, max_bytes: 1_000, max_scan: usize::MAX },
        PageLimits { max_count: 100, max_bytes: 1, max_scan: usize::MAX },
        PageLimits { max_count: 100, max_bytes: usize::MAX, max_scan: 2 },
        PageLimits { max_count: 2, max_bytes: 700, max_scan: 3 },
    ];
    for filter in &filters {
        for direction in [Direction::Forwards, Direction::Backwards] {
            let from = match direction {
                Direction::Forwards => ReadFrom::Start,
                Direction::Backwards => ReadFrom::End,
            };
            let expected = read_all(store, from, direction, ALL, filter).await;
            let wanted = ledger.positions_where(|s, e| filter.matches(s.as_str(), e.event_type()));
            let mut in_order = wanted.clone();
            if direction == Direction::Backwards {
                in_order.reverse();
            }
            ledger.check(&expected, &in_order, &format!("read_all of {filter:?} {direction:?}"));
            for limits in bounds {
                let paged = page_all(store, direction, limits, filter).await;
                ledger.check(&paged, &in_order, &format!("pages of {filter:?} {direction:?} with {limits:?}"));
            }
        }
    }
}

/// `read_stream_bounded` stops at the byte bound with at least one event; reading on from the
/// revision after the last returns every event once.
pub async fn read_stream_bounded_in_bytes_continues_exactly<S: EventStore>(store: &S) {
    let s = stream("pg-c/big-1");
    let batch: Vec<EventData> = (0..9).map(|n| sized("big", n, 2_000 + n as usize * 100)).collect();
    append(store, &s, ExpectedRevision::NoStream, &batch).await;
    for max_bytes in [1, 4_500, 10_000, usize::MAX] {
        let mut got = Vec::new();
        let mut from = ReadFrom::Start;
        loop {
            let read = store.read_stream_bounded(&s, from, Direction::Forwards, 4, max_bytes).await;
            let events = match read {
                Ok(ReadStreamOutcome::Events(events)) => events,
                other => panic!("bounded read of {s} with {max_bytes} bytes: {other:?}"),
            };
            let bytes: usize = events.iter().map(RecordedEvent::size).sum();
            assert!(events.len() <= 4 && (events.len() <= 1 || bytes <= max_bytes), "{max_bytes}: {bytes} bytes");
            let Some(last) = events.last() else { break };
            from = ReadFrom::At(Revision(last.revision.0 + 1));
            got.extend(events.iter().map(|e| e.id));
        }
        let sent: Vec<_> = batch.iter().map(EventData::id).collect();
        assert_eq!(got, sent, "every event once with a bound of {max_bytes} bytes");
    }
}

/// Subscriptions over events far larger than their batches' byte bound deliver every event once,
/// in order, then `CaughtUp`, then live ones: a batch cut by bytes is not mistaken for the head.
pub async fn subscriptions_over_large_events_deliver_each_once<S: EventStore>(store: &S) {
    let s = stream("pg-d/large-1");
    let batch: Vec<EventData> = (0..6).map(|n| sized("large", n, 400_000)).collect();
    append(store, &s, ExpectedRevision::NoStream, &batch).await;
    let mut all = within("subscribe", store.subscribe_to_all(crate::SubscribeFrom::Start, EventFilter::all()))
        .await
        .expect("subscribe to all");
    let mut one = within("subscribe", store.subscribe_to_stream(&s, crate::SubscribeFrom::Start))
        .await
        .expect("subscribe to the stream");
    for sub in [&mut all, &mut one] {
        let mut got = Vec::new();
        while let crate::SubscriptionMessage::Event(e) = within("next message", sub.next()).await.expect("a message") {
            got.push(e.id);
        }
        assert_eq!(got, batch.iter().map(EventData::id).collect::<Vec<_>>(), "history, each once, before CaughtUp");
    }
    let live = vec![sized("large", 9, 400_000), sized("large", 10, 400_000), sized("large", 11, 400_000)];
    append(store, &s, ExpectedRevision::Any, &live).await;
    for sub in [&mut all, &mut one] {
        for sent in &live {
            let e = within("live event", sub.next_event()).await.expect("a live event");
            assert_eq!(e.id, sent.id(), "live events in order");
        }
    }
}
