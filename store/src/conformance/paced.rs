//! Paced subscriptions (`Subscription::pace`): a consumer that asks to be woken at most every
//! few milliseconds still gets every event, once, in order, with one `CaughtUp`.
//!
//! Why this exists: the projectors and the key ring pace their subscriptions, so a backend that
//! coalesced wrongly (skipping the events published during a pause, or re-sending them) would
//! corrupt every view. Timing is not checked here: it is a hint, measured by the benchmarks.

use std::time::Duration;

use futures::future::join_all;

use super::subscribe::{assert_quiet, read_events_and_caught_up, subscribe_all, subscribe_stream};
use super::{append, events, positions, revisions, stream, whole_log, within_for, WAIT};
use crate::{EventFilter, EventStore, ExpectedRevision, RecordedEvent, SubscribeFrom};

/// Many small appends from concurrent appenders (many publishes, most of them during a pause)
/// reach paced subscribers to `$all` (from the start, with history; and filtered) and to one
/// stream exactly as `read_all` has them.
pub async fn paced_subscribers_receive_every_event_in_order<S: EventStore>(store: &S) {
    const HISTORY: u64 = 40;
    const APPENDERS: u64 = 4;
    const ROUNDS: u64 = 60;
    for k in 0..HISTORY {
        append(store, &stream(&format!("paced-{}", k % APPENDERS)), ExpectedRevision::Any, &events("Past", k, 1)).await;
    }
    let pace = Duration::from_millis(20);
    let mut all_sub = subscribe_all(store, SubscribeFrom::Start, EventFilter::all()).await;
    let mut filtered_sub =
        subscribe_all(store, SubscribeFrom::Start, EventFilter::all().event_type_prefix("Odd")).await;
    let watched = stream("paced-1");
    let mut stream_sub = subscribe_stream(store, &watched, SubscribeFrom::Start).await;
    for sub in [&mut all_sub, &mut filtered_sub, &mut stream_sub] {
        sub.pace(pace);
    }

    let appends = (0..APPENDERS).map(|a| async move {
        let s = stream(&format!("paced-{a}"));
        for round in 0..ROUNDS {
            let event_type = if round % 2 == 1 { "Odd" } else { "Even" };
            append(store, &s, ExpectedRevision::Any, &events(event_type, round, 1)).await;
            if round % 10 == 0 {
                // Some appends land during a pause, some right after one.
                tokio::time::sleep(pace / 2).await;
            }
        }
    });
    within_for(WAIT * 2, "appends beside paced subscribers", join_all(appends)).await;
    let log = whole_log(store).await;
    let total = log.len();
    assert_eq!(total as u64, HISTORY + APPENDERS * ROUNDS);

    let (events, caught_up) = read_events_and_caught_up(&mut all_sub, total, "paced subscriber").await;
    assert_eq!(positions(&events), (0..total as u64).collect::<Vec<_>>(), "paced subscriber: positions");
    assert_eq!(events, log, "paced subscriber: events differ from read_all");
    assert_eq!(caught_up.len(), 1, "paced subscriber: CaughtUp sent {} times", caught_up.len());
    assert!(caught_up[0] as u64 >= HISTORY, "paced subscriber: CaughtUp before the history");

    let odd: Vec<RecordedEvent> = log.iter().filter(|e| e.event_type == "Odd").cloned().collect();
    let (events, caught_up) =
        read_events_and_caught_up(&mut filtered_sub, odd.len(), "paced filtered subscriber").await;
    assert_eq!(events, odd, "paced filtered subscriber: events differ from read_all");
    assert_eq!(caught_up.len(), 1, "paced filtered subscriber: CaughtUp sent {} times", caught_up.len());

    let expected: Vec<RecordedEvent> = log.iter().filter(|e| e.stream == watched).cloned().collect();
    let (events, caught_up) =
        read_events_and_caught_up(&mut stream_sub, expected.len(), "paced stream subscriber").await;
    assert_eq!(revisions(&events), (0..expected.len() as u64).collect::<Vec<_>>(), "paced stream subscriber");
    assert_eq!(events, expected, "paced stream subscriber: events differ from read_all");
    assert_eq!(caught_up.len(), 1, "paced stream subscriber: CaughtUp sent {} times", caught_up.len());

    for (sub, what) in
        [(&mut all_sub, "paced"), (&mut filtered_sub, "paced filtered"), (&mut stream_sub, "paced stream")]
    {
        assert_quiet(sub, what).await;
    }
}
