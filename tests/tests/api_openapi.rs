//! The OpenAPI document: valid OpenAPI 3.1 (checked by `openapi-spec-validator`, which the test
//! command installs), every route documented and every documented route served, and the
//! promises every operation makes about keys and problem bodies written down.

use crate::support;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::TestApp;

/// Every route of `query-api/src/routes/mod.rs`.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/streams/{stream}/events"),
    ("post", "/v1/streams/{stream}/events"),
    ("get", "/v1/events"),
    ("get", "/v1/events/live"),
    ("post", "/v1/live-tokens"),
    ("get", "/v1/keys"),
    ("post", "/v1/keys"),
    ("delete", "/v1/keys/{id}"),
    ("get", "/v1/messages"),
    ("get", "/v1/messages/export"),
    ("get", "/v1/messages/{id}"),
    ("get", "/v1/messages/{id}/history"),
    ("get", "/v1/audit"),
    ("get", "/v1/audit/export"),
    ("get", "/v1/audit/{event_id}"),
    ("get", "/v1/invalidations"),
    ("get", "/v1/projections"),
    ("get", "/v1/projections/{name}"),
    ("post", "/v1/projections/{name}/rebuild"),
    ("get", "/v1/projections/{name}/parked"),
    ("post", "/v1/projections/{name}/parked/replay"),
    ("get", "/v1/schemas"),
    ("get", "/v1/schemas/{type}"),
    ("get", "/v1/integrity/public-key"),
    ("get", "/v1/integrity/head"),
    ("get", "/v1/integrity/proof/inclusion"),
    ("get", "/v1/integrity/proof/consistency"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

async fn document(app: &TestApp) -> Value {
    let response = reqwest::get(format!("{}/openapi.json", app.base)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the document needs no key");
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let doc = document(&app).await;
    app.stop().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let path = tmp.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("python3 runs (scripts/test.sh installs openapi-spec-validator)");
    assert!(
        output.status.success(),
        "openapi-spec-validator refuses the document (pip install openapi-spec-validator if it is missing):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let doc = document(&app).await;
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in
            item.as_object().unwrap().keys().filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
        {
            documented.push((method.clone(), path.clone()));
        }
    }
    for (method, path) in ROUTES {
        assert!(documented.contains(&((*method).to_owned(), (*path).to_owned())), "{method} {path} is not documented");
    }
    assert_eq!(documented.len(), ROUTES.len(), "documented: {documented:?}");

    // Served: the router knows each one (a missing route is a `not-found` problem or a 405).
    for (method, path) in &documented {
        if path.ends_with("/live") {
            continue; // a stream that does not end; served as the live-tail tests show
        }
        let concrete = path
            .replace("{stream}", "message-1")
            .replace("{id}", "0000000000000000")
            .replace("{type}", "message.sent")
            .replace("{event_id}", "0000000000000000")
            .replace("{name}", "messages");
        let response = app
            .client
            .request(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), format!("{}{concrete}", app.base))
            .bearer_auth(&app.key)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(!body.contains("problems/not-found\""), "{method} {path} is documented but not routed: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_operation_documents_its_key_and_its_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let doc = document(&app).await;
    app.stop().await;
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no success response");
            if path.starts_with("/v1/") {
                assert!(op["security"].to_string().contains("api_key"), "{method} {path}: no security requirement");
                assert!(responses.contains_key("401"), "{method} {path}: 401 not documented");
                assert!(responses.contains_key("503"), "{method} {path}: 503 (stopping) not documented");
            }
            if op.get("requestBody").is_some() {
                assert!(responses.contains_key("400"), "{method} {path}: takes a body but documents no 400");
                assert!(responses.contains_key("415"), "{method} {path}: takes a JSON body but documents no 415");
            }
            if !op["parameters"].as_array().is_none_or(|p| p.is_empty()) && path.starts_with("/v1/") {
                assert!(
                    responses.contains_key("400") || responses.contains_key("404"),
                    "{method} {path}: parameters but no 400/404"
                );
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let content =
                        response["content"].as_object().unwrap_or_else(|| panic!("{method} {path} {status}: no body"));
                    assert!(
                        content.contains_key("application/problem+json"),
                        "{method} {path} {status}: not a problem"
                    );
                }
            }
        }
    }
    // The append documents each of its errors.
    let append = &doc["paths"]["/v1/streams/{stream}/events"]["post"]["responses"];
    for status in ["201", "400", "401", "403", "409", "413", "422"] {
        assert!(append.get(status).is_some(), "append: {status} not documented");
    }
    // The problem body documents the fields particular problems add.
    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail", "expected", "actual", "pointer", "rule", "parameter", "stream"] {
        assert!(problem.get(field).is_some(), "Problem: {field} not documented");
    }
}

#[tokio::test]
async fn the_problems_the_server_sends_match_the_documented_problem_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let doc = document(&app).await;
    // The document's own components resolve the schema's references.
    let schema = serde_json::json!({ "$ref": "#/components/schemas/Problem", "components": doc["components"] });
    let problem = jsonschema::validator_for(&schema).expect("the Problem schema compiles");

    let append =
        |expected: Value| serde_json::json!({ "expected_revision": expected, "events": [{ "type": "t", "data": {} }] });
    let mut sent = Vec::new();
    sent.push(app.post("/v1/streams/order-1/events", &append(serde_json::json!(3))).await); // actual: "no_stream"
    app.post("/v1/streams/order-1/events", &append(serde_json::json!("no_stream"))).await;
    sent.push(app.post("/v1/streams/order-1/events", &append(serde_json::json!(3))).await); // actual: 0
    sent.push(app.post("/v1/streams/order-1/events", &append(serde_json::json!("no_stream"))).await);
    sent.push(
        app.post(
            "/v1/streams/message-1/events",
            &serde_json::json!({ "events": [{ "type": "message.sent", "data": {} }] }),
        )
        .await,
    );
    sent.push(app.get("/v1/events?limit=0").await);
    sent.push(app.get("/v1/streams/nothing-here/events").await);
    sent.push(app.get("/v1/messages/nope").await);
    for (status, body) in sent {
        assert!(status.is_client_error(), "{status}: {body}");
        let errors: Vec<String> =
            problem.iter_errors(&body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{status} {body} does not match the documented Problem: {errors:?}");
    }
    app.stop().await;
}

/// The JSON Schema of component `name` of `doc`, compiled with the document's components.
fn component(doc: &Value, name: &str) -> jsonschema::Validator {
    let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{name}"), "components": doc["components"] });
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name} compiles: {e}"))
}

fn assert_valid(validator: &jsonschema::Validator, name: &str, value: &Value) {
    let errors: Vec<String> = validator.iter_errors(value).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{value:#} does not match {name}: {errors:?}");
}

/// The read models are typed: a message and an audit entry the server serves (looked up and
/// searched) match the documented `Message` and `AuditEntry`, and the operations answer them.
#[tokio::test]
async fn served_messages_and_audit_entries_match_their_documented_schemas() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let doc = document(&app).await;
    let ok_schema = |path: &str| {
        doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].clone()
    };
    assert_eq!(ok_schema("/v1/messages/{id}"), "#/components/schemas/Message");
    assert_eq!(ok_schema("/v1/messages"), "#/components/schemas/MessagePage");
    assert_eq!(ok_schema("/v1/audit/{event_id}"), "#/components/schemas/AuditEntry");
    assert_eq!(ok_schema("/v1/audit"), "#/components/schemas/AuditPage");

    let events = serde_json::json!({ "events": [
        { "type": "message.enqueued", "data": { "message_id": "7", "channel": "email", "tags": ["orders"],
            "recipient": { "id": "u-1", "email": "ada@example.com" }, "template": { "id": "shipped", "version": 2 },
            "subject": "Shipped", "occurred_at": "2026-11-30T10:00:00Z" } },
        { "type": "message.sent", "data": { "message_id": "7", "channel": "email", "provider": "ses", "provider_message_id": "p-1" } },
        { "type": "message.undeliverable", "data": { "message_id": "7", "reason": "BOUNCED", "error_detail": "full" } }
    ]});
    let (status, _) = app.post("/v1/streams/message-7/events", &events).await;
    assert_eq!(status, StatusCode::CREATED);
    let audit = support::append_n(&app, "audit-template-t-0", "audit.recorded", 1).await;
    let last = audit["last_position"].as_u64().unwrap();

    let message = component(&doc, "Message");
    let (status, body) = app.get(&format!("/v1/messages/7?min_position={last}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["timeline"].as_array().map(Vec::len), Some(3), "{body}");
    assert_valid(&message, "Message", &body);
    let (_, body) = app.get("/v1/messages/7?as_of=2999-01-01T00:00:00Z").await;
    assert_valid(&message, "Message", &body);
    let (_, page) = app.get("/v1/messages").await;
    assert_valid(&component(&doc, "MessagePage"), "MessagePage", &page);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");

    let (_, page) = app.get(&format!("/v1/audit?min_position={last}")).await;
    assert_valid(&component(&doc, "AuditPage"), "AuditPage", &page);
    let id = page["items"][0]["event_id"].as_str().unwrap().to_owned();
    let (status, body) = app.get(&format!("/v1/audit/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_valid(&component(&doc, "AuditEntry"), "AuditEntry", &body);
    app.stop().await;
}

/// The live tail documents its Server-Sent Events, `caught-up` included, and the events a tail
/// sends match what it documents.
#[tokio::test]
async fn the_live_tails_events_are_documented_and_match() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let doc = document(&app).await;
    let ok = &doc["paths"]["/v1/events/live"]["get"]["responses"]["200"]["content"]["text/event-stream"]["schema"];
    assert_eq!(ok["$ref"], "#/components/schemas/LiveEvent");
    let names: Vec<&Value> = doc["components"]["schemas"]["LiveEvent"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["properties"]["event"]["const"])
        .collect();
    assert_eq!(names, [&serde_json::json!("message"), &serde_json::json!("caught-up")]);

    support::append_n(&app, "order-1", "order.placed", 2).await;
    let live = component(&doc, "LiveEvent");
    let event = component(&doc, "Event");
    let mut reader = support::SseReader::open(&app, "/v1/events/live?from_position=0", None).await;
    let mut last_id = None;
    for _ in 0..3 {
        let frame = reader.frame().await;
        last_id = frame.id.clone().or(last_id);
        // As schemathesis reads a frame: `event` defaults to `message`, `id` to the last one.
        let mut sse =
            serde_json::json!({ "event": frame.event.clone().unwrap_or("message".into()), "data": frame.data });
        if let Some(id) = &last_id {
            sse["id"] = serde_json::json!(id);
        }
        assert_valid(&live, "LiveEvent", &sse);
        let data: Value = serde_json::from_str(&frame.data).unwrap();
        match frame.event.as_deref() {
            None => assert_valid(&event, "Event", &data),
            Some("caught-up") => assert_eq!(data, serde_json::json!({})),
            Some(other) => panic!("undocumented event {other}"),
        }
    }
    app.stop().await;
}

/// What the document says a parameter or field may be is what the server takes: the bounds the
/// issue found missing, each checked on both sides.
#[tokio::test]
async fn the_document_states_the_bounds_the_server_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let doc = document(&app).await;
    let parameter = |path: &str, name: &str| {
        doc["paths"][path]["get"]["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()
            ["schema"]
            .clone()
    };
    let max = i64::MAX as u64;
    // `limit` starts at 1; every whole number stops at i64::MAX (what `int64` says).
    for path in ["/v1/events", "/v1/streams/{stream}/events", "/v1/messages", "/v1/audit", "/v1/messages/{id}/history"]
    {
        assert_eq!(parameter(path, "limit")["minimum"], 1, "{path}");
        assert_eq!(parameter(path, "limit")["maximum"], max, "{path}");
    }
    assert_eq!(parameter("/v1/events", "from_position")["maximum"], max);
    assert_eq!(parameter("/v1/messages", "min_position")["maximum"], max);
    for (query, name) in [
        ("/v1/events?limit=0", "limit"),
        (&format!("/v1/events?from_position={}", max + 1), "from_position"),
        (&format!("/v1/events?limit={}", max + 1), "limit"),
        (&format!("/v1/streams/s/events?from_revision={}", u64::MAX), "from_revision"),
        (&format!("/v1/messages?min_position={}", max + 1), "min_position"),
        ("/v1/events?types=", "types"),
        ("/v1/events?types=%20,%20", "types"),
        ("/v1/messages?status=,", "status"),
    ] {
        let (status, body) = app.get(query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["parameter"], name, "{query}: {body}");
    }
    let (status, body) = app.get(&format!("/v1/events?from_position={max}")).await;
    assert_eq!(status, StatusCode::OK, "the largest documented position is taken: {body}");
    assert_eq!(parameter("/v1/events", "types")["minLength"], 1);
    assert!(parameter("/v1/messages", "status")["pattern"].is_string());

    // Bodies: a batch has at least one event; an expected revision is at most i64::MAX, and a
    // whole number written with a fraction (`3.0`) is the integer it is in JSON Schema.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["AppendBody"]["properties"]["events"]["minItems"], 1);
    let one = serde_json::json!([{ "type": "t", "data": {} }]);
    let (status, _) = app.post("/v1/streams/s-1/events", &serde_json::json!({ "events": one })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) =
        app.post("/v1/streams/s-1/events", &serde_json::json!({ "expected_revision": 0.0, "events": one })).await;
    assert_eq!(status, StatusCode::CREATED, "0.0 is the revision 0: {body}");
    let (status, body) =
        app.post("/v1/streams/s-1/events", &serde_json::json!({ "expected_revision": max + 1, "events": one })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A replay's body is `null` or an object, as documented; not the object's fields as an array.
    for (body, expected) in [("null", StatusCode::OK), ("{}", StatusCode::OK), ("[null]", StatusCode::BAD_REQUEST)] {
        let (status, answer) = app.as_operator().post_raw("/v1/projections/messages/parked/replay", body).await;
        assert_eq!(status, expected, "{body}: {answer}");
    }

    // A tenant is what `Tenant::new` takes: 1 to 64 lowercase letters, digits, `-`, `_`.
    let tenant = &schemas["CreateKey"]["properties"]["tenant"];
    assert_eq!((tenant["minLength"].as_u64(), tenant["maxLength"].as_u64()), (Some(1), Some(64)));
    let pattern =
        jsonschema::validator_for(&serde_json::json!({ "type": "string", "pattern": tenant["pattern"] })).unwrap();
    for (name, valid) in [("acme", true), ("a-1_b", true), ("", false), ("Acme", false), ("-a", false)] {
        assert_eq!(pattern.is_valid(&serde_json::json!(name)), valid, "{name:?}");
        let (status, body) = app
            .as_operator()
            .post("/v1/keys", &serde_json::json!({ "tenant": name, "role": "reader", "name": "n" }))
            .await;
        assert_eq!(status.is_success(), valid, "tenant {name:?}: {body}");
    }
    app.stop().await;
}
