//! Issue 17's export promises not covered by `api_export` and `api_export_search`, one test each:
//! the `audit.log.exported` entry names who, which filters, how many records and the head (for
//! both exports); only reader and admin keys export (a writer's or the operator's key is a 403);
//! gzip only when accepted (`gzip;q=0` is a refusal); every formula character a client can put at
//! the start of a CSV cell is neutralised; a message export whose selection is tampered with
//! fails offline, naming the line; an export whose client stops reading, then goes away, is not
//! recorded (it never reached its trailer) and leaves the server answering.

use crate::support;

use annals_integrity::TreePublicKey;
use annals_query_api::integrity::verify_export::verify_export;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{event, TestApp};

async fn covered(app: &TestApp, last: u64) -> u64 {
    loop {
        let (_, head) = app.get("/v1/integrity/head?fresh=true").await;
        if head["tree_size"].as_u64().unwrap() > last {
            return head["tree_size"].as_u64().unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

async fn get_text(
    app: &TestApp,
    path: &str,
    accept: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = app.client.get(format!("{}{path}", app.base)).bearer_auth(&app.key);
    if let Some(accept) = accept {
        request = request.header("accept-encoding", accept);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.headers().clone(), response.bytes().await.unwrap().to_vec())
}

fn trailer(text: &str) -> Value {
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[tokio::test]
async fn each_export_is_recorded_with_who_which_filters_how_many_and_the_head() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (status, created) =
        app.as_operator().post("/v1/keys", &json!({ "tenant": "default", "role": "reader", "name": "auditor" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let reader = app.with_key(created["key"].as_str().unwrap());
    let key_id = created["id"].as_str().or(created["key_id"].as_str()).expect("the key's id").to_owned();
    let events: Vec<Value> = (0..5).map(|n| event("audit.recorded", n)).collect();
    app.post("/v1/streams/audit-1/events", &json!({ "events": events })).await;
    let (_, body) =
        app.post("/v1/streams/message-m-1/events", &json!({ "events": [event("message.enqueued", 1)] })).await;
    let size = covered(&app, body["last_position"].as_u64().unwrap()).await;

    let audit_query = format!("?tree_size={size}&target_id=t-3&q=template");
    let (status, _, audit) = get_text(&reader, &format!("/v1/audit/export{audit_query}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, messages) =
        get_text(&reader, &format!("/v1/messages/export?tree_size={size}&status=ENQUEUED"), None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, page) = app.get("/v1/streams/audit-audit_log-exports/events").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let entries = page["events"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "one entry per finished export: {page}");
    for (entry, text, selection) in [
        (&entries[0], &audit, json!({ "event_types": ["audit.recorded"], "target_id": "t-3", "q": "template" })),
        (&entries[1], &messages, json!({ "event_types": ["message.*"], "status": ["ENQUEUED"] })),
    ] {
        let text = String::from_utf8(text.clone()).unwrap();
        let data = &entry["data"];
        assert_eq!(entry["type"], "audit.recorded");
        assert_eq!(data["action"], "audit.log.exported");
        assert_eq!(data["actor"], json!({ "id": key_id, "type": "api_key" }), "who");
        assert_eq!(data["target"], json!({ "type": "audit_log", "id": "default" }));
        let after = &data["changes"]["after"];
        assert_eq!(after["parameters"]["selection"], selection, "which filters");
        assert_eq!(after["parameters"]["format"], "ndjson");
        let records = text.matches("\"kind\":\"record\"").count();
        assert!(records >= 1);
        assert_eq!(after["records"], json!(records), "how many records");
        let head = &trailer(&text)["head"];
        assert_eq!(after["tree_size"], head["tree_size"], "the head it was cut against");
        assert_eq!(after["root_hash"], head["root_hash"]);
    }
    // The entries are in the audit search too.
    let min = entries[1]["position"].as_u64().unwrap();
    let (_, found) = app.get(&format!("/v1/audit?action=audit.log.exported&min_position={min}")).await;
    assert_eq!(found["total"], 2, "{found}");
    app.stop().await;
}

/// The pages an export prepares ahead wait for the client: one that stops reading holds the export
/// where it is, and one that goes away ends it. Either way it never reaches its trailer, so it is
/// not recorded as exported; the next export, read to the end, is, once.
#[tokio::test]
async fn an_export_whose_client_stops_reading_then_goes_away_is_not_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    // ~30 MB of records: more than loopback's socket buffers hold, so the trailer cannot be
    // written while the client does not read.
    let mut last = 0;
    for batch in 0..40u64 {
        let events: Vec<Value> = (0..1000).map(|n| event("audit.recorded", batch * 1000 + n)).collect();
        let (status, body) = app.post(&format!("/v1/streams/audit-{batch}/events"), &json!({ "events": events })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        last = body["last_position"].as_u64().unwrap();
    }
    let size = covered(&app, last).await;
    let url = format!("{}/v1/audit/export?tree_size={size}", app.base);
    let mut response = app.client.get(&url).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.chunk().await.unwrap().expect("a first chunk").is_empty());
    // The client stops reading: the server keeps answering others.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.post("/v1/streams/audit-x/events", &json!({ "events": [event("audit.recorded", 1)] })).await;
    assert_eq!(status, StatusCode::CREATED);
    // Then it goes away.
    drop(response);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (status, page) = app.get("/v1/streams/audit-audit_log-exports/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing recorded: {page}");

    let (status, _, full) = get_text(&app, &format!("/v1/audit/export?tree_size={size}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(full).unwrap();
    assert_eq!(text.lines().count() as u64, size + 1, "one line per position, then the trailer");
    let (_, page) = app.get("/v1/streams/audit-audit_log-exports/events").await;
    let entries = page["events"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!(entries[0]["data"]["changes"]["after"]["records"], json!(40_000));
    app.stop().await;
}

#[tokio::test]
async fn only_readers_and_admins_export_and_gzip_only_when_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (_, body) = app.post("/v1/streams/audit-1/events", &json!({ "events": [event("audit.recorded", 1)] })).await;
    let size = covered(&app, body["last_position"].as_u64().unwrap()).await;
    let (status, created) =
        app.as_operator().post("/v1/keys", &json!({ "tenant": "default", "role": "writer", "name": "w" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let writer = app.with_key(created["key"].as_str().unwrap());
    for path in ["/v1/audit/export", "/v1/messages/export"] {
        for who in [&writer, &app.as_operator()] {
            let (status, problem) = who.get(path).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {problem}");
        }
        let path = format!("{path}?tree_size={size}");
        let (_, plain_headers, plain) = get_text(&app, &path, None).await;
        assert!(plain_headers.get("content-encoding").is_none());
        for refused in ["gzip;q=0", "identity", "br", "gzip; q=0.0, identity"] {
            let (status, headers, body) = get_text(&app, &path, Some(refused)).await;
            assert_eq!(status, StatusCode::OK);
            assert!(headers.get("content-encoding").is_none(), "{refused}: {headers:?}");
            assert_eq!(body, plain, "{refused}");
        }
        for accepted in ["gzip", "br, GZIP;q=0.5", "deflate, gzip"] {
            let (_, headers, body) = get_text(&app, &path, Some(accepted)).await;
            assert_eq!(headers["content-encoding"], "gzip", "{accepted}");
            let mut inflated = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut inflated).unwrap();
            assert_eq!(inflated, plain, "{accepted}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn every_formula_character_a_client_can_place_is_neutralised_in_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    // Stream names and event types refuse control characters (tab, CR), so `=`, `+`, `-`, `@`
    // are what a client can put first in a cell; tab and CR are the unit test's
    // (`export_format::tests`).
    let mut last = 0;
    // (Event types never reach a record's cells: a record's type is audit.recorded or message.*.)
    for (stream, kind) in [
        ("=1+1", "audit.recorded"),
        ("+1", "audit.recorded"),
        ("-1", "audit.recorded"),
        ("@SUM", "audit.recorded"),
        ("x", "=cmd"),
    ] {
        let encoded: String = stream.bytes().map(|b| format!("%{b:02X}")).collect();
        let data = if kind == "audit.recorded" { event(kind, 1)["data"].clone() } else { json!({ "n": 1 }) };
        let events = json!({ "events": [{ "type": kind, "data": data }] });
        let (status, body) = app.post(&format!("/v1/streams/{encoded}/events"), &events).await;
        assert_eq!(status, StatusCode::CREATED, "{stream} {kind}: {body}");
        last = body["last_position"].as_u64().unwrap();
    }
    let size = covered(&app, last).await;
    // Both exports are read and every cell checked.
    for path in ["/v1/audit/export", "/v1/messages/export"] {
        let (_, _, body) = get_text(&app, &format!("{path}?format=csv&tree_size={size}"), None).await;
        let text = String::from_utf8(body).unwrap();
        for row in text.split_terminator("\r\n") {
            for cell in row.split(',') {
                let cell = cell.trim_start_matches('"');
                assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "{path}: a live formula in {row:?}");
            }
        }
    }
    let (_, _, body) = get_text(&app, &format!("/v1/audit/export?format=csv&tree_size={size}"), None).await;
    let text = String::from_utf8(body).unwrap();
    for neutral in [",record,'=1+1,0,", ",record,'+1,0,", ",record,'-1,0,", ",record,'@SUM,0,"] {
        assert!(text.contains(neutral), "{neutral} in {text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_message_export_whose_selection_is_tampered_with_fails_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    for (id, channel) in [("m-1", "email"), ("m-2", "sms")] {
        let events = json!({ "events": [
            { "type": "message.enqueued", "data": { "message_id": id, "recipient": { "id": "u" }, "channel": channel } },
            { "type": "message.sent", "data": { "message_id": id, "channel": channel, "provider": "p" } },
        ] });
        let (status, body) = app.post(&format!("/v1/streams/message-{id}/events"), &events).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, body) = app.get("/v1/events?limit=1000").await;
    let last = body["events"].as_array().unwrap().last().unwrap()["position"].as_u64().unwrap();
    let size = covered(&app, last).await;
    let (_, key) = app.get("/v1/integrity/public-key").await;
    let key = TreePublicKey::parse(key["public_key"].as_str().unwrap()).unwrap();
    let (_, _, body) = get_text(&app, &format!("/v1/messages/export?tree_size={size}&channel=email"), None).await;
    let text = String::from_utf8(body).unwrap();
    let path = tmp.path().join("m.ndjson");
    std::fs::write(&path, &text).unwrap();
    assert_eq!(verify_export(&path, &key, None).expect("untouched").records, 2);
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let write = |lines: &[Value]| {
        std::fs::write(&path, lines.iter().map(|l| l.to_string() + "\n").collect::<String>()).unwrap();
    };
    // A record of the selected message passed off as `other`.
    let i = lines.iter().position(|l| l["kind"] == "record").unwrap();
    let mut t = lines.clone();
    t[i] = json!({ "kind": "other", "position": lines[i]["position"], "event_bytes": lines[i]["event_bytes"] });
    write(&t);
    let failure = verify_export(&path, &key, None).unwrap_err();
    assert_eq!((failure.line, failure.position), (i as u64 + 1, lines[i]["position"].as_u64()), "{failure}");
    // The trailer's selection widened to sms: the sms message's `other` lines are now records
    // hidden as other (and the signature does not cover the selection: the lines do).
    let mut t = lines.clone();
    let last = t.len() - 1;
    t[last]["selection"]["channel"] = json!("sms");
    write(&t);
    let failure = verify_export(&path, &key, None).unwrap_err();
    assert!(failure.position.is_some(), "a line is named: {failure}");
    // A message export that does not start at 0 cannot be checked, and says so.
    let mut t = lines.clone();
    t[last]["from_position"] = json!(1);
    write(&t[1..]);
    assert!(verify_export(&path, &key, None).unwrap_err().reason.contains("position 0"));
    app.stop().await;
}
