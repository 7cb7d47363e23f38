//! Black-box tests of the HTTP API: the real application, built from settings the way
//! `annals serve` builds it, listening on port 0 with a temporary data directory, driven over
//! HTTP. Every endpoint's success path and every documented error status; keys, roles and tenant
//! isolation are in `api_keys.rs`, the live tail in `api_live.rs`.

use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{append_n, decode, event, SseReader, TestApp};
use uuid::Uuid;

#[tokio::test]
async fn append_then_read_back_every_field() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let id = Uuid::now_v7();
    let body = json!({
        "expected_revision": "no_stream",
        "events": [
            { "id": id, "type": "message.enqueued", "data": { "message_id": "1", "recipient": { "email": "ada@example.com" } },
              "metadata": { "traceparent": "00-abc" } },
            { "type": "message.sent", "data": { "message_id": "1", "channel": "email", "provider": "ses" } }
        ]
    });
    let (status, appended) = app.post("/v1/streams/message-1/events", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{appended}");
    // Positions are global (the store's own `$keys` event comes first), revisions per stream.
    let p = appended["first_position"].as_u64().unwrap();
    assert_eq!(
        appended,
        json!({ "stream": "message-1", "first_revision": 0, "last_revision": 1, "first_position": p, "last_position": p + 1 })
    );

    let (status, page) = app.get("/v1/streams/message-1/events").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["id"], json!(id));
    assert_eq!(events[0]["stream"], json!("message-1"));
    assert_eq!(events[0]["type"], json!("message.enqueued"));
    assert_eq!(events[0]["data"], json!({ "message_id": "1", "recipient": { "email": "ada@example.com" } }));
    assert_eq!(events[0]["metadata"], json!({ "traceparent": "00-abc" }));
    assert_eq!((events[0]["revision"].clone(), events[0]["position"].clone()), (json!(0), json!(p)));
    assert_eq!((events[1]["revision"].clone(), events[1]["position"].clone()), (json!(1), json!(p + 1)));
    assert_eq!(events[1]["metadata"], Value::Null);
    assert!(Uuid::parse_str(events[1]["id"].as_str().unwrap()).unwrap().get_version_num() == 7, "ids default to v7");
    let recorded = events[0]["recorded_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(recorded).is_ok(), "recorded_at is RFC 3339: {recorded}");
    assert_eq!(page["next"], Value::Null, "a short page has no next link");
    app.stop().await;
}

#[tokio::test]
async fn stream_reads_page_forwards_and_backwards_with_next_links() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let events: Vec<Value> = (0..5).map(|n| event("message.sent", n)).collect();
    let (status, _) = app.post("/v1/streams/message-2/events", &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::CREATED);

    let mut seen = Vec::new();
    let mut link = Some("/v1/streams/message-2/events?limit=2".to_owned());
    while let Some(path) = link {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["events"].as_array().unwrap().iter().map(|e| e["revision"].as_u64().unwrap()));
        link = page["next"].as_str().map(String::from);
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4], "forward pages");

    let (_, page) = app.get("/v1/streams/message-2/events?direction=backwards&limit=3").await;
    let revisions: Vec<u64> =
        page["events"].as_array().unwrap().iter().map(|e| e["revision"].as_u64().unwrap()).collect();
    assert_eq!(revisions, vec![4, 3, 2]);
    let next = page["next"].as_str().expect("a full backwards page links on");
    let (_, page) = app.get(next).await;
    let revisions: Vec<u64> =
        page["events"].as_array().unwrap().iter().map(|e| e["revision"].as_u64().unwrap()).collect();
    assert_eq!(revisions, vec![1, 0]);

    let (_, page) = app.get("/v1/streams/message-2/events?from_revision=3").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn next_links_work_for_stream_names_that_need_encoding() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let name = "orders/42 a?b&c#d%e+f";
    let encoded: String = name
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let events: Vec<Value> = (0..3).map(|n| event("order.placed", n)).collect();
    let (status, body) = app.post(&format!("/v1/streams/{encoded}/events"), &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["stream"], json!(name));
    let mut seen = Vec::new();
    let mut link = Some(format!("/v1/streams/{encoded}/events?limit=1"));
    while let Some(path) = link {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        for e in page["events"].as_array().unwrap() {
            assert_eq!(e["stream"], json!(name));
            seen.push(e["revision"].as_u64().unwrap());
        }
        link = page["next"].as_str().map(String::from);
    }
    assert_eq!(seen, vec![0, 1, 2], "the next links lead through the whole stream");
    app.stop().await;
}

#[tokio::test]
async fn the_global_log_pages_and_filters_by_type_and_stream_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let mut base = None;
    for (stream, kind) in
        [("message-a", "message.sent"), ("audit-template-1", "audit.recorded"), ("message-b", "message.delivered")]
    {
        let appended = append_n(&app, stream, kind, 3).await;
        base.get_or_insert(appended["first_position"].as_u64().unwrap());
    }
    let base = base.unwrap();
    let mut positions = Vec::new();
    let mut link = Some(format!("/v1/events?limit=4&from_position={base}"));
    while let Some(path) = link {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        positions.extend(page["events"].as_array().unwrap().iter().map(|e| e["position"].as_u64().unwrap()));
        link = page["next"].as_str().map(String::from);
    }
    assert_eq!(positions, (base..base + 9).collect::<Vec<u64>>(), "every position once, in order");

    let (_, page) = app.get("/v1/events?stream_prefix=message-").await;
    let streams: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["stream"].as_str().unwrap()).collect();
    assert_eq!(streams.len(), 6);
    assert!(streams.iter().all(|s| s.starts_with("message-")));

    let from = base + 4;
    let (_, page) = app.get(&format!("/v1/events?types=message.delivered,audit.recorded&from_position={from}")).await;
    let types: Vec<(u64, &str)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["position"].as_u64().unwrap() - base, e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        vec![
            (4, "audit.recorded"),
            (5, "audit.recorded"),
            (6, "message.delivered"),
            (7, "message.delivered"),
            (8, "message.delivered")
        ]
    );
    // Exact types: a prefix of a type is not a type.
    let (_, page) = app.get("/v1/events?types=message").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 0);
    assert_eq!(page["next"], Value::Null, "an empty page is the end: {page}");

    // Types that extend the asked-for one (the store matches prefixes) never shorten a page: a
    // page is full while events remain, and a `next` link always leads to some.
    let mut positions = Vec::new();
    for _ in 0..5 {
        append_n(&app, "ping-1", "ping.extended", 7).await;
        let appended = append_n(&app, "ping-1", "ping", 1).await;
        positions.push(appended["first_position"].as_u64().unwrap());
    }
    let (_, page) = app.get("/v1/events?types=ping&limit=2").await;
    let got: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(got, positions[..2], "{page}");
    let mut link = page["next"].as_str().map(String::from);
    let mut pages = 1;
    while let Some(path) = link {
        let (_, page) = app.get(&path).await;
        let events = page["events"].as_array().unwrap();
        assert!(!events.is_empty(), "a next link led to an empty page: {path}");
        link = page["next"].as_str().map(String::from);
        pages += 1;
    }
    assert_eq!(pages, 3, "2 + 2 + 1 events");
    app.stop().await;
}

#[tokio::test]
async fn a_retry_with_the_same_ids_returns_the_same_answer_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let body = json!({
        "expected_revision": "no_stream",
        "events": [
            { "id": Uuid::now_v7(), "type": "message.enqueued", "data": { "message_id": "3", "recipient": { "id": "u3" } } },
            { "id": Uuid::now_v7(), "type": "message.routed", "data": { "message_id": "3", "channel": "sms", "provider": "twilio" } }
        ]
    });
    let (status, first) = app.post("/v1/streams/message-3/events", &body).await;
    assert_eq!(status, StatusCode::CREATED);
    let app = app.restart().await;
    let (status, again) = app.post("/v1/streams/message-3/events", &body).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &first), "a retry after a restart answers as the original");
    let (_, page) = app.get("/v1/events").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "the retry wrote nothing");

    // The same ids in another stream are not a retry.
    let (status, problem) = app.post("/v1/streams/message-4/events", &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], json!("https://annals.dev/problems/idempotency-conflict"));
    assert_eq!(problem["stream"], json!("message-4"));

    // Nor are they at an expected revision they do not follow; the largest one a client can
    // name (2^63-1, the document's int64) is a conflict like any other, and the store goes on
    // taking appends. One past it is no revision at all: a 400.
    let mut mismatched = body.clone();
    mismatched["expected_revision"] = json!(i64::MAX);
    let (status, problem) = app.post("/v1/streams/message-3/events", &mismatched).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], json!("https://annals.dev/problems/idempotency-conflict"));
    mismatched["expected_revision"] = json!(u64::MAX);
    let (status, problem) = app.post("/v1/streams/message-3/events", &mismatched).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let (status, created) = app.post("/v1/streams/message-5/events", &json!({ "events": [event("t", 1)] })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_expected_revision_is_a_409_with_expected_and_actual() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (status, _) = app.post("/v1/streams/message-5/events", &json!({ "events": [event("message.sent", 0)] })).await;
    assert_eq!(status, StatusCode::CREATED);
    for (expected, actual) in [(json!("no_stream"), json!(0)), (json!(3), json!(0))] {
        let body = json!({ "expected_revision": expected, "events": [event("message.sent", 1)] });
        let (status, problem) = app.post("/v1/streams/message-5/events", &body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        assert_eq!(problem["type"], json!("https://annals.dev/problems/wrong-expected-revision"));
        assert_eq!((&problem["expected"], &problem["actual"]), (&expected, &actual), "{problem}");
    }
    let body = json!({ "expected_revision": "stream_exists", "events": [event("message.sent", 1)] });
    let (status, problem) = app.post("/v1/streams/message-6/events", &body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["actual"], json!("no_stream"));
    let body = json!({ "expected_revision": 0, "events": [event("message.sent", 1)] });
    let (status, appended) = app.post("/v1/streams/message-5/events", &body).await;
    assert_eq!((status, &appended["first_revision"]), (StatusCode::CREATED, &json!(1)));
    app.stop().await;
}

#[tokio::test]
async fn racing_appends_at_the_same_expected_revision_store_exactly_one() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    append_n(&app, "message-race", "message.sent", 1).await;
    let racers = (0..16).map(|n| {
        let body = json!({ "expected_revision": 0, "events": [event("message.sent", n + 1)] });
        let app = app.clone_view();
        tokio::spawn(async move { app.post("/v1/streams/message-race/events", &body).await })
    });
    let mut won = 0;
    for racer in racers.collect::<Vec<_>>() {
        let (status, body) = racer.await.unwrap();
        match status {
            StatusCode::CREATED => won += 1,
            StatusCode::CONFLICT => assert_eq!((&body["expected"], &body["actual"]), (&json!(0), &json!(1)), "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(won, 1, "one append wins the revision, the others are told it moved");
    let (_, page) = app.get("/v1/streams/message-race/events").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400_problems_that_say_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let path = "/v1/streams/message-7/events";
    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{\"events\": [".into(), "EOF"),
        ("no events field", "{}".into(), "events"),
        ("an array for the object", r#"["any", [{"type": "t", "data": {}}]]"#.into(), "must be a JSON object"),
        ("no body", "".into(), "empty"),
        ("unknown field", r#"{"events": [], "expected": "any"}"#.into(), "expected"),
        ("empty batch", r#"{"events": []}"#.into(), "at least one event"),
        ("data not an object", r#"{"events": [{"type": "t", "data": [1]}]}"#.into(), "/events/0/data"),
        (
            "bad expected revision",
            r#"{"expected_revision": "latest", "events": [{"type": "t", "data": {}}]}"#.into(),
            "latest",
        ),
        (
            "negative expected revision",
            r#"{"expected_revision": -1, "events": [{"type": "t", "data": {}}]}"#.into(),
            "-1",
        ),
        ("empty event type", r#"{"events": [{"type": "", "data": {}}]}"#.into(), "type"),
        ("id not a UUID", r#"{"events": [{"id": "x", "type": "t", "data": {}}]}"#.into(), "UUID"),
        // Well-formed JSON beyond what a document model holds, in data that has a schema to check
        // and in metadata: a precise 400, not a dropped connection. (Since issue 13 the one
        // structural scan of the body finds these for every type and names the value itself.)
        (
            "data nested too deep",
            format!(
                r#"{{"events": [{{"type": "message.sent", "data": {{"message_id": "7", "provider": {}{}}}}}]}}"#,
                "[".repeat(130),
                "]".repeat(130)
            ),
            "\"/events/0/data/provider/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0\" nests containers deeper than 127 levels",
        ),
        (
            "a number beyond f64",
            r#"{"events": [{"type": "message.sent", "data": {"message_id": "7", "provider": 1e999}}]}"#.into(),
            "\"/events/0/data/provider\" is a number beyond the range of a 64-bit float",
        ),
        (
            "a lone surrogate",
            r#"{"events": [{"type": "message.sent", "data": {"message_id": "7", "provider": "\ud800"}}]}"#.into(),
            "\"/events/0/data/provider\" holds a lone surrogate escape",
        ),
        (
            "metadata nested too deep",
            format!(
                r#"{{"events": [{{"type": "t", "data": {{}}, "metadata": {{"x": {}{}}}}}]}}"#,
                "[".repeat(200),
                "]".repeat(200)
            ),
            "nests containers deeper than 127 levels inside an event's data or metadata",
        ),
    ];
    for (case, body, says) in cases {
        let (status, problem) = app.post_raw(path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{case}: the detail should mention {says:?}: {detail}");
    }
    for (path, says) in [("/v1/streams/%24keys/events", "reserved"), ("/v1/streams/%20padded/events", "whitespace")] {
        let (status, problem) = app.post(path, &json!({ "events": [event("t", 0)] })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {problem}");
        assert_eq!(problem["type"], json!("https://annals.dev/problems/invalid-stream-name"));
        assert!(problem["detail"].as_str().unwrap().contains(says), "{path}: {problem}");
        let (status, problem) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "GET {path}: {problem}");
        assert_eq!(problem["type"], json!("https://annals.dev/problems/invalid-stream-name"));
    }
    // A path segment that does not decode to UTF-8 is a problem document too, on every route.
    for path in ["/v1/streams/%FF/events", "/v1/messages/%FF", "/v1/schemas/%FF", "/v1/projections/%FF"] {
        // Projections are the operator's: another key is refused before its path is looked at.
        let caller = if path.starts_with("/v1/projections") { app.as_operator() } else { app.clone_view() };
        let (status, problem) = caller.get(path).await; // `get` checks the content type of errors
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {problem}");
        assert_eq!(problem["type"], json!("https://annals.dev/problems/invalid-parameter"), "{path}: {problem}");
        assert!(problem["parameter"].is_string(), "{path}: the problem names the parameter: {problem}");
    }
    for (query, parameter) in
        [("limit=0", "limit"), ("limit=ten", "limit"), ("direction=up", "direction"), ("colour=red", "colour")]
    {
        let (status, problem) = app.get(&format!("{path}?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(parameter), "{query}: {problem}");
        assert_eq!(problem["parameter"], json!(parameter), "{query}: the problem names the parameter: {problem}");
    }
    let (status, problem) = app.get(&format!("{path}?limit=2&limit=3")).await;
    assert_eq!((status, &problem["parameter"]), (StatusCode::BAD_REQUEST, &json!("limit")), "{problem}");
    let (status, problem) = app.get("/v1/messages?status=").await;
    assert_eq!((status, &problem["parameter"]), (StatusCode::BAD_REQUEST, &json!("status")), "{problem}");
    let (status, problem) = app.get("/v1/events?from_position=-3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let (_, page) = app.get("/v1/events").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 0, "nothing was stored by the bad requests");
    app.stop().await;
}

#[tokio::test]
async fn oversized_events_and_bodies_are_413() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(tmp.path(), |s| s.http.max_body_bytes = 4 * 1024 * 1024).await;
    let big = "x".repeat(1024 * 1024 + 1);
    let body = json!({ "events": [{ "type": "t", "data": { "blob": big } }] });
    let (status, problem) = app.post("/v1/streams/message-8/events", &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("limit"), "{problem}");

    let huge = "y".repeat(5 * 1024 * 1024);
    let body = json!({ "events": [{ "type": "t", "data": { "blob": huge } }] });
    let (status, problem) = app.post("/v1/streams/message-8/events", &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("4194304"), "{problem}");

    // The body limit answers the same on every route that takes a body.
    let body = json!({ "tenant": "acme", "role": "reader", "name": huge });
    let (status, problem) = app.as_operator().post("/v1/keys", &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "POST /v1/keys: {problem}");
    assert!(problem["detail"].as_str().unwrap().contains("4194304"), "{problem}");
    let body = json!({ "positions": [], "note": huge });
    let (status, problem) = app.as_operator().post("/v1/projections/messages/parked/replay", &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "POST .../parked/replay: {problem}");
    assert!(problem["detail"].as_str().unwrap().contains("4194304"), "{problem}");
    app.stop().await;
}

#[tokio::test]
async fn missing_streams_unknown_routes_and_wrong_methods_are_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (status, problem) = app.get("/v1/streams/message-404/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["type"], json!("https://annals.dev/problems/stream-not-found"));
    assert_eq!(problem["stream"], json!("message-404"));
    let (status, _) = app.get("/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = app.client.delete(format!("{}/v1/events", app.base)).send().await.unwrap();
    let (status, _) = decode(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_and_a_clean_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (status, body) = app.get("/healthz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "status": "ok" })));
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let head = body["head_position"].as_u64().expect("the first admin key's event is in the log");
    let appended = append_n(&app, "message-9", "t", 1).await;
    assert_eq!(appended["last_position"], json!(head + 1));
    // Stopping closes the store: the same directory opens again at once, with the event in it.
    let app = app.restart().await;
    let (_, body) = app.get("/readyz").await;
    assert_eq!(body["head_position"], json!(head + 1));
    let (status, page) = app.get("/v1/streams/message-9/events").await;
    assert_eq!((status, page["events"].as_array().unwrap().len()), (StatusCode::OK, 1));
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_request_holds_a_shutdown_no_longer_than_the_grace() {
    use tokio::io::AsyncWriteExt;
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(tmp.path(), |s| s.http.shutdown_grace = Duration::from_secs(1)).await;
    // An upload that stops halfway and never ends.
    let mut stalled = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /v1/streams/message-1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"events\": [",
        app.key
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let dir = tmp.path().to_owned();
    app.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10), "the shutdown waited {:?}", started.elapsed());
    // In a process, exiting ends the cut-off connection; here the client hangs up, and then the
    // same directory serves again with nothing lost.
    drop(stalled);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let app = TestApp::spawn(&dir).await;
    let (status, _) = app.get("/v1/streams/message-1/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the cut-off append stored nothing");
    app.stop().await;
}

#[tokio::test]
async fn the_traceparent_of_an_append_travels_in_its_events_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let body = json!({ "events": [
        { "type": "message.opened", "data": { "message_id": "20" } },
        { "type": "message.opened", "data": { "message_id": "20" }, "metadata": { "tenant_note": "x" } },
        { "type": "message.opened", "data": { "message_id": "20" }, "metadata": { "traceparent": own } }
    ] });
    let response = app
        .client
        .post(format!("{}/v1/streams/message-20/events", app.base))
        .bearer_auth(&app.key)
        .header("traceparent", traceparent)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // A malformed traceparent is not stored.
    let response = app
        .client
        .post(format!("{}/v1/streams/message-20/events", app.base))
        .bearer_auth(&app.key)
        .header("traceparent", "not-a-trace")
        .json(&json!({ "events": [event("message.sent", 3)] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let (_, page) = app.get("/v1/streams/message-20/events").await;
    let metadata: Vec<&Value> = page["events"].as_array().unwrap().iter().map(|e| &e["metadata"]).collect();
    assert_eq!(metadata[0], &json!({ "traceparent": traceparent }));
    assert_eq!(metadata[1], &json!({ "tenant_note": "x", "traceparent": traceparent }));
    assert_eq!(metadata[2], &json!({ "traceparent": own }), "an event's own traceparent wins");
    assert_eq!(metadata[3], &Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_appends_by_outcome_and_show_the_head_and_live_tails() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let appended = append_n(&app, "message-21", "message.sent", 3).await;
    let (status, _) = app
        .post("/v1/streams/message-21/events", &json!({ "expected_revision": "no_stream", "events": [event("x", 0)] }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app.post_raw("/v1/streams/message-21/events", "{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let _tail = SseReader::open(&app, "/v1/events/live", None).await;

    let response = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "metrics need no key");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    let value = |line_start: &str| -> f64 {
        let line =
            text.lines().find(|l| l.starts_with(line_start)).unwrap_or_else(|| panic!("no {line_start} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("annals_appends_total{outcome=\"ok\"}"), 1.0);
    assert_eq!(value("annals_appends_total{outcome=\"conflict\"}"), 1.0);
    assert_eq!(value("annals_appends_total{outcome=\"rejected\"}"), 1.0);
    assert_eq!(value("annals_appended_events_total"), 3.0);
    assert!(value("annals_appended_bytes_total") > 3.0 * 30.0);
    assert_eq!(value("annals_append_duration_seconds_count"), 3.0);
    assert_eq!(value("annals_store_head_position"), appended["last_position"].as_f64().unwrap());
    assert_eq!(value("annals_live_subscribers"), 1.0);
    app.stop().await;
}
