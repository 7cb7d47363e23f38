//! The server's memory under reads of large events (issue 13, item 11): the resident set of a
//! spawned `annals serve` (bench profile) while N clients read a page of a stream of ~1 MB events
//! at once, and while N live tails catch up from position 0 — each with the byte bound and the
//! catch-up cap off (`ANNALS_MAX_PAGE_BYTES` 2 GiB, `ANNALS_MAX_CATCHUP_TAILS` 10,000: what a page
//! and the tails cost before they existed) and on (the defaults, and a cap of 2 tails). RSS is
//! sampled from `/proc/PID/status` every 20 ms; figures are the peak above the idle server's.
//!
//! `cargo bench --bench memory` (`ANNALS_BENCH_EVENTS`, default 256 events of 1 MiB;
//! `ANNALS_BENCH_CLIENTS`, default 4; `ANNALS_BENCH_BIN`, another `annals` binary to measure,
//! e.g. `target/release/annals` under `cargo test --bench memory`). Bounded: a few minutes, a
//! few GB of RAM at most.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "annals_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const EVENT_BYTES: usize = 1 << 20;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(data_dir: &std::path::Path, env: &[(&str, String)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // A release build of the server can be given while the client side runs unoptimized.
        let bin = std::env::var("ANNALS_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_annals").to_owned());
        let child = Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .env("ANNALS_ADMIN_KEY", KEY)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run annals serve");
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, addr: format!("127.0.0.1:{port}") }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn stop(mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// Sends a request and reads the response until the server closes it or `until` is seen; the
/// number of bytes read and the status line.
async fn exchange(addr: &str, head: &str, body: &[u8], until: Option<&[u8]>) -> (usize, String) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut total, mut first, mut tail) = (0, Vec::new(), Vec::new());
    loop {
        let n = match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        total += n;
        if first.len() < 64 {
            first.extend_from_slice(&buf[..n.min(64)]);
        }
        if let Some(marker) = until {
            tail.extend_from_slice(&buf[..n]);
            if tail.windows(marker.len()).any(|w| w == marker) {
                break;
            }
            let keep = tail.len().saturating_sub(marker.len());
            tail.drain(..keep);
        }
    }
    let status = String::from_utf8_lossy(&first).lines().next().unwrap_or_default().to_owned();
    (total, status)
}

/// Runs `load` while sampling the server's RSS; the peak (KiB).
async fn peak_rss<F: std::future::Future<Output = Vec<(usize, String)>>>(
    server: &Server,
    load: F,
) -> (u64, Vec<(usize, String)>) {
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let pid = server.child.id();
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let rss = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
                peak.fetch_max(rss, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let results = load.await;
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (peak.load(Ordering::Relaxed), results)
}

/// A tenant's admin key, made with the bootstrap key (an operator's, which reads and appends no
/// data).
async fn tenant_key(addr: &str) -> String {
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{addr}/v1/keys"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({ "tenant": "bench", "role": "admin", "name": "memory-bench" }))
        .send()
        .await
        .expect("create a key")
        .json()
        .await
        .expect("the created key");
    created["key"].as_str().expect("a key").to_owned()
}

fn main() {
    let events = env_or("ANNALS_BENCH_EVENTS", 256);
    let clients = env_or("ANNALS_BENCH_CLIENTS", 4);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data_mib = events * EVENT_BYTES / (1 << 20);
    println!("{events} events of {} KiB ({data_mib} MiB of data) in one stream; {clients} clients", EVENT_BYTES / 1024);
    // Load once, with a server of default settings.
    let loader = Server::start(tmp.path(), &[]);
    let key = runtime.block_on(tenant_key(&loader.addr));
    runtime.block_on(async {
        let payload = "x".repeat(EVENT_BYTES - 256);
        for batch in 0..events.div_ceil(8) {
            let n = 8.min(events - batch * 8);
            let one = format!(r#"{{"type":"blob.stored","data":{{"x":"{payload}"}}}}"#);
            let body = format!(r#"{{"events":[{}]}}"#, vec![one; n].join(","));
            let head = format!(
                "POST /v1/streams/blobs/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let (_, status) = exchange(&loader.addr, &head, body.as_bytes(), None).await;
            assert!(status.contains(" 201 "), "append: {status}");
        }
    });
    loader.stop();
    println!(
        "| load | bounds | clients answered | idle RSS MiB | peak RSS MiB | peak − idle MiB | (peak − idle) / data | RSS 2 s after MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (label, env) in [
        (
            "off (page 2 GiB, 10,000 tails)",
            vec![("ANNALS_MAX_PAGE_BYTES", "2147483648"), ("ANNALS_MAX_CATCHUP_TAILS", "10000")],
        ),
        ("on (page 16 MiB, 2 tails)", vec![("ANNALS_MAX_CATCHUP_TAILS", "2")]),
    ] {
        let env: Vec<(&str, String)> = env.into_iter().map(|(k, v)| (k, v.to_owned())).collect();
        for load in ["page", "tails"] {
            let server = Server::start(tmp.path(), &env);
            std::thread::sleep(Duration::from_secs(2));
            let idle = server.rss_kib();
            let started = Instant::now();
            let (peak, results) = runtime.block_on(peak_rss(&server, async {
                let tasks: Vec<_> = (0..clients)
                    .map(|_| {
                        let (addr, key) = (server.addr.clone(), key.clone());
                        tokio::spawn(async move {
                            let (path, until): (&str, Option<&[u8]>) = match load {
                                "page" => ("/v1/streams/blobs/events?limit=1000", None),
                                _ => ("/v1/events/live?from_position=0", Some(b"caught-up")),
                            };
                            let head = format!(
                                "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n"
                            );
                            exchange(&addr, &head, b"", until).await
                        })
                    })
                    .collect();
                let mut out = Vec::new();
                for task in tasks {
                    out.push(task.await.unwrap());
                }
                out
            }));
            let ok = results.iter().filter(|(_, s)| s.contains(" 200 ")).count();
            std::thread::sleep(Duration::from_secs(2));
            let after = server.rss_kib();
            let mib = |kib: u64| kib as f64 / 1024.0;
            let delta = mib(peak.saturating_sub(idle));
            println!(
                "| {clients} × {} | {label} | {ok} of {clients} 200 ({:.1} s) | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} |",
                if load == "page" { "GET stream ?limit=1000" } else { "live tail from 0" },
                started.elapsed().as_secs_f64(),
                mib(idle),
                mib(peak),
                delta,
                delta / data_mib as f64,
                mib(after)
            );
            server.stop();
        }
    }
}
