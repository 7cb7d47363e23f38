//! `annals export audit|messages` black-box, with the real binary against a real `annals serve`,
//! through a TCP proxy that cuts the connection in the middle of the body: a download cut once is
//! resumed in the same run, one cut more often than the retries is resumed by running the same
//! command again, and either way the file is byte for byte the unbroken export (NDJSON and CSV,
//! with filters); a resume with other filters is refused; the progress bar reaches 100 %.

use crate::serve_support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use serve_support::{Serve, ADMIN_KEY};

fn send(base: &str, method: reqwest::Method, path: &str, key: &str, body: Option<Value>) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut request = reqwest::Client::new().request(method, format!("{base}{path}")).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

fn append(base: &str, key: &str, stream: &str, events: Vec<Value>) -> u64 {
    let (status, text) = send(
        base,
        reqwest::Method::POST,
        &format!("/v1/streams/{stream}/events"),
        key,
        Some(json!({ "events": events })),
    );
    assert_eq!(status, 201, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["last_position"].as_u64().unwrap()
}

/// A proxy to `target` on a port of its own: the first `cuts` connections are cut once `after`
/// bytes of the server's answer went through; later ones pass whole.
fn cutting_proxy(target: &str, after: usize, cuts: usize) -> String {
    let target = target.trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let cut = seen.fetch_add(1, Ordering::SeqCst) < cuts;
            let server = TcpStream::connect(&target).unwrap();
            let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
            });
            std::thread::spawn(move || {
                let (mut server, mut client) = (server, client);
                let (mut passed, mut buf) = (0usize, [0u8; 4096]);
                loop {
                    let n = match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let n = if cut { n.min(after - passed) } else { n };
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    passed += n;
                    if cut && passed >= after {
                        break;
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            });
        }
    });
    base
}

fn export(base: &str, key: &str, what: &str, output: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["export", what, "--output"])
        .arg(output)
        .args(args)
        .env("ANNALS_URL", base)
        .env("ANNALS_KEY", key)
        .output()
        .expect("run annals export")
}

fn audit(target: &str, action: &str) -> Value {
    json!({ "type": "audit.recorded", "data": {
        "actor": { "id": "user-1", "type": "user", "name": "Ada" },
        "action": action,
        "crud": "update",
        "target": { "type": "template", "id": target },
        "outcome": "success",
        "occurred_at": "2026-11-24T10:00:00Z"
    } })
}

#[test]
fn exports_cut_mid_way_resume_to_the_unbroken_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Serve::start(&tmp.path().join("data"), &[]);
    let body = json!({ "tenant": "acme", "role": "admin", "name": "export" });
    let (status, text) = send(&server.base, reqwest::Method::POST, "/v1/keys", ADMIN_KEY, Some(body));
    assert_eq!(status, 201, "{text}");
    let key = serde_json::from_str::<Value>(&text).unwrap()["key"].as_str().unwrap().to_owned();
    // Enough for several chunks of the body (the server writes 512 positions a chunk).
    let mut last = 0;
    for batch in 0..6 {
        let events = (0..200)
            .map(|i| audit(&format!("t-{batch}-{i}"), if i % 2 == 0 { "template.updated" } else { "key.created" }))
            .collect();
        append(&server.base, &key, "audit-template", events);
        for m in 0..20 {
            let id = format!("m{batch}-{m}");
            let enqueued = json!({ "type": "message.enqueued", "data": { "message_id": id, "recipient": { "email": "ada@example.com" }, "channel": if m % 2 == 0 { "email" } else { "sms" } } });
            last = append(&server.base, &key, &format!("message-{id}"), vec![enqueued]);
        }
    }
    let size = loop {
        let (_, head) = send(&server.base, reqwest::Method::GET, "/v1/integrity/head?fresh=true", &key, None);
        let size = serde_json::from_str::<Value>(&head).unwrap()["tree_size"].as_u64().unwrap();
        if size > last {
            break size.to_string();
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    };

    // Messages, NDJSON, a filter: cut once in the middle, resumed within the same run.
    let args = ["--tree-size", &size, "--channel", "email"];
    let full = tmp.path().join("messages-full.ndjson");
    let out = export(&server.base, &key, "messages", &full, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("100%"), "a progress bar to the end");
    let full = std::fs::read(&full).unwrap();
    let records = String::from_utf8_lossy(&full).matches("\"kind\":\"record\"").count();
    assert_eq!(records, 60, "the email messages only");
    let proxy = cutting_proxy(&server.base, full.len() / 2, 1);
    let cut = tmp.path().join("messages-cut.ndjson");
    let out = export(&proxy, &key, "messages", &cut, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming"), "the connection was cut: {stderr}");
    assert!(std::fs::read(&cut).unwrap() == full, "the resumed messages export is the unbroken one, byte for byte");

    // Audit, CSV, a filter: cut more often than the retries, so the run fails and leaves the
    // partial file; the same command resumes it. Other filters on that file are refused.
    let args = ["--tree-size", &size, "--format", "csv", "--action", "template.*"];
    let full = tmp.path().join("audit-full.csv");
    let out = export(&server.base, &key, "audit", &full, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let full = std::fs::read(&full).unwrap();
    assert_eq!(String::from_utf8_lossy(&full).matches(",record,").count(), 600);
    // Each attempt gets a few lines only, so that the retries run out.
    let proxy = cutting_proxy(&server.base, 4096, usize::MAX);
    let cut = tmp.path().join("audit-cut.csv");
    let out = export(&proxy, &key, "audit", &cut, &args);
    assert!(!out.status.success(), "every connection was cut");
    let partial = std::fs::read(&cut).unwrap();
    assert!(!partial.is_empty() && partial.len() < full.len(), "{} of {} bytes", partial.len(), full.len());
    let other = ["--tree-size", &size, "--format", "csv", "--action", "key.*"];
    let out = export(&server.base, &key, "audit", &cut, &other);
    assert!(!out.status.success(), "a resume with other filters is refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another export"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = export(&server.base, &key, "audit", &cut, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&cut).unwrap() == full, "the audit export resumed in a later run is the unbroken one");
    assert!(!tmp.path().join("audit-cut.csv.export.json").exists(), "the state file goes once complete");
}
