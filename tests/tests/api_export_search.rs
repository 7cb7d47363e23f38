//! Exports against searches, two independent paths to the same records: for many filter
//! combinations (none, each filter, combinations, full text with hostile Unicode, time ranges), the
//! records of `GET /v1/audit/export` and `GET /v1/messages/export` are exactly what paging through
//! `GET /v1/audit` and `GET /v1/messages` returns, for two tenants holding the same stream names
//! and ids; every such export verifies offline; a bad filter is the same problem on both routes.

use crate::support;

use std::collections::BTreeSet;

use annals_integrity::TreePublicKey;
use annals_query_api::integrity::verify_export::verify_export;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestApp;

/// Hostile text: a dotted capital I (lowercases to two chars), sharp s, a combining accent, an
/// RTL override, a zero-width joiner inside an emoji, full-width digits, a title-case digraph.
const HOSTILE: [&str; 7] = ["İstanbul", "Straße", "cafe\u{301}", "\u{202e}evil", "👩\u{200d}💻 dev", "１２３", "ǅemal"];

fn audit(actor: &str, name: &str, action: &str, target_id: &str, outcome: &str, reason: Option<&str>) -> Value {
    let mut data = json!({
        "actor": { "id": actor, "type": "user", "name": name },
        "action": action,
        "crud": "update",
        "target": { "type": "template", "id": target_id, "name": format!("target {name}") },
        "outcome": outcome,
        "occurred_at": "2026-11-24T10:00:00Z"
    });
    if let Some(reason) = reason {
        data["reason"] = json!(reason);
    }
    json!({ "type": "audit.recorded", "data": data })
}

async fn append(app: &TestApp, stream: &str, events: Vec<Value>) -> u64 {
    let (status, body) = app.post(&format!("/v1/streams/{stream}/events"), &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::CREATED, "{stream}: {body}");
    body["last_position"].as_u64().unwrap()
}

/// Tenant data: the same stream names and ids in both tenants; `variant` changes the content.
async fn fill(app: &TestApp, variant: usize) -> u64 {
    let h = |i: usize| HOSTILE[(i + variant) % HOSTILE.len()];
    for i in 0..7 {
        let (action, outcome) = if (i + variant).is_multiple_of(3) {
            ("api_key.created", "failure")
        } else {
            ("template.updated", "success")
        };
        let reason = (i % 2 == 0).then(|| h(i + 1));
        let event = audit(&format!("user-{}", i % 3), h(i), action, &format!("t-{}", h(i)), outcome, reason);
        append(app, &format!("audit-template-{i}"), vec![event]).await;
    }
    let m = |id: &str, kind: &str, extra: Value| {
        let mut data = json!({ "message_id": id });
        data.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "type": kind, "data": data })
    };
    let subject = |i: usize| format!("Hello {} #{i} tenant-marker-{variant}", h(i));
    append(
        app,
        "message-m1",
        vec![m(
            "m1",
            "message.enqueued",
            json!({ "recipient": { "email": "ada@example.com" }, "channel": "email",
            "template": { "id": "tmpl-a", "version": 1 }, "tags": ["orders"], "subject": subject(1) }),
        )],
    )
    .await;
    append(
        app,
        "message-m2",
        vec![m(
            "m2",
            "message.enqueued",
            json!({ "recipient": { "phone": "+14155550123" }, "channel": "sms", "subject": subject(2) }),
        )],
    )
    .await;
    append(app, "message-m1", vec![m("m1", "message.sent", json!({ "channel": "email", "provider": "ses" }))]).await;
    append(
        app,
        "message-m3",
        vec![m(
            "m3",
            "message.enqueued",
            json!({ "recipient": { "id": format!("user-{}", h(3)) },
            "template": { "id": "tmpl-b", "version": 2 }, "tags": ["marketing", "orders"] }),
        )],
    )
    .await;
    if variant == 0 {
        append(app, "message-m1", vec![m("m1", "message.delivered", json!({}))]).await;
        append(
            app,
            "message-m2",
            vec![m("m2", "message.undeliverable", json!({ "reason": "BOUNCED", "provider": "twilio" }))],
        )
        .await;
    }
    // Events the view parks: a message id that differs from the stream's, a message event on a
    // stream that is no message's. Neither is a message the search shows.
    append(app, "message-m4", vec![m("other", "message.enqueued", json!({ "recipient": { "id": "u" } }))]).await;
    append(app, "orders-1", vec![m("m5", "message.sent", json!({ "channel": "email", "provider": "ses" }))]).await;
    append(app, "message-m6", vec![m("m6", "message.sent", json!({ "channel": "push", "provider": "fcm" }))]).await
}

/// Every item of a search, following `next`, as the set of `key` values.
async fn search(app: &TestApp, path: &str, query: &[(&str, String)], key: &str) -> Result<BTreeSet<String>, Value> {
    let url = reqwest::Url::parse_with_params(&format!("{}{path}", app.base), query).unwrap();
    let mut next = Some(format!("{}?{}", url.path(), url.query().unwrap_or("")));
    let mut found = BTreeSet::new();
    while let Some(page) = next {
        let (status, body) = app.get(&page).await;
        if status != StatusCode::OK {
            return Err(json!({ "status": status.as_u16(), "problem": body }));
        }
        for item in body["items"].as_array().unwrap() {
            assert!(found.insert(item[key].as_str().unwrap().to_owned()), "an item on two pages: {item}");
        }
        next = body["next"].as_str().map(str::to_owned);
    }
    Ok(found)
}

/// The export's text, or the problem.
async fn export(app: &TestApp, path: &str, query: &[(&str, String)]) -> Result<String, Value> {
    let response =
        app.client.get(format!("{}{path}", app.base)).query(query).bearer_auth(&app.key).send().await.unwrap();
    let status = response.status();
    if status != StatusCode::OK {
        let problem: Value = response.json().await.unwrap();
        return Err(json!({ "status": status.as_u16(), "problem": problem }));
    }
    Ok(response.text().await.unwrap())
}

fn records(text: &str, key: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["kind"] == "record")
        .map(|l| l[key].as_str().unwrap().to_owned())
        .collect()
}

fn q(pairs: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (&*k.to_string().leak(), (*v).to_owned())).collect()
}

#[tokio::test]
async fn exports_hold_exactly_what_paging_the_search_returns_for_every_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let globex = app.with_key(&app.tenant_admin_key("globex").await);
    fill(&app, 0).await;
    fill(&globex, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let split = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    append(&app, "audit-template-late", vec![audit("user-1", "late", "template.deleted", "t-late", "success", None)])
        .await;
    append(&app, "message-m7", vec![json!({ "type": "message.enqueued", "data": { "message_id": "m7", "recipient": { "email": "ada@example.com" }, "channel": "email" } })]).await;
    let last = append(
        &globex,
        "message-m7",
        vec![json!({ "type": "message.enqueued", "data": { "message_id": "m7", "recipient": { "id": "x" } } })],
    )
    .await;
    let size = loop {
        let (_, head) = app.get("/v1/integrity/head?fresh=true").await;
        if head["tree_size"].as_u64().unwrap() > last {
            break head["tree_size"].as_u64().unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };

    let audit_cases = [
        q(&[]),
        q(&[("actor", "user-1")]),
        q(&[("action", "template.*")]),
        q(&[("action", "template.updated"), ("outcome", "success")]),
        q(&[("outcome", "failure")]),
        q(&[("target_type", "template"), ("target_id", "t-İstanbul")]),
        q(&[("q", "istanbul")]),
        q(&[("q", "İSTANBUL")]),
        q(&[("q", "STRASSE")]),
        q(&[("q", "Straße target")]),
        q(&[("q", "café")]),
        q(&[("q", "cafe\u{301}")]),
        q(&[("q", "\u{202e}evil")]),
        q(&[("q", "👩\u{200d}💻")]),
        q(&[("q", "１２３")]),
        q(&[("q", "ǆemal")]),
        q(&[("q", "  ")]),
        q(&[("from", &split)]),
        q(&[("to", &split), ("actor", "user-0")]),
    ];
    let message_cases = [
        q(&[]),
        q(&[("status", "SENT")]),
        q(&[("status", "delivered,undeliverable")]),
        q(&[("status", "enqueued")]),
        q(&[("channel", "email")]),
        q(&[("recipient", "ada@example.com")]),
        q(&[("recipient", "+14155550123")]),
        q(&[("provider", "ses")]),
        q(&[("template", "tmpl-a")]),
        q(&[("tag", "orders"), ("has_errors", "false")]),
        q(&[("has_errors", "true")]),
        q(&[("q", "hello")]),
        q(&[("q", "İSTANBUL")]),
        q(&[("q", "user-İstanbul")]),
        q(&[("q", "straße"), ("channel", "sms")]),
        q(&[("from", &split)]),
        q(&[("to", &split), ("tag", "orders")]),
    ];
    let min = ("min_position", last.to_string());
    let limit = ("limit", "2".to_owned());
    // Every search first: each export appends its `audit.log.exported` entry to the audit trail.
    let mut searched = Vec::new();
    for tenant in [&app, &globex] {
        for case in &audit_cases {
            let query: Vec<_> = case.iter().cloned().chain([min.clone(), limit.clone()]).collect();
            searched.push(search(tenant, "/v1/audit", &query, "event_id").await.unwrap());
        }
        for case in &message_cases {
            let query: Vec<_> = case.iter().cloned().chain([min.clone(), limit.clone()]).collect();
            searched.push(search(tenant, "/v1/messages", &query, "stream").await.unwrap());
        }
    }
    let (_, key) = app.get("/v1/integrity/public-key").await;
    let key = TreePublicKey::parse(key["public_key"].as_str().unwrap()).unwrap();
    let mut searched = searched.into_iter();
    let mut nonempty = 0;
    for (tenant, theirs) in [(&app, "tenant-marker-1"), (&globex, "tenant-marker-0")] {
        let cases = audit_cases.iter().map(|c| ("/v1/audit/export", "event_id", c));
        for (path, id, case) in cases.chain(message_cases.iter().map(|c| ("/v1/messages/export", "stream", c))) {
            let query: Vec<_> = case.iter().cloned().chain([("tree_size", size.to_string())]).collect();
            let text = export(tenant, path, &query).await.unwrap();
            let expected = searched.next().unwrap();
            assert!(!text.contains(theirs), "{path} {case:?}: another tenant's data in the export");
            assert!(!text.contains("default/") && !text.contains("globex/"), "{path} {case:?}: a stored stream name");
            assert_eq!(records(&text, id), expected, "{path} {case:?}: the export's records are the search's items");
            nonempty += usize::from(!expected.is_empty());
            let file = tmp.path().join("export.ndjson");
            std::fs::write(&file, &text).unwrap();
            let verified = verify_export(&file, &key, None).unwrap_or_else(|e| panic!("{path} {case:?}: {e}"));
            assert_eq!(verified.tree_size, size);
        }
    }
    assert!(nonempty >= 40, "most cases select something ({nonempty}): the comparison is not vacuous");

    // A bad filter is the same problem on both routes.
    let far = [("from", "1000-01-01T00:00:00Z"), ("to", "9999-01-01T00:00:00Z")];
    let bad_audit = [vec![("outcome", "maybe")], vec![far[0]], vec![far[1]], vec![("from", "yesterday")]];
    for case in &bad_audit {
        let query = q(case);
        let searched = search(&app, "/v1/audit", &query, "event_id").await.unwrap_err();
        let exported = export(&app, "/v1/audit/export", &query).await.unwrap_err();
        assert_eq!(searched["status"], 400, "{case:?}: {searched}");
        assert_eq!(exported, searched, "{case:?}");
    }
    let bad_messages = [
        vec![("status", "sent,lost")],
        vec![("status", " , ")],
        vec![("has_errors", "maybe")],
        vec![far[0]],
        vec![far[1]],
    ];
    for case in &bad_messages {
        let query = q(case);
        let searched = search(&app, "/v1/messages", &query, "stream").await.unwrap_err();
        let exported = export(&app, "/v1/messages/export", &query).await.unwrap_err();
        assert_eq!(searched["status"], 400, "{case:?}: {searched}");
        assert_eq!(exported, searched, "{case:?}");
    }
    // A parameter neither route takes is refused by both, naming it.
    for (search_path, export_path, name) in
        [("/v1/audit", "/v1/audit/export", "colour"), ("/v1/messages", "/v1/messages/export", "actor")]
    {
        let query = q(&[(name, "x")]);
        let searched = search(&app, search_path, &query, "id").await.unwrap_err();
        let exported = export(&app, export_path, &query).await.unwrap_err();
        assert_eq!((&searched["status"], &searched["problem"]["parameter"]), (&json!(400), &json!(name)));
        assert_eq!((&exported["status"], &exported["problem"]["parameter"]), (&json!(400), &json!(name)));
    }
    // A message's state is its whole history: a message export starts at 0.
    let problem = export(&app, "/v1/messages/export", &q(&[("from_position", "1")])).await.unwrap_err();
    assert_eq!(problem["problem"]["parameter"], "from_position", "{problem}");
    app.stop().await;
}
