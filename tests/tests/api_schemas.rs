//! Event schemas at the HTTP edge: registered types are validated at append (`422` with the JSON
//! pointer and the rule, nothing stored), other types are stored as opaque JSON unless the server
//! is strict, and `/v1/schemas` serves every published version.

use crate::support;

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
    let app = TestApp::spawn_with(tmp.path(), |s| s.http.strict_schemas = true).await;
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

/// Issue 13, item 4: what the append acknowledges, the view shows. Data the schema's text takes
/// but its type cannot read is a `422` at the pointer; a duplicated key is a `400` (the stored
/// bytes would hold both values while the validator saw one).
#[tokio::test]
async fn what_the_append_accepts_the_view_applies() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let enqueued = |id: &str, version: &str| {
        format!(
            r#"{{"events":[{{"type":"message.enqueued","data":{{"message_id":"{id}","recipient":{{"id":"u"}},"template":{{"id":"t","version":{version}}}}}}}]}}"#
        )
    };
    for (i, version) in ["1.0", "4294967296", "-0", "1e0"].into_iter().enumerate() {
        let id = format!("bad-{i}");
        let (status, problem) = app.post_raw(&format!("/v1/streams/message-{id}/events"), enqueued(&id, version)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "template.version {version}: {problem}");
        assert_eq!(problem["pointer"], json!("/events/0/data/template/version"), "{problem}");
        assert!(problem["rule"].as_str().unwrap().contains("expected u32"), "the rule says why: {problem}");
    }
    let duplicate = r#"{"events":[{"type":"message.sent","data":{"message_id":"d","channel":"fax","channel":"email","provider":"ses"}}]}"#;
    let (status, problem) = app.post_raw("/v1/streams/message-d/events", duplicate).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["pointer"], json!("/events/0/data/channel"), "{problem}");
    for id in ["bad-0", "bad-1", "d"] {
        let (status, _) = app.get(&format!("/v1/streams/message-{id}/events")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "a refused append stores nothing");
    }

    // The edge the type does hold is acknowledged and shown.
    let (status, appended) = app.post_raw("/v1/streams/message-max/events", enqueued("max", "4294967295")).await;
    assert_eq!(status, StatusCode::CREATED, "{appended}");
    let (status, doc) = app.get(&format!("/v1/messages/max?min_position={}", appended["last_position"])).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["template_version"], json!(4294967295u64), "{doc}");
    // An audit time the schema takes but the index cannot hold (it holds 1677-2262) is shown.
    let mut audit = support::event("audit.recorded", 1);
    audit["data"]["occurred_at"] = json!("9999-12-31T23:59:59Z");
    let (status, appended) = app.post("/v1/streams/audit-template-t-1/events", &json!({ "events": [audit] })).await;
    assert_eq!(status, StatusCode::CREATED, "{appended}");
    let (status, page) = app.get(&format!("/v1/audit?min_position={}", appended["last_position"])).await;
    assert_eq!((status, &page["total"]), (StatusCode::OK, &json!(1)), "{page}");
    assert_eq!(page["items"][0]["occurred_at"], json!("9999-12-31T23:59:59Z"), "the source keeps the time as sent");
    let (status, parked) = app.as_operator().get("/v1/projections/messages/parked").await;
    assert_eq!(status, StatusCode::OK, "{parked}");
    assert_eq!(parked["items"].as_array().map(Vec::len), Some(0), "nothing acknowledged is parked: {parked}");
    app.stop().await;
}

/// Issue 13, item 16: every event's data and metadata, registered type or not, passes the same
/// structural check: a `400` naming the pointer, and nothing stored.
#[tokio::test]
async fn every_body_is_checked_for_what_no_reader_holds_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let event = |data: &str, metadata: &str| {
        format!(
            r#"{{"events":[{{"type":"thing.happened","data":{{"x":1}}}},{{"type":"thing.happened","data":{data},"metadata":{metadata}}}]}}"#
        )
    };
    let cases = [
        (event(r#"{"s":"\ud800"}"#, "{}"), "/events/1/data/s"),
        (event(r#"{"s":["a","\udc00"]}"#, "{}"), "/events/1/data/s/1"),
        (event(&format!(r#"{{"deep":{deep}}}"#), "{}"), "/events/1/data/deep"),
        (event(r#"{"n":1e400}"#, "{}"), "/events/1/data/n"),
        (event(r#"{"k":{"a":1,"a":2}}"#, "{}"), "/events/1/data/k/a"),
        (event("{}", r#"{"k":1,"k":1}"#), "/events/1/metadata/k"),
        (event("{}", r#"{"s":"\ud800"}"#), "/events/1/metadata/s"),
        (event("{}", r#"{"n":-1e999}"#), "/events/1/metadata/n"),
        (r#"{"events":[{"type":"a.b","data":{}}],"events":[]}"#.to_owned(), "/events"),
        (r#"{"events":[{"type":"a.b","type":"c.d","data":{}}]}"#.to_owned(), "/events/0/type"),
        // Registered types get the same answer.
        (
            r#"{"events":[{"type":"message.opened","data":{"message_id":"o","user_agent":"\ud800"}}]}"#.to_owned(),
            "/events/0/data/user_agent",
        ),
    ];
    for (body, pointer) in cases {
        let (status, problem) = app.post_raw("/v1/streams/thing-1/events", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pointer}: {problem}");
        assert_eq!(problem["type"], json!("https://annals.dev/problems/malformed-body"), "{problem}");
        let got = problem["pointer"].as_str().unwrap_or_default();
        // A nesting error points at the container past the limit, inside the value named.
        assert!(got == pointer || (pointer.ends_with("/deep") && got.starts_with(pointer)), "{pointer}: {problem}");
    }
    let (status, _) = app.get("/v1/streams/thing-1/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a refused append stores nothing");
    // What a document model holds passes: nesting to the limit, paired surrogates, edge numbers.
    let ok = format!("{}1{}", "[".repeat(126), "]".repeat(126));
    let body = event(&format!(r#"{{"deep":{ok},"s":"\ud83d\ude00","n":[1e308,-0,1.0,1e-400]}}"#), "{}");
    let (status, problem) = app.post_raw("/v1/streams/thing-1/events", body).await;
    assert_eq!(status, StatusCode::CREATED, "{problem}");
    app.stop().await;
}
