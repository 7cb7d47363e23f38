//! The projector contract under crashes (issue 4's property): for random interleavings of
//! events across many message streams — duplicates and undecodable events included — a
//! projector killed at random moments (its task aborted mid-batch, mid-park or mid-commit; and
//! at times its view dropped and reopened as after a process crash), restarted each time from
//! its checkpoint while more events arrive, ends with exactly the view that one run from
//! position 0 builds. The crashed projector runs 1 to 3 partitioned workers (`parallelism`); the
//! run it is compared with runs one.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use annals_projectors::{MessagesProjection, Projection, Projector, ProjectorConfig, TantivyViewStore};
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{EventData, EventStore, ExpectedRevision, Position, StreamId};
use proptest::prelude::*;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use common::all_docs;

const TYPES: [&str; 7] = [
    "message.enqueued",
    "message.routed",
    "message.sent",
    "message.delivered",
    "message.opened",
    "message.undeliverable",
    "message.sent",
];

/// One event: which of 8 streams, which type (index into TYPES, 7 = data that cannot apply).
fn event() -> impl Strategy<Value = (u8, u8)> {
    (0u8..8, 0u8..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn crashes_at_random_points_give_the_view_of_one_run(
        phases in prop::collection::vec((prop::collection::vec(event(), 1..40), 0u64..40, any::<bool>()), 1..6),
        batch_size in 1usize..12,
        parallelism in 1usize..4,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(phases, batch_size, parallelism));
    }
}

/// Events appended while a projector runs, then how long after them it crashes, and whether
/// its view is reopened (a process crash) rather than kept (a task crash).
type Phase = (Vec<(u8, u8)>, u64, bool);

async fn run(phases: Vec<Phase>, batch_size: usize, parallelism: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(dir.path().join("store"))).await.unwrap();
    let config = ProjectorConfig {
        batch_size,
        flush_interval: Duration::from_millis(5),
        cache_docs: 0,
        parallelism,
        live_pace: Duration::from_millis(2),
    };
    let crashed_dir = dir.path().join("crashed");
    let mut view = open_view(&crashed_dir);
    let mut last = Position::from_code(0);
    for (events, crash_after_ms, reopen) in phases {
        let (status, task) = start(&store, &view, config.clone(), CancellationToken::new());
        for (stream, kind) in events {
            last = append(&store, stream, kind).await;
        }
        tokio::time::sleep(Duration::from_millis(crash_after_ms)).await;
        // A crash: no shutdown, the task is dropped wherever it is.
        task.abort();
        let _ = task.await;
        let _ = status;
        if reopen {
            // As after a process crash: the index is opened again from its files. A commit that
            // was running on a projector thread finishes first (its thread cannot be killed).
            view = reopen_view(view, &crashed_dir).await;
        }
    }
    let shutdown = CancellationToken::new();
    let (status, task) = start(&store, &view, config, shutdown.clone());
    wait_until_applied(&status, &store, last).await;
    shutdown.cancel();
    task.await.unwrap();

    let rebuilt = open_view(&dir.path().join("rebuilt"));
    let shutdown = CancellationToken::new();
    let (status, task) = start(&store, &rebuilt, ProjectorConfig::default(), shutdown.clone());
    wait_until_applied(&status, &store, last).await;
    shutdown.cancel();
    task.await.unwrap();

    assert_eq!(
        all_docs(view.as_ref(), "acme").await,
        all_docs(rebuilt.as_ref(), "acme").await,
        "crashed-and-restarted projection and one run disagree"
    );
    store.close().await.unwrap();
}

fn open_view(dir: &std::path::Path) -> Arc<TantivyViewStore> {
    Arc::new(TantivyViewStore::open(dir, MessagesProjection.schema()).unwrap())
}

async fn reopen_view(view: Arc<TantivyViewStore>, dir: &std::path::Path) -> Arc<TantivyViewStore> {
    drop(view);
    // A job of the crashed projector still running on a projector thread (it cannot be killed)
    // holds the index's writer until it ends; the reopen waits for it, as a restarted process
    // waits for the dead one's lock.
    for _ in 0..1_000 {
        match TantivyViewStore::open(dir, MessagesProjection.schema()) {
            Ok(view) => return Arc::new(view),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    open_view(dir)
}

type Started = (Arc<annals_projectors::ProjectionStatus>, tokio::task::JoinHandle<()>);

fn start(
    store: &EmbeddedStore,
    view: &Arc<TantivyViewStore>,
    config: ProjectorConfig,
    shutdown: CancellationToken,
) -> Started {
    let store: Arc<dyn EventStore> = Arc::new(store.clone());
    let projector = Projector::new(store, view.clone(), MessagesProjection, config);
    let status = projector.status();
    (status, tokio::spawn(projector.run(shutdown)))
}

async fn wait_until_applied(status: &annals_projectors::ProjectionStatus, store: &EmbeddedStore, last: Position) {
    for _ in 0..1_000 {
        // The last event may be one the projection parks; then the parked stream's append is
        // the head, and the checkpoint still reaches `last`.
        if status.has_applied(last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("position {last} not applied within 10 s: {:?} (head {:?})", status.snapshot(), store.head().await);
}

async fn append(store: &EmbeddedStore, stream: u8, kind: u8) -> Position {
    let id = format!("c{stream}");
    let (event_type, data): (&str, Value) = match kind as usize {
        0 => (
            TYPES[0],
            json!({ "message_id": id, "recipient": { "id": "u", "email": "u@example.com" }, "channel": "email", "subject": format!("s{stream}") }),
        ),
        k if k < TYPES.len() => (TYPES[k], json!({ "message_id": id, "provider": "ses", "reason": "BOUNCED" })),
        // Data that can never apply: parked.
        _ => ("message.sent", json!({ "message_id": 42 })),
    };
    let event = EventData::json(event_type, &data).unwrap();
    let stream = StreamId::new(format!("acme/message-{id}")).unwrap();
    store.append_to_stream(&stream, ExpectedRevision::Any, vec![event]).await.unwrap().last_position
}
