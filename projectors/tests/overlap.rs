//! Two projectors on one view at once (issue 14: a projector that lost its lease may still be
//! applying when the next holder starts; exclusion must not be what keeps the view right). Two
//! projectors share one view and one log, one of them is aborted and restarted at random points
//! while events — some of which cannot apply and are parked — keep arriving; the view ends equal
//! to one run from position 0, and each unappliable event is parked exactly once (parked ids
//! are derived from stream and position, so both projectors' parks are one entry).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use annals_projectors::{MessagesProjection, Projection, Projector, ProjectorConfig, TantivyViewStore};
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{
    Direction, EventData, EventStore, ExpectedRevision, Position, ReadFrom, ReadStreamOutcome, StreamId,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projectors_at_once_on_one_view_give_the_view_of_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(dir.path().join("store"))).await.unwrap();
    let config = ProjectorConfig {
        batch_size: 7,
        flush_interval: Duration::from_millis(3),
        cache_docs: 0,
        parallelism: 2,
        live_pace: Duration::from_millis(1),
    };
    let view = Arc::new(TantivyViewStore::open(&dir.path().join("shared"), MessagesProjection.schema()).unwrap());
    let start = |config: ProjectorConfig| {
        let s: Arc<dyn EventStore> = Arc::new(store.clone());
        let projector = Projector::new(s, view.clone(), MessagesProjection, config);
        let status = projector.status();
        (status, tokio::spawn(projector.run(CancellationToken::new())))
    };
    let (_, mut a) = start(config.clone());
    let (b_status, b) = start(ProjectorConfig { batch_size: 3, parallelism: 1, ..config.clone() });
    let mut last = Position::from_code(0);
    let mut unappliable = Vec::new();
    for round in 0..12u64 {
        for i in 0..25u64 {
            let n = round * 25 + i;
            let stream = n % 9;
            let (event_type, data) = match n % 6 {
                0 => (
                    "message.enqueued",
                    json!({ "message_id": format!("o{stream}"), "recipient": { "id": "u" }, "channel": "email", "subject": format!("s{n}") }),
                ),
                5 => ("message.sent", json!({ "message_id": 42 })),
                k => (
                    ["message.routed", "message.sent", "message.delivered", "message.opened"][k as usize - 1],
                    json!({ "message_id": format!("o{stream}"), "provider": "ses" }),
                ),
            };
            let id = StreamId::new(format!("acme/message-o{stream}")).unwrap();
            last = store
                .append_to_stream(&id, ExpectedRevision::Any, vec![EventData::json(event_type, &data).unwrap()])
                .await
                .unwrap()
                .last_position;
            if n % 6 == 5 {
                unappliable.push(last.code());
            }
        }
        // One of the two dies wherever it is (as a holder that lost its lease is aborted) and
        // comes back while the other goes on.
        tokio::time::sleep(Duration::from_millis(round * 3 % 17)).await;
        a.abort();
        let _ = a.await;
        a = start(config.clone()).1;
    }
    for _ in 0..1_000 {
        if b_status.has_applied(last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(b_status.has_applied(last), "not applied within 10 s: {:?}", b_status.snapshot());
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.abort();
    b.abort();
    let _ = (a.await, b.await);

    let alone = Arc::new(TantivyViewStore::open(&dir.path().join("alone"), MessagesProjection.schema()).unwrap());
    let s: Arc<dyn EventStore> = Arc::new(store.clone());
    let projector = Projector::new(s, alone.clone(), MessagesProjection, ProjectorConfig::default());
    let status = projector.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(projector.run(shutdown.clone()));
    for _ in 0..1_000 {
        if status.has_applied(last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(
        common::all_docs(view.as_ref(), "acme").await,
        common::all_docs(alone.as_ref(), "acme").await,
        "two projectors at once and one run disagree"
    );
    // Many projectors (two at once, then one alone) parked into the same stream: one entry each.
    let parked = annals_projectors::parked::parked_stream(MessagesProjection::NAME, 1).unwrap();
    let entries = match store.read_stream(&parked, ReadFrom::Start, Direction::Forwards, 10_000).await.unwrap() {
        ReadStreamOutcome::Events(events) => events,
        ReadStreamOutcome::StreamNotFound => Vec::new(),
    };
    let mut positions: Vec<u64> = entries
        .iter()
        .map(|e| serde_json::from_slice::<serde_json::Value>(&e.data).unwrap()["position"].as_u64().unwrap())
        .collect();
    positions.sort_unstable();
    let parked_at: std::collections::BTreeSet<u64> = positions.iter().copied().collect();
    assert_eq!(parked_at.len(), positions.len(), "an event parked twice: {positions:?}");
    assert!(unappliable.iter().all(|p| parked_at.contains(p)), "an unappliable event not parked");
    store.close().await.unwrap();
}
