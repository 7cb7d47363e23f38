//! Tests of the `annals` binary itself (this file belongs to the root package, not to
//! `annals-tests`): with `OTEL_EXPORTER_OTLP_ENDPOINT` set, `annals serve` exports its spans over
//! OTLP/HTTP, a request's spans join the caller's trace, and appended events carry the trace
//! context of the append so consumers can continue it. The collector is a minimal OTLP/HTTP
//! receiver in this process that records what it is sent.

use crate::serve_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use serde_json::{json, Value};
use serve_support::{Serve, ADMIN_KEY};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn spans_are_exported_over_otlp_and_join_the_callers_trace() {
    // The collector: every POST /v1/traces body, kept.
    let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let sink = Arc::clone(&received);
    let collector = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(body);
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, collector).await.unwrap() });

    let tmp = tempfile::tempdir().unwrap();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector_addr}")),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
    let mut server = Serve::start(tmp.path(), &env);
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "annals serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The bootstrap key is an operator's, which reads and appends no data: it makes a tenant's key.
    let created: Value = client
        .post(format!("{base}/v1/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "tenant": "acme", "role": "admin", "name": "otlp-test" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().expect("a key").to_owned();

    let response = client
        .post(format!("{base}/v1/streams/message-1/events"))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({ "events": [{ "type": "message.opened", "data": { "message_id": "1" } }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // The event carries the append's own span: same trace, another parent.
    let page: Value = client
        .get(format!("{base}/v1/streams/message-1/events"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = page["events"][0]["metadata"]["traceparent"].as_str().expect("a traceparent").to_owned();
    let parts: Vec<&str> = stored.split('-').collect();
    assert_eq!(parts[1], TRACE_ID, "the event's trace is the caller's: {stored}");
    assert_ne!(parts[2], CALLER_SPAN, "the event's parent is the append's span, not the caller's: {stored}");

    // The collector gets the request spans of that trace (OTLP protobuf holds the trace id as
    // 16 raw bytes) from a service named annals.
    let trace_id: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).unwrap()).collect();
    let span_id: Vec<u8> = (0..8).map(|i| u8::from_str_radix(&parts[2][2 * i..2 * i + 2], 16).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bodies = received.lock().unwrap().clone();
        let all: Vec<u8> = bodies.iter().flat_map(|b| b.to_vec()).collect();
        let has = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
        if has(&trace_id) && has(&span_id) && has(b"annals") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no span of trace {TRACE_ID} reached the collector ({} bodies)",
            bodies.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.terminate();
}
