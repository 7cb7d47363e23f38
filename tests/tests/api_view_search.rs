//! Searching the views over HTTP (issue 13). Long words: a word of any length is found, and a
//! query word that matches nothing never makes the query match everything. Cursor paging while
//! the log moves: a client pages through
//! `GET /v1/messages` (both sorts) and `GET /v1/audit` while messages it has and has not reached
//! yet get new events and new documents arrive; every document that existed when paging began
//! must be on exactly one page. What "existed" means is taken from the log itself (a fold of
//! `GET /v1/events` up to the position paging began at), not from the test's own bookkeeping.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestApp;

async fn append(app: &TestApp, stream: &str, events: &[(&str, Value)]) -> u64 {
    let events: Vec<Value> = events.iter().map(|(t, d)| json!({ "type": t, "data": d })).collect();
    let (status, body) = app.post(&format!("/v1/streams/{stream}/events"), &json!({ "events": events })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["last_position"].as_u64().unwrap()
}

fn enqueued(id: &str) -> Value {
    json!({
        "message_id": id,
        "recipient": { "id": format!("user-{id}"), "email": format!("{id}@example.com") },
        "channel": "email",
        "subject": format!("Message {id}"),
        "occurred_at": "2026-11-30T10:00:00Z"
    })
}

fn audit(target: &str) -> Value {
    json!({
        "actor": { "id": "user-7", "type": "user", "name": "Grace Hopper" },
        "action": "template.updated",
        "crud": "update",
        "target": { "type": "template", "id": target },
        "outcome": "success",
        "occurred_at": "2026-11-30T10:00:00Z"
    })
}

/// The log folded up to `until` (included): per event type prefix, the streams of the caller's
/// tenant that have an event of it, and the ids of its `audit.recorded` events.
async fn fold_log(app: &TestApp, until: u64) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut messages, mut audits) = (BTreeSet::new(), BTreeSet::new());
    let mut next = Some("/v1/events?limit=100".to_owned());
    while let Some(link) = next {
        let (status, page) = app.get(&link).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for event in page["events"].as_array().unwrap() {
            if event["position"].as_u64().unwrap() > until {
                return (messages, audits);
            }
            let (stream, kind) = (event["stream"].as_str().unwrap(), event["type"].as_str().unwrap());
            if let Some(id) = stream.strip_prefix("message-").filter(|_| kind.starts_with("message.")) {
                messages.insert(id.to_owned());
            }
            if kind == "audit.recorded" {
                audits.insert(event["id"].as_str().unwrap().to_owned());
            }
        }
        next = page["next"].as_str().map(str::to_owned);
    }
    (messages, audits)
}

/// The position of the caller's last event.
async fn head(app: &TestApp) -> u64 {
    let (mut last, mut next) = (0, Some("/v1/events?limit=100".to_owned()));
    while let Some(link) = next {
        let (_, page) = app.get(&link).await;
        if let Some(event) = page["events"].as_array().unwrap().last() {
            last = event["position"].as_u64().unwrap();
        }
        next = page["next"].as_str().map(str::to_owned);
    }
    last
}

/// `link` with its `min_position` replaced by `position` (a `next` link repeats the request's
/// parameters, and the page after a write must wait for the write to be applied).
fn with_min_position(link: &str, position: u64) -> String {
    let (path, query) = link.split_once('?').unwrap_or((link, ""));
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !p.starts_with("min_position=")).collect();
    let min = format!("min_position={position}");
    params.push(&min);
    format!("{path}?{}", params.join("&"))
}

/// Pages through `first` (a search link) with `limit` per page; between pages `write(round, seen)`
/// appends and returns the last position. Returns how often each document (by `key`) was seen.
async fn page_while_writing<'a, W, F>(app: &'a TestApp, first: &str, key: &str, mut write: W) -> BTreeMap<String, usize>
where
    W: FnMut(usize, BTreeSet<String>) -> F,
    F: std::future::Future<Output = u64> + 'a,
{
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut next = Some(first.to_owned());
    for round in 0.. {
        let Some(link) = next else { break };
        let (status, page) = app.get(&link).await;
        assert_eq!(status, StatusCode::OK, "{link}: {page}");
        for item in page["items"].as_array().unwrap() {
            *counts.entry(item[key].as_str().unwrap().to_owned()).or_default() += 1;
        }
        let seen = counts.keys().cloned().collect();
        let position = write(round, seen).await;
        next = page["next"].as_str().map(|l| with_min_position(l, position));
    }
    counts
}

fn assert_exactly_once(counts: &BTreeMap<String, usize>, existing: &BTreeSet<String>, what: &str) {
    let twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "{what}: listed more than once: {twice:?}");
    let missing: Vec<_> = existing.iter().filter(|id| !counts.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{what}: never listed although they existed when paging began: {missing:?}");
}

#[tokio::test]
async fn message_pages_neither_repeat_nor_skip_messages_updated_or_added_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let mut last = 0;
    for i in 0..24 {
        last = append(&app, &format!("message-m{i:02}"), &[("message.enqueued", enqueued(&format!("m{i:02}")))]).await;
    }
    for sort in ["newest", "oldest"] {
        let (existing, _) = fold_log(&app, last).await;
        assert!(existing.len() >= 24);
        let app_ref = &app;
        let existing_ref = &existing;
        let counts = page_while_writing(
            &app,
            &format!("/v1/messages?sort={sort}&limit=5&min_position={last}"),
            "message_id",
            move |round, seen| async move {
                // Between pages: an event for a message already listed and for one not reached
                // yet (each moves its last activity to now), and a new message.
                let mut position = 0;
                let reached = seen.iter().next().cloned();
                let unreached = existing_ref.iter().rev().find(|id| !seen.contains(*id)).cloned();
                for id in [reached, unreached].into_iter().flatten() {
                    let sent = json!({ "message_id": id, "channel": "email", "provider": "ses" });
                    position = append(app_ref, &format!("message-{id}"), &[("message.sent", sent)]).await;
                }
                let new = format!("{sort}-new-{round}");
                position.max(append(app_ref, &format!("message-{new}"), &[("message.enqueued", enqueued(&new))]).await)
            },
        )
        .await;
        assert_exactly_once(&counts, &existing, &format!("sort={sort}"));
        last = head(&app).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn audit_pages_neither_repeat_nor_skip_entries_added_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let mut last = 0;
    for i in 0..18 {
        last = append(&app, "audit-templates", &[("audit.recorded", audit(&format!("t{i}")))]).await;
    }
    for sort in ["newest", "oldest"] {
        let (_, existing) = fold_log(&app, last).await;
        assert!(existing.len() >= 18);
        let app_ref = &app;
        let counts = page_while_writing(
            &app,
            &format!("/v1/audit?sort={sort}&limit=4&min_position={last}"),
            "event_id",
            move |round, _| async move {
                append(app_ref, "audit-templates", &[("audit.recorded", audit(&format!("{sort}-{round}")))]).await
            },
        )
        .await;
        assert_exactly_once(&counts, &existing, &format!("audit sort={sort}"));
        last = head(&app).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn cursors_name_an_exact_time_and_foreign_cursors_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let mut last = 0;
    for i in 0..3 {
        last = append(&app, &format!("message-c{i}"), &[("message.enqueued", enqueued(&format!("c{i}")))]).await;
    }
    let (status, page) = app.get(&format!("/v1/messages?limit=1&sort=oldest&min_position={last}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let next = page["next"].as_str().unwrap();
    let cursor = next.split("cursor=").nth(1).unwrap();
    let first = &page["items"][0];
    let created: chrono::DateTime<chrono::Utc> = first["first_event_at"].as_str().unwrap().parse().unwrap();
    assert!(
        cursor.starts_with(&format!("n{}", created.timestamp_nanos_opt().unwrap())),
        "the cursor holds the creation time of the last item in nanoseconds: {cursor} for {first}"
    );
    for bad in [
        // A cursor of the earlier format (microseconds of the last event): refused, not misread.
        format!("{}~message-c0", created.timestamp_micros()),
        // Past what a view can hold (i64 nanoseconds end in 2262).
        "n99999999999999999999~message-c0".to_owned(),
        "n~message-c0".to_owned(),
        "n12~".to_owned(),
    ] {
        let (status, problem) = app.get(&format!("/v1/messages?cursor={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
        assert_eq!(problem["parameter"], json!("cursor"), "{bad}: {problem}");
    }
    app.stop().await;
}

#[tokio::test]
async fn long_words_are_found_and_words_that_match_nothing_never_match_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let code = format!("TRK{}", "7".repeat(57)); // one 60-byte word
    let mut with_code = enqueued("w1");
    with_code["subject"] = json!(format!("Your parcel {code} is on its way"));
    append(&app, "message-w1", &[("message.enqueued", with_code)]).await;
    let last = append(&app, "message-w2", &[("message.enqueued", enqueued("w2"))]).await;
    let total = |page: &Value| page["total"].as_u64().unwrap();
    let (status, page) = app.get(&format!("/v1/messages?q={}&min_position={last}", code.to_lowercase())).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(total(&page), 1, "{page}");
    assert_eq!(page["items"][0]["message_id"], json!("w1"), "{page}");
    let other = format!("TRK{}", "8".repeat(57));
    for q in [other.as_str(), "%21%21%21", &format!("parcel+{}", "x".repeat(300))] {
        let (status, page) = app.get(&format!("/v1/messages?q={q}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(total(&page), 0, "q={q:.40} matches nothing, not everything: {page}");
    }
    app.stop().await;
}

/// The landing page's total and facets (kept as counts at commit) against the same search
/// answered by counting every match (`q=` on a word every subject holds), and each facet count
/// against the total of the search filtered by that value — with three partitioned workers,
/// after updates, after a restart and after a rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facets_equal_filtered_counts_across_workers_restart_and_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let edit = |s: &mut annals::settings::Settings| {
        s.projectors.parallelism = 3;
        s.projectors.batch_size = 40;
    };
    let mut app = TestApp::spawn_with(tmp.path(), edit).await;
    let mut last = 0;
    let channels = ["email", "sms", "push"];
    for i in 0..45u64 {
        let id = format!("f{i:02}");
        let mut enqueued = enqueued(&id);
        enqueued["channel"] = json!(channels[(i * 7 % 3) as usize]);
        let mut events = vec![("message.enqueued", enqueued)];
        let sent = json!({ "message_id": id, "channel": channels[(i * 7 % 3) as usize], "provider": "ses" });
        match i % 4 {
            0 => {}
            1 => events.push(("message.sent", sent)),
            2 => events.push(("message.undeliverable", json!({ "message_id": id, "reason": "BOUNCED" }))),
            _ => {
                events.push(("message.sent", sent));
                events.push(("message.delivered", json!({ "message_id": id })));
            }
        }
        last = append(&app, &format!("message-{id}"), &events).await;
    }
    // Updates: some messages move on (their counted status changes).
    for i in (0..45u64).step_by(5) {
        let id = format!("f{i:02}");
        last = append(&app, &format!("message-{id}"), &[("message.opened", json!({ "message_id": id }))]).await;
    }
    check_facets(&app, last, "three workers").await;
    app = app.restart().await;
    check_facets(&app, last, "after a restart").await;
    let (status, accepted) = app.as_operator().post("/v1/projections/messages/rebuild", &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    for _ in 0..300 {
        let (_, progress) = app.as_operator().get("/v1/projections/messages").await;
        if progress["generation"] == json!(2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    check_facets(&app, last, "after a rebuild").await;
    let id = "f01";
    last = append(&app, "message-f01", &[("message.clicked", json!({ "message_id": id }))]).await;
    check_facets(&app, last, "an update after the rebuild").await;
    app.stop().await;
}

async fn check_facets(app: &TestApp, last: u64, when: &str) {
    let (status, landing) = app.get(&format!("/v1/messages?limit=5&min_position={last}")).await;
    assert_eq!(status, StatusCode::OK, "{landing}");
    let (_, counted) = app.get("/v1/messages?limit=5&q=message").await;
    assert_eq!(landing["total"], counted["total"], "{when}: total");
    assert_eq!(landing["facets"], counted["facets"], "{when}: facets");
    assert_eq!(landing["items"], counted["items"], "{when}: first page");
    for facet in ["status", "channel"] {
        let values = landing["facets"][facet].as_object().unwrap();
        assert!(!values.is_empty(), "{when}: {landing}");
        let sum: u64 = values.values().map(|n| n.as_u64().unwrap()).sum();
        assert_eq!(sum, landing["total"].as_u64().unwrap(), "{when}: one {facet} per message");
        for (value, n) in values {
            let (_, filtered) = app.get(&format!("/v1/messages?limit=1&{facet}={value}")).await;
            assert_eq!(&filtered["total"], n, "{when}: {facet}={value} against the facet");
            let (_, by_counting) = app.get(&format!("/v1/messages?limit=1&{facet}={value}&q=message")).await;
            assert_eq!(filtered["total"], by_counting["total"], "{when}: {facet}={value} counted");
            assert_eq!(filtered["facets"], by_counting["facets"], "{when}: {facet}={value} facets");
        }
    }
}
