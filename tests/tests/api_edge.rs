//! Black-box tests of the HTTP edge: what hyper refuses before any handler (malformed requests,
//! huge URIs and heads) is a problem document too; JSON routes take JSON only (`415`); slow or
//! silent clients are timed out while live tails are not; catch-up tails are capped; pages of a
//! stream are bounded in bytes.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{append_n, decode, SseReader, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` as raw bytes and reads until the server closes (at most 10 s): the status, the
/// head (lowercase) and the body.
async fn raw(app: &TestApp, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut socket = TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    // The server may answer and close before it has read everything: a failed write is fine.
    let _ = socket.write_all(request).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 8192];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
            if complete(&response) {
                break;
            }
        }
    });
    read.await.expect("an answer within 10 s");
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    (status, head, response[end + 4..].to_vec())
}

/// A whole response with a `content-length` has arrived.
fn complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let length = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok());
    length.is_some_and(|n: usize| response.len() >= end + 4 + n)
}

fn assert_problem(what: &str, (status, head, body): &(u16, String, Vec<u8>), expected: u16) {
    assert_eq!(*status, expected, "{what}: {head}");
    assert!(head.contains("content-type: application/problem+json"), "{what}: {head}");
    let problem: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{what}: a JSON body ({e}): {body:?}"));
    assert_eq!(problem["status"], json!(expected), "{what}: {problem}");
    assert!(problem["type"].as_str().is_some_and(|t| t.starts_with("https://annals.dev/problems/")), "{problem}");
    assert!(problem["detail"].is_string(), "{what}: {problem}");
}

#[tokio::test]
async fn requests_refused_before_any_handler_get_problem_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let long_uri = format!("GET /healthz?q={} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(100 * 1024));
    let mut many_headers = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\n");
    for i in 0..200 {
        many_headers.push_str(&format!("x-h{i}: {i}\r\n"));
    }
    many_headers.push_str("\r\n");
    let huge_header = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "b".repeat(100 * 1024));
    // Past hyper's own buffer: refused by hyper itself, not by the edge checks.
    let huge_head = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "b".repeat(300 * 1024));
    let cases: [(&str, &[u8], u16); 7] = [
        ("a malformed request line", b"GET\x01 /healthz HTTP/1.1\r\nhost: x\r\n\r\n", 400),
        ("a request line that is not HTTP", b"HELLO THERE\r\n\r\n", 400),
        ("a malformed header", b"GET /healthz HTTP/1.1\r\nhost: x\r\nbad header line\r\n\r\n", 400),
        ("a 100 KB URI", long_uri.as_bytes(), 414),
        ("200 headers", many_headers.as_bytes(), 431),
        ("a 100 KB header", huge_header.as_bytes(), 431),
        ("a 300 KB header", huge_head.as_bytes(), 431),
    ];
    for (what, request, expected) in cases {
        assert_problem(what, &raw(&app, request).await, expected);
    }
    // A request past the edge checks still works on a fresh connection.
    let ok = raw(&app, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    app.stop().await;
}

/// POSTs `body` to `path` with the content type `content_type` (none when `None`).
async fn post_as(app: &TestApp, path: &str, content_type: Option<&str>, body: &'static str) -> (StatusCode, Value) {
    let mut request = app.client.post(format!("{}{path}", app.base)).bearer_auth(&app.key).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    decode(request.send().await.unwrap()).await
}

#[tokio::test]
async fn routes_with_a_body_take_json_only() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let append = r#"{"events":[{"type":"thing.done","data":{"n":1}}]}"#;
    let key = r#"{"tenant":"acme","role":"reader","name":"ui"}"#;
    let replay = r#"{"positions":[1]}"#;
    let routes = [
        ("/v1/streams/thing-1/events", append),
        ("/v1/keys", key),
        ("/v1/projections/messages/parked/replay", replay),
        ("/v1/projections/messages/rebuild", "{}"),
    ];
    for (path, body) in routes {
        for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("text/json"), None] {
            let (status, problem) = post_as(&app, path, content_type, body).await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path} as {content_type:?}: {problem}");
            assert_eq!(problem["type"], json!("https://annals.dev/problems/unsupported-media-type"));
            assert_eq!(problem["content_type"], json!(content_type), "{problem}");
            let named = content_type.unwrap_or("without a content-type");
            assert!(problem["detail"].as_str().unwrap().contains(named), "{problem}");
        }
    }
    // JSON in any case, with parameters, and +json types are JSON.
    for content_type in ["application/json; charset=utf-8", "Application/JSON", "application/vnd.annals+json"] {
        let (status, body) = post_as(&app, "/v1/streams/thing-1/events", Some(content_type), append).await;
        assert_eq!(status, StatusCode::CREATED, "{content_type}: {body}");
        let (status, body) = post_as(&app.as_operator(), "/v1/keys", Some(content_type), key).await;
        assert_eq!(status, StatusCode::CREATED, "{content_type}: {body}");
    }
    // No body at all needs no content type where the body is optional or absent.
    let operator = app.as_operator();
    let (status, body) = post_as(&operator, "/v1/projections/messages/parked/replay", None, "").await;
    assert!(status.is_success(), "{status} {body}");
    let (status, body) = post_as(&operator, "/v1/projections/messages/rebuild", None, "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_live_tail_cannot_resume_past_the_head_of_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let appended = append_n(&app, "thing-1", "thing.done", 3).await;
    let head = appended["last_position"].as_u64().unwrap();
    let tail = |query: String, last_event_id: Option<String>| {
        let mut request = app.client.get(format!("{}/v1/events/live{query}", app.base)).bearer_auth(&app.key);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        async move { request.send().await.unwrap() }
    };
    // The projectors may append to their own streams meanwhile: "past the head" is far past it.
    for (query, last, parameter) in [
        (String::new(), Some(u64::MAX.to_string()), "Last-Event-ID"),
        (String::new(), Some((head + 1_000_000).to_string()), "Last-Event-ID"),
        (format!("?from_position={}", u64::MAX), None, "from_position"),
        (format!("?from_position={}", head + 1_000_000), None, "from_position"),
    ] {
        let response = tokio::time::timeout(Duration::from_secs(5), tail(query.clone(), last.clone()))
            .await
            .expect("an answer, not a silent wait");
        let (status, problem) = decode(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query} {last:?}: {problem}");
        assert_eq!(problem["parameter"], json!(parameter), "{problem}");
    }
    // Up to the head (and the next position, for from_position) are fine.
    let mut at_head = SseReader::open(&app, "/v1/events/live", Some(head)).await;
    let mut next = SseReader::open(&app, &format!("/v1/events/live?from_position={}", head + 1), None).await;
    let more = append_n(&app, "thing-1", "thing.done", 1).await["first_position"].as_u64().unwrap();
    assert_eq!(at_head.events(1).await[0].0, more);
    assert_eq!(next.events(1).await[0].0, more);
    app.stop().await;
}

#[tokio::test]
async fn catch_up_tails_beyond_the_cap_get_503_with_retry_after_and_live_ones_do_not_count() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(tmp.path(), |s| s.http.max_catchup_tails = 1).await;
    // More history than the socket buffers hold, so a tail whose client does not read stays
    // catching up.
    let data = "x".repeat(4000);
    for _ in 0..12 {
        let events: Vec<Value> = (0..250).map(|_| json!({ "type": "thing.done", "data": { "x": data } })).collect();
        let (status, body) = app.post("/v1/streams/thing-1/events", &json!({ "events": events })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let stalled = app
        .client
        .get(format!("{}/v1/events/live?from_position=0", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(stalled.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = app
        .client
        .get(format!("{}/v1/events/live?from_position=0", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    let (status, problem) = decode(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["type"], json!("https://annals.dev/problems/too-many-catch-up-tails"));
    // A tail of new events only reads no history: not capped.
    let _live = SseReader::open(&app, "/v1/events/live", None).await;
    // The slot frees when the stalled tail goes.
    drop(stalled);
    let started = Instant::now();
    loop {
        let response = app
            .client
            .get(format!("{}/v1/events/live?from_position=0", app.base))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the slot of a closed tail is freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn stream_pages_are_bounded_in_bytes_and_next_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(tmp.path(), |s| s.http.max_page_bytes = 10_000).await;
    let data = "x".repeat(3000);
    let events: Vec<Value> = (0..10).map(|i| json!({ "type": "thing.done", "data": { "i": i, "x": data } })).collect();
    let (status, body) = app.post("/v1/streams/thing-1/events", &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.post("/v1/streams/message-7/events", &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (first, direction) in [
        ("/v1/streams/thing-1/events?limit=100", "forwards"),
        ("/v1/streams/thing-1/events?limit=100&direction=backwards", "backwards"),
        ("/v1/messages/7/history?limit=100", "forwards"),
    ] {
        let mut seen = Vec::new();
        let mut path = Some(first.to_owned());
        while let Some(p) = path {
            let (status, page) = app.get(&p).await;
            assert_eq!(status, StatusCode::OK, "{p}: {page}");
            let events = page["events"].as_array().unwrap();
            assert!(!events.is_empty() && events.len() <= 3, "{p}: {} events of ~3 KB under 10 KB", events.len());
            seen.extend(events.iter().map(|e| e["data"]["i"].as_u64().unwrap()));
            path = page["next"].as_str().map(str::to_owned);
        }
        let mut expected: Vec<u64> = (0..10).collect();
        if direction == "backwards" {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{first}: every event once, in order");
    }
    // One event larger than the bound still makes a page.
    let big = json!({ "events": [{ "type": "thing.done", "data": { "x": "y".repeat(20_000) } }] });
    assert_eq!(app.post("/v1/streams/thing-2/events", &big).await.0, StatusCode::CREATED);
    let (status, page) = app.get("/v1/streams/thing-2/events").await;
    assert_eq!((status, page["events"].as_array().unwrap().len(), &page["next"]), (StatusCode::OK, 1, &Value::Null));
    app.stop().await;
}

#[tokio::test]
async fn silent_slow_and_idle_connections_are_closed_but_live_tails_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(tmp.path(), |s| {
        s.http.header_timeout = Duration::from_secs(1);
        s.http.idle_timeout = Duration::from_secs(1);
        s.http.body_timeout = Duration::from_secs(1);
        s.http.sse_heartbeat = Duration::from_secs(30);
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let closed_within = |mut socket: TcpStream, limit: Duration| async move {
        let started = Instant::now();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(limit, socket.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "closed within {limit:?}");
        (started.elapsed(), buf)
    };
    // Sends nothing.
    let silent = TcpStream::connect(&addr).await.unwrap();
    closed_within(silent, Duration::from_secs(4)).await;
    // Sends a head a byte at a time, never finishing it.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ".iter().cycle().take(1000) {
            if slow.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    let cut = tokio::time::timeout(Duration::from_secs(6), trickle).await.expect("cut within 6 s").unwrap();
    assert!(cut, "the trickling connection was closed");
    // Served a request, then idle.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let (_, answered) = closed_within(idle, Duration::from_secs(4)).await;
    assert!(answered.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answered));
    // A body that stops arriving: a 408 problem.
    let slow_body = raw(
        &app,
        format!(
            "POST /v1/streams/thing-1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"events\":",
            app.key
        )
        .as_bytes(),
    )
    .await;
    assert_problem("a body that stops", &slow_body, 408);
    // A live tail outlives the idle timeout with nothing to send (heartbeats every 30 s).
    let mut tail = SseReader::open(&app, "/v1/events/live", None).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let appended = append_n(&app, "thing-3", "thing.done", 1).await["first_position"].as_u64().unwrap();
    assert_eq!(tail.events(1).await[0].0, appended);
    app.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_and_health_checks_still_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(tmp.path(), |s| {
        s.http.max_connections = 8;
        s.http.header_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut silent = Vec::new();
    for _ in 0..24 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    let started = Instant::now();
    // A client of its own: the test's client keeps a connection from the set-up, already served.
    let fresh = reqwest::Client::new();
    let response = tokio::time::timeout(Duration::from_secs(10), fresh.get(format!("{}/healthz", app.base)).send())
        .await
        .expect("/healthz answers within 10 s behind 24 silent connections and a cap of 8")
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() > Duration::from_millis(500), "it waited for slots: the cap held");
    app.stop().await;
}
