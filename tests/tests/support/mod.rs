//! What the API test files share: a server spawned in-process on port 0 with a temporary data
//! directory, requests with a key, problem checks, and a small Server-Sent Events reader.

#![allow(dead_code)] // each test file uses its own part of this

use std::time::Duration;

use annals::compose::Server;
use annals::settings::Settings;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The bootstrap operator key every test server starts with (`ANNALS_ADMIN_KEY`): keys of every
/// tenant and the projections, no tenant's data.
pub const ADMIN_KEY: &str = "annals_00112233aabbccdd_0011223344556677889900112233445566778899001122334455667788990011";
/// The same key by what it is.
pub const OPERATOR_KEY: &str = ADMIN_KEY;

/// A running server and what it takes to stop it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// The key requests carry: an `admin` key of the tenant `default` (made by the operator key
    /// at the first spawn) unless changed.
    pub key: String,
    /// The operator key (`ADMIN_KEY`, or none when the settings gave no `admin_key`).
    pub operator: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    dir: std::path::PathBuf,
}

impl TestApp {
    pub async fn spawn(dir: &std::path::Path) -> TestApp {
        Self::spawn_with(dir, |_| {}).await
    }

    pub async fn spawn_with(dir: &std::path::Path, edit: impl FnOnce(&mut Settings)) -> TestApp {
        let mut app = Self::start(dir, edit).await;
        if app.operator == ADMIN_KEY {
            app.key = app.tenant_admin_key("default").await;
        }
        app
    }

    /// The server alone, requests carrying the operator key.
    async fn start(dir: &std::path::Path, edit: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = test_settings(dir);
        settings.admin_key = Some(ADMIN_KEY.to_owned());
        edit(&mut settings);
        let operator = settings.admin_key.clone().unwrap_or_default();
        // As `annals serve` builds it: the same composition root, the same checks.
        let app = Server::build(settings).await.expect("build the application");
        let base = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let server = tokio::spawn(async move { app.run_until_stopped(token).await.expect("serve") });
        TestApp {
            base,
            // Identity unless a test asks: the Elasticsearch client turns on reqwest's gzip for
            // the whole build, which would otherwise ask for and undo compression in every test.
            client: reqwest::Client::builder().no_gzip().build().expect("an HTTP client"),
            key: operator.clone(),
            operator,
            shutdown,
            server,
            dir: dir.to_owned(),
        }
    }

    /// A new `admin` key of `tenant`, made with the operator key.
    pub async fn tenant_admin_key(&self, tenant: &str) -> String {
        let (status, body) =
            self.as_operator().post("/v1/keys", &json!({ "tenant": tenant, "role": "admin", "name": "tests" })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["key"].as_str().unwrap().to_owned()
    }

    /// This server with requests carrying the operator key (projections, keys of any tenant).
    pub fn as_operator(&self) -> TestApp {
        self.with_key(&self.operator)
    }

    /// This server with requests carrying `key`.
    pub fn with_key(&self, key: &str) -> TestApp {
        let mut view = self.clone_view();
        view.key = key.to_owned();
        view
    }

    /// Stops the server and waits until the store is closed (the directory is free again).
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.server).await.expect("stops in time").expect("no panic");
    }

    /// Stops and starts the server again on the same directory; requests carry the same key.
    pub async fn restart(self) -> TestApp {
        let (dir, key) = (self.dir.clone(), self.key.clone());
        self.stop().await;
        let mut app = TestApp::start(&dir, |_| {}).await;
        app.key = key;
        app
    }

    /// Another handle on the same server (to send requests with another key); stopping it does
    /// nothing.
    pub fn clone_view(&self) -> TestApp {
        TestApp {
            base: self.base.clone(),
            client: self.client.clone(),
            key: self.key.clone(),
            operator: self.operator.clone(),
            shutdown: CancellationToken::new(),
            server: tokio::spawn(async {}),
            dir: self.dir.clone(),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .expect("request");
        decode(response).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .bearer_auth(&self.key)
            .body(body)
            .send()
            .await
            .expect("request");
        decode(response).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let response =
            self.client.delete(format!("{}{path}", self.base)).bearer_auth(&self.key).send().await.expect("request");
        decode(response).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        decode(self.client.get(format!("{}{path}", self.base)).bearer_auth(&self.key).send().await.expect("request"))
            .await
    }
}

/// The settings of a test server: port 0 and `dir` as the data directory, the rest defaults.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut settings = Settings::default();
    settings.http.listen = "127.0.0.1:0".parse().unwrap();
    settings.store.data_dir = dir.to_owned();
    settings
}

/// Status and JSON body; problem responses must say they are problems.
pub async fn decode(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body: Value = response.json().await.expect("a JSON body");
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(content_type, "application/problem+json", "error responses are problems: {body}");
        assert_eq!(body["status"], json!(status.as_u16()), "problem status: {body}");
        assert!(body["type"].as_str().is_some_and(|t| t.starts_with("https://")), "problem type: {body}");
        assert!(body["title"].is_string() && body["detail"].is_string(), "problem title and detail: {body}");
    }
    (status, body)
}

/// An event of type `kind` whose data is valid for the type's schema when it has one.
pub fn event(kind: &str, n: u64) -> Value {
    let id = format!("m-{n}");
    let data = match kind {
        "message.sent" | "message.routed" => json!({ "message_id": id, "channel": "email", "provider": "ses" }),
        "message.enqueued" => json!({ "message_id": id, "recipient": { "email": "ada@example.com" } }),
        "message.delivered" | "message.opened" | "message.clicked" => json!({ "message_id": id }),
        "audit.recorded" => json!({
            "actor": { "id": "user-1", "type": "user" },
            "action": "template.updated",
            "crud": "update",
            "target": { "type": "template", "id": format!("t-{n}") },
            "outcome": "success",
            "occurred_at": "2026-11-24T10:00:00Z"
        }),
        _ => json!({ "n": n, "recipient": "ada@example.com" }),
    };
    json!({ "type": kind, "data": data })
}

/// One frame of a Server-Sent Events stream.
#[derive(Debug, Default, Clone)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub comment: bool,
}

/// Reads frames off an SSE response.
pub struct SseReader {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    pub async fn open(app: &TestApp, path: &str, last_event_id: Option<u64>) -> SseReader {
        let mut request = app.client.get(format!("{}{path}", app.base)).bearer_auth(&app.key);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader { body: Box::pin(response.bytes_stream()), buf: String::new() }
    }

    /// Reads the frames of a response the caller opened itself (another way to authenticate).
    pub fn from_response(response: reqwest::Response) -> SseReader {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader { body: Box::pin(response.bytes_stream()), buf: String::new() }
    }

    pub async fn frame(&mut self) -> Frame {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let mut frame = Frame::default();
                for line in raw.lines() {
                    match line.split_once(':') {
                        Some(("", _)) => frame.comment = true,
                        Some(("id", v)) => frame.id = Some(v.trim_start().to_owned()),
                        Some(("event", v)) => frame.event = Some(v.trim_start().to_owned()),
                        Some(("data", v)) => frame.data.push_str(v.trim_start()),
                        _ => {}
                    }
                }
                return frame;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("an SSE frame within 10 s")
                .expect("the stream goes on")
                .expect("read");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Reads until the server ends the stream (within 10 s); returns the events it sent first.
    pub async fn until_end(mut self) -> Vec<Value> {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while let Some(chunk) =
            tokio::time::timeout_at(deadline, self.body.next()).await.expect("the stream ends within 10 s")
        {
            self.buf.push_str(std::str::from_utf8(&chunk.expect("read")).unwrap());
        }
        let mut events = Vec::new();
        for raw in self.buf.split("\n\n") {
            let is_event = raw.lines().any(|l| l.starts_with("id:"));
            if let Some(data) = raw.lines().find_map(|l| l.strip_prefix("data:")).filter(|_| is_event) {
                events.push(serde_json::from_str(data.trim_start()).unwrap());
            }
        }
        events
    }

    /// The next `n` events (skipping heartbeats and `caught-up`), as (position, event).
    pub async fn events(&mut self, n: usize) -> Vec<(u64, Value)> {
        let mut out = Vec::new();
        while out.len() < n {
            let frame = self.frame().await;
            if frame.comment || frame.event.is_some() {
                continue;
            }
            let event: Value = serde_json::from_str(&frame.data).unwrap();
            let id: u64 = frame.id.expect("every event has an id").parse().unwrap();
            assert_eq!(event["position"], json!(id), "the SSE id is the position");
            out.push((id, event));
        }
        out
    }
}

/// Appends `n` events of type `kind` to `stream`; returns the `201` body.
pub async fn append_n(app: &TestApp, stream: &str, kind: &str, n: u64) -> Value {
    let events: Vec<Value> = (0..n).map(|i| event(kind, i)).collect();
    let (status, body) = app.post(&format!("/v1/streams/{stream}/events"), &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// The end of a delay measurement (issue 15's figure): waits (30 s at most) until every appended
/// message in `acked` was `heard` as invalidated, then prints the percentiles of ack → heard
/// against the view's lag (`lag`, one per append) as `appends N: invalidation {what} p50 …`.
pub async fn report_invalidation_delay(
    what: &str,
    acked: &[(String, std::time::Instant)],
    mut lag: Vec<Duration>,
    heard: &std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while heard.lock().unwrap().len() < acked.len() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let heard = heard.lock().unwrap().clone();
    let mut delay: Vec<Duration> = acked.iter().map(|(id, ack)| heard[id].duration_since(*ack)).collect();
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
    };
    let (d50, d99, l50, l99) = (pct(&mut delay, 0.5), pct(&mut delay, 0.99), pct(&mut lag, 0.5), pct(&mut lag, 0.99));
    println!(
        "appends {}: invalidation {what} p50 {d50:?} p99 {d99:?}; view lag p50 {l50:?} p99 {l99:?}; \
         ratio p50 {:.2} p99 {:.2}",
        acked.len(),
        d50.as_secs_f64() / l50.as_secs_f64(),
        d99.as_secs_f64() / l99.as_secs_f64()
    );
}
