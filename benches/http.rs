//! The HTTP API under load: `annals serve` (the release binary, a child process with its own
//! data directory) driven over loopback by this process, against the embedded store driven
//! in-process with the same shapes in the same run, so the figure is also a ratio: what HTTP,
//! JSON, auth, schema validation and tenancy cost on top of the store.
//!
//! `cargo bench --bench http` prints a markdown table for BENCHMARKS.md. Environment:
//! `BENCH_DIR` (default /var/tmp/annals-http-bench), `BENCH_SECS` (10 per measure),
//! `BENCH_LIVE_RATE` (8,000 single-event appends per second, paced: the live-lag measure) and
//! `BENCH_LIVE_SECS` (20), `BENCH_MEASURES` (`batches,singles,live` by default: a subset runs
//! only those, e.g. `singles` while working on that figure), `BENCH_SERVER_BIN` (the `annals`
//! binary to serve, default this build's: set it to a copy of an earlier build to compare two
//! builds in alternating runs).
//! Shapes, from issue 3: batches of 100 events over 16 connections; single events over 64
//! connections. The load generator shares the machine's two cores with the server, which the
//! ratios include.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "http/cpu.rs"]
mod cpu;

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{EventData, EventStore, ExpectedRevision, StreamId};
use bytes::Bytes;
use cpu::Cpu;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "annals_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn main() -> anyhow::Result<()> {
    let root =
        std::path::PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/annals-http-bench".into()));
    let secs = Duration::from_secs(std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("event: `message.enqueued`, {} bytes of JSON data", sample_data(0, 0).to_string().len());
    // The server inherits this process's environment, so its settings are the ones printed.
    let setting = |name: &str| std::env::var(name).unwrap_or_else(|_| "default".into());
    println!(
        "server: {}, ANNALS_PROJECTOR_PRIORITY={}, ANNALS_PROJECTOR_PARALLELISM={}",
        std::env::var("BENCH_SERVER_BIN").unwrap_or_else(|_| "this build".into()),
        setting("ANNALS_PROJECTOR_PRIORITY"),
        setting("ANNALS_PROJECTOR_PARALLELISM")
    );
    println!();
    println!(
        "| measure | HTTP (`annals serve`) | in-process store, same shape | ratio | cores busy: server / generator | server CPU per event, µs: API / store / views / ended threads | CPU stolen by the hypervisor |"
    );
    println!("|---|---|---|---|---|---|---|");
    rt.block_on(async {
        let mut server = Server::start(&root.join("serve"))?;
        let result = run(&server, &root, secs).await;
        server.stop();
        result
    })?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

async fn run(server: &Server, root: &std::path::Path, secs: Duration) -> anyhow::Result<()> {
    let key = server.create_key("bench", "writer").await?;
    let store = EmbeddedStore::open(EngineConfig::new(root.join("store"))).await?;

    let measures = std::env::var("BENCH_MEASURES").unwrap_or_else(|_| "batches,singles,live".into());
    let wanted = |m: &str| measures.split(',').any(|w| w.trim() == m);
    // Every HTTP measure starts with the projection caught up, so that none inherits the
    // indexing backlog of the one before it.
    let mut ends = Vec::new();
    for (name, measure, connections, batch) in [
        ("batches", "batches of 100 events, 16 connections", 16, 100),
        ("single events", "single events, 64 connections", 64, 1),
    ] {
        if !wanted(if batch == 1 { "singles" } else { "batches" }) {
            continue;
        }
        let settled = settle(server).await?;
        let run = if batch == 1 { 's' } else { 'b' };
        let (http, cpu) = http_load(server, &key, run, connections, batch, secs, None).await?;
        let after = server.projection().await?;
        let local = store_load(&store, connections, batch, secs).await?;
        row(measure, &http, &local, &cpu);
        ends.push((name, after, settled));
    }
    // The server's `messages` projection indexes every appended event while the load runs.
    println!();
    for (name, p, settled) in ends {
        println!(
            "`messages` projection at the end of the {name} run: lag {} events / {:.1} s, {} parked \
             (before the run, the backlog of the runs before it took {settled:.1} s to clear)",
            p["lag_events"],
            p["lag_seconds"].as_f64().unwrap_or(f64::NAN),
            p["parked_events"]
        );
    }
    if wanted("live") {
        live_lag(server, &key).await?;
    }
    store.close().await?;
    Ok(())
}

/// Issue 4's live lag: single-event appends at a steady rate the machine can sustain (not the
/// closed-loop maximum above, where appends and indexing compete for every cycle and appends
/// win by design), with the `messages` projection's lag sampled twice a second.
async fn live_lag(server: &Server, key: &str) -> anyhow::Result<()> {
    let rate = env_f64("BENCH_LIVE_RATE", 8_000.0);
    let secs = Duration::from_secs_f64(env_f64("BENCH_LIVE_SECS", 20.0));
    let settled = settle(server).await?;
    let sampler = {
        let (url, key) = (server.url.clone(), ADMIN_KEY.to_owned());
        tokio::spawn(async move {
            let (mut max, mut samples) = (0f64, Vec::new());
            let end = Instant::now() + secs;
            while Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let p = Server::projection_at(&url, &key).await?;
                let lag = p["lag_seconds"].as_f64().unwrap_or(f64::NAN);
                max = max.max(lag);
                samples.push(lag);
            }
            anyhow::Ok((max, samples))
        })
    };
    let (http, cpu) = http_load(server, key, 'l', 64, 1, secs, Some(rate)).await?;
    let (max, samples) = sampler.await??;
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    println!();
    println!(
        "live lag, single-event appends paced at {rate:.0}/s for {} s: achieved {:.0} events/s (p99 {:.1} ms); \
         `messages` projection lag sampled every 0.5 s: median {p50:.2} s, max {max:.2} s \
         (the backlog of the runs above took {settled:.1} s to clear first); server CPU {:.0} µs per \
         event (API / store / views / ended threads: {} µs), the projections keeping up",
        secs.as_secs(),
        http.events_per_sec,
        http.hist.value_at_quantile(0.99) as f64 / 1000.0,
        cpu.cores().0 / http.events_per_sec * 1e6,
        cpu.per_event(http.events_per_sec),
    );
    Ok(())
}

/// Waits (two minutes at most) until the `messages` projection has no backlog; returns the
/// seconds it took.
async fn settle(server: &Server) -> anyhow::Result<f64> {
    let start = Instant::now();
    while server.projection().await?["lag_events"].as_u64() != Some(0) && start.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Load {
    events_per_sec: f64,
    hist: Histogram<u64>,
}

fn row(name: &str, http: &Load, local: &Load, cpu: &Cpu) {
    let fmt = |l: &Load| {
        format!(
            "{:.0} events/s, p50 {:.1} ms, p99 {:.1} ms",
            l.events_per_sec,
            l.hist.value_at_quantile(0.5) as f64 / 1000.0,
            l.hist.value_at_quantile(0.99) as f64 / 1000.0
        )
    };
    let (server, generator) = cpu.cores();
    println!(
        "| {name} | {} | {} | {:.2} | {server:.2} / {generator:.2} | {} | {:.0}% |",
        fmt(http),
        fmt(local),
        http.events_per_sec / local.events_per_sec,
        cpu.per_event(http.events_per_sec),
        cpu.steal() * 100.0
    );
}

/// `connections` tasks, each with its own HTTP/1.1 connection, appending `batch` events per
/// request to streams of their own (ids tagged with `run`) for `secs`; latency per request.
///
/// The generator shares the server's two cores, so it is kept light: a raw hyper connection per
/// task (no client pool, no URL parsing per request) and request bodies built before the clock
/// starts (a few per task, reused across requests with the message id patched in: the server
/// parses, validates and stores every one in full, and event ids are assigned by the server).
async fn http_load(
    server: &Server,
    key: &str,
    run: char,
    connections: usize,
    batch: usize,
    secs: Duration,
    rate: Option<f64>,
) -> anyhow::Result<(Load, Cpu)> {
    // Paced: each connection sends its share of `rate` requests per second on a fixed schedule,
    // the connections' schedules staggered over one interval. (Without the stagger all of them
    // fired at the same instants: bursts of 64 requests, whose last ones waited for the first
    // 63, so the paced p99 measured the burst, not the rate.)
    let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r));
    let mut senders = Vec::new();
    for _ in 0..connections {
        let tcp = tokio::net::TcpStream::connect(&server.addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        senders.push(sender);
    }
    let authorization = format!("Bearer {key}");
    let before = Cpu::now(server.child.id())?;
    let deadline = Instant::now() + secs;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut sender) in senders.into_iter().enumerate() {
        let authorization = authorization.clone();
        let host = server.addr.clone();
        // Every event of a request is about the request's message (its stream is
        // `message-{id}`), as the `messages` projection running in the server expects; the id
        // is patched into pre-built bodies at known offsets, so building a request stays cheap.
        let bodies: Vec<(Vec<u8>, Vec<usize>)> = (0..BODIES_PER_CONNECTION)
            .map(|b| {
                let events: Vec<Value> = (0..batch)
                    .map(|e| {
                        let mut data = sample_data(c, b * batch + e);
                        data["message_id"] = json!(ID_PLACEHOLDER);
                        json!({ "type": "message.enqueued", "data": data })
                    })
                    .collect();
                let body = serde_json::to_vec(&json!({ "events": events })).expect("json");
                let offsets = body
                    .windows(ID_PLACEHOLDER.len())
                    .enumerate()
                    .filter(|(_, w)| *w == ID_PLACEHOLDER.as_bytes())
                    .map(|(at, _)| at)
                    .collect();
                (body, offsets)
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let mut events = 0u64;
            let mut i = 0usize;
            while Instant::now() < deadline {
                if let Some(interval) = interval {
                    let offset = interval.mul_f64(c as f64 / connections as f64);
                    tokio::time::sleep_until((started + offset + interval * i as u32).into()).await;
                }
                // Unique across the runs of one server, so each run's events make new messages
                // (reused ids once made a run append to the long timelines of an earlier one).
                let id = format!("{run}{c:03}-{i:09}");
                let (template, offsets) = &bodies[i % bodies.len()];
                let mut body = template.clone();
                for at in offsets {
                    body[*at..*at + ID_PLACEHOLDER.len()].copy_from_slice(id.as_bytes());
                }
                let request = hyper::Request::post(format!("/v1/streams/message-{id}/events"))
                    .header("host", &host)
                    .header("authorization", &authorization)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))?;
                let t = Instant::now();
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                anyhow::ensure!(status == 201, "append answered {status}: {}", String::from_utf8_lossy(&body));
                hist.record(t.elapsed().as_micros() as u64)?;
                events += batch as u64;
                i += 1;
            }
            anyhow::Ok((events, hist))
        }));
    }
    let load = collect(tasks, started).await?;
    let cpu = Cpu::now(server.child.id())?.since(&before);
    Ok((load, cpu))
}

/// Request bodies each connection cycles through.
const BODIES_PER_CONNECTION: usize = 16;

/// Stands for the message id in pre-built bodies: as long as the ids patched in (`rccc-iiiiiiiii`).
const ID_PLACEHOLDER: &str = "XXXX-XXXXXXXXX";

/// The same shape straight into the embedded store.
async fn store_load(store: &EmbeddedStore, tasks_n: usize, batch: usize, secs: Duration) -> anyhow::Result<Load> {
    let deadline = Instant::now() + secs;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..tasks_n {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let mut events = 0u64;
            let mut i = 0usize;
            while Instant::now() < deadline {
                let batch_events: Vec<EventData> = (0..batch)
                    .map(|e| EventData::json("message.enqueued", &sample_data(c, i * batch + e)).expect("json"))
                    .collect();
                let stream = StreamId::new(format!("bench/message-{c}-{i}"))?;
                let t = Instant::now();
                store.append_to_stream(&stream, ExpectedRevision::Any, batch_events).await?;
                hist.record(t.elapsed().as_micros() as u64)?;
                events += batch as u64;
                i += 1;
            }
            anyhow::Ok((events, hist))
        }));
    }
    collect(tasks, started).await
}

/// One load task's result: events appended and request latencies.
type TaskResult = tokio::task::JoinHandle<anyhow::Result<(u64, Histogram<u64>)>>;

async fn collect(tasks: Vec<TaskResult>, started: Instant) -> anyhow::Result<Load> {
    let mut hist = Histogram::<u64>::new(3)?;
    let mut events = 0;
    for t in tasks {
        let (n, h) = t.await??;
        events += n;
        hist.add(h)?;
    }
    Ok(Load { events_per_sec: events as f64 / started.elapsed().as_secs_f64(), hist })
}

/// A realistic `message.enqueued` (valid for its schema), about 450 bytes.
fn sample_data(c: usize, i: usize) -> Value {
    json!({
        "message_id": format!("01HZX3K9M2Q7R4T8V6W1-{c:04}-{i:09}"),
        "recipient": { "id": format!("user-{c}-{i}"), "email": format!("user{c}.{i}@example.com"), "phone": "+14155550123" },
        "notification": "order-shipped",
        "template": { "id": "tmpl_8f3a2c", "version": 12 },
        "channel": "email",
        "tags": ["transactional", "orders", "priority-normal"],
        "subject": "Your order #48213 has shipped — track it from your account page",
        "occurred_at": "2026-11-24T17:42:10.123456Z"
    })
}

/// `annals serve` as a child process.
struct Server {
    child: Child,
    /// `127.0.0.1:port`
    addr: String,
    url: String,
}

impl Server {
    fn start(dir: &std::path::Path) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let bin = std::env::var("BENCH_SERVER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_annals").into());
        let child = Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir)
            .env("ANNALS_ADMIN_KEY", ADMIN_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let addr = format!("127.0.0.1:{port}");
        let url = format!("http://{addr}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "annals serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Server { child, addr, url })
    }

    async fn create_key(&self, tenant: &str, role: &str) -> anyhow::Result<String> {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/keys", self.url))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({ "tenant": tenant, "role": role }))
            .send()
            .await?;
        let body: Value = response.json().await?;
        Ok(body["key"].as_str().ok_or_else(|| anyhow::anyhow!("no key in {body}"))?.to_owned())
    }

    /// `GET /v1/projections/messages` (admin).
    async fn projection(&self) -> anyhow::Result<Value> {
        Server::projection_at(&self.url, ADMIN_KEY).await
    }

    /// The `messages` projection's progress, from a task that does not hold the server.
    async fn projection_at(url: &str, key: &str) -> anyhow::Result<Value> {
        let response =
            reqwest::Client::new().get(format!("{url}/v1/projections/messages")).bearer_auth(key).send().await?;
        Ok(response.json().await?)
    }

    fn stop(&mut self) {
        // SIGTERM: the server finishes its requests and closes the store.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}
