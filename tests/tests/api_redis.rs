//! Cache invalidations through Redis, end to end (issue 15): a server whose `[invalidations]
//! redis_url` names a throwaway `redis-server` unlinks the cached keys of what an append changed
//! — its tenant's only, never another tenant's of the same name — and appends the invalidation
//! to the view's stream; while Redis is down appends and queries go on, `/healthz` stays up and
//! `/readyz` says Redis is degraded (naming nothing else about it), and the keys of what changed
//! meanwhile are unlinked once Redis is back.

use crate::support;

use std::time::{Duration, Instant};

use annals_projectors::invalidation::redis::testing::RedisServer;
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestApp;

const WAIT: Duration = Duration::from_secs(30);

async fn append(app: &TestApp, stream: &str, event_type: &str, data: Value) {
    let body = json!({ "events": [{ "type": event_type, "data": data }] });
    let (status, body) = app.post(&format!("/v1/streams/{stream}/events"), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn enqueued(id: &str) -> Value {
    json!({ "message_id": id, "recipient": { "id": format!("user-{id}"), "email": format!("{id}@example.com") },
            "channel": "email", "subject": "Hello" })
}

async fn redis(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).expect("url");
    client.get_multiplexed_async_connection().await.expect("connect to redis")
}

/// Sets `keys` as an application would cache them.
async fn cache(server: &RedisServer, keys: &[&str]) {
    let mut con = redis(server).await;
    for key in keys {
        let _: () = con.set(*key, "cached").await.expect("set");
    }
}

async fn exists(server: &RedisServer, key: &str) -> bool {
    let mut con = redis(server).await;
    con.exists(key).await.expect("exists")
}

/// Waits until `key` is gone (the sink unlinked it).
async fn until_gone(server: &RedisServer, key: &str) {
    let deadline = Instant::now() + WAIT;
    while exists(server, key).await {
        assert!(Instant::now() < deadline, "{key} is still cached {WAIT:?} after the change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz(app: &TestApp) -> Value {
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "readyz: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_unlinks_its_tenant_s_keys_and_an_outage_degrades_without_losing_any() {
    let server = RedisServer::start().expect("start redis-server");
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let app = TestApp::spawn_with(dir.path(), |s| s.invalidations.redis_url = Some(url)).await;
    let acme = app.with_key(&app.tenant_admin_key("acme").await);
    let globex = app.with_key(&app.tenant_admin_key("globex").await);
    assert_eq!(readyz(&app).await["status"], "ready");
    assert_eq!(readyz(&app).await["degraded"], json!([]));

    // The same message name in two tenants; only acme's changes.
    cache(&server, &["annals:acme:message:m1", "annals:globex:message:m1", "annals:acme:recipient:user-m1"]).await;
    append(&acme, "message-m1", "message.enqueued", enqueued("m1")).await;
    until_gone(&server, "annals:acme:message:m1").await;
    until_gone(&server, "annals:acme:recipient:user-m1").await;
    assert!(exists(&server, "annals:globex:message:m1").await, "another tenant's key of the same name was unlinked");
    let mut con = redis(&server).await;
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("annals:invalidations:messages")
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .expect("xrange");
    let texts: Vec<&str> = entries.iter().flat_map(|(_, fields)| fields.iter().map(|(_, v)| v.as_str())).collect();
    assert!(texts.iter().any(|t| t.contains("\"acme\"") && t.contains("m1")), "the stream lacks the change: {texts:?}");
    assert!(!texts.iter().any(|t| t.contains("\"globex\"")), "the stream holds a change globex never made: {texts:?}");

    // Redis goes away: appends and queries go on, /healthz is up, /readyz names Redis degraded.
    server.kill();
    append(&acme, "message-m2", "message.enqueued", enqueued("m2")).await;
    append(&globex, "message-m1", "message.enqueued", enqueued("m1")).await;
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let ready = readyz(&app).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["degraded"], json!([{ "component": "redis", "status": "unreachable" }]), "{ready}");
    assert!(!ready.to_string().contains(".sock"), "/readyz tells strangers where Redis is: {ready}");
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = acme.get("/v1/messages/m2").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the view stopped while Redis was down: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Back: what changed meanwhile is unlinked (the sink kept it and retried; the key itself
    // survived in the AOF), and ready again.
    server.start_server().expect("restart redis-server");
    until_gone(&server, "annals:globex:message:m1").await;
    let deadline = Instant::now() + WAIT;
    while readyz(&app).await["status"] != "ready" {
        assert!(Instant::now() < deadline, "still degraded with Redis back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}
