//! The view searches at the edges of their parameters (issue 13): `min_position` past the log's
//! head is waited for and then a `503` with `Retry-After`, never an answer that claims a write
//! the log does not hold; times and cursors the views cannot index are a `400` naming the query
//! parameter, on `/v1/messages` and `/v1/audit` alike.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{event, TestApp};

async fn append(app: &TestApp, stream: &str, body: Value) -> u64 {
    let (status, appended) = app.post(&format!("/v1/streams/{stream}/events"), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{appended}");
    appended["last_position"].as_u64().unwrap()
}

/// A position one past the head is not applied until an append reaches it: the query waits,
/// and answers with the event in the view once it is.
#[tokio::test]
async fn a_position_the_log_reaches_within_the_wait_is_answered_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let head = append(&app, "message-m-1", json!({ "events": [event("message.enqueued", 1)] })).await;
    let next = head + 1;
    let (messages_path, audit_path) =
        (format!("/v1/messages?min_position={next}"), format!("/v1/audit?min_position={}", next + 1));
    let (messages, audit, appended) = tokio::join!(app.get(&messages_path), app.get(&audit_path), async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let m = append(&app, "message-m-2", json!({ "events": [event("message.enqueued", 2)] })).await;
        let a = append(&app, "audit-template-t-1", json!({ "events": [event("audit.recorded", 1)] })).await;
        (m, a)
    });
    assert_eq!(appended, (next, next + 1), "the appends took the positions waited for");
    let (status, page) = messages;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["items"].as_array().unwrap().iter().filter_map(|m| m["message_id"].as_str()).collect();
    assert!(ids.contains(&"m-2"), "the event at the position waited for is in the answer: {page}");
    let (status, page) = audit;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], json!(1), "{page}");
    app.stop().await;
}

/// A position the log does not reach within the wait is a `503` with `Retry-After`, after the
/// documented wait (5 s), on every route that takes `min_position`.
#[tokio::test]
async fn a_position_past_the_head_is_a_503_after_the_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    append(&app, "message-m-1", json!({ "events": [event("message.enqueued", 1)] })).await;
    let get = |path: String| {
        let request = app.client.get(format!("{}{path}", app.base)).bearer_auth(&app.key);
        async move {
            let started = Instant::now();
            let response = request.send().await.unwrap();
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let (status, problem) = support::decode(response).await;
            (path, status, problem, retry_after, started.elapsed())
        }
    };
    let answers = futures::future::join_all([
        get("/v1/messages?min_position=99999999".into()),
        get(format!("/v1/audit?min_position={}", i64::MAX)),
        get(format!("/v1/messages/m-1?min_position={}", i64::MAX)),
    ])
    .await;
    for (path, status, problem, retry_after, elapsed) in answers {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {problem}");
        assert_eq!(problem["type"], json!("https://annals.dev/problems/not-yet-applied"), "{path}: {problem}");
        assert!(retry_after.is_some(), "{path}: a 503 says when to retry");
        assert!(elapsed >= Duration::from_millis(4_500), "{path}: answered after {elapsed:?}, before the wait");
    }
    // Past the document's int64 is no position at all: a 400 at once, naming the parameter.
    let (status, problem) = app.get(&format!("/v1/messages?min_position={}", u64::MAX)).await;
    assert_eq!((status, &problem["parameter"]), (StatusCode::BAD_REQUEST, &json!("min_position")), "{problem}");
    app.stop().await;
}

/// `from`, `to` and cursors beyond the indexed times name the parameter, and the range.
#[tokio::test]
async fn out_of_range_times_and_cursors_name_their_parameter() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let year_2300 = 10_413_792_000_000_000_000i128; // 2300-01-01T00:00:00Z in nanoseconds
    for route in ["/v1/messages", "/v1/audit"] {
        for (query, parameter) in [
            ("from=0001-01-01T00:00:00Z", "from"),
            ("to=9999-12-31T23:59:59Z", "to"),
            ("from=1677-09-21T00:12:43Z", "from"),
            ("to=2262-04-11T23:47:17Z", "to"),
            (&format!("cursor=n{year_2300}~x") as &str, "cursor"),
            (&format!("cursor=n{}~x", -year_2300), "cursor"),
        ] {
            let (status, problem) = app.get(&format!("{route}?{query}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{route}?{query}: {problem}");
            assert_eq!(problem["parameter"], json!(parameter), "{route}?{query}: {problem}");
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains("1677-09-21T00:12:44Z") && detail.contains("2262-04-11T23:47:16Z"), "{problem}");
            for internal in ["last_event_at", "recorded_at"] {
                assert!(!detail.contains(internal), "{route}?{query}: the detail names an internal field: {problem}");
            }
        }
        // The edges themselves are in range.
        let (status, page) = app.get(&format!("{route}?from=1677-09-21T00:12:44Z&to=2262-04-11T23:47:16Z")).await;
        assert_eq!(status, StatusCode::OK, "{route}: {page}");
    }
    app.stop().await;
}
