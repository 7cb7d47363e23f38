//! The parked log's fold and the replay selection rule, against the real embedded store.

use annals_store::engine::{EmbeddedStore, EngineConfig};
use uuid::Uuid;

use super::*;

async fn store(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::open(EngineConfig::new(dir)).await.unwrap()
}

fn entry(position: u64) -> ParkedEntry {
    ParkedEntry {
        projection: "messages".into(),
        position,
        stream: "acme/message-m1".into(),
        event_id: Uuid::nil(),
        event_type: "message.sent".into(),
        error: "bad data".into(),
    }
}

async fn park(store: &EmbeddedStore, stream: &StreamId, position: u64) {
    let data = EventData::json(PARKED, &entry(position)).unwrap();
    store.append_to_stream(stream, ExpectedRevision::Any, vec![data]).await.unwrap();
}

async fn outcome(store: &EmbeddedStore, stream: &StreamId, position: u64, at: u64, outcome: ReplayOutcome) {
    let replayed = Replayed { position, replayed_at: at, outcome, error: None };
    let data = replayed_entry(stream, &replayed).unwrap();
    store.append_to_stream(stream, ExpectedRevision::Any, vec![data]).await.unwrap();
}

#[test]
fn generations_have_their_own_streams() {
    assert_eq!(parked_stream("messages", 1).unwrap().as_str(), "$parked-messages");
    assert_eq!(parked_stream("messages", 3).unwrap().as_str(), "$parked-messages-gen-3");
}

#[tokio::test]
async fn a_replay_takes_what_was_parked_before_it_and_not_applied_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let stream = parked_stream("messages", 1).unwrap();
    for position in [10, 20, 30, 40] {
        park(&store, &stream, position).await;
    }
    // 10 was applied by a replay at 25; 20 failed again at 25; 30 was applied at 50.
    outcome(&store, &stream, 10, 25, ReplayOutcome::Applied).await;
    outcome(&store, &stream, 20, 25, ReplayOutcome::Failed).await;
    outcome(&store, &stream, 30, 50, ReplayOutcome::Applied).await;
    let mut log = ParkedLog::new(stream.clone());
    log.refresh(&store).await.unwrap();

    let at = |p| log.to_replay(Position::from_code(p), None).into_iter().map(Position::code).collect::<Vec<_>>();
    assert_eq!(at(25), vec![10, 20], "before 25 nothing was applied; 30 and 40 come later");
    assert_eq!(at(50), vec![20, 30, 40], "10 was applied at 25; 30's outcome at 50 itself does not count");
    assert_eq!(at(60), vec![20, 40]);
    let only =
        log.to_replay(Position::from_code(60), Some(&[40, 10, 99])).into_iter().map(Position::code).collect::<Vec<_>>();
    assert_eq!(only, vec![40], "positions narrow the choice; an applied or unknown one is not taken");

    assert_eq!(log.unresolved(), 2, "20 and 40");
    let entries = log.entries();
    assert_eq!(entries.iter().map(|p| p.entry.position).collect::<Vec<_>>(), vec![10, 20, 30, 40]);
    assert!(entries[0].resolved() && !entries[1].resolved());
    assert_eq!(entries[1].replays.len(), 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn refresh_reads_only_what_is_new_and_entries_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let stream = parked_stream("audit", 2).unwrap();
    let mut log = ParkedLog::new(stream.clone());
    log.refresh(&store).await.unwrap();
    assert_eq!(log.unresolved(), 0, "no stream yet");
    park(&store, &stream, 7).await;
    log.refresh(&store).await.unwrap();
    assert_eq!(log.unresolved(), 1);
    // The same outcome recorded twice (a replay redone after a crash) is one entry.
    outcome(&store, &stream, 7, 9, ReplayOutcome::Failed).await;
    outcome(&store, &stream, 7, 9, ReplayOutcome::Failed).await;
    log.refresh(&store).await.unwrap();
    assert_eq!(log.unresolved(), 1);
    assert_eq!(log.entries()[0].replays.len(), 1, "{:?}", log.entries());
    // Redone by different code with another outcome: the later one stands.
    outcome(&store, &stream, 7, 9, ReplayOutcome::Applied).await;
    log.refresh(&store).await.unwrap();
    assert_eq!(log.unresolved(), 0);
    assert_eq!(log.entries()[0].replays.len(), 1, "{:?}", log.entries());
    assert_eq!(log.entries()[0].replays[0].outcome, ReplayOutcome::Applied);
    store.close().await.unwrap();
}

#[test]
fn the_subscription_filter_lets_replay_requests_through() {
    let by_type = with_replay_requests(&EventFilter::all().event_type_prefix("message."));
    assert!(by_type.matches("$parked-messages", REPLAY_REQUESTED));
    assert!(by_type.matches("$parked-messages-gen-2", REPLAY_REQUESTED), "every generation's");
    assert!(by_type.matches("acme/message-1", "message.sent"));
    let by_stream = with_replay_requests(&EventFilter::all().stream_prefix("acme/"));
    assert!(by_stream.matches("$parked-messages", REPLAY_REQUESTED));
    assert!(by_stream.matches("$parked-messages-gen-3", REPLAY_REQUESTED));
    assert!(!by_stream.matches("other/x", "message.sent"));
    assert!(with_replay_requests(&EventFilter::all()).is_all(), "everything already passes");
    assert!(is_parked_stream(&parked_stream("audit", 4).unwrap()));
    assert!(!is_parked_stream(&StreamId::new("acme/parked-x").unwrap()));
}
