//! Event schemas at the HTTP edge: registered types are validated at append (`422` with the JSON
//! pointer and the rule, nothing stored), other types are stored as opaque JSON unless the server
//! is strict, and `/v1/schemas` serves every published version.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{event, TestApp};

#[tokio::test]
async fn registered_types_are_validated_and_a_violation_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let body = json!({ "events": [
        event("message.sent", 1),
        { "type": "message.sent", "data": { "message_id": "m-2", "channel": "fax", "provider": "ses" } }
    ] });
    let (status, problem) = app.post("/v1/streams/message-1/events", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], json!("https://annals.dev/problems/schema-violation"));
    assert_eq!(problem["pointer"], json!("/events/1/data/channel"));
    assert_eq!((&problem["event_type"], &problem["schema_version"]), (&json!("message.sent"), &json!(1)));
    assert!(problem["rule"].as_str().unwrap().contains("fax"), "{problem}");
    let (status, _) = app.get("/v1/streams/message-1/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a refused batch stores none of its events");

    for (data, pointer) in [
        (json!({ "message_id": "m", "recipient": { "email": "nope" } }), "/events/0/data/recipient/email"),
        (json!({ "message_id": "m", "recipient": {} }), "/events/0/data/recipient"),
        (json!({ "recipient": { "id": "u" } }), "/events/0/data"),
    ] {
        let body = json!({ "events": [{ "type": "message.enqueued", "data": data }] });
        let (status, problem) = app.post("/v1/streams/message-2/events", &body).await;
        assert_eq!(
            (status, problem["pointer"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(pointer)),
            "{problem}"
        );
    }
    let body = json!({ "events": [{ "type": "message.opened", "data": { "message_id": "m" }, "metadata": { "schema_version": 9 } }] });
    let (status, problem) = app.post("/v1/streams/message-2/events", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("latest is 1"), "{problem}");

    let (status, _) =
        app.post("/v1/streams/message-2/events", &json!({ "events": [event("message.enqueued", 2)] })).await;
    assert_eq!(status, StatusCode::CREATED);
    // Unregistered types are the store's general case: opaque JSON.
    let (status, _) = app
        .post(
            "/v1/streams/other-1/events",
            &json!({ "events": [{ "type": "invoice.paid", "data": { "any": ["thing"] } }] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;
}

#[tokio::test]
async fn a_strict_server_refuses_unregistered_types() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(tmp.path(), |s| s.strict_schemas = true).await;
    let (status, problem) =
        app.post("/v1/streams/other-1/events", &json!({ "events": [{ "type": "invoice.paid", "data": {} }] })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], json!("https://annals.dev/problems/unknown-schema"));
    assert_eq!(problem["event_type"], json!("invoice.paid"));
    let (status, _) =
        app.post("/v1/streams/message-1/events", &json!({ "events": [event("message.delivered", 1)] })).await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;
}

#[tokio::test]
async fn the_schemas_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (status, list) = app.get("/v1/schemas").await;
    assert_eq!(status, StatusCode::OK);
    let types: Vec<&str> = list["schemas"].as_array().unwrap().iter().map(|s| s["type"].as_str().unwrap()).collect();
    for t in ["message.enqueued", "message.undeliverable", "message.throttled", "audit.recorded"] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    assert_eq!(types.len(), 11);
    let (status, one) = app.get("/v1/schemas/message.undeliverable").await;
    assert_eq!(status, StatusCode::OK);
    let schema: &Value = &one["versions"][0]["schema"];
    assert_eq!(one["versions"][0]["version"], json!(1));
    assert_eq!(schema["$id"], json!("https://annals.dev/schemas/message.undeliverable.v1.json"));
    let committed: Value =
        serde_json::from_str(include_str!("../../schemas/json/message.undeliverable.v1.json")).unwrap();
    assert_eq!(schema, &committed, "the served schema is the committed file");
    let (status, _) = app.get("/v1/schemas/invoice.paid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}
