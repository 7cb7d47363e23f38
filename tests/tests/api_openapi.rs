//! The OpenAPI document: valid OpenAPI 3.1 (checked by `openapi-spec-validator`, which the test
//! command installs), every route documented and every documented route served, and the
//! promises every operation makes about keys and problem bodies written down.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::TestApp;

/// Every route of `query-api/src/routes/mod.rs`.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/streams/{stream}/events"),
    ("post", "/v1/streams/{stream}/events"),
    ("get", "/v1/events"),
    ("get", "/v1/events/live"),
    ("get", "/v1/keys"),
    ("post", "/v1/keys"),
    ("delete", "/v1/keys/{id}"),
    ("get", "/v1/messages"),
    ("get", "/v1/messages/{id}"),
    ("get", "/v1/messages/{id}/history"),
    ("get", "/v1/audit"),
    ("get", "/v1/audit/{event_id}"),
    ("get", "/v1/projections"),
    ("get", "/v1/projections/{name}"),
    ("post", "/v1/projections/{name}/rebuild"),
    ("get", "/v1/projections/{name}/parked"),
    ("post", "/v1/projections/{name}/parked/replay"),
    ("get", "/v1/schemas"),
    ("get", "/v1/schemas/{type}"),
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
