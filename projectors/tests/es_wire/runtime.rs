//! The runtime on an Elasticsearch view, end to end against the recording server: a document
//! Elasticsearch refuses (`400`) parks its event with the reason and the projection goes on; an
//! item that is not durable (`429` again and again) holds the checkpoint back until it lands.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals_projectors::host::ViewHosting;
use annals_projectors::parked::{parked_stream, ParkedEntry, PARKED};
use annals_projectors::view_store::elasticsearch::{EsHosting, WriteMode};
use annals_projectors::{MessagesProjection, Projection, ProjectionStatus, Projector, ProjectorConfig};
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{Direction, EventData, EventStore, ExpectedRevision, Position, ReadFrom, StreamId};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::server::{answer, bulk_answer, item_error, routine, unexpected, MockEs, Recorded};

const INDEX: &str = "annals-messages-000001";

async fn enqueue(store: &EmbeddedStore, id: &str) -> Position {
    let data = json!({ "message_id": id, "recipient": { "id": "u", "email": "u@example.com" }, "channel": "email", "subject": format!("s {id}") });
    let event = EventData::json("message.enqueued", &data).expect("an event");
    let stream = StreamId::new(format!("acme/message-{id}")).expect("a stream");
    store.append_to_stream(&stream, ExpectedRevision::Any, vec![event]).await.expect("append").last_position
}

/// `_mget` of a view that holds nothing yet: every key `found: false`.
fn none_found(request: &Recorded) -> (u16, String) {
    let docs: Vec<Value> = request.json()["docs"]
        .as_array()
        .expect("docs")
        .iter()
        .map(|d| json!({ "_index": INDEX, "_id": d["_id"], "found": false }))
        .collect();
    answer(200, json!({ "docs": docs }))
}

fn checkpoints(server: &MockEs) -> Vec<u64> {
    server
        .to("PUT", &format!("/{INDEX}/_doc/checkpoint"))
        .iter()
        .map(|r| {
            r.query.split('&').find_map(|kv| kv.strip_prefix("version=")).expect("a version").parse().expect("a number")
        })
        .collect()
}

async fn start(
    store: &EmbeddedStore,
    server: &MockEs,
) -> (Arc<ProjectionStatus>, CancellationToken, tokio::task::JoinHandle<()>) {
    let hosting = EsHosting::new(Arc::new(server.config()), MessagesProjection.schema(), WriteMode::ExternalVersion)
        .expect("schema");
    let halves = hosting.open(1).await.expect("open");
    let config =
        ProjectorConfig { batch_size: 100, flush_interval: Duration::from_millis(5), ..ProjectorConfig::default() };
    let store: Arc<dyn EventStore> = Arc::new(store.clone());
    let projector = Projector::new(store, halves.writer, MessagesProjection, config);
    let status = projector.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(projector.run(shutdown.clone()));
    (status, shutdown, task)
}

async fn wait_applied(status: &ProjectionStatus, last: Position) {
    for _ in 0..1_000 {
        if status.has_applied(last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("position {last} not applied within 10 s: {:?}", status.snapshot());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_document_parks_its_event_with_the_reason_and_the_projection_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(EngineConfig::new(dir.path().join("store"))).await.expect("store");
    enqueue(&store, "c1").await;
    let refused = enqueue(&store, "c2").await;
    let last = enqueue(&store, "c3").await;
    let server = MockEs::start(|r, _| {
        routine(r).unwrap_or_else(|| match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/_mget") => none_found(r),
            ("POST", "/_bulk") => bulk_answer(&r.body, |_, id| match id {
                "4:acme:acme/message-c2" => (
                    400,
                    Some(item_error(
                        INDEX,
                        "mapper_parsing_exception",
                        "failed to parse field [first_event_at] of type [date_nanos]",
                    )),
                ),
                _ => (201, None),
            }),
            _ => unexpected(r),
        })
    })
    .await;
    let (status, shutdown, task) = start(&store, &server).await;
    wait_applied(&status, last).await;
    shutdown.cancel();
    task.await.expect("projector");

    let parked = store
        .read_stream(&parked_stream("messages", 1).expect("stream"), ReadFrom::Start, Direction::Forwards, 100)
        .await
        .expect("read parked")
        .into_events();
    let entries: Vec<ParkedEntry> = parked
        .iter()
        .filter(|e| e.event_type == PARKED)
        .map(|e| serde_json::from_slice(&e.data).expect("a parked entry"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].position, refused.code());
    assert_eq!(entries[0].stream, "acme/message-c2");
    assert!(
        entries[0].error.contains("mapper_parsing_exception") && entries[0].error.contains("[first_event_at]"),
        "{}",
        entries[0].error
    );
    assert_eq!(checkpoints(&server).last(), Some(&last.code()), "the projection went on past the refused document");
    // Parked before the checkpoint passed it.
    let requests = server.requests();
    let checkpoint_at =
        requests.iter().position(|r| r.path.ends_with("/_doc/checkpoint") && r.method == "PUT").expect("a checkpoint");
    assert!(requests[..checkpoint_at].iter().any(|r| r.path == "/_bulk"));
    assert_eq!(status.snapshot().parked, 1);
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_never_passes_an_item_that_is_not_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(EngineConfig::new(dir.path().join("store"))).await.expect("store");
    enqueue(&store, "c1").await;
    let held = enqueue(&store, "c2").await;
    let last = enqueue(&store, "c3").await;
    let healed = Arc::new(AtomicBool::new(false));
    let heal = Arc::clone(&healed);
    let server = MockEs::start(move |r, _| {
        routine(r).unwrap_or_else(|| match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/_mget") => none_found(r),
            ("POST", "/_bulk") => bulk_answer(&r.body, |_, id| match id {
                "4:acme:acme/message-c2" if !heal.load(Ordering::SeqCst) => (
                    429,
                    Some(item_error(
                        INDEX,
                        "es_rejected_execution_exception",
                        "rejected execution of primary operation",
                    )),
                ),
                _ => (201, None),
            }),
            _ => unexpected(r),
        })
    })
    .await;
    let (status, shutdown, task) = start(&store, &server).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(server.to("POST", "/_bulk").len() > 1, "the pushed-back item is retried");
    assert!(
        checkpoints(&server).iter().all(|&c| c < held.code()),
        "checkpoint past a non-durable item: {:?}",
        checkpoints(&server)
    );
    assert!(!status.has_applied(held));

    healed.store(true, Ordering::SeqCst);
    wait_applied(&status, last).await;
    shutdown.cancel();
    task.await.expect("projector");
    assert_eq!(checkpoints(&server).last(), Some(&last.code()));
    store.close().await.expect("close");
}
