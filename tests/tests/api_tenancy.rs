//! The tenant boundary on the write path, and names that cannot spoof.
//!
//! Why this exists: event ids were once global, so a tenant appending an id another tenant had
//! used got `409 … stored in another stream` (an existence oracle across tenants, and a way to
//! block another tenant's deterministic ids). And stream names and event types accepted
//! invisible or reordering characters (U+202E, zero-width spaces, a BOM), which spoof names in a
//! log UI.

use crate::support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestApp;

/// Creates a key with the bootstrap (operator) key; returns the key.
async fn key(app: &TestApp, tenant: &str, role: &str) -> TestApp {
    let (status, body) =
        app.as_operator().post("/v1/keys", &json!({ "tenant": tenant, "role": role, "name": tenant })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut view = app.clone_view();
    view.key = body["key"].as_str().expect("a key").to_owned();
    view
}

fn events(ids: &[&str], tag: &str) -> Value {
    let events: Vec<Value> =
        ids.iter().map(|id| json!({ "id": id, "type": "order.placed", "data": { "tag": tag } })).collect();
    json!({ "events": events })
}

#[tokio::test]
async fn tenants_neither_see_nor_block_each_others_event_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (a, b) = (key(&app, "acme", "writer").await, key(&app, "globex", "writer").await);
    let shared = "0190f6a5-6b1e-7c3a-9d2e-5a4b3c2d1e0f";
    let nil = "00000000-0000-0000-0000-000000000000";

    let (status, original_a) = a.post("/v1/streams/order-1/events", &events(&[shared, nil], "a")).await;
    assert_eq!(status, StatusCode::CREATED, "{original_a}");
    // The same ids, the same stream name, another tenant: new events, not a 409.
    let (status, original_b) = b.post("/v1/streams/order-1/events", &events(&[shared, nil], "b")).await;
    assert_eq!(status, StatusCode::CREATED, "tenant B must not meet tenant A's ids: {original_b}");
    assert_ne!(original_a["first_position"], original_b["first_position"], "two appends: {original_b}");
    // And in another of B's streams, A's ids are not "stored in another stream" either.
    let (status, body) = b.post("/v1/streams/order-2/events", &events(&[nil], "b2")).await;
    assert_eq!(status, StatusCode::CONFLICT, "within B, B's own id in another stream conflicts: {body}");
    assert_eq!(body["stream"], json!("order-2"), "the conflict names B's stream only: {body}");

    // Retries answer each tenant's own original.
    let (status, retry_a) = a.post("/v1/streams/order-1/events", &events(&[shared, nil], "a")).await;
    assert_eq!((status, &retry_a), (StatusCode::CREATED, &original_a), "A's retry");
    let (status, retry_b) = b.post("/v1/streams/order-1/events", &events(&[shared, nil], "b")).await;
    assert_eq!((status, &retry_b), (StatusCode::CREATED, &original_b), "B's retry");

    // Both are readable, each in its own tenant.
    for (who, tag) in [(&a, "a"), (&b, "b")] {
        let mut reader = key(&app, if tag == "a" { "acme" } else { "globex" }, "reader").await;
        reader.base = who.base.clone();
        let (status, page) = reader.get("/v1/streams/order-1/events").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let got: Vec<(&str, &str)> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["id"].as_str().unwrap(), e["data"]["tag"].as_str().unwrap()))
            .collect();
        assert_eq!(got, [(shared, tag), (nil, tag)], "tenant {tag}'s stream: {page}");
    }
    app.stop().await;
}

#[tokio::test]
async fn names_and_types_that_spoof_are_400_naming_the_character() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let writer = key(&app, "acme", "writer").await;
    // U+202E (right-to-left override) in a stream name, percent-encoded in the path.
    let (status, body) = writer.post("/v1/streams/invoice-%E2%80%AEfdp.exe/events", &events(&[nil_free()], "x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["parameter"], json!("stream"), "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("U+202E") && detail.contains("character 8"), "{body}");
    assert!(!detail.contains("acme"), "the tenant's prefix is not the client's business: {body}");

    // A zero-width space in an event type.
    let body = json!({ "events": [
        { "type": "order.placed", "data": {} },
        { "type": "order\u{200B}.placed", "data": {} }
    ] });
    let (status, body) = writer.post("/v1/streams/order-1/events", &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["pointer"], json!("/events/1/type"), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("U+200B"), "{body}");
    let (status, page) = app.get("/v1/streams/order-1/events").await;
    assert_ne!(status, StatusCode::OK, "nothing of the refused batch is stored: {page}");
    app.stop().await;
}

fn nil_free() -> &'static str {
    "0190f6a5-6b1e-7c3a-9d2e-5a4b3c2d1e10"
}
