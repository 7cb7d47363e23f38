//! A real browser on the live tail: headless Debian `chromium` (scripts/test.sh installs it)
//! loads a page from another origin (a server in this test, on its own loopback port, the one
//! origin in `ANNALS_CORS_ORIGINS`), whose `EventSource` opens the live tail with a live-tail
//! token (minted here, handed over in the page's URL fragment: the page holds no key). The
//! tail goes through a proxy in this test; once the page has the first events, the proxy drops
//! every connection, more events are appended, and the browser must resume on its own with
//! `Last-Event-ID`: every event arrives, none twice. The page reports what it receives by
//! `POST /report` to its own server.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{append_n, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

const PAGE: &str = r#"<!doctype html>
<html><body><script>
const params = new URLSearchParams(location.hash.slice(1));
let n = 0;
const report = (body) => { body.n = n++; fetch("/report", { method: "POST", body: JSON.stringify(body) }); };
const url = params.get("api") + "/v1/events/live?from_position=0&access_token=" + params.get("token");
const source = new EventSource(url);
source.onopen = () => report({ kind: "open" });
source.onerror = () => report({ kind: "error", state: source.readyState });
source.onmessage = (e) => report({ kind: "event", id: e.lastEventId, position: JSON.parse(e.data).position });
</script></body></html>"#;

/// Serves `PAGE` at `/` and forwards every `POST /report` body to `reports`.
async fn page_server(listener: TcpListener, reports: mpsc::UnboundedSender<Value>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else { return };
        let reports = reports.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let head_end = loop {
                let mut chunk = [0u8; 4096];
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap_or(0));
            while buf.len() < head_end + length {
                let mut chunk = [0u8; 4096];
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let response = if head.starts_with("get / ") {
                format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PAGE}", PAGE.len())
            } else if head.starts_with("post /report ") {
                if let Ok(report) = serde_json::from_slice::<Value>(&buf[head_end..head_end + length]) {
                    let _ = reports.send(report);
                }
                "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_owned()
            } else {
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
            };
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

/// Forwards connections to `target`, keeping the first bytes each client sent (its request
/// head); every connection open when `drop_all` changes is cut.
async fn proxy(listener: TcpListener, target: String, heads: Arc<Mutex<Vec<String>>>, drop_all: watch::Receiver<u32>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else { return };
        let (target, heads, mut drop_all) = (target.clone(), Arc::clone(&heads), drop_all.clone());
        tokio::spawn(async move {
            drop_all.borrow_and_update();
            let Ok(mut server) = TcpStream::connect(&target).await else { return };
            let mut first = vec![0u8; 8192];
            let Ok(n) = client.read(&mut first).await else { return };
            heads.lock().unwrap().push(String::from_utf8_lossy(&first[..n]).to_ascii_lowercase());
            if server.write_all(&first[..n]).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = drop_all.changed() => {}
            }
        });
    }
}

/// Kills the browser when the test ends, however it ends.
struct Browser(std::process::Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reports until `n` of `kind` have come, within 40 s (or a failure that shows what the page
/// reported and what it sent through the proxy).
async fn wait_for(
    reports: &mut mpsc::UnboundedReceiver<Value>,
    seen: &mut Vec<Value>,
    heads: &Mutex<Vec<String>>,
    kind: &str,
    n: usize,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while seen.iter().filter(|r| r["kind"] == kind).count() < n {
        let report = tokio::time::timeout_at(deadline, reports.recv())
            .await
            .unwrap_or_else(|_| {
                let heads = heads.lock().unwrap();
                panic!("{n} {kind} reports within 40 s; the page reported {seen:?}; it sent {heads:?}")
            })
            .expect("the page server runs");
        seen.push(report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_source_in_chromium_tails_across_origins_and_resumes_after_a_dropped_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let page_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", page_listener.local_addr().unwrap());
    let app = TestApp::spawn_with(tmp.path(), |s| s.http.cors_origins = vec![origin.clone()]).await;
    let operator = app.as_operator();
    let (_, writer) = operator.post("/v1/keys", &json!({ "tenant": "web", "role": "writer" })).await;
    let (_, reader) = operator.post("/v1/keys", &json!({ "tenant": "web", "role": "reader" })).await;
    let writer = app.with_key(writer["key"].as_str().unwrap());
    let reader = app.with_key(reader["key"].as_str().unwrap());
    let first = append_n(&writer, "message-1", "message.sent", 3).await["first_position"].as_u64().unwrap();
    let (status, minted) = reader.post("/v1/live-tokens", &json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");

    let (report_tx, mut reports) = mpsc::unbounded_channel();
    tokio::spawn(page_server(page_listener, report_tx));
    let proxy_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", proxy_listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (drop_tx, drop_rx) = watch::channel(0u32);
    tokio::spawn(proxy(proxy_listener, app.base.trim_start_matches("http://").to_owned(), Arc::clone(&heads), drop_rx));

    let profile = tmp.path().join("chromium-profile");
    let url = format!("{origin}/#api={api}&token={}", minted["token"].as_str().unwrap());
    let _browser = Browser(
        std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
            .args(["--disable-extensions", "--disable-background-networking", "--mute-audio"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromium runs (scripts/test.sh installs it: apt-get install chromium)"),
    );

    let mut seen = Vec::new();
    wait_for(&mut reports, &mut seen, &heads, "event", 3).await;
    // Cut the connection under the page; what is appended meanwhile must still arrive, once.
    drop_tx.send(1).unwrap();
    let next = append_n(&writer, "message-2", "message.sent", 2).await["first_position"].as_u64().unwrap();
    wait_for(&mut reports, &mut seen, &heads, "event", 5).await;
    seen.sort_by_key(|r| r["n"].as_u64());

    let positions: Vec<u64> =
        seen.iter().filter(|r| r["kind"] == "event").map(|r| r["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, [first, first + 1, first + 2, next, next + 1], "every event once, in order: {seen:?}");
    assert!(seen.iter().filter(|r| r["kind"] == "event").all(|r| r["id"] == json!(r["position"].to_string())));
    let kinds: Vec<&str> = seen.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    let dropped = kinds.iter().position(|k| *k == "error").expect("the page saw the connection drop");
    assert!(kinds[dropped..].contains(&"open"), "and opened it again: {kinds:?}");
    let heads = heads.lock().unwrap().clone();
    let tails: Vec<&String> = heads.iter().filter(|h| h.starts_with("get /v1/events/live")).collect();
    assert!(tails.len() >= 2, "{heads:?}");
    assert!(tails.iter().all(|h| h.contains(&format!("origin: {origin}"))), "a cross-origin request: {tails:?}");
    assert!(!tails[0].contains("authorization:"), "no key: {tails:?}");
    assert!(
        tails[1].contains(&format!("last-event-id: {}", first + 2)),
        "the browser resumed after the last event it had: {tails:?}"
    );
    app.stop().await;
}
