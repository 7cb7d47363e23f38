//! Rebuilds on demand over HTTP: `POST /v1/projections/{name}/rebuild` builds the next
//! generation beside the serving one while appends and queries go on — no query fails, the
//! view never goes back in time, nothing is missing afterwards — refuses a second rebuild while
//! one runs (409), and a rebuild requested before a crash resumes when the process starts again.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals_store::engine::{EmbeddedStore, EngineConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_while_appends_and_queries_continue() {
    let tmp = tempfile::tempdir().unwrap();
    // Three partitioned workers and batches of a few hundred events (several per rebuild), for
    // the live projector and the rebuild alike.
    let app = TestApp::spawn_with(tmp.path(), |s| {
        s.projectors.parallelism = 3;
        s.projectors.batch_size = 500;
    })
    .await;
    let mut last = 0;
    for n in 0..150 {
        last = append_message(&app, n).await;
    }
    let (status, page) = app.get(&format!("/v1/messages?limit=1&min_position={last}")).await;
    assert_eq!((status, &page["total"]), (StatusCode::OK, &json!(150)), "{page}");

    // Appends and queries go on through the whole rebuild.
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(150));
    let writer = {
        let (app, stop, appended) = (app.clone_view(), Arc::clone(&stop), Arc::clone(&appended));
        tokio::spawn(async move {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                last = append_message(&app, appended.load(Ordering::Relaxed)).await;
                appended.fetch_add(1, Ordering::Relaxed);
            }
            last
        })
    };
    let reader = {
        let (app, stop) = (app.clone_view(), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut queries, mut seen) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let (status, page) = app.get("/v1/messages?limit=5&status=sent").await;
                assert_eq!(status, StatusCode::OK, "a query failed during the rebuild: {page}");
                let total = page["total"].as_u64().unwrap();
                assert!(total >= seen, "the view went back in time: {total} after {seen}");
                (seen, queries) = (total, queries + 1);
            }
            queries
        })
    };

    let (status, accepted) = app.as_operator().post("/v1/projections/messages/rebuild", &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["generation"], json!(2), "{accepted}");
    assert_eq!(accepted["status_url"], json!("/v1/projections/messages"));
    let (status, problem) = app.as_operator().post("/v1/projections/messages/rebuild", &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "a second rebuild while one runs: {problem}");
    assert_eq!(
        (&problem["type"], &problem["generation"]),
        (&json!("https://annals.dev/problems/rebuild-running"), &json!(2)),
        "{problem}"
    );
    let (status, _) = app.as_operator().post("/v1/projections/nope/rebuild", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let progress = wait_for_generation(&app, "messages", 2).await;
    assert!(progress["rebuild"].is_null(), "{progress}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let last = writer.await.unwrap();
    let queries = reader.await.unwrap();
    assert!(queries > 0);

    // Nothing is missing: every message appended before, during and after the switch.
    let total = appended.load(Ordering::Relaxed);
    let (status, page) = app.get(&format!("/v1/messages?limit=1&min_position={last}")).await;
    assert_eq!((status, page["total"].as_u64()), (StatusCode::OK, Some(total)), "{page}");
    let (_, sent) = app.get("/v1/messages?limit=1&status=sent").await;
    assert_eq!(sent["total"].as_u64(), Some(total), "every message has both its events: {sent}");
    let views = tmp.path().join("views/messages");
    assert!(!views.join("gen-1").exists(), "the old generation is removed");
    assert!(views.join("gen-2/meta.json").exists());
    assert_eq!(std::fs::read_to_string(views.join("CURRENT")).unwrap().trim(), "gen-2");
    // The audit view was not touched.
    let (_, audit) = app.as_operator().get("/v1/projections/audit").await;
    assert_eq!(audit["generation"], json!(1), "{audit}");

    // The next rebuild is allowed again, and the switch survives a restart.
    let app = app.restart().await;
    let (_, progress) = app.as_operator().get("/v1/projections/messages").await;
    assert_eq!(progress["generation"], json!(2), "{progress}");
    let (_, page) = app.get("/v1/messages?limit=1").await;
    assert_eq!(page["total"].as_u64(), Some(total), "{page}");
    let (status, accepted) = app.as_operator().post("/v1/projections/messages/rebuild", &json!({})).await;
    assert_eq!((status, &accepted["generation"]), (StatusCode::ACCEPTED, &json!(3)), "{accepted}");
    wait_for_generation(&app, "messages", 3).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_requested_before_a_crash_resumes_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let mut last = 0;
    for n in 0..40 {
        last = append_message(&app, n).await;
    }
    app.get(&format!("/v1/messages?limit=1&min_position={last}")).await;
    app.stop().await;

    // The request landed, and so did part of the new generation; then the process died.
    let store = EmbeddedStore::open(EngineConfig::new(tmp.path())).await.unwrap();
    let generation = annals_projectors::control::request_rebuild(&store, "messages").await.unwrap();
    assert_eq!(generation, 2);
    store.close().await.unwrap();
    std::fs::create_dir_all(tmp.path().join("views/messages/gen-2")).unwrap();

    let app = TestApp::spawn(tmp.path()).await;
    let progress = wait_for_generation(&app, "messages", 2).await;
    assert_eq!(progress["checkpoint"].as_u64(), Some(last), "{progress}");
    let (_, page) = app.get("/v1/messages?limit=1").await;
    assert_eq!(page["total"], json!(40), "{page}");
    app.stop().await;
}

/// Appends message `n`'s enqueued and sent events; returns the last position.
async fn append_message(app: &TestApp, n: u64) -> u64 {
    let id = format!("m{n}");
    let events = json!({ "events": [
        { "type": "message.enqueued", "data": {
            "message_id": id, "recipient": { "id": format!("user-{n}"), "email": format!("u{n}@example.com") },
            "notification": "order-shipped", "channel": "email", "subject": format!("Order {n}") } },
        { "type": "message.sent", "data": { "message_id": id, "channel": "email", "provider": "ses" } },
    ] });
    let (status, body) = app.post(&format!("/v1/streams/message-{id}/events"), &events).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["last_position"].as_u64().unwrap()
}

/// Polls the projection until `generation` serves; returns its progress.
async fn wait_for_generation(app: &TestApp, name: &str, generation: u64) -> Value {
    for _ in 0..600 {
        let (status, progress) = app.as_operator().get(&format!("/v1/projections/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{progress}");
        if progress["generation"] == json!(generation) {
            return progress;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("generation {generation} of {name} did not start serving within 30 s");
}
