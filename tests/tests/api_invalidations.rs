//! Cache invalidations over HTTP (issue 15), role `all` (the in-process feed): `GET
//! /v1/invalidations` carries each tenant's keys at their positions and never another tenant's,
//! resumes after `Last-Event-ID`, and sends a `flush` first when the resume point was trimmed;
//! a client that queries as soon as it hears of a change sees the change, through the response
//! cache; cached answers are byte-identical to uncached ones; `/metrics` counts the cache; and
//! a process without a feed answers the route with a precise `503` and never caches.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{SseReader, TestApp};

async fn append(app: &TestApp, stream: &str, events: &[(&str, Value)]) -> u64 {
    let events: Vec<Value> = events.iter().map(|(t, d)| json!({ "type": t, "data": d })).collect();
    let (status, body) = app.post(&format!("/v1/streams/{stream}/events"), &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["last_position"].as_u64().unwrap()
}

fn enqueued(id: &str) -> Value {
    json!({ "message_id": id, "recipient": { "id": format!("user-{id}"), "email": format!("{id}@example.com") },
            "channel": "email", "subject": "Hello" })
}

fn opened(id: &str) -> Value {
    json!({ "message_id": id })
}

fn audit(target: &str) -> Value {
    json!({ "actor": { "id": "user-7", "type": "user" }, "action": "template.updated", "crud": "update",
            "target": { "type": "template", "id": target }, "outcome": "success", "occurred_at": "2026-11-30T10:00:00Z" })
}

/// The next `invalidation` or `flush` event (heartbeats skipped): (id, event name, data).
async fn next(sse: &mut SseReader) -> (u64, String, Value) {
    loop {
        let frame = sse.frame().await;
        if frame.comment {
            continue;
        }
        let id: u64 = frame.id.expect("an id").parse().unwrap();
        let data: Value = serde_json::from_str(&frame.data).unwrap();
        assert_eq!(data["position"], json!(id), "the event id is the position");
        return (id, frame.event.expect("a named event"), data);
    }
}

/// Reads invalidations until one names message `id` (at `at` or later); returns them all.
async fn until_message(sse: &mut SseReader, id: &str, at: u64) -> Vec<(u64, String, Value)> {
    let mut seen = Vec::new();
    loop {
        let got = next(sse).await;
        let names =
            got.2["keys"].as_array().is_some_and(|keys| keys.contains(&json!({ "kind": "message", "value": id })));
        let done = names && got.0 >= at;
        seen.push(got);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn the_feed_is_tenant_scoped_resumable_and_flushes_a_trimmed_resume_point() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(dir.path(), |s| s.invalidations.ring_size = 4).await;
    let acme = app.with_key(&app.tenant_admin_key("acme").await);
    let globex = app.with_key(&app.tenant_admin_key("globex").await);
    let mut acme_sse = SseReader::open(&acme, "/v1/invalidations?view=messages", None).await;
    let mut globex_sse = SseReader::open(&globex, "/v1/invalidations?view=messages", None).await;

    // The same message name in both tenants.
    let a1 = append(&acme, "message-m1", &[("message.enqueued", enqueued("m1"))]).await;
    let g1 = append(&globex, "message-m1", &[("message.enqueued", enqueued("m1"))]).await;
    let seen = until_message(&mut acme_sse, "m1", a1).await;
    for (_, name, data) in &seen {
        assert_eq!(name, "invalidation");
        assert_eq!(data["tenant"], json!("acme"), "acme sees only its own keys: {data}");
        assert_eq!(data["view"], json!("messages"));
        assert_eq!(data["scope"], json!("keys"));
    }
    let (first, _, data) = seen.last().unwrap().clone();
    let keys = data["keys"].as_array().unwrap();
    for key in [
        json!({ "kind": "message", "value": "m1" }),
        json!({ "kind": "recipient", "value": "m1@example.com" }),
        json!({ "kind": "recipient", "value": "user-m1" }),
    ] {
        assert!(keys.contains(&key), "{key} in {data}");
    }
    let seen = until_message(&mut globex_sse, "m1", g1).await;
    assert!(seen.iter().all(|(_, _, d)| d["tenant"] == json!("globex")), "{seen:?}");

    // Resume after the first: the next ones, no flush.
    let a2 = append(&acme, "message-m2", &[("message.enqueued", enqueued("m2"))]).await;
    until_message(&mut acme_sse, "m2", a2).await;
    let mut resumed = SseReader::open(&acme, "/v1/invalidations?view=messages", Some(first)).await;
    let seen = until_message(&mut resumed, "m2", a2).await;
    assert!(seen.iter().all(|(id, name, _)| name == "invalidation" && *id > first), "{seen:?}");

    // Push the first one out of the 4 retained, then resume after it: a flush comes first.
    let mut last = 0;
    for i in 0..6 {
        last = append(&acme, &format!("message-t{i}"), &[("message.enqueued", enqueued(&format!("t{i}")))]).await;
        until_message(&mut acme_sse, &format!("t{i}"), last).await;
    }
    let mut trimmed = SseReader::open(&acme, "/v1/invalidations?view=messages", Some(first)).await;
    let (id, name, data) = next(&mut trimmed).await;
    assert_eq!(name, "flush", "{data}");
    assert_eq!(data["scope"], json!("whole_view"));
    assert_eq!(data["reason"], json!("trimmed"));
    assert_eq!(data["tenant"], Value::Null);
    assert!(id > first);
    let seen = until_message(&mut trimmed, "t5", last).await;
    assert!(seen.iter().all(|(_, _, d)| d["tenant"] == json!("acme")), "{seen:?}");

    // Precise problems.
    let response = acme
        .client
        .get(format!("{}/v1/invalidations?view=messages", acme.base))
        .bearer_auth(&acme.key)
        .header("last-event-id", "soon")
        .send()
        .await
        .unwrap();
    let (status, body) = support::decode(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["parameter"], json!("Last-Event-ID"), "{body}");
    let (status, body) = acme.get("/v1/invalidations?view=timeline").await;
    assert_eq!((status, body["parameter"].clone()), (StatusCode::BAD_REQUEST, json!("view")), "{body}");
    let (status, body) = acme.get("/v1/invalidations").await;
    assert_eq!((status, body["parameter"].clone()), (StatusCode::BAD_REQUEST, json!("view")), "{body}");

    // A revoked key's feed ends, idle or not.
    let key_id = acme.key.split('_').nth(1).unwrap().to_owned();
    let (status, body) = app.as_operator().delete(&format!("/v1/keys/{key_id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ended = tokio::time::timeout(Duration::from_secs(5), trimmed.until_end()).await;
    assert!(ended.is_ok(), "the feed of a revoked key ends");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_queries_on_an_invalidation_sees_the_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path()).await;
    let acme = app.with_key(&app.tenant_admin_key("acme").await);
    let mut sse = SseReader::open(&acme, "/v1/invalidations?view=messages", None).await;
    let created = append(&acme, "message-hot", &[("message.enqueued", enqueued("hot"))]).await;
    let (status, _) = acme.get(&format!("/v1/messages/hot?min_position={created}")).await;
    assert_eq!(status, StatusCode::OK);
    // Concurrent appends to other messages, so batches hold more than the one change.
    let noise = {
        let acme = acme.clone_view();
        tokio::spawn(async move {
            for i in 0..400 {
                append(&acme, &format!("message-n{i}"), &[("message.enqueued", enqueued(&format!("n{i}")))]).await;
            }
        })
    };
    let started = Instant::now();
    for round in 1..=25u64 {
        // Fill the cache with the current state, then change it.
        let (status, _) = acme.get("/v1/messages/hot").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = acme.get("/v1/messages/hot/history").await;
        assert_eq!(status, StatusCode::OK);
        let at = append(&acme, "message-hot", &[("message.opened", opened("hot"))]).await;
        until_message(&mut sse, "hot", at).await;
        // At once: the view, and the cache, show the change.
        let (status, doc) = acme.get("/v1/messages/hot").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["last_position"], json!(at), "round {round}: a stale answer after its invalidation");
        let (_, history) = acme.get("/v1/messages/hot/history").await;
        assert_eq!(history["events"].as_array().map(Vec::len), Some(round as usize + 1), "round {round}");
        assert!(started.elapsed() < Duration::from_secs(50), "bounded in time");
    }
    noise.abort();
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    let hits = metric(&metrics, "annals_cache_hits_total{view=\"messages\"}");
    let invalidations = metric(&metrics, "annals_cache_invalidations_total{view=\"messages\"}");
    assert!(invalidations >= 25.0, "{metrics}");
    // From the second round on, the answers read before the change come from the cache.
    assert!(hits >= 24.0, "{metrics}");
    assert!(metrics.contains("annals_cache_refused_fills_total{view=\"messages\"}"), "{metrics}");
    assert!(metrics.contains("annals_invalidation_delivered{sink=\"in_process\"}"), "{metrics}");
    app.stop().await;
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// Status, content type and body of a GET.
async fn raw(app: &TestApp, path: &str) -> (StatusCode, String, bytes::Bytes) {
    let response = app.client.get(format!("{}{path}", app.base)).bearer_auth(&app.key).send().await.unwrap();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    (response.status(), content_type, response.bytes().await.unwrap())
}

#[tokio::test]
async fn cached_answers_are_byte_identical_to_uncached_ones_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path()).await;
    let key = app.tenant_admin_key("acme").await;
    let acme = app.with_key(&key);
    append(&acme, "message-b1", &[("message.enqueued", enqueued("b1")), ("message.opened", opened("b1"))]).await;
    let last =
        append(&acme, "audit-template-t1", &[("audit.recorded", audit("t1")), ("audit.recorded", audit("t1"))]).await;
    let wait = acme.get(&format!("/v1/audit?min_position={last}")).await;
    assert_eq!(wait.0, StatusCode::OK);
    let (_, _) = acme.get(&format!("/v1/messages?min_position={last}")).await;
    let paths = ["/v1/messages/b1", "/v1/messages/b1/history?limit=1", "/v1/audit?target_type=template&target_id=t1"];
    let mut cached = Vec::new();
    for path in paths {
        let miss = raw(&acme, path).await;
        let hit = raw(&acme, path).await;
        assert_eq!(miss.0, StatusCode::OK, "{path}");
        assert_eq!(miss, hit, "{path}: the hit differs from the miss");
        cached.push(hit);
    }
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metric(&metrics, "annals_cache_hits_total{view=\"messages\"}") >= 2.0, "{metrics}");
    assert!(metric(&metrics, "annals_cache_hits_total{view=\"audit\"}") >= 1.0, "{metrics}");
    assert!(metric(&metrics, "annals_cache_misses_total{view=\"messages\"}") >= 2.0, "{metrics}");
    app.stop().await;

    // The same data, served with the cache off.
    let app = TestApp::spawn_with(dir.path(), |s| s.invalidations.cache_max_bytes = 0).await;
    let acme = app.with_key(&key);
    for (path, cached) in paths.into_iter().zip(cached) {
        assert_eq!(raw(&acme, path).await, cached, "{path}: cached and uncached answers differ");
    }
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("annals_cache_hits_total{"), "a cache that is off serves nothing: {metrics}");
    app.stop().await;
}

#[tokio::test]
async fn a_process_without_a_feed_answers_503_and_never_caches() {
    use annals_query_api::{ApiSettings, Application, Deps, InvalidationDeps, Views};
    let dir = tempfile::tempdir().unwrap();
    let store =
        annals_store::engine::EmbeddedStore::open(annals_store::engine::EngineConfig::new(dir.path().join("store")))
            .await
            .unwrap();
    let shared: Arc<dyn annals_store::EventStore> = Arc::new(store.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let opened = Views::open(&dir.path().join("views")).await.unwrap();
    let (views, tasks) = opened.start(&shared, annals_projectors::ProjectorConfig::default(), &stop);
    let settings = ApiSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        admin_key: Some(support::ADMIN_KEY.to_owned()),
        ..ApiSettings::default()
    };
    let deps = Deps { store: Arc::clone(&shared), views, invalidations: InvalidationDeps::default() };
    let built = Application::build(settings, deps).await.unwrap();
    let base = format!("http://{}", built.local_addr());
    let served = tokio::spawn(built.run_until_stopped(stop.clone()));
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/v1/keys"))
        .bearer_auth(support::ADMIN_KEY)
        .json(&json!({ "tenant": "acme", "role": "admin", "name": "t" }))
        .send()
        .await
        .unwrap();
    let key = support::decode(response).await.1["key"].as_str().unwrap().to_owned();
    let response = client.get(format!("{base}/v1/invalidations?view=messages")).bearer_auth(&key).send().await.unwrap();
    let (status, body) = support::decode(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["type"], json!("https://annals.dev/problems/invalidations-unavailable"));
    assert!(body["detail"].as_str().unwrap().contains("shared backend"), "{body}");
    for _ in 0..2 {
        let response = client.get(format!("{base}/v1/messages/x1")).bearer_auth(&key).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("annals_cache_misses_total{"), "no cache without a feed: {metrics}");
    stop.cancel();
    served.await.unwrap().unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    store.close().await.unwrap();
}

/// Not a check but a measurement, behind `ANNALS_INVALIDATION_DELAY=N` (N appends): the delay
/// from an append's acknowledgement to its invalidation arriving over SSE, against the view's own
/// lag measured in the same run (a read-your-writes read of the same message, `min_position`,
/// which polls every 10 ms). Prints p50/p99 of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_from_append_to_invalidation_against_the_views_lag() {
    let Some(n) = std::env::var("ANNALS_INVALIDATION_DELAY").ok().and_then(|v| v.parse::<usize>().ok()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path()).await;
    let acme = app.with_key(&app.tenant_admin_key("acme").await);
    let mut sse = SseReader::open(&acme, "/v1/invalidations?view=messages", None).await;
    let heard = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<String, Instant>::new()));
    let listener = {
        let heard = Arc::clone(&heard);
        tokio::spawn(async move {
            loop {
                let (_, _, data) = next(&mut sse).await;
                let now = Instant::now();
                for key in data["keys"].as_array().into_iter().flatten().filter(|k| k["kind"] == "message") {
                    heard.lock().unwrap().entry(key["value"].as_str().unwrap().to_owned()).or_insert(now);
                }
            }
        })
    };
    let (mut acked, mut lag) = (Vec::new(), Vec::new());
    for i in 0..n {
        let id = format!("d{i}");
        let at = append(&acme, &format!("message-{id}"), &[("message.enqueued", enqueued(&id))]).await;
        let ack = Instant::now();
        acked.push((id.clone(), ack));
        // One reader at a time: the view's lag as a client waiting for its write sees it.
        let (status, _) = acme.get(&format!("/v1/messages/{id}?min_position={at}")).await;
        assert_eq!(status, StatusCode::OK);
        lag.push(ack.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    support::report_invalidation_delay("delay", &acked, lag, &heard).await;
    listener.abort();
    app.stop().await;
}
