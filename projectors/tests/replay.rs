//! Replaying parked events (issue 4): an event a projection could not apply is parked; once the
//! cause is fixed, a replay request applies it to the view (the document is written with the
//! request's position as its version, so the view takes it although the event is older than the
//! document); an event that fails again stays parked with the new outcome recorded; and running
//! the whole log again, replay requests included, gives the same view.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals_projectors::parked::{self, ParkedLog, ReplayOutcome, ReplayRequest};
use annals_projectors::view_store::{ViewDoc, ViewReader, ViewSchema};
use annals_projectors::{
    ApplyError, DocKey, MessageDoc, MessagesProjection, Projection, Projector, ProjectorConfig, TantivyViewStore,
};
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{EventData, EventFilter, EventStore, ExpectedRevision, Position, RecordedEvent, StreamId};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use common::all_docs;

/// `messages`, except that the events of streams named `…message-p…` fail until `fixed` is set:
/// the bug an operator fixes before replaying.
/// With `filter_all` it reads every event of the log, as a projection may: it must still never
/// see the parked streams' own entries, only its replay requests.
#[derive(Clone, Debug, Default)]
struct Flaky {
    fixed: Arc<AtomicBool>,
    filter_all: bool,
}

impl Projection for Flaky {
    type Doc = MessageDoc;
    fn schema(&self) -> ViewSchema {
        MessagesProjection.schema()
    }
    fn filter(&self) -> EventFilter {
        if self.filter_all {
            EventFilter::all()
        } else {
            MessagesProjection.filter()
        }
    }
    fn doc_key(&self, event: &RecordedEvent) -> Option<DocKey> {
        MessagesProjection.doc_key(event)
    }
    fn apply(&self, doc: &mut Option<MessageDoc>, event: &RecordedEvent) -> Result<(), ApplyError> {
        if !self.fixed.load(Ordering::SeqCst) && event.stream.as_str().contains("message-p") {
            let (event_type, position) = (event.event_type.clone(), event.position);
            return Err(ApplyError::UnknownEventType { view: "messages", event_type, position });
        }
        MessagesProjection.apply(doc, event)
    }
    fn to_view(&self, doc: &MessageDoc) -> ViewDoc {
        MessagesProjection.to_view(doc)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_are_applied_by_a_replay_once_fixed_and_a_rerun_gives_the_same_view() {
    replay_flow(Flaky::default(), ProjectorConfig::default()).await;
}

/// The same with a projection that reads everything, and one-event batches: a replay of two
/// events then commits in two chunks before its checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_work_for_projections_that_read_everything_and_in_chunks() {
    let config = ProjectorConfig { batch_size: 1, ..ProjectorConfig::default() };
    replay_flow(Flaky { filter_all: true, ..Flaky::default() }, config).await;
}

async fn replay_flow(flaky: Flaky, config: ProjectorConfig) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(dir.path().join("store"))).await.unwrap();
    let parked_stream = parked::parked_stream("messages", 1).unwrap();
    append(&store, "acme/message-m1", "message.enqueued", enqueued("m1")).await;
    let p_enqueued = append(&store, "acme/message-p1", "message.enqueued", enqueued("p1")).await;
    let p_sent = append(&store, "acme/message-p1", "message.sent", sent("p1")).await;
    let last = append(&store, "acme/message-m1", "message.sent", sent("m1")).await;

    let view = open_view(&dir.path().join("view"));
    let run = Run::start(&store, &view, flaky.clone(), config.clone());
    run.wait_for(last).await;
    assert!(view.get("acme", "acme/message-p1").await.unwrap().is_none(), "both events of p1 are parked");
    assert_eq!(unresolved(&store, &parked_stream).await, 2);

    // A replay before the fix: both fail again and stay parked, with the outcome recorded.
    let failed_at = request(&store, &parked_stream, None).await;
    run.wait_for(failed_at).await;
    assert!(view.get("acme", "acme/message-p1").await.unwrap().is_none());
    let mut log = ParkedLog::new(parked_stream.clone());
    log.refresh(&store).await.unwrap();
    assert_eq!(log.unresolved(), 2);
    for entry in log.entries() {
        assert_eq!(entry.replays.len(), 1, "{entry:?}");
        assert_eq!((entry.replays[0].replayed_at, entry.replays[0].outcome), (failed_at.code(), ReplayOutcome::Failed));
        let error = entry.replays[0].error.as_deref().unwrap();
        assert!(error.contains(&entry.entry.event_type), "the new error: {error}");
    }

    // Fixed; a replay of one of them, then of the rest.
    flaky.fixed.store(true, Ordering::SeqCst);
    let first_at = request(&store, &parked_stream, Some(vec![p_enqueued.code()])).await;
    run.wait_for(first_at).await;
    let doc = view.get("acme", "acme/message-p1").await.unwrap().expect("the replay applied p1's enqueued event");
    assert_eq!(doc.source["status"], json!("ENQUEUED"));
    assert_eq!(doc.version, first_at, "written with the request's position, newer than anything before it");
    assert_eq!(unresolved(&store, &parked_stream).await, 1);
    let rest_at = request(&store, &parked_stream, None).await;
    run.wait_for(rest_at).await;
    let doc = view.get("acme", "acme/message-p1").await.unwrap().unwrap();
    assert_eq!(doc.source["status"], json!("SENT"), "{}", doc.source);
    assert_eq!(doc.source["timeline"].as_array().unwrap().len(), 2);
    assert_eq!(
        doc.source["timeline"][1]["position"],
        json!(p_sent.code()),
        "the late event in its place: {}",
        doc.source
    );
    assert_eq!(unresolved(&store, &parked_stream).await, 0);

    // Later events apply as usual.
    let delivered = append(&store, "acme/message-p1", "message.delivered", json!({ "message_id": "p1" })).await;
    run.wait_for(delivered).await;
    let doc = view.get("acme", "acme/message-p1").await.unwrap().unwrap();
    assert_eq!((doc.source["status"].clone(), doc.version), (json!("DELIVERED"), delivered));
    run.stop().await;

    // The whole log again into an empty view with the fixed code, as a restart that lost its
    // view would: p1's events now apply in place, the replays find them applied (a no-op
    // besides the version), and nothing is recorded twice.
    let again = open_view(&dir.path().join("again"));
    let rerun = Run::start(&store, &again, flaky.clone(), config);
    rerun.wait_for(delivered).await;
    rerun.stop().await;
    assert_eq!(
        all_docs(view.as_ref(), "acme").await,
        all_docs(again.as_ref(), "acme").await,
        "the rerun, replays included, gives the same view"
    );
    let mut log = ParkedLog::new(parked_stream.clone());
    log.refresh(&store).await.unwrap();
    let outcomes: usize = log.entries().iter().map(|p| p.replays.len()).sum();
    assert_eq!(outcomes, 4, "one outcome per event and request, as in the first run: {:?}", log.entries());
    store.close().await.unwrap();
}

/// A stream's first event replayed after a later one of the same stream: the document the later
/// one made is looked up and kept. (In log order a revision 0 starts a new document and is not
/// looked up, `runtime/fold.rs`; a replay must not take that shortcut.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_event_replayed_after_a_later_one_keeps_the_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(dir.path().join("store"))).await.unwrap();
    let parked_stream = parked::parked_stream("messages", 1).unwrap();
    let flaky = Flaky::default();
    let p_enqueued = append(&store, "acme/message-p1", "message.enqueued", enqueued("p1")).await;
    let p_sent = append(&store, "acme/message-p1", "message.sent", sent("p1")).await;
    let view = open_view(&dir.path().join("view"));
    let run = Run::start(&store, &view, flaky.clone(), ProjectorConfig::default());
    run.wait_for(p_sent).await;
    flaky.fixed.store(true, Ordering::SeqCst);
    let sent_at = request(&store, &parked_stream, Some(vec![p_sent.code()])).await;
    run.wait_for(sent_at).await;
    let doc = view.get("acme", "acme/message-p1").await.unwrap().expect("the replay applied p1's sent event");
    assert_eq!(doc.source["timeline"].as_array().unwrap().len(), 1, "{}", doc.source);
    // A restart empties the document cache: the second replay has to find the document in the
    // view.
    run.stop().await;
    let run = Run::start(&store, &view, flaky.clone(), ProjectorConfig::default());
    let enqueued_at = request(&store, &parked_stream, Some(vec![p_enqueued.code()])).await;
    run.wait_for(enqueued_at).await;
    let doc = view.get("acme", "acme/message-p1").await.unwrap().unwrap();
    let timeline: Vec<&Value> = doc.source["timeline"].as_array().unwrap().iter().map(|e| &e["position"]).collect();
    assert_eq!(
        timeline,
        [&json!(p_enqueued.code()), &json!(p_sent.code())],
        "both events, in log order: {}",
        doc.source
    );
    assert_eq!(doc.source["status"], json!("SENT"), "{}", doc.source);
    run.stop().await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_generations_requests_pass_by() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(dir.path().join("store"))).await.unwrap();
    let flaky = Flaky::default();
    let p1 = append(&store, "acme/message-p1", "message.enqueued", enqueued("p1")).await;
    let view = open_view(&dir.path().join("view"));
    let run = Run::start(&store, &view, flaky.clone(), ProjectorConfig::default());
    run.wait_for(p1).await;
    flaky.fixed.store(true, Ordering::SeqCst);
    // A request for generation 2's stream, and one for the audit view: not this projector's.
    let other = request(&store, &parked::parked_stream("messages", 2).unwrap(), None).await;
    let audit = request(&store, &parked::parked_stream("audit", 1).unwrap(), None).await;
    run.wait_for(other.max(audit)).await;
    assert!(view.get("acme", "acme/message-p1").await.unwrap().is_none(), "still parked");
    assert_eq!(view.checkpoint().await.unwrap().map(|c| c.position), Some(audit), "the checkpoint passes them");
    run.stop().await;
    store.close().await.unwrap();
}

struct Run {
    status: Arc<annals_projectors::ProjectionStatus>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Run {
    fn start(store: &EmbeddedStore, view: &Arc<TantivyViewStore>, projection: Flaky, config: ProjectorConfig) -> Run {
        let store: Arc<dyn EventStore> = Arc::new(store.clone());
        let config = ProjectorConfig { flush_interval: Duration::from_millis(20), ..config };
        let projector = Projector::new(store, view.clone(), projection, config);
        let status = projector.status();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(projector.run(shutdown.clone()));
        Run { status, shutdown, task }
    }

    async fn wait_for(&self, position: Position) {
        for _ in 0..500 {
            if self.status.snapshot().checkpoint >= Some(position) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("checkpoint did not reach {position} within 5 s: {:?}", self.status.snapshot());
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

async fn request(store: &EmbeddedStore, stream: &StreamId, positions: Option<Vec<u64>>) -> Position {
    let request = ReplayRequest { projection: "messages".into(), positions };
    parked::request_replay(store, stream, &request).await.unwrap()
}

async fn unresolved(store: &EmbeddedStore, stream: &StreamId) -> usize {
    let mut log = ParkedLog::new(stream.clone());
    log.refresh(store).await.unwrap();
    log.unresolved()
}

async fn append(store: &EmbeddedStore, stream: &str, event_type: &str, data: Value) -> Position {
    let event = EventData::json(event_type, &data).unwrap();
    let stream = StreamId::new(stream).unwrap();
    store.append_to_stream(&stream, ExpectedRevision::Any, vec![event]).await.unwrap().last_position
}

fn open_view(dir: &std::path::Path) -> Arc<TantivyViewStore> {
    Arc::new(TantivyViewStore::open(dir, MessagesProjection.schema()).unwrap())
}

fn enqueued(id: &str) -> Value {
    json!({
        "message_id": id,
        "recipient": { "id": format!("user-{id}"), "email": format!("{id}@example.com") },
        "notification": "order-shipped",
        "template": { "id": "tmpl_8f3a2c", "version": 12 },
        "channel": "email",
        "subject": format!("Your order {id} has shipped"),
        "occurred_at": "2026-11-23T17:42:09.5Z"
    })
}

fn sent(id: &str) -> Value {
    json!({ "message_id": id, "channel": "email", "provider": "ses", "provider_message_id": format!("ses-{id}") })
}
