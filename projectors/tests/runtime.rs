//! The projector runtime against the real embedded store and the real tantivy view: events
//! appended to the store become searchable documents; an event that cannot be applied is parked
//! in `$parked-messages` and the projection goes on; shutdown commits the batch in hand; and a
//! projection stopped and restarted many times ends with exactly the view a single run from
//! position 0 builds (the incremental = rebuild half of issue 4's property).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use annals_projectors::view_store::ViewReader;
use annals_projectors::{MessageStatus, MessagesProjection, Projection, Projector, ProjectorConfig, TantivyViewStore};
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{
    Direction, EventData, EventStore, ExpectedRevision, Position, ReadFrom, ReadStreamOutcome, StreamId,
};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use common::{all_docs, newest_first};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_messages_become_documents_and_bad_events_are_parked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    append(&store, "acme/message-m1", "message.enqueued", enqueued("m1", "ada@example.com")).await;
    append(&store, "acme/message-m1", "message.sent", sent("m1")).await;
    append(&store, "other/message-m2", "message.enqueued", enqueued("m2", "bob@example.com")).await;
    // Data that does not match the schema type: parked, not fatal.
    let bad = append(&store, "acme/message-m3", "message.sent", json!({ "message_id": 42 })).await;
    let last = append(&store, "acme/message-m1", "message.delivered", json!({ "message_id": "m1" })).await;

    let view = open_view(&dir.path().join("view"));
    let (status, shutdown, task) = start(&store, &view, ProjectorConfig::default());
    wait_until_applied(&status, last).await;

    let doc = view.get("acme", "acme/message-m1").await.unwrap().expect("m1 is in the view");
    assert_eq!(doc.source["status"], json!(MessageStatus::Delivered.as_str()));
    assert_eq!(doc.version, last);
    assert!(view.get("acme", "other/message-m2").await.unwrap().is_none(), "another tenant's message");
    let page = view.search(&newest_first("other", 100)).await.unwrap();
    assert_eq!(page.docs.len(), 1);
    assert_eq!(page.docs[0].source["recipient_email"], json!("bob@example.com"));
    assert!(view.get("acme", "acme/message-m3").await.unwrap().is_none(), "the only event of m3 was parked");

    let parked = read_parked(&store).await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0]["position"], json!(bad.code()));
    assert_eq!(parked[0]["stream"], json!("acme/message-m3"));
    assert!(parked[0]["error"].as_str().unwrap().contains("message.sent"), "{}", parked[0]);
    assert_eq!(status.snapshot().parked, 1);

    shutdown.cancel();
    task.await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_the_batch_in_hand() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let view = open_view(&dir.path().join("view"));
    // Batches that never fill and never time out: only the shutdown commits.
    let config =
        ProjectorConfig { batch_size: 1_000_000, flush_interval: Duration::from_secs(3600), ..Default::default() };
    let (status, shutdown, task) = start(&store, &view, config);
    let mut last = Position::from_code(0);
    for i in 0..20 {
        last =
            append(&store, &format!("message-s{i}"), "message.enqueued", enqueued(&format!("s{i}"), "x@example.com"))
                .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(view.checkpoint().await.unwrap(), None, "nothing is committed before the batch ends");
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(view.checkpoint().await.unwrap().map(|c| c.position), Some(last));
    assert!(status.has_applied(last));
    assert_eq!(view.search(&newest_first("", 100)).await.unwrap().total, 20);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_and_restarting_gives_the_view_of_one_run_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let incremental = dir.path().join("incremental");
    // A cache smaller than the number of messages (documents are also reloaded from the view),
    // and two partitioned workers against the one of the rebuild.
    let config = ProjectorConfig {
        batch_size: 7,
        flush_interval: Duration::from_millis(20),
        cache_docs: 3,
        parallelism: 2,
        live_pace: Duration::from_millis(5),
    };
    let types = ["message.enqueued", "message.routed", "message.sent", "message.delivered", "message.opened"];
    let mut last = Position::from_code(0);
    for round in 0..6 {
        // A projector runs while events arrive, then stops; the next round starts a new one.
        let view = open_view(&incremental);
        let (status, shutdown, task) = start(&store, &view, config.clone());
        for m in 0..8 {
            let stream = format!("message-r{m}");
            let event_type = types[(round + m) % types.len()];
            let data = if event_type == "message.enqueued" {
                enqueued(&format!("r{m}"), &format!("r{m}@example.com"))
            } else {
                sent(&format!("r{m}"))
            };
            last = append(&store, &stream, event_type, data).await;
        }
        if round % 2 == 0 {
            wait_until_applied(&status, last).await;
        }
        shutdown.cancel();
        task.await.unwrap();
    }
    let view = open_view(&incremental);
    let (status, shutdown, task) = start(&store, &view, config.clone());
    wait_until_applied(&status, last).await;
    shutdown.cancel();
    task.await.unwrap();

    let rebuilt = open_view(&dir.path().join("rebuilt"));
    let config = ProjectorConfig { batch_size: 1_000, flush_interval: Duration::from_millis(20), ..Default::default() };
    let (status, shutdown, task) = start(&store, &rebuilt, config);
    wait_until_applied(&status, last).await;
    shutdown.cancel();
    task.await.unwrap();

    let (a, b) = (all_docs(view.as_ref(), "").await, all_docs(rebuilt.as_ref(), "").await);
    assert_eq!(a.len(), 8);
    assert_eq!(a, b, "restarted projection and rebuild from zero disagree");
    store.close().await.unwrap();
}

async fn open_store(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::open(EngineConfig::new(dir.join("store"))).await.unwrap()
}

fn open_view(dir: &std::path::Path) -> Arc<TantivyViewStore> {
    Arc::new(TantivyViewStore::open(dir, MessagesProjection.schema()).unwrap())
}

type Started = (Arc<annals_projectors::ProjectionStatus>, CancellationToken, tokio::task::JoinHandle<()>);

fn start(store: &EmbeddedStore, view: &Arc<TantivyViewStore>, config: ProjectorConfig) -> Started {
    let store: Arc<dyn EventStore> = Arc::new(store.clone());
    let projector = Projector::new(store, view.clone(), MessagesProjection, config);
    let status = projector.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(projector.run(shutdown.clone()));
    (status, shutdown, task)
}

async fn wait_until_applied(status: &annals_projectors::ProjectionStatus, position: Position) {
    for _ in 0..500 {
        if status.has_applied(position) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("position {position} not applied within 5 s: {:?}", status.snapshot());
}

async fn append(store: &EmbeddedStore, stream: &str, event_type: &str, data: Value) -> Position {
    let event = EventData::json(event_type, &data).unwrap();
    let stream = StreamId::new(stream).unwrap();
    store.append_to_stream(&stream, ExpectedRevision::Any, vec![event]).await.unwrap().last_position
}

async fn read_parked(store: &EmbeddedStore) -> Vec<Value> {
    let stream = annals_projectors::parked::parked_stream("messages", 1).unwrap();
    match store.read_stream(&stream, ReadFrom::Start, Direction::Forwards, 100).await.unwrap() {
        ReadStreamOutcome::Events(events) => events.iter().map(|e| serde_json::from_slice(&e.data).unwrap()).collect(),
        other => panic!("no parked events: {other:?}"),
    }
}

fn enqueued(id: &str, email: &str) -> Value {
    json!({
        "message_id": id,
        "recipient": { "id": format!("user-{id}"), "email": email },
        "notification": "order-shipped",
        "template": { "id": "tmpl_8f3a2c", "version": 12 },
        "channel": "email",
        "tags": ["transactional"],
        "subject": format!("Your order {id} has shipped"),
        "occurred_at": "2026-11-23T17:42:09.5Z"
    })
}

fn sent(id: &str) -> Value {
    json!({ "message_id": id, "channel": "email", "provider": "ses", "provider_message_id": format!("ses-{id}") })
}
