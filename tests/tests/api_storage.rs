//! The storage side of resource limits over HTTP: pages of `$all` bounded in bytes and in events
//! examined, with `next` continuing exactly; and a full disk (see `api_full_disk` below).
//!
//! Why this exists: over 1 MB events one `GET /v1/events?limit=1000` sent a GB; a filtered read
//! scanned other tenants' events until its page filled.

use crate::support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestApp;

async fn key(app: &TestApp, tenant: &str, role: &str) -> TestApp {
    let (status, body) =
        app.as_operator().post("/v1/keys", &json!({ "tenant": tenant, "role": role, "name": tenant })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut view = app.clone_view();
    view.key = body["key"].as_str().expect("a key").to_owned();
    view
}

/// Follows `next` from `first`; returns every page.
async fn pages(app: &TestApp, first: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut link = Some(first.to_owned());
    while let Some(path) = link {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        link = page["next"].as_str().map(String::from);
        out.push(page);
        assert!(out.len() < 1_000, "paging does not end");
    }
    out
}

fn ids(pages: &[Value]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn pages_of_large_events_are_bounded_in_bytes_and_next_reads_each_once() {
    let tmp = tempfile::tempdir().unwrap();
    const BOUND: usize = 4 * 1024 * 1024;
    let app = TestApp::spawn_with(tmp.path(), |s| s.http.max_page_bytes = BOUND).await;
    let (writer, reader) = (key(&app, "acme", "writer").await, key(&app, "acme", "reader").await);
    let mut sent = Vec::new();
    for batch in 0..3 {
        let events: Vec<Value> = (0..5)
            .map(|i| {
                let id = uuid::Uuid::now_v7().to_string();
                sent.push(id.clone());
                json!({ "id": id, "type": "blob.stored", "data": { "n": batch * 5 + i, "pad": "x".repeat(1_000_000) } })
            })
            .collect();
        let (status, body) = writer.post("/v1/streams/blobs/events", &json!({ "events": events })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let all = pages(&reader, "/v1/events?limit=1000").await;
    assert!(all.len() >= 4, "15 MB of events in pages of at most 4 MiB: {} pages", all.len());
    for page in &all {
        let bytes: usize = page["events"].as_array().unwrap().iter().map(|e| e["data"].to_string().len()).sum();
        assert!(bytes <= BOUND, "a page holds {bytes} bytes of data, over the bound of {BOUND}");
    }
    assert_eq!(ids(&all), sent, "following next reads every event exactly once, in order");
    app.stop().await;
}

#[tokio::test]
async fn a_rare_type_costs_a_scan_window_of_the_tenants_own_events_and_next_finds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(tmp.path()).await;
    let (a, other) = (key(&app, "acme", "writer").await, key(&app, "globex", "writer").await);
    let reader = key(&app, "acme", "reader").await;
    let batch = |kind: &str, n: usize| {
        let events: Vec<Value> = (0..n).map(|i| json!({ "type": kind, "data": { "i": i } })).collect();
        json!({ "events": events })
    };
    // The rare type first and last in acme's log, 12,000 common ones between; 20,000 of another
    // tenant's events that acme's read must not look at.
    assert_eq!(a.post("/v1/streams/s/events", &batch("rare.found", 1)).await.0, StatusCode::CREATED);
    for _ in 0..10 {
        assert_eq!(other.post("/v1/streams/s/events", &batch("rare.found", 1_000)).await.0, StatusCode::CREATED);
        assert_eq!(other.post("/v1/streams/s/events", &batch("common", 1_000)).await.0, StatusCode::CREATED);
    }
    for _ in 0..12 {
        assert_eq!(a.post("/v1/streams/s/events", &batch("common", 1_000)).await.0, StatusCode::CREATED);
    }
    assert_eq!(a.post("/v1/streams/s/events", &batch("rare.found", 1)).await.0, StatusCode::CREATED);

    let (status, first) = reader.get("/v1/events?types=rare.found&limit=10").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["events"].as_array().unwrap().len(), 1, "the window holds the first: {first}");
    assert!(first["next"].is_string(), "the window stopped the scan, so the page links on: {first}");
    let all = pages(&reader, "/v1/events?types=rare.found&limit=10").await;
    let found: Vec<u64> = all
        .iter()
        .flat_map(|p| p["events"].as_array().unwrap().iter().map(|e| e["data"]["i"].as_u64().unwrap()))
        .collect();
    assert_eq!(found, [0, 0], "both of acme's rare events, once each, none of globex's: {all:?}");
    assert!(all.len() <= 3, "12,002 events in windows of 10,000: {} pages", all.len());
    app.stop().await;
}

/// A tmpfs of `mib` MiB on a temporary directory, unmounted on drop; `None` (with a message)
/// where mounting is impossible (not root).
struct Mount {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Mount {
    fn tmpfs(mib: u64) -> Option<Mount> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}M"), "tmpfs"])
            .arg(&path)
            .status();
        match status {
            Ok(s) if s.success() => Some(Mount { path, _dir: dir }),
            other => {
                eprintln!("SKIPPED: cannot mount a tmpfs ({other:?}); this test needs root");
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test]
async fn a_full_disk_is_507_and_not_ready_until_space_is_freed_and_nothing_acknowledged_is_lost() {
    use std::io::Write;
    let Some(mount) = Mount::tmpfs(96) else { return };
    let data = mount.path.join("data");
    let app = TestApp::spawn_with(&data, |s| s.store.min_free_bytes = 8 << 20).await;
    let writer = key(&app, "acme", "writer").await;
    let append = |n: u64| {
        let id = uuid::Uuid::now_v7().to_string();
        (
            id.clone(),
            json!({ "events": [{ "id": id, "type": "note.taken", "data": { "n": n, "pad": "x".repeat(10_000) } }] }),
        )
    };
    let mut acked = Vec::new();
    for n in 0..10 {
        let (id, body) = append(n);
        let (status, answer) = writer.post("/v1/streams/notes/events", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        acked.push(id);
    }
    // Fill the filesystem.
    let filler = mount.path.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    for chunk in [1 << 20, 4096] {
        let bytes = vec![7u8; chunk];
        while file.write_all(&bytes).is_ok() {}
    }
    drop(file);

    let (refused_id, refused) = append(100);
    let response = writer
        .client
        .post(format!("{}/v1/streams/notes/events", writer.base))
        .bearer_auth(&writer.key)
        .json(&refused)
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("retry-after"), "a 507 says when to retry");
    let (status, problem) = support::decode(response).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{problem}");
    assert_eq!(problem["type"], json!("https://annals.dev/problems/insufficient-storage"), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("free"), "the detail names the cause: {problem}");
    let ready = app.client.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE, "not ready while appends are refused");
    assert!(ready.headers().contains_key("retry-after"));

    std::fs::remove_file(&filler).unwrap();
    let ready = app.client.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "ready again once space is freed, without a restart");
    let (status, answer) = writer.post("/v1/streams/notes/events", &refused).await;
    assert_eq!(status, StatusCode::CREATED, "the refused append, retried, is stored now: {answer}");
    acked.push(refused_id);

    app.stop().await;
    let app = TestApp::spawn_with(&data, |s| s.store.min_free_bytes = 8 << 20).await;
    let reader = key(&app, "acme", "reader").await;
    let all = pages(&reader, "/v1/streams/notes/events?limit=1000").await;
    assert_eq!(ids(&all), acked, "every acknowledged event once, in order, after a restart");
    app.stop().await;
}
