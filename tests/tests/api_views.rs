//! The read views over HTTP: events appended through the API show up in `GET /v1/messages` and
//! `GET /v1/audit` (read-your-writes with `min_position`), with filters, facets and cursors; one
//! message opens with its timeline, as of a past time, and as raw history; tenants never see each
//! other's documents; the views survive a restart; and events a view cannot apply are parked
//! and listed.

use crate::support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestApp;

/// Appends `events` (type, data) to `stream`; returns the last position.
async fn append(app: &TestApp, stream: &str, events: &[(&str, Value)]) -> u64 {
    let events: Vec<Value> = events.iter().map(|(t, d)| json!({ "type": t, "data": d })).collect();
    let (status, body) = app.post(&format!("/v1/streams/{stream}/events"), &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["last_position"].as_u64().unwrap()
}

fn enqueued(id: &str, email: &str, channel: &str, subject: &str) -> Value {
    json!({
        "message_id": id,
        "recipient": { "id": format!("user-{id}"), "email": email },
        "notification": "order-shipped",
        "template": { "id": "tmpl_ship", "version": 3 },
        "channel": channel,
        "tags": ["orders"],
        "subject": subject,
        "occurred_at": "2026-11-30T10:00:00Z"
    })
}

fn audit(action: &str, target: &str, outcome: &str) -> Value {
    json!({
        "actor": { "id": "user-7", "type": "user", "name": "Grace Hopper" },
        "action": action,
        "crud": "update",
        "target": { "type": "template", "id": target, "name": "Order shipped" },
        "outcome": outcome,
        "occurred_at": "2026-11-30T10:00:00Z"
    })
}

#[tokio::test]
async fn messages_are_searchable_with_filters_facets_and_cursors() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    append(&app, "message-a", &[("message.enqueued", enqueued("a", "ada@example.com", "email", "Your parcel left"))])
        .await;
    append(&app, "message-a", &[("message.sent", json!({ "message_id": "a", "channel": "email", "provider": "ses" }))])
        .await;
    append(&app, "message-b", &[("message.enqueued", enqueued("b", "bob@example.com", "sms", "Code 1234"))]).await;
    let bounce = json!({ "message_id": "b", "reason": "BOUNCED", "error_detail": "mailbox full" });
    append(&app, "message-b", &[("message.undeliverable", bounce)]).await;
    let last =
        append(&app, "message-c", &[("message.enqueued", enqueued("c", "cy@example.com", "email", "Parcel"))]).await;

    let (status, page) = app.get(&format!("/v1/messages?min_position={last}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], json!(3), "{page}");
    let ids: Vec<&str> = page["items"].as_array().unwrap().iter().map(|m| m["message_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["c", "b", "a"], "newest first");
    assert_eq!(page["facets"]["status"], json!({ "ENQUEUED": 1, "SENT": 1, "UNDELIVERABLE": 1 }), "{page}");
    assert_eq!(page["facets"]["channel"], json!({ "email": 2, "sms": 1 }), "{page}");
    assert_eq!(page["items"][0]["stream"], json!("message-c"), "stream names without the tenant");
    assert!(page["items"][0].get("tenant").is_none(), "no tenant field: {}", page["items"][0]);

    let count = |page: &Value| page["total"].as_u64().unwrap();
    let (_, page) = app.get("/v1/messages?status=sent,undeliverable").await;
    assert_eq!(count(&page), 2, "{page}");
    let (_, page) = app.get("/v1/messages?has_errors=true").await;
    assert_eq!(page["items"][0]["error_reason"], json!("BOUNCED"), "{page}");
    let (_, page) = app.get("/v1/messages?recipient=ada@example.com&channel=email").await;
    assert_eq!(count(&page), 1, "{page}");
    let (_, page) = app.get("/v1/messages?q=PARCEL").await;
    assert_eq!(count(&page), 2, "full text is case-insensitive: {page}");
    let (_, page) = app.get("/v1/messages?provider=ses&template=tmpl_ship&tag=orders").await;
    assert_eq!(count(&page), 1, "{page}");

    // Pages of one: every message once, in order, with the facets of the whole result.
    let mut seen = Vec::new();
    let mut next = Some("/v1/messages?limit=1&sort=oldest".to_owned());
    while let Some(link) = next {
        let (status, page) = app.get(&link).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["items"].as_array().unwrap().iter().map(|m| m["message_id"].as_str().unwrap().to_owned()));
        assert_eq!(page["total"], json!(3));
        next = page["next"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, ["a", "b", "c"]);

    for (query, parameter) in [
        ("status=LOST", "status"),
        ("sort=sideways", "sort"),
        ("cursor=nonsense", "cursor"),
        ("limit=0", "limit"),
        ("from=yesterday", ""),
        ("colour=blue", ""),
    ] {
        let (status, problem) = app.get(&format!("/v1/messages?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        if !parameter.is_empty() {
            assert_eq!(problem["parameter"], json!(parameter), "{query}: {problem}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn one_message_now_as_of_a_time_and_as_raw_history() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    append(&app, "message-m1", &[("message.enqueued", enqueued("m1", "ada@example.com", "email", "Hello"))]).await;
    let (_, first) = app.get("/v1/streams/message-m1/events").await;
    let enqueued_at = first["events"][0]["recorded_at"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let last = append(
        &app,
        "message-m1",
        &[
            ("message.sent", json!({ "message_id": "m1", "channel": "email", "provider": "ses" })),
            ("message.delivered", json!({ "message_id": "m1" })),
        ],
    )
    .await;

    let (status, doc) = app.get(&format!("/v1/messages/m1?min_position={last}")).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["status"], json!("DELIVERED"));
    assert_eq!(doc["timeline"].as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(doc["stream"], json!("message-m1"));

    let (status, then) = app.get(&format!("/v1/messages/m1?as_of={}", enqueued_at.replace('+', "%2B"))).await;
    assert_eq!(status, StatusCode::OK, "{then}");
    assert_eq!(then["status"], json!("ENQUEUED"), "{then}");
    assert_eq!(then["timeline"].as_array().unwrap().len(), 1);
    let (status, problem) = app.get("/v1/messages/m1?as_of=2000-01-01T00:00:00Z").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no message yet at that time: {problem}");

    let (status, history) = app.get("/v1/messages/m1/history").await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let types: Vec<&str> = history["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["message.enqueued", "message.sent", "message.delivered"]);
    assert_eq!(history["next"], Value::Null, "{history}");
    // A page at a time; `next` goes on from the page's last revision.
    let (_, first) = app.get("/v1/messages/m1/history?limit=2").await;
    let (_, second) = app.get(first["next"].as_str().expect("a full page links on")).await;
    let paged: Vec<&Value> =
        first["events"].as_array().unwrap().iter().chain(second["events"].as_array().unwrap()).collect();
    assert_eq!(paged, history["events"].as_array().unwrap().iter().collect::<Vec<_>>());
    assert_eq!(second["next"], Value::Null, "{second}");

    for path in ["/v1/messages/nope", "/v1/messages/nope/history"] {
        let (status, problem) = app.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {problem}");
    }
    // An id that makes no valid stream name is the id's fault, said without the stream's name.
    for path in ["/v1/messages/%20", "/v1/messages/%20/history"] {
        let (status, problem) = app.get(path).await;
        assert_eq!((status, &problem["parameter"]), (StatusCode::BAD_REQUEST, &json!("id")), "{path}: {problem}");
        assert!(!problem["detail"].as_str().unwrap().contains("message-"), "{path}: {problem}");
    }
    app.stop().await;
}

#[tokio::test]
async fn audit_trail_is_searchable_by_action_prefix_and_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    append(&app, "audit-template-t1", &[("audit.recorded", audit("template.updated", "t1", "success"))]).await;
    append(&app, "audit-template-t2", &[("audit.recorded", audit("template.deleted", "t2", "failure"))]).await;
    let last = append(&app, "audit-brand-b1", &[("audit.recorded", audit("brand.updated", "b1", "success"))]).await;

    let (status, page) = app.get(&format!("/v1/audit?action=template.*&min_position={last}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], json!(2), "{page}");
    let (_, page) = app.get("/v1/audit?outcome=failure").await;
    assert_eq!(page["items"][0]["target_id"], json!("t2"), "{page}");
    let (_, page) = app.get("/v1/audit?actor=user-7&q=grace").await;
    assert_eq!(page["total"], json!(3), "{page}");
    let id = page["items"][0]["event_id"].as_str().unwrap().to_owned();
    let (status, entry) = app.get(&format!("/v1/audit/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    assert_eq!(entry["action"], json!("brand.updated"));
    let (status, problem) = app.get("/v1/audit?outcome=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");

    // Progress of the projections (admin): caught up, nothing waiting; the metrics say the same.
    let (status, all) = app.as_operator().get("/v1/projections").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let names: Vec<&str> = all["projections"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["messages", "audit"]);
    let (status, audit) = app.as_operator().get("/v1/projections/audit").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    assert_eq!(
        (&audit["checkpoint"], &audit["lag_events"], &audit["parked_events"]),
        (&json!(last), &json!(0), &json!(0))
    );
    assert_eq!(audit["state"], json!("live"), "{audit}");
    assert!(audit["events_per_second"].as_f64().is_some_and(|r| r >= 0.0), "{audit}");
    let (status, _) = app.as_operator().get("/v1/projections/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("annals_projection_checkpoint{{projection=\"audit\"}} {last}")), "{metrics}");
    assert!(metrics.contains("annals_projection_lag_events{projection=\"audit\"} 0"), "{metrics}");
    assert!(metrics.contains("annals_projection_generation{projection=\"audit\"} 1"), "{metrics}");
    assert!(metrics.contains("annals_projection_events_per_second{projection=\"audit\"}"), "{metrics}");
    assert!(metrics.contains("annals_projection_rebuild_progress{projection=\"audit\"} -1"), "{metrics}");

    let app = app.restart().await;
    let (_, page) = app.get("/v1/audit").await;
    assert_eq!(page["total"], json!(3), "the view is still there after a restart: {page}");
    let (status, _) = app.get(&format!("/v1/audit/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn tenants_never_see_each_others_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let operator = app.as_operator();
    let (status, key) = operator.post("/v1/keys", &json!({ "tenant": "globex", "role": "writer", "name": "w" })).await;

    assert_eq!(status, StatusCode::CREATED);
    let (_, reader) = operator.post("/v1/keys", &json!({ "tenant": "globex", "role": "reader", "name": "r" })).await;
    let mut globex = app.clone_view();
    globex.key = key["key"].as_str().unwrap().to_owned();
    let last =
        append(&globex, "message-x", &[("message.enqueued", enqueued("x", "x@globex.com", "email", "Hi"))]).await;
    let audit_last =
        append(&globex, "audit-template-t9", &[("audit.recorded", audit("template.updated", "t9", "success"))]).await;
    // Projection figures span tenants: only operators see them (not a tenant's admin either).
    let (status, _) = globex.get("/v1/projections").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    globex.key = reader["key"].as_str().unwrap().to_owned();
    let (status, _) = globex.get("/v1/projections").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.get("/v1/projections").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the default tenant's admin key");
    let (_, page) = globex.get(&format!("/v1/messages?min_position={last}")).await;
    assert_eq!(page["total"], json!(1), "{page}");
    let audit_id = {
        let (_, page) = globex.get(&format!("/v1/audit?min_position={audit_last}")).await;
        page["items"][0]["event_id"].as_str().unwrap().to_owned()
    };

    // The default tenant (the tests' admin key's) sees none of it.
    let (_, page) = app.get(&format!("/v1/messages?min_position={last}")).await;
    assert_eq!(page["total"], json!(0), "{page}");
    let (status, _) = app.get("/v1/messages/x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/v1/messages/x/history").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, page) = app.get("/v1/audit").await;
    assert_eq!(page["total"], json!(0), "{page}");
    let (status, _) = app.get(&format!("/v1/audit/{audit_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn events_a_view_cannot_apply_are_parked_and_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    // Valid `message.*` events, but on streams that are not message streams: the `messages`
    // projection cannot place them, parks them with the reason, and goes on.
    let sent = json!({ "message_id": "x", "channel": "email", "provider": "ses" });
    append(&app, "orders-1", &[("message.sent", sent.clone())]).await;
    append(&app, "orders-2", &[("message.sent", sent)]).await;
    let last =
        append(&app, "message-ok", &[("message.enqueued", enqueued("ok", "ok@example.com", "email", "Fine"))]).await;
    let (_, page) = app.get(&format!("/v1/messages?min_position={last}")).await;
    assert_eq!(page["total"], json!(1), "the good message is there: {page}");

    let (status, parked) = app.as_operator().get("/v1/projections/messages/parked?limit=1").await;
    assert_eq!(status, StatusCode::OK, "{parked}");
    let items = parked["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{parked}");
    assert_eq!(items[0]["revision"], json!(0));
    assert!(items[0]["entry"]["stream"].as_str().unwrap().ends_with("orders-1"), "{parked}");
    assert_eq!(items[0]["entry"]["event_type"], json!("message.sent"));
    assert_eq!(items[0]["entry"]["error_kind"], json!("not-a-message-stream"), "the reason is recorded: {parked}");
    let next = parked["next"].as_str().expect("a next page");
    let (_, rest) = app.as_operator().get(next).await;
    assert_eq!(rest["items"][0]["revision"], json!(1), "{rest}");
    assert!(rest["items"][0]["entry"]["stream"].as_str().unwrap().ends_with("orders-2"), "{rest}");
    let (_, progress) = app.as_operator().get("/v1/projections/messages").await;
    assert_eq!(progress["parked_events"], json!(2), "{progress}");

    let (_, none) = app.as_operator().get("/v1/projections/audit/parked").await;
    assert_eq!((none["items"].as_array().unwrap().len(), &none["next"]), (0, &Value::Null), "{none}");
    let (status, _) = app.as_operator().get("/v1/projections/nope/parked").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = app.as_operator().get("/v1/projections/messages/parked?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    app.stop().await;
}

#[tokio::test]
async fn parked_entries_show_an_operator_no_data_and_a_tenant_admin_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let operator = app.as_operator();
    let globex = app.with_key(&app.tenant_admin_key("globex").await);
    // The data names another message than its stream: the projector's error quotes the value.
    let secret = "globex-secret-4711";
    let sent = json!({ "message_id": secret, "channel": "email", "provider": "ses" });
    let last = append(&globex, "message-a", &[("message.sent", sent)]).await;
    wait_for_checkpoint(&app, "messages", last).await;

    let (status, parked) = operator.get("/v1/projections/messages/parked").await;
    assert_eq!(status, StatusCode::OK, "{parked}");
    let entry = &parked["items"][0]["entry"];
    assert_eq!(
        (&entry["stream"], &entry["position"], &entry["event_type"], &entry["error_kind"]),
        (&json!("globex/message-a"), &json!(last), &json!("message.sent"), &json!("message-id-mismatch")),
        "{parked}"
    );
    assert!(!parked.to_string().contains(secret), "an operator sees no data value: {parked}");
    let (status, accepted) = operator.post_raw("/v1/projections/messages/parked/replay", "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    wait_for_checkpoint(&app, "messages", accepted["replay_position"].as_u64().unwrap()).await;
    let (_, parked) = operator.get("/v1/projections/messages/parked").await;
    assert_eq!(parked["items"][0]["replays"][0]["error_kind"], json!("message-id-mismatch"), "{parked}");
    assert!(!parked.to_string().contains(secret), "nor in a replay's outcome: {parked}");

    // A tenant's admin lists and replays no parked entry, its own tenant's neither.
    for (who, admin) in [("default", &app), ("globex", &globex)] {
        for path in ["/v1/projections/messages/parked", "/v1/projections/messages", "/v1/projections"] {
            let (status, problem) = admin.get(path).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{who}'s admin GET {path}: {problem}");
            assert!(!problem.to_string().contains(secret), "{problem}");
        }
        for path in ["/v1/projections/messages/parked/replay", "/v1/projections/messages/rebuild"] {
            let (status, problem) = admin.post(path, &json!({})).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{who}'s admin POST {path}: {problem}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn parked_events_can_be_replayed_and_each_outcome_is_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let sent = json!({ "message_id": "x", "channel": "email", "provider": "ses" });
    append(&app, "orders-1", &[("message.sent", sent.clone())]).await;
    let last = append(&app, "orders-2", &[("message.sent", sent)]).await;
    wait_for_checkpoint(&app, "messages", last).await;
    let (_, parked) = app.as_operator().get("/v1/projections/messages/parked").await;
    let first = parked["items"][0]["entry"]["position"].as_u64().unwrap();

    let (status, problem) = app
        .as_operator()
        .post("/v1/projections/messages/parked/replay", &json!({ "positions": [first, 999_999] }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["positions"], json!([999_999]), "{problem}");
    let (status, problem) =
        app.as_operator().post("/v1/projections/messages/parked/replay", &json!({ "positions": [] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an empty list is not \"all\": {problem}");
    assert!(problem["detail"].as_str().unwrap().contains("/positions"), "{problem}");
    let (status, problem) =
        app.as_operator().post("/v1/projections/messages/parked/replay", &json!({ "everything": true })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let (status, problem) = app.as_operator().post("/v1/projections/nope/parked/replay", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");

    // No body: every parked event. These can never be applied (not message streams), so the
    // replay records a failure for each and they stay parked.
    let (status, accepted) = app.as_operator().post_raw("/v1/projections/messages/parked/replay", "").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!((accepted["events"].clone(), accepted["generation"].clone()), (json!(2), json!(1)), "{accepted}");
    let at = accepted["replay_position"].as_u64().expect("the request's position");
    wait_for_checkpoint(&app, "messages", at).await;
    let (_, parked) = app.as_operator().get("/v1/projections/messages/parked?status=parked").await;
    let items = parked["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{parked}");
    for item in items {
        assert_eq!(item["status"], json!("parked"), "{item}");
        assert_eq!(item["replays"][0]["replayed_at"], json!(at), "{item}");
        assert_eq!(item["replays"][0]["outcome"], json!("failed"), "{item}");
        assert_eq!(item["replays"][0]["error_kind"], json!("not-a-message-stream"), "{item}");
    }
    let (_, replayed) = app.as_operator().get("/v1/projections/messages/parked?status=replayed").await;
    assert_eq!(replayed["items"], json!([]), "{replayed}");
    let (_, progress) = app.as_operator().get("/v1/projections/messages").await;
    assert_eq!(progress["parked_events"], json!(2), "still waiting: {progress}");

    // Nothing parked: nothing requested (a `null` body is no body).
    for body in [json!({}), Value::Null] {
        let (status, nothing) = app.as_operator().post("/v1/projections/audit/parked/replay", &body).await;
        assert_eq!(status, StatusCode::OK, "{body}: {nothing}");
        assert_eq!((nothing["events"].clone(), nothing["replay_position"].clone()), (json!(0), Value::Null));
    }
    app.stop().await;
}

async fn wait_for_checkpoint(app: &TestApp, projection: &str, position: u64) {
    for _ in 0..500 {
        let (_, progress) = app.as_operator().get(&format!("/v1/projections/{projection}")).await;
        if progress["checkpoint"].as_u64() >= Some(position) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{projection} did not reach position {position} within 5 s");
}
