//! `annals serve` under hostile or careless clients, as a real process: slowloris connections
//! beyond the connection cap under a low descriptor limit leave `/healthz` and appends
//! responsive; SIGTERM does not wait for a live tail whose client stopped reading; the
//! descriptor soft limit is raised to the hard one at start-up and logged.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ADMIN_KEY: &str = "annals_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// `annals serve` on a free port under `prlimit --nofile=SOFT:HARD`, with `env`; its stderr goes
/// to `log`. Returns the child and its address once it accepts connections.
fn serve(data_dir: &std::path::Path, nofile: &str, env: &[(&str, &str)], log: &std::path::Path) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("prlimit")
        .arg(format!("--nofile={nofile}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_annals"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .env("ANNALS_ADMIN_KEY", ADMIN_KEY)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("run prlimit annals serve");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "annals serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, format!("127.0.0.1:{port}"))
}

/// Waits up to `limit` for the child to exit; its exit status, or `None` (then it is killed).
fn exited_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn sigterm(child: &Child) {
    assert!(Command::new("kill").arg(child.id().to_string()).status().unwrap().success());
}

/// One request on a new connection; the status and body, or an error if none came in `limit`.
async fn request(
    addr: &str,
    key: &str,
    method: &str,
    path: &str,
    body: &str,
    limit: Duration,
) -> Result<(u16, String), String> {
    let exchange = async {
        let mut socket = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no status: {text:?}"))?;
        Ok((status, text))
    };
    tokio::time::timeout(limit, exchange).await.map_err(|_| format!("no answer within {limit:?}"))?
}

/// A tenant's admin key, made with the bootstrap key (an operator's, which reads and appends no
/// data).
async fn tenant_key(addr: &str) -> String {
    let body = r#"{"tenant":"acme","role":"admin","name":"limits-test"}"#;
    let (status, text) = request(addr, ADMIN_KEY, "POST", "/v1/keys", body, Duration::from_secs(30)).await.unwrap();
    assert_eq!(status, 201, "{text}");
    let json = text.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    let created: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"));
    created["key"].as_str().expect("a key").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_beyond_the_cap_under_a_low_descriptor_limit_leave_the_server_responsive() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("serve.log");
    // 256 descriptors: the server fits its connection cap under it (1,024 by default).
    let env = [("ANNALS_HEADER_TIMEOUT_SECS", "1"), ("ANNALS_LOG", "info")];
    let (mut child, addr) = serve(&tmp.path().join("data"), "256:256", &env, &log);
    let key = tenant_key(&addr).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    // 300 connections, more than the descriptors the server has: half send nothing, half send a
    // request head a byte at a time; each reconnects when the server closes it, until the end.
    for i in 0..300 {
        let (stop, addr) = (Arc::clone(&stop), addr.clone());
        attackers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut socket) = TcpStream::connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if i % 2 == 0 {
                    let mut buf = [0u8; 64];
                    let _ = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buf)).await;
                } else {
                    for b in b"POST /v1/streams/a/events HTTP/1.1\r\nhost: x\r\nx-a: ".iter().cycle() {
                        if stop.load(Ordering::Relaxed) || socket.write_all(&[*b]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let body = r#"{"events":[{"type":"thing.done","data":{"n":1}}]}"#;
    for round in 0..3 {
        let started = Instant::now();
        let health = request(&addr, &key, "GET", "/healthz", "", Duration::from_secs(10)).await;
        assert_eq!(health.as_ref().map(|(s, _)| *s), Ok(200), "round {round}: /healthz under attack: {health:?}");
        let append = request(&addr, &key, "POST", "/v1/streams/thing-1/events", body, Duration::from_secs(10)).await;
        assert_eq!(append.as_ref().map(|(s, _)| *s), Ok(201), "round {round}: an append under attack: {append:?}");
        eprintln!("round {round}: /healthz and an append answered in {:?}", started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.abort();
    }
    sigterm(&child);
    let status = exited_within(&mut child, Duration::from_secs(30)).expect("a clean shutdown");
    assert!(status.success(), "{}", std::fs::read_to_string(&log).unwrap());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("ANNALS_MAX_CONNECTIONS does not fit the descriptor limit"), "{log}");
}

#[tokio::test]
async fn sigterm_does_not_wait_for_a_live_tail_whose_client_stopped_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("serve.log");
    let (mut child, addr) = serve(&tmp.path().join("data"), "4096:4096", &[("ANNALS_SHUTDOWN_GRACE_SECS", "20")], &log);
    // Far more history than the socket buffers hold.
    let data = "x".repeat(4000);
    let events: Vec<String> = (0..250).map(|_| format!(r#"{{"type":"thing.done","data":{{"x":"{data}"}}}}"#)).collect();
    let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
    let key = tenant_key(&addr).await;
    for _ in 0..12 {
        let (status, text) =
            request(&addr, &key, "POST", "/v1/streams/thing-1/events", &body, Duration::from_secs(30)).await.unwrap();
        assert_eq!(status, 201, "{text}");
    }
    // A client with a small receive buffer that never reads.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tail = socket.connect(addr.parse().unwrap()).await.unwrap();
    let head =
        format!("GET /v1/events/live?from_position=0 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\r\n");
    tail.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let signalled = Instant::now();
    sigterm(&child);
    let status = exited_within(&mut child, Duration::from_secs(5));
    let log = std::fs::read_to_string(&log).unwrap();
    let status = status.unwrap_or_else(|| panic!("still running 5 s after SIGTERM with a 20 s grace: {log}"));
    assert!(status.success(), "a clean shutdown: {log}");
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    drop(tail);
}

#[test]
fn the_descriptor_soft_limit_is_raised_to_the_hard_limit_at_start_and_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("serve.log");
    let (mut child, _) = serve(&tmp.path().join("data"), "300:3000", &[("ANNALS_LOG", "info")], &log);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_owned();
    sigterm(&child);
    assert!(exited_within(&mut child, Duration::from_secs(30)).is_some_and(|s| s.success()));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], ["3000", "3000"], "{line}");
    let log = without_colours(&std::fs::read_to_string(&log).unwrap());
    let logged = log.lines().find(|l| l.contains("descriptor limit")).unwrap_or_else(|| panic!("{log}"));
    assert!(
        logged.contains("soft=3000") && logged.contains("hard=3000") && logged.contains("soft_at_start=300"),
        "{logged}"
    );
}

/// `text` without ANSI colour sequences (the log's fields are coloured).
fn without_colours(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
