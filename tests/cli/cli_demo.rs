//! `annals demo` against a running `annals serve`: every generated event passes the schemas (the
//! appends succeed), every message becomes one document of the `messages` view with nothing
//! parked, and the audit events land in the `audit` view. Then `annals projections rebuild`
//! rebuilds the `messages` view into generation 2 (following it to the end) with the same
//! documents, and `annals projections list` shows it. Last, an event the view cannot apply is
//! listed by `annals projections parked` (from the new generation's parked stream) and replayed
//! by `annals projections replay`, which reports it failed again.

use crate::serve_support;

use std::process::Command;

use serde_json::Value;
use serve_support::{Serve, ADMIN_KEY};

#[tokio::test]
async fn demo_data_is_valid_and_fills_both_views() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Serve::start(tmp.path(), &[]);
    let base = server.base.clone();
    // The operator key (ADMIN_KEY) makes the tenant's admin key that writes and reads its data.
    let created = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["keys", "create", "--tenant", "demo", "--role", "admin"])
        .env("ANNALS_URL", &base)
        .env("ANNALS_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    assert!(created.status.success(), "annals keys create: {}", String::from_utf8_lossy(&created.stderr));
    let tenant_key = serde_json::from_slice::<Value>(&created.stdout).unwrap()["key"].as_str().unwrap().to_owned();
    let output = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["demo", "--messages", "200", "--concurrency", "4", "--seed", "7"])
        .env("ANNALS_URL", &base)
        .env("ANNALS_KEY", &tenant_key)
        .output()
        .unwrap();
    assert!(output.status.success(), "annals demo failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("appended 200 messages"));

    let client = reqwest::Client::new();
    let get = |path: String| {
        // Projections are the operator's; the data is the tenant's.
        let key = if path.starts_with("/v1/projections") { ADMIN_KEY } else { tenant_key.as_str() };
        let request = client.get(format!("{base}{path}")).bearer_auth(key);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let head = get("/readyz".into()).await["head_position"].as_u64().unwrap();
    let messages = get(format!("/v1/messages?limit=1&min_position={head}")).await;
    assert_eq!(messages["total"], 200, "{messages}");
    let by_status: u64 = messages["facets"]["status"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(by_status, 200, "{messages}");
    assert!(messages["facets"]["status"].as_object().unwrap().len() >= 5, "a realistic mix of statuses: {messages}");
    assert!(messages["facets"]["channel"].as_object().unwrap().len() >= 3, "several channels: {messages}");
    let audit = get(format!("/v1/audit?limit=1&min_position={head}")).await;
    assert_eq!(audit["total"], 5, "one audit event per 40 messages: {audit}");
    let progress = get("/v1/projections/messages".into()).await;
    assert_eq!(progress["parked_events"], 0, "every demo event applies: {progress}");

    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_annals"))
            .args(args)
            .env("ANNALS_URL", &base)
            .env("ANNALS_KEY", ADMIN_KEY)
            .output()
            .unwrap();
        assert!(output.status.success(), "annals {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let rebuilt = run(&["projections", "rebuild", "messages"]);
    assert!(rebuilt.contains("generation 2 of messages serves"), "{rebuilt}");
    let after = get(format!("/v1/messages?limit=1&min_position={head}")).await;
    assert_eq!((&after["total"], &after["facets"]), (&messages["total"], &messages["facets"]), "{after}");
    let list = run(&["projections", "list"]);
    let row = list.lines().find(|l| l.starts_with("messages")).unwrap_or_default();
    assert!(row.split_whitespace().nth(1) == Some("2") && row.contains("live"), "{list}");

    // A `message.*` event on a stream that is no message stream: parked by generation 2.
    let body = serde_json::json!({ "events": [{ "type": "message.sent",
        "data": { "message_id": "x", "channel": "email", "provider": "ses" } }] });
    let appended = client
        .post(format!("{base}/v1/streams/orders-1/events"))
        .bearer_auth(&tenant_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(appended.status(), 201);
    for _ in 0..100 {
        if get("/v1/projections/messages".into()).await["parked_events"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let parked = run(&["projections", "parked", "messages"]);
    let line = parked.lines().find(|l| l.contains("orders-1")).unwrap_or_default();
    assert!(
        line.contains("parked") && line.contains("message.sent") && line.contains("not-a-message-stream"),
        "{parked}"
    );
    let replayed = run(&["projections", "replay", "messages"]);
    assert!(replayed.contains("replaying 1 parked event"), "{replayed}");
    assert!(replayed.contains("replayed: 0 applied, 1 failed again"), "{replayed}");
    assert!(run(&["projections", "parked", "messages", "--all"]).contains("orders-1"));
    assert!(run(&["projections", "replay", "audit"]).contains("nothing is parked in audit"));
}
