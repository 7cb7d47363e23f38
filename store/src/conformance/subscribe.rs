//! Subscriptions to `$all` and to one stream: catch-up, `CaughtUp`, then live events.
//!
//! Why this exists: projectors are driven by subscriptions, so every event must arrive exactly
//! once, in order, with no gap at the switch from history to live and no loss for a slow reader.
//! The helpers that read from a `Subscription` live here because only these cases use them.

use std::time::Duration;

use futures::future::join_all;

use super::{append, event, events, head, positions, revisions, stream, whole_log, within, within_for, Ledger, WAIT};
use crate::{
    EventData, EventFilter, EventStore, ExpectedRevision, Position, RecordedEvent, Revision, StreamId, SubscribeFrom,
    Subscription, SubscriptionMessage,
};

/// How long a subscription must stay silent to count as "nothing more is coming".
const QUIET: Duration = Duration::from_millis(300);

async fn next_message(sub: &mut Subscription, what: &str) -> SubscriptionMessage {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Err(_) => panic!("{what}: no subscription message within {WAIT:?}"),
        Ok(Err(e)) => panic!("{what}: subscription failed: {e:?}"),
        Ok(Ok(message)) => message,
    }
}

/// Reads events until `CaughtUp`, which must come within `WAIT`.
pub(super) async fn read_until_caught_up(sub: &mut Subscription, what: &str) -> Vec<RecordedEvent> {
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
pub(super) async fn read_events_and_caught_up(
    sub: &mut Subscription,
    n: usize,
    what: &str,
) -> (Vec<RecordedEvent>, Vec<usize>) {
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
pub(super) async fn assert_quiet(sub: &mut Subscription, what: &str) {
    if let Ok(message) = tokio::time::timeout(QUIET, sub.next()).await {
        panic!("{what}: expected no further message, got {message:?}");
    }
}

pub(super) async fn subscribe_all<S: EventStore>(
    store: &S,
    from: SubscribeFrom<Position>,
    filter: EventFilter,
) -> Subscription {
    let what = format!("subscribe_to_all({from:?}, {filter:?})");
    match within(&what, store.subscribe_to_all(from, filter)).await {
        Ok(sub) => sub,
        Err(e) => panic!("{what} failed: {e:?}"),
    }
}

pub(super) async fn subscribe_stream<S: EventStore>(
    store: &S,
    stream: &StreamId,
    from: SubscribeFrom<Revision>,
) -> Subscription {
    let what = format!("subscribe_to_stream({stream}, {from:?})");
    match within(&what, store.subscribe_to_stream(stream, from)).await {
        Ok(sub) => sub,
        Err(e) => panic!("{what} failed: {e:?}"),
    }
}

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
