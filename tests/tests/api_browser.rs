//! What browser clients rely on, over plain HTTP: CORS answers the configured origins and no
//! other; live-tail tokens open the minting key's tenant's live tail and nothing else, expire,
//! and die with their key; and `/metrics`, which needs no key, names no tenant. A real browser's
//! side of it is `browser_live.rs`.

use crate::support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{append_n, decode, SseReader, TestApp};

const ORIGIN: &str = "http://ui.example:3000";

/// A new key of `role` for `tenant`, made by the operator.
async fn key(app: &TestApp, tenant: &str, role: &str) -> (String, TestApp) {
    let (status, body) = app.as_operator().post("/v1/keys", &json!({ "tenant": tenant, "role": role })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (body["id"].as_str().unwrap().to_owned(), app.with_key(body["key"].as_str().unwrap()))
}

fn cors_headers(response: &reqwest::Response) -> Vec<String> {
    response.headers().keys().map(|k| k.as_str().to_owned()).filter(|k| k.starts_with("access-control-")).collect()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn cors_answers_the_configured_origins_and_no_other() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(tmp.path(), |s| s.http.cors_origins = vec![ORIGIN.to_owned()]).await;
    let base = app.base.clone();
    let url = |path: &str| format!("{base}{path}");

    // A preflight from the page: the key, a JSON body and EventSource's resume point may be sent.
    let preflight = app
        .client
        .request(Method::OPTIONS, url("/v1/events/live"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization, last-event-id")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(header(&preflight, "access-control-allow-origin"), ORIGIN);
    let allowed = header(&preflight, "access-control-allow-headers").to_ascii_lowercase();
    for name in ["authorization", "content-type", "last-event-id"] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    let methods = header(&preflight, "access-control-allow-methods");
    assert!(["GET", "POST", "DELETE"].iter().all(|m| methods.contains(m)), "{methods}");

    // The request itself, and its errors: the page may read them and the headers it needs.
    for (key, expected) in [(Some(app.key.as_str()), StatusCode::OK), (None, StatusCode::UNAUTHORIZED)] {
        let mut request = app.client.get(url("/v1/events")).header("origin", ORIGIN);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), expected);
        assert_eq!(header(&response, "access-control-allow-origin"), ORIGIN);
        let exposed = header(&response, "access-control-expose-headers").to_ascii_lowercase();
        assert!(exposed.contains("retry-after") && exposed.contains("location"), "{exposed}");
    }

    // The live tail with a token, as a browser's EventSource opens it.
    let (status, minted) = app.post("/v1/live-tokens", &json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let token = minted["token"].as_str().unwrap();
    let response = app
        .client
        .get(url(&format!("/v1/events/live?from_position=0&access_token={token}")))
        .header("origin", ORIGIN)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "access-control-allow-origin"), ORIGIN);
    SseReader::from_response(response);

    // Any other origin, or none: not one CORS header, and OPTIONS is no method of the API.
    for origin in [Some("http://evil.example"), Some("http://ui.example:3001"), Some("null"), None] {
        let mut request = app.client.get(url("/v1/events")).bearer_auth(&app.key);
        let mut preflight = app
            .client
            .request(Method::OPTIONS, url("/v1/events"))
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization");
        if let Some(origin) = origin {
            request = request.header("origin", origin);
            preflight = preflight.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(cors_headers(&response), Vec::<String>::new(), "{origin:?}");
        let response = preflight.send().await.unwrap();
        assert_eq!(cors_headers(&response), Vec::<String>::new(), "{origin:?}");
        assert_eq!(decode(response).await.0, StatusCode::METHOD_NOT_ALLOWED, "{origin:?}");
    }
    app.stop().await;

    // None by default.
    let app = TestApp::spawn(tmp.path()).await;
    let response = app.client.get(format!("{}/v1/events", app.base)).header("origin", ORIGIN).send().await.unwrap();
    assert_eq!(cors_headers(&response), Vec::<String>::new());
    app.stop().await;
}

/// Opens the live tail with `token` in the query and no key.
async fn tail_with_token(app: &TestApp, query: &str, token: &str) -> reqwest::Response {
    let url = format!("{}/v1/events/live?{query}access_token={token}", app.base);
    app.client.get(url).send().await.unwrap()
}

#[tokio::test]
async fn a_live_tail_token_opens_its_tenants_live_tail_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (reader_id, reader) = key(&app, "acme", "reader").await;
    let (_, writer) = key(&app, "acme", "writer").await;
    let (_, globex) = key(&app, "globex", "writer").await;
    append_n(&writer, "message-1", "message.sent", 2).await;
    append_n(&globex, "message-1", "message.sent", 1).await;

    // Before any token was minted, a made-up one is refused, and writes nothing to the log.
    let head = app.get("/readyz").await.1["head_position"].clone();
    let made_up = format!("annals_live.{reader_id}.acme.9999999999.{}", "ab".repeat(32));
    assert_eq!(decode(tail_with_token(&app, "", &made_up).await).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/readyz").await.1["head_position"], head, "no secret was made for it");

    let (status, minted) = reader.post("/v1/live-tokens", &json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    assert_eq!(minted["key_id"], json!(reader_id));
    let expires = chrono::DateTime::parse_from_rfc3339(minted["expires_at"].as_str().unwrap()).unwrap();
    let left = expires.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((240..=300).contains(&left), "a few minutes by default: {left} s");
    let token = minted["token"].as_str().unwrap().to_owned();
    assert!(!token.contains(&reader.key[24..]), "the token holds no part of the key's secret");

    // The live tail, the key's tenant's only, with the route's own parameters as they were.
    let mut tail = SseReader::from_response(tail_with_token(&app, "from_position=0&types=message.sent&", &token).await);
    let events = tail.events(2).await;
    append_n(&globex, "message-2", "message.sent", 1).await;
    append_n(&writer, "message-2", "message.sent", 1).await;
    let next = tail.events(1).await;
    assert!(events.iter().chain(&next).all(|(_, e)| e["stream"].as_str().unwrap().starts_with("message-")));
    assert_eq!(next[0].1["stream"], json!("message-2"));
    assert!(next[0].0 > events[1].0);

    // Nowhere else: not in the query of other routes, not as a bearer key.
    for path in ["/v1/events", "/v1/streams/message-1/events", "/v1/messages", "/v1/keys"] {
        let response = app.client.get(format!("{}{path}?access_token={token}", app.base)).send().await.unwrap();
        let (status, problem) = decode(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {problem}");
    }
    for path in ["/v1/events", "/v1/events/live"] {
        let (status, problem) = app.with_key(&token).get(path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "bearer token on {path}: {problem}");
    }
    let (status, _) = app.with_key(&token).post("/v1/streams/message-1/events", &json!({ "events": [] })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A token edited to name another tenant, or a later expiry, is no token.
    let other_tenant = token.replace(".acme.", ".globex.");
    let (prefix, rest) = token.split_once(".acme.").unwrap();
    let (expiry, mac) = rest.split_once('.').unwrap();
    let later = format!("{prefix}.acme.{}.{mac}", expiry.parse::<u64>().unwrap() + 3600);
    for forged in [other_tenant, later, format!("{token}0"), "annals_live.x".to_owned()] {
        let (status, problem) = decode(tail_with_token(&app, "", &forged).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{forged}: {problem}");
    }
    // Who may mint: readers and tenant admins; not writers, not operators.
    for (who, caller) in [("writer", &writer), ("operator", &app.as_operator())] {
        let (status, problem) = caller.post("/v1/live-tokens", &json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {problem}");
    }
    assert_eq!(app.post("/v1/live-tokens", &json!({})).await.0, StatusCode::CREATED, "a tenant admin");

    // Tokens survive a restart (the secret is in the log); revoking the minting key ends the
    // tail and refuses the token.
    drop(tail);
    let app = app.restart().await;
    let tail = SseReader::from_response(tail_with_token(&app, "", &token).await);
    let (status, _) = app.as_operator().delete(&format!("/v1/keys/{reader_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tail.until_end().await, Vec::<Value>::new(), "the tail of a revoked key's token ends");
    let (status, problem) = decode(tail_with_token(&app, "", &token).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("revoked"), "{problem}");
    app.stop().await;
}

#[tokio::test]
async fn a_live_tail_token_opens_tails_until_it_expires_and_those_run_on() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(tmp.path(), |s| s.http.live_token_ttl = Duration::from_secs(2)).await;
    let (status, minted) = app.post("/v1/live-tokens", &json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let token = minted["token"].as_str().unwrap();
    let mut tail = SseReader::from_response(tail_with_token(&app, "", token).await);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, problem) = decode(tail_with_token(&app, "", token).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("expired"), "{problem}");
    append_n(&app, "message-1", "message.sent", 1).await;
    assert_eq!(tail.events(1).await.len(), 1, "a tail opened in time runs on");
    app.stop().await;
}

#[tokio::test]
async fn metrics_name_no_tenant_and_show_no_data() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (_, acme) = key(&app, "acme-probe", "admin").await;
    let (_, globex) = key(&app, "globex-probe", "admin").await;
    for tenant in [&acme, &globex] {
        append_n(tenant, "message-secret-stream", "message.sent", 2).await;
        append_n(tenant, "orders-secret-stream", "opaque.thing", 1).await;
        assert_eq!(tenant.get("/v1/messages?q=ses").await.0, StatusCode::OK);
    }
    let _tail = SseReader::open(&acme, "/v1/events/live", None).await;
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("annals_appends_total"), "{metrics}");
    for needle in ["acme", "globex", "probe", "secret", "ada@example.com", "opaque.thing"] {
        assert!(!metrics.contains(needle), "/metrics shows {needle:?}:\n{metrics}");
    }
    app.stop().await;
}
