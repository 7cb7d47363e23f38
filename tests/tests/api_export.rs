//! `GET /v1/audit/export` over HTTP: one line per log position in order across several pages of
//! the log, cut at the head named by `Annals-Export-Tree-Size`; a resumed export
//! (`after_position` + `tree_size`) is byte for byte the rest of the unbroken one; gzip when
//! accepted; it verifies offline; bad parameters are problems naming them.

use crate::support;

use std::io::Read as _;
use std::path::Path;

use annals_integrity::TreePublicKey;
use annals_query_api::integrity::verify_export::verify_export;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{event, TestApp};

async fn export(app: &TestApp, query: &str, gzip: bool) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = app.client.get(format!("{}/v1/audit/export{query}", app.base)).bearer_auth(&app.key);
    if gzip {
        request = request.header("accept-encoding", "gzip");
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn exports_page_through_the_log_resume_byte_for_byte_and_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let other = app.with_key(&app.tenant_admin_key("globex").await);
    // More events than one page of the export (512), two tenants interleaved, other types too.
    let mut last = 0;
    for batch in 0..12u64 {
        let events: Vec<Value> = (0..50)
            .map(|i| event(if i % 5 == 0 { "order.placed" } else { "audit.recorded" }, batch * 50 + i))
            .collect();
        let (status, body) = app.post("/v1/streams/audit-1/events", &json!({ "events": events })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) =
            other.post("/v1/streams/audit-9/events", &json!({ "events": [event("audit.recorded", batch)] })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        last = body["last_position"].as_u64().unwrap();
    }
    let size = loop {
        let (_, head) = app.get("/v1/integrity/head?fresh=true").await;
        if head["tree_size"].as_u64().unwrap() > last {
            break head["tree_size"].as_u64().unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };

    let (status, headers, full) = export(&app, "", false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert_eq!(headers["annals-export-tree-size"].to_str().unwrap(), size.to_string());
    let text = String::from_utf8(full.clone()).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as u64, size + 1, "one line per position, then the trailer");
    for (i, line) in lines[..lines.len() - 1].iter().enumerate() {
        assert_eq!(line["position"], json!(i), "in position order");
    }
    assert_eq!(lines.iter().filter(|l| l["kind"] == "record").count(), 12 * 40);
    // globex's 12 events, and the key events in `$keys` (a system namespace, foreign too).
    let foreign = lines.iter().filter(|l| l["kind"] == "foreign").count() as u64;
    assert!(foreign >= 12, "{foreign}");
    assert!(!text.contains("audit-9"), "no other tenant's stream name shows");

    // The export is itself in the audit trail: who, which parameters, how many records, the head.
    let (status, page) = app.get("/v1/streams/audit-audit_log-exports/events").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let entry = &page["events"][0];
    assert_eq!(entry["type"], json!("audit.recorded"), "{page}");
    assert_eq!(entry["data"]["action"], json!("audit.log.exported"), "{page}");
    assert_eq!(entry["data"]["actor"]["type"], json!("api_key"), "{page}");
    assert_eq!(entry["data"]["changes"]["after"]["records"], json!(480), "{page}");
    assert_eq!(entry["data"]["changes"]["after"]["tree_size"], json!(size), "{page}");

    // Broken after position 550 (in the second page of the log): resuming gives exactly the rest.
    let cut = text.lines().take(551).map(|l| l.len() + 1).sum::<usize>();
    let (status, _, rest) = export(&app, &format!("?after_position=550&tree_size={size}"), false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(rest.len() > 1000);
    assert_eq!(&full[cut..], &rest[..], "a resumed export is the rest of the unbroken one, byte for byte");
    // New events since do not change a resumed export cut at the same head.
    let (status, _) =
        app.post("/v1/streams/audit-1/events", &json!({ "events": [event("audit.recorded", 9999)] })).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, _, again) = export(&app, &format!("?after_position=550&tree_size={size}"), false).await;
    assert_eq!(rest, again);

    // Gzip when accepted: the same bytes once inflated.
    let (status, headers, zipped) = export(&app, &format!("?tree_size={size}"), true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-encoding"], "gzip");
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..]).read_to_end(&mut inflated).unwrap();
    assert_eq!(inflated, full);

    // It verifies offline with the served key.
    let (_, key) = app.get("/v1/integrity/public-key").await;
    let key = TreePublicKey::parse(key["public_key"].as_str().unwrap()).unwrap();
    let path = tmp.path().join("export.ndjson");
    std::fs::write(&path, &full).unwrap();
    let verified = verify_export(Path::new(&path), &key, None).expect("the export verifies");
    assert_eq!((verified.records, verified.other, verified.foreign), (480, 120, foreign));

    // Problems name their parameter.
    for (query, parameter) in [
        ("?format=xml", "format"),
        ("?tree_size=999999", "tree_size"),
        (&format!("?since_tree_size={}", size + 1000) as &str, "since_tree_size"),
        ("?status=sent", "status"),
        ("?outcome=maybe", "outcome"),
    ] {
        let (status, problem) = app.get(&format!("/v1/audit/export{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        assert_eq!(problem["parameter"], json!(parameter), "{query}: {problem}");
    }
    app.stop().await;
}

/// A record's `data` is the event's JSON exactly as it was appended (spacing, key order and
/// escapes too) when it fits on one line, and the same JSON compacted when the producer sent it
/// pretty-printed: an NDJSON line is one line. Either way it verifies, and a changed space in it
/// does not (`tests/cli/cli_verify.rs`).
#[tokio::test]
async fn a_record_s_data_is_the_appended_json_on_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let data = event("audit.recorded", 1)["data"].clone();
    let pretty = serde_json::to_string_pretty(&data).unwrap();
    assert!(pretty.contains('\n'));
    let spaced = serde_json::to_string(&data).unwrap().replacen(':', ": ", 1).replacen("user-1", "us\\u0065r-1", 1);
    let body = format!(
        r#"{{"events":[{{"type":"audit.recorded","data":{pretty}}},{{"type":"audit.recorded","data":{spaced}}}]}}"#
    );
    let response = app
        .client
        .post(format!("{}/v1/streams/audit-raw/events", app.base))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let last = response.json::<Value>().await.unwrap()["last_position"].as_u64().unwrap();
    loop {
        let (_, head) = app.get("/v1/integrity/head?fresh=true").await;
        if head["tree_size"].as_u64().unwrap() > last {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (status, _, full) = export(&app, "", false).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(full.clone()).unwrap();
    let records: Vec<&str> = text.lines().filter(|l| l.starts_with(r#"{"kind":"record""#)).collect();
    assert_eq!(records.len(), 2, "{text}");
    let compact = serde_json::to_string(&data).unwrap();
    assert!(records[0].contains(&format!(r#""data":{compact}"#)), "compacted: {}", records[0]);
    assert!(records[1].contains(&format!(r#""data":{spaced}"#)), "as appended: {}", records[1]);
    let (_, key) = app.get("/v1/integrity/public-key").await;
    let key = TreePublicKey::parse(key["public_key"].as_str().unwrap()).unwrap();
    let path = tmp.path().join("export.ndjson");
    std::fs::write(&path, &full).unwrap();
    assert_eq!(verify_export(&path, &key, None).expect("the export verifies").records, 2);
    // The data re-serialized (what format 2 wrote: the same value, other bytes) fails, and so
    // does the trailer's unsigned `format` turned back to 2, which checked data as a value.
    let reserialized = text.replacen(&format!(r#""data":{spaced}"#), &format!(r#""data":{compact}"#), 1);
    assert_ne!(reserialized, text);
    std::fs::write(&path, &reserialized).unwrap();
    let failure = verify_export(&path, &key, None).expect_err("not the appended bytes");
    assert!(failure.to_string().contains("the record's fields differ"), "{failure}");
    assert!(reserialized.contains(r#""format":"annals-export/3""#));
    std::fs::write(&path, reserialized.replacen(r#""format":"annals-export/3""#, r#""format":"annals-export/2""#, 1))
        .unwrap();
    let failure = verify_export(&path, &key, None).expect_err("format 2 is not verified");
    assert!(failure.to_string().contains("this build verifies annals-export/3"), "{failure}");
    app.stop().await;
}

#[tokio::test]
async fn csv_exports_have_stable_columns_quote_and_neutralise_formulas() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let mut last = 0;
    for stream in ["=SUM(A1)", "say,\"hi\"", "plain"] {
        let path = format!("/v1/streams/{}/events", support_encode(stream));
        let (status, body) = app.post(&path, &json!({ "events": [event("audit.recorded", 1)] })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        last = body["last_position"].as_u64().unwrap();
    }
    let size = loop {
        let (_, head) = app.get("/v1/integrity/head?fresh=true").await;
        if head["tree_size"].as_u64().unwrap() > last {
            break head["tree_size"].as_u64().unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let (status, headers, body) = export(&app, &format!("?format=csv&tree_size={size}"), false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = String::from_utf8(body.clone()).unwrap();
    let rows: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(
        rows[0],
        "position,kind,stream,revision,event_id,event_type,recorded_at,data,event_bytes,leaf,tree_leaf_hash"
    );
    assert_eq!(rows.len() as u64, 1 + size + 1, "a header, one row per position, the trailer");
    assert!(text.contains(",record,'=SUM(A1),0,"), "a formula is neutralised: {text}");
    assert!(text.contains(",record,\"say,\"\"hi\"\"\",0,"), "quotes and commas are quoted: {text}");
    assert!(rows.last().unwrap().starts_with(",trailer,,"), "{}", rows.last().unwrap());
    // A resumed CSV export continues the rows, without a second header.
    let (_, _, rest) = export(&app, &format!("?format=csv&tree_size={size}&after_position=1"), false).await;
    let cut = rows[..3].iter().map(|r| r.len() + 2).sum::<usize>();
    assert_eq!(&body[cut..], &rest[..]);
    app.stop().await;
}

fn support_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn filters_choose_the_records_and_the_verifier_applies_them_again() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let events: Vec<Value> = (0..6).map(|n| event("audit.recorded", n)).chain([event("message.sent", 1)]).collect();
    let (status, body) = app.post("/v1/streams/audit-1/events", &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) =
        app.post("/v1/streams/message-m-1/events", &json!({ "events": [event("message.enqueued", 1)] })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let last = body["last_position"].as_u64().unwrap();
    let size = loop {
        let (_, head) = app.get("/v1/integrity/head?fresh=true").await;
        if head["tree_size"].as_u64().unwrap() > last {
            break head["tree_size"].as_u64().unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let (_, key) = app.get("/v1/integrity/public-key").await;
    let key = TreePublicKey::parse(key["public_key"].as_str().unwrap()).unwrap();

    let (status, _, body) = export(&app, &format!("?tree_size={size}&target_id=t-3&action=template.*"), false).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    let path = tmp.path().join("filtered.ndjson");
    std::fs::write(&path, &text).unwrap();
    let verified = verify_export(&path, &key, None).expect("a filtered export verifies");
    assert_eq!((verified.records, verified.other), (1, 7), "t-3 only; the tenant's other events as bytes");
    // A selected record passed off as an `other` line is caught.
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let i = lines.iter().position(|l| l.contains("\"kind\":\"record\"")).unwrap();
    let record: Value = serde_json::from_str(&lines[i]).unwrap();
    let mut tampered = lines.clone();
    tampered[i] =
        json!({ "kind": "other", "position": record["position"], "event_bytes": record["event_bytes"] }).to_string();
    std::fs::write(&path, tampered.join("\n") + "\n").unwrap();
    let failure = verify_export(&path, &key, None).unwrap_err();
    assert_eq!((failure.line, failure.position), (i as u64 + 1, record["position"].as_u64()), "{failure}");

    // The message log: the message.* events of the messages the search shows (message-m-1; not
    // the message.sent on audit-1, which the messages view parks).
    let response = app
        .client
        .get(format!("{}/v1/messages/export?tree_size={size}", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
    let verified = verify_export(&path, &key, None).expect("a message export verifies");
    assert_eq!(verified.records, 1);
    app.stop().await;
}
