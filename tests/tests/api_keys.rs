//! API keys, roles and tenants over HTTP: every `/v1` request needs a key; the key's role decides
//! what it may do and its tenant what it sees — on every read path, the live tail included; key
//! management is event-sourced in `$keys` and survives restarts.

use crate::support;

use annals::compose::Server;
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{Direction, EventStore, ReadFrom, StreamId};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{append_n, decode, event, SseReader, TestApp, ADMIN_KEY};

/// Creates a key as the operator; returns (id, key).
async fn create_key(app: &TestApp, tenant: &str, role: &str) -> (String, String) {
    let (status, body) = app
        .as_operator()
        .post("/v1/keys", &json!({ "tenant": tenant, "role": role, "name": format!("{tenant} {role}") }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!((&body["tenant"], &body["role"]), (&json!(tenant), &json!(role)));
    (body["id"].as_str().unwrap().to_owned(), body["key"].as_str().unwrap().to_owned())
}

fn as_key(app: &TestApp, key: &str) -> TestApp {
    let mut view = app.clone_view();
    view.key = key.to_owned();
    view
}

#[tokio::test]
async fn requests_without_a_valid_key_are_401_with_a_bearer_challenge() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let url = format!("{}/v1/events", app.base);
    let forged = ADMIN_KEY.replace("0011223344", "9911223344");
    let cases: [(&str, Option<String>); 4] = [
        ("no Authorization header", None),
        ("not a bearer token", Some("Basic YWRtaW46YWRtaW4=".into())),
        ("a malformed key", Some("Bearer letmein".into())),
        ("a well-formed key with the wrong secret", Some(format!("Bearer {forged}"))),
    ];
    for (case, header) in cases {
        let mut request = app.client.get(&url);
        if let Some(h) = header {
            request = request.header("authorization", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"), "{case}");
        let (status, problem) = decode(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {problem}");
    }
    // The scheme's name is case-insensitive (RFC 9110).
    let response = app.client.get(&url).header("authorization", format!("bearer {}", app.key)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Health needs no key.
    let response = app.client.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn roles_decide_what_a_key_may_do() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (_, writer) = create_key(&app, "acme", "writer").await;
    let (_, reader) = create_key(&app, "acme", "reader").await;
    let writer_app = as_key(&app, &writer);
    let reader_app = as_key(&app, &reader);

    let (status, _) =
        writer_app.post("/v1/streams/message-1/events", &json!({ "events": [event("message.sent", 0)] })).await;
    assert_eq!(status, StatusCode::CREATED);
    for path in ["/v1/streams/message-1/events", "/v1/events", "/v1/keys"] {
        let (status, problem) = writer_app.get(path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a writer may not GET {path}: {problem}");
    }
    let (status, page) = reader_app.get("/v1/streams/message-1/events").await;
    assert_eq!((status, page["events"].as_array().unwrap().len()), (StatusCode::OK, 1));
    let (status, problem) =
        reader_app.post("/v1/streams/message-1/events", &json!({ "events": [event("x", 1)] })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a reader may not append: {problem}");
    assert_eq!(problem["detail"], json!("a reader key may not append events"), "{problem}");
    let (status, _) = reader_app.post("/v1/keys", &json!({ "tenant": "acme", "role": "admin" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a reader may not make keys");

    for (body, says) in [
        (json!({ "tenant": "Acme Corp", "role": "reader" }), "tenant"),
        (json!({ "tenant": "acme", "role": "owner" }), "owner"),
        (json!({ "role": "reader" }), "tenant"),
        (json!({ "tenant": "acme", "role": "reader", "name": "n".repeat(201) }), "/name"),
        (json!({ "tenant": "acme", "role": "reader", "name": "line\nbreak" }), "/name"),
    ] {
        let (status, problem) = app.as_operator().post("/v1/keys", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(says), "{body}: {problem}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_tenant_admin_manages_its_own_tenants_keys_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (acme_admin_id, acme_admin) = create_key(&app, "acme", "admin").await;
    let (globex_reader_id, globex_reader) = create_key(&app, "globex", "reader").await;
    let (_, globex_admin) = create_key(&app, "globex", "admin").await;
    let operator_id = app.as_operator().get("/v1/keys").await.1["keys"][0]["id"].as_str().unwrap().to_owned();
    let acme = as_key(&app, &acme_admin);

    // Its list: its tenant's keys only (not globex's, not the operator's).
    let (acme_reader_id, acme_reader) = {
        let (status, body) = acme.post("/v1/keys", &json!({ "tenant": "acme", "role": "reader", "name": "ui" })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (body["id"].as_str().unwrap().to_owned(), body["key"].as_str().unwrap().to_owned())
    };
    let (status, list) = acme.get("/v1/keys").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list["keys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [acme_admin_id.as_str(), acme_reader_id.as_str()], "{list}");
    assert_eq!(as_key(&app, &acme_reader).get("/v1/events").await.0, StatusCode::OK, "the key it made works");

    // Creating for another tenant is a 403 that says the same whether the tenant exists or not;
    // so is making an operator key.
    let mut refusals = Vec::new();
    for tenant in ["globex", "no-such-tenant"] {
        let (status, problem) = acme.post("/v1/keys", &json!({ "tenant": tenant, "role": "reader" })).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{tenant}: {problem}");
        refusals.push(problem);
    }
    assert_eq!(refusals[0], refusals[1], "nothing tells globex from a tenant that does not exist");
    assert!(!refusals[0].to_string().contains("globex"), "{}", refusals[0]);
    let (status, problem) = acme.post("/v1/keys", &json!({ "tenant": "acme", "role": "operator" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a tenant admin makes no operator: {problem}");

    // Another tenant's key, or the operator's, is to it a key that does not exist.
    let (status, unknown) = acme.delete("/v1/keys/0123456789abcdef").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    for id in [&globex_reader_id, &operator_id] {
        let (status, problem) = acme.delete(&format!("/v1/keys/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
        let masked = problem.to_string().replace(id.as_str(), "0123456789abcdef");
        assert_eq!(masked, unknown.to_string(), "exactly like an unknown id");
    }
    assert_eq!(as_key(&app, &globex_reader).get("/v1/events").await.0, StatusCode::OK, "globex's key still works");
    let (status, revoked) = acme.delete(&format!("/v1/keys/{acme_reader_id}")).await;
    assert_eq!(status, StatusCode::OK, "its own tenant's key: {revoked}");

    // It reads and appends its tenant's data, and does nothing an operator does.
    append_n(&acme, "message-1", "message.sent", 1).await;
    let (status, page) = acme.get("/v1/streams/message-1/events").await;
    assert_eq!((status, page["events"].as_array().unwrap().len()), (StatusCode::OK, 1));
    for path in ["/v1/projections", "/v1/projections/messages", "/v1/projections/messages/parked"] {
        assert_eq!(acme.get(path).await.0, StatusCode::FORBIDDEN, "{path}");
    }
    // And globex's admin sees nothing of acme's.
    let (_, list) = as_key(&app, &globex_admin).get("/v1/keys").await;
    assert!(list["keys"].as_array().unwrap().iter().all(|k| k["tenant"] == "globex"), "{list}");
    app.stop().await;
}

#[tokio::test]
async fn an_operator_manages_every_tenants_keys_and_reads_no_data() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let operator = app.as_operator();
    let (acme_id, acme_writer) = create_key(&app, "acme", "writer").await;
    let (globex_id, _) = create_key(&app, "globex", "reader").await;
    append_n(&as_key(&app, &acme_writer), "message-1", "message.sent", 1).await;
    let (_, list) = operator.get("/v1/keys").await;
    let tenants: Vec<&str> = list["keys"].as_array().unwrap().iter().map(|k| k["tenant"].as_str().unwrap()).collect();
    assert_eq!(tenants, ["default", "default", "acme", "globex"], "every tenant's keys: {list}");
    assert_eq!(operator.delete(&format!("/v1/keys/{globex_id}")).await.0, StatusCode::OK);

    // No data: not its own tenant's, not another's; no live tail, no live-tail token.
    let reads = [
        "/v1/events",
        "/v1/streams/message-1/events",
        "/v1/events/live",
        "/v1/messages",
        "/v1/messages/1",
        "/v1/audit",
    ];
    for path in reads {
        let (status, problem) = operator.get(path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "GET {path}: {problem}");
        assert_eq!(problem["detail"], json!("an operator key may not read events and views"), "{problem}");
    }
    let (status, _) = operator.post("/v1/streams/message-1/events", &json!({ "events": [event("x", 0)] })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an operator appends nothing");

    // Another operator key; the last one active cannot be revoked.
    let (second_id, second) = create_key(&app, "default", "operator").await;
    let (status, _) = as_key(&app, &second).get("/v1/projections").await;
    assert_eq!(status, StatusCode::OK);
    let first_id = list["keys"][0]["id"].as_str().unwrap();
    assert_eq!(as_key(&app, &second).delete(&format!("/v1/keys/{first_id}")).await.0, StatusCode::OK);
    let (status, problem) = as_key(&app, &second).delete(&format!("/v1/keys/{second_id}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(as_key(&app, &second).delete(&format!("/v1/keys/{acme_id}")).await.0, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn tenants_never_see_each_others_events_on_any_read_path() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (_, acme_w) = create_key(&app, "acme", "writer").await;
    let (_, acme_r) = create_key(&app, "acme", "reader").await;
    let (_, globex_w) = create_key(&app, "globex", "writer").await;
    let (_, globex_r) = create_key(&app, "globex", "reader").await;
    let (acme_w, acme_r, globex_w, globex_r) =
        (as_key(&app, &acme_w), as_key(&app, &acme_r), as_key(&app, &globex_w), as_key(&app, &globex_r));

    // Both tenants use the same stream name; each gets its own stream, from revision 0.
    append_n(&acme_w, "message-1", "message.sent", 3).await;
    let mut globex_tail = SseReader::open(&globex_r, "/v1/events/live?from_position=0", None).await;
    append_n(&globex_w, "message-1", "message.delivered", 2).await;
    let (status, appended) = globex_w
        .post(
            "/v1/streams/message-1/events",
            &json!({ "expected_revision": 1, "events": [event("message.opened", 0)] }),
        )
        .await;
    assert_eq!(
        (status, &appended["stream"], &appended["first_revision"]),
        (StatusCode::CREATED, &json!("message-1"), &json!(2))
    );
    append_n(&acme_w, "message-2", "message.sent", 1).await;

    let (_, page) = acme_r.get("/v1/streams/message-1/events").await;
    let types: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["message.sent"; 3], "acme's message-1");
    let (_, page) = globex_r.get("/v1/streams/message-1/events").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3, "globex's message-1");

    for (reader, tenant, expected) in [(&acme_r, "acme", 4usize), (&globex_r, "globex", 3)] {
        let mut seen = Vec::new();
        let mut link = Some("/v1/events?limit=2".to_owned());
        while let Some(path) = link {
            let (_, page) = reader.get(&path).await;
            seen.extend(page["events"].as_array().unwrap().iter().cloned());
            link = page["next"].as_str().map(String::from);
        }
        assert_eq!(seen.len(), expected, "{tenant}'s $all");
        assert!(
            seen.iter().all(|e| e["stream"].as_str().unwrap().starts_with("message-")),
            "{tenant}: names without prefixes"
        );
        let (_, page) = reader.get("/v1/events?stream_prefix=message-1").await;
        let n = page["events"].as_array().unwrap().len();
        assert_eq!(n, 3, "{tenant}'s message-1 through a stream prefix");
    }

    // Naming another tenant's stream reaches one's own namespace, not theirs.
    let (status, _) = acme_r.get("/v1/streams/globex%2Fmessage-1/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for prefix in ["../globex", "globex", "globex%2F", "%2Fglobex"] {
        let (status, page) = acme_r.get(&format!("/v1/events?stream_prefix={prefix}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["events"], json!([]), "acme through stream_prefix={prefix}: {page}");
    }
    // Appending to it writes acme's own stream of that name; globex's is untouched.
    let (status, appended) =
        acme_w.post("/v1/streams/globex%2Fmessage-1/events", &json!({ "events": [event("message.sent", 9)] })).await;
    assert_eq!((status, &appended["first_revision"]), (StatusCode::CREATED, &json!(0)), "{appended}");
    let (_, page) = globex_r.get("/v1/streams/message-1/events").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3, "globex's message-1 is as it was");

    // The live tail: globex sees its three events, and none of acme's written around them.
    let tail = globex_tail.events(3).await;
    assert!(tail.iter().all(|(_, e)| e["type"] != json!("message.sent")), "globex's tail: {tail:?}");
    append_n(&acme_w, "message-3", "message.sent", 1).await;
    append_n(&globex_w, "message-9", "message.clicked", 1).await;
    let next = globex_tail.events(1).await;
    assert_eq!(next[0].1["type"], json!("message.clicked"), "the next event on globex's tail is globex's");
    app.stop().await;
}

#[tokio::test]
async fn revoked_keys_stop_working_and_key_management_is_an_audit_trail() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (id, key) = create_key(&app, "acme", "reader").await;
    let reader = as_key(&app, &key);
    let (status, _) = reader.get("/v1/events").await;
    assert_eq!(status, StatusCode::OK);

    let response =
        app.client.delete(format!("{}/v1/keys/{id}", app.base)).bearer_auth(&app.operator).send().await.unwrap();
    let (status, revoked) = decode(response).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let (status, problem) = reader.get("/v1/events").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(problem["detail"].as_str().unwrap().contains("revoked"), "{problem}");

    // Unknown ids, and the last operator key, cannot be revoked.
    let response = app
        .client
        .delete(format!("{}/v1/keys/0000000000000000", app.base))
        .bearer_auth(&app.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(decode(response).await.0, StatusCode::NOT_FOUND);
    let (_, list) = app.as_operator().get("/v1/keys").await;
    assert_eq!(list["keys"][0]["role"], json!("operator"), "{list}");
    let admin_id = list["keys"][0]["id"].as_str().unwrap().to_owned();
    let response =
        app.client.delete(format!("{}/v1/keys/{admin_id}", app.base)).bearer_auth(&app.operator).send().await.unwrap();
    let (status, problem) = decode(response).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], json!("https://annals.dev/problems/last-operator-key"), "{problem}");

    // Keys live in the log: after a restart the revoked key still fails, the list is the same,
    // and $keys holds who did what.
    let app = app.restart().await;
    let reader = as_key(&app, &key);
    assert_eq!(reader.get("/v1/events").await.0, StatusCode::UNAUTHORIZED);
    let (_, after) = app.as_operator().get("/v1/keys").await;
    assert_eq!(after, list, "the key list survives a restart");
    assert!(!after.to_string().contains(&key[24..]), "lists never show a secret");
    app.stop().await;

    let store = EmbeddedStore::open(EngineConfig::new(tmp.path())).await.unwrap();
    let events = store
        .read_stream(&StreamId::new("$keys").unwrap(), ReadFrom::Start, Direction::Forwards, 100)
        .await
        .unwrap()
        .into_events();
    let trail: Vec<(String, Value)> =
        events.iter().map(|e| (e.event_type.clone(), serde_json::from_slice(&e.data).unwrap())).collect();
    assert_eq!(
        trail.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        vec!["key.created", "key.created", "key.created", "key.revoked"],
        "the operator's, the tests' admin key of `default`, the reader's, its revocation"
    );
    assert_eq!(trail[2].1["created_by"], json!(admin_id));
    assert_eq!(trail[3].1["revoked_by"], json!(admin_id));
    assert!(!String::from_utf8_lossy(&events[2].data).contains(&key[24..]), "only the secret's hash is stored");
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_revoked_keys_live_tail_ends_and_gets_nothing_more() {
    let tmp = tempfile::tempdir().unwrap();
    // The default heartbeat (15 s): an idle tail ends within a second all the same.
    let app = TestApp::spawn(tmp.path()).await;
    let (_, writer_key) = create_key(&app, "acme", "writer").await;
    let writer = as_key(&app, &writer_key);
    // A busy tail: the event appended after the revocation is not sent.
    let (busy_id, busy_key) = create_key(&app, "acme", "reader").await;
    let mut busy = SseReader::open(&as_key(&app, &busy_key), "/v1/events/live?from_position=0", None).await;
    append_n(&writer, "message-1", "message.sent", 1).await;
    assert_eq!(busy.events(1).await.len(), 1);
    // An idle tail: nothing arrives, and it ends all the same.
    let (idle_id, idle_key) = create_key(&app, "acme", "reader").await;
    let idle = SseReader::open(&as_key(&app, &idle_key), "/v1/events/live?types=nothing.comes", None).await;
    for id in [&busy_id, &idle_id] {
        let response =
            app.client.delete(format!("{}/v1/keys/{id}", app.base)).bearer_auth(&app.operator).send().await.unwrap();
        assert_eq!(decode(response).await.0, StatusCode::OK);
    }
    append_n(&writer, "message-2", "message.sent", 1).await;
    assert_eq!(busy.until_end().await, Vec::<Value>::new(), "nothing is sent to a revoked key");
    assert_eq!(idle.until_end().await, Vec::<Value>::new());
    app.stop().await;
}

#[tokio::test]
async fn a_first_start_that_fails_makes_no_key_and_the_next_one_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let settings = |listen: std::net::SocketAddr| {
        let mut settings = crate::support::test_settings(tmp.path());
        settings.http.listen = listen;
        settings
    };
    let err = Server::build(settings(busy.local_addr().unwrap())).await.unwrap_err();
    assert!(err.to_string().contains(&busy.local_addr().unwrap().to_string()), "{err}");
    let app = Server::build(settings("127.0.0.1:0".parse().unwrap())).await.unwrap();
    assert!(app.bootstrap_key().is_some(), "the failed start stored no key, so this one makes and shows it");
}

#[tokio::test]
async fn the_first_start_makes_an_operator_key_once() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = || crate::support::test_settings(tmp.path());
    let app = Server::build(settings()).await.unwrap();
    let key = app.bootstrap_key().expect("a new store shows its first operator key").to_owned();
    app.close().await.unwrap();
    let app = Server::build(settings()).await.unwrap();
    assert!(app.bootstrap_key().is_none(), "the key is shown once only");
    app.close().await.unwrap();
    let mut view = TestApp::spawn_with(tmp.path(), |s| s.admin_key = None).await;
    view.key = key;
    let (status, body) = view.get("/v1/keys").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((&body["keys"][0]["role"], &body["keys"][0]["tenant"]), (&json!("operator"), &json!("default")));
    view.stop().await;

    let mut bad = settings();
    bad.admin_key = Some("hunter2".into());
    let err = Server::build(bad).await.unwrap_err().to_string();
    assert!(err.contains("ANNALS_ADMIN_KEY") && !err.contains("hunter2"), "{err}");
}
