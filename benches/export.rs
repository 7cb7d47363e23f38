//! Issue 17's export and Merkle-upkeep figures, each next to its peer measured in the same run:
//!
//! 1. Export throughput: a log of N `audit.recorded` events (three tenants taking turns by batch,
//!    so the exporting tenant owns a third) is written in-process; the store's own catch-up read
//!    (`read_all` forwards, 512 events a page, the export's page) is timed over it in-process;
//!    then a spawned `annals serve` on the same directory re-feeds its tree from the log and
//!    serves `GET /v1/audit/export` as NDJSON and as CSV to a client on loopback that counts the
//!    bytes. Figures: positions/s of each, and the ratio to the catch-up read.
//! 2. Server memory while exporting: the server's RSS (`VmRSS`, and `RssAnon`, the heap's part)
//!    sampled every 20 ms during each export, at each N of `BENCH_EXPORT_EVENTS` (default
//!    1,000,000 then 10,000,000: the log is extended between the steps, and the server restarted).
//! 3. Merkle upkeep on appends: the store's append rate with the integrity follower running
//!    (what `annals serve` does: the tree fed from `$all` off the writer) and without it, single
//!    events (16 writers) and batches of 1,000, alternating A/B runs of `BENCH_UPKEEP_SECS` (5)
//!    each, `BENCH_UPKEEP_ROUNDS` (3) rounds; also how far the tree lags at the end of a run.
//!
//! `cargo bench --bench export`. `BENCH_DIR` (default /var/tmp/annals-export-bench; removed at the
//! end); `BENCH_EXPORT_EVENTS` (comma-separated steps); `ANNALS_BENCH_BIN` (the server binary).
//! Disk: ~450 bytes of log and ~72 bytes of tree per event (10 M events: ~5 GB).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{Direction, EventData, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom, StreamId};

const KEY: &str = "annals_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const BATCH: usize = 1_000;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn audit_event(i: u64) -> EventData {
    let data = serde_json::json!({
        "actor": { "id": format!("user-{}", i % 1000), "type": "user", "name": "Ada Lovelace" },
        "action": if i.is_multiple_of(3) { "template.updated" } else { "message.sent" },
        "crud": "update",
        "target": { "type": "template", "id": format!("tmpl-{}", i % 5000), "name": "Order shipped" },
        "outcome": "success",
        "request_id": format!("req-{i}"),
        "occurred_at": "2026-11-23T17:42:10Z"
    });
    EventData::json("audit.recorded", &data).expect("serializes")
}

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env_or("BENCH_DIR", "/var/tmp/annals-export-bench"));
    let steps: Vec<u64> = env_or("BENCH_EXPORT_EVENTS", "1000000,10000000")
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let upkeep_secs: u64 = env_or("BENCH_UPKEEP_SECS", "5").parse()?;
    let rounds: usize = env_or("BENCH_UPKEEP_ROUNDS", "3").parse()?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let sample = audit_event(7);
    println!("event: {} bytes of JSON data, type `audit.recorded`", sample.data().len());

    if upkeep_secs > 0 {
        rt.block_on(upkeep(&root.join("upkeep"), upkeep_secs, rounds))?;
    }

    let dir = root.join("log");
    println!();
    println!("| log positions | catch-up read (in-process) | export NDJSON | ratio | export CSV | ratio | server VmRSS before → peak (+growth), MiB, NDJSON / CSV | RssAnon, the same |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut first_size: Option<u64> = None;
    for &n in &steps {
        let (read_rate, len) = rt.block_on(async {
            let store = EmbeddedStore::open(EngineConfig::new(&dir)).await?;
            let len = fill(&store, n).await?;
            // The catch-up read, timed alone (the server is not running).
            let started = Instant::now();
            let mut next = 0u64;
            while next < len {
                let page = store
                    .read_all(ReadFrom::At(Position::from_code(next)), Direction::Forwards, 512, &EventFilter::all())
                    .await?;
                next = page.last().map_or(len, |e| e.position.code() + 1);
                std::hint::black_box(&page);
            }
            let rate = len as f64 / started.elapsed().as_secs_f64();
            drop(store);
            anyhow::Ok((rate, len))
        })?;
        let mut server = Server::start(&dir);
        let key = rt.block_on(server.reader_key())?;
        let fed = Instant::now();
        let size = rt.block_on(server.head_covering(&key, len))?;
        eprintln!("{n}: the tree re-fed {size} leaves from the log in {:.1} s", fed.elapsed().as_secs_f64());
        // The views catch up on the log at start too: the export is measured once they have, as
        // on a server in its steady state.
        rt.block_on(server.views_caught_up())?;
        eprintln!("{n}: the views caught up after {:.1} s", fed.elapsed().as_secs_f64());
        eprintln!("{n}: the server was idle after {:.1} s more", server.wait_idle());
        // Repeats (`BENCH_EXPORT_REPEAT`, default 1): the peak of each, to tell a cache filling
        // up from memory that grows with every export.
        let repeat: usize = env_or("BENCH_EXPORT_REPEAT", "1").parse()?;
        for _ in 1..repeat {
            let again = rt.block_on(server.export(&key, size, "ndjson"))?;
            eprintln!(
                "{n}: NDJSON again: {:.0} positions/s, RSS {} MiB, RssAnon {} MiB",
                again.rate,
                again.memory(false),
                again.memory(true)
            );
        }
        // Flat memory, on one server: the first step's positions exported again here, right
        // before all of them (a server's own RSS moves with its views, so growth over the RSS
        // before each export is compared, not peaks across servers).
        if let Some(&first) = first_size.as_ref() {
            let small = rt.block_on(server.export(&key, first, "ndjson"))?;
            println!(
                "| {size} (its first {first} exported) | | {:.0} positions/s | | | | {} | {} |",
                small.rate,
                small.memory(false),
                small.memory(true)
            );
        }
        let ndjson = rt.block_on(server.export(&key, size, "ndjson"))?;
        let csv = rt.block_on(server.export(&key, size, "csv"))?;
        first_size.get_or_insert(size);
        server.stop();
        eprintln!("{n}: NDJSON {} MiB, CSV {} MiB", ndjson.bytes >> 20, csv.bytes >> 20);
        println!(
            "| {size} | {:.0} events/s | {:.0} positions/s | {:.2} | {:.0} positions/s | {:.2} | {} / {} | {} / {} |",
            read_rate,
            ndjson.rate,
            ndjson.rate / read_rate,
            csv.rate,
            csv.rate / read_rate,
            ndjson.memory(false),
            csv.memory(false),
            ndjson.memory(true),
            csv.memory(true),
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// Appends until the log has at least `n` events; returns its length.
async fn fill(store: &EmbeddedStore, n: u64) -> anyhow::Result<u64> {
    let mut len = store.head().await?.map_or(0, |p| p.code() + 1);
    let mut batch_no = len / BATCH as u64;
    while len < n {
        let tenant = TENANTS[(batch_no % 3) as usize];
        let stream = StreamId::new(format!("{tenant}/audit-template-{batch_no}"))?;
        let events = (0..BATCH as u64).map(|i| audit_event(len + i)).collect();
        store.append_to_stream(&stream, ExpectedRevision::Any, events).await?;
        len += BATCH as u64;
        batch_no += 1;
    }
    Ok(store.head().await?.map_or(0, |p| p.code() + 1))
}

/// Appends with and without the integrity follower (module doc, 3).
async fn upkeep(dir: &Path, secs: u64, rounds: usize) -> anyhow::Result<()> {
    println!();
    println!("| appends | without the tree (events/s) | with the tree fed (events/s) | with / without | tree lag at the end |");
    println!("|---|---|---|---|---|");
    for single in [true, false] {
        let (mut without, mut with, mut lags) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            for tree in [false, true] {
                let run_dir = dir.join(format!("{single}-{round}-{tree}"));
                let store: Arc<EmbeddedStore> = Arc::new(EmbeddedStore::open(EngineConfig::new(&run_dir)).await?);
                let shutdown = tokio_util::sync::CancellationToken::new();
                let integrity = annals_query_api::integrity::Integrity::open(&run_dir)?;
                let follower = tree.then(|| {
                    let dyn_store: Arc<dyn EventStore> = store.clone();
                    annals_query_api::integrity::follow(Arc::clone(&integrity), dyn_store, shutdown.clone())
                });
                let rate = append_for(&store, single, Duration::from_secs(secs)).await?;
                let len = store.head().await?.map_or(0, |p| p.code() + 1);
                if tree {
                    lags.push(len - integrity.size().get());
                    with.push(rate);
                } else {
                    without.push(rate);
                }
                shutdown.cancel();
                if let Some(f) = follower {
                    let _ = f.await;
                }
                drop(store);
                let _ = std::fs::remove_dir_all(&run_dir);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (a, b) = (median(&mut without), median(&mut with));
        println!(
            "| {} | {a:.0} (runs {}) | {b:.0} (runs {}) | {:.3} | {:?} events |",
            if single { "single events, 16 writers" } else { "batches of 1,000" },
            without.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
            with.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
            b / a,
            lags,
        );
    }
    Ok(())
}

async fn append_for(store: &Arc<EmbeddedStore>, single: bool, window: Duration) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let writers = if single { 16 } else { 2 };
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, done, count) = (Arc::clone(store), Arc::clone(&done), Arc::clone(&count));
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) {
                let stream = StreamId::new(format!("{}/audit-w{w}-{}", TENANTS[w % 3], i / 10_000))?;
                let n = if single { 1 } else { BATCH as u64 };
                let events = (0..n).map(|k| audit_event(i + k)).collect();
                store.append_to_stream(&stream, ExpectedRevision::Any, events).await?;
                count.fetch_add(n, Ordering::Relaxed);
                i += n;
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(window).await;
    done.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for t in tasks {
        t.await??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64())
}

/// One export's figures (`Server::export`).
struct Exported {
    rate: f64,
    /// (VmRSS, RssAnon) in KiB, right before the export and the peaks during it.
    before: (u64, u64),
    peak: (u64, u64),
    bytes: u64,
}

impl Exported {
    /// "before → peak (+growth)" in MiB, of VmRSS (`anon` false) or RssAnon.
    fn memory(&self, anon: bool) -> String {
        let (before, peak) = if anon { (self.before.1, self.peak.1) } else { (self.before.0, self.peak.0) };
        format!("{} → {} (+{})", before >> 10, peak >> 10, peak.saturating_sub(before) >> 10)
    }
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let bin = std::env::var("ANNALS_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_annals").to_owned());
        let child = Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .env("ANNALS_ADMIN_KEY", KEY)
            .env("ANNALS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run annals serve");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(600), "annals serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, base: format!("http://127.0.0.1:{port}") }
    }

    async fn reader_key(&self) -> anyhow::Result<String> {
        let body = serde_json::json!({ "tenant": "acme", "role": "reader", "name": "bench" });
        let response =
            reqwest::Client::new().post(format!("{}/v1/keys", self.base)).bearer_auth(KEY).json(&body).send().await?;
        let created: serde_json::Value = response.json().await?;
        Ok(created["key"].as_str().expect("a key").to_owned())
    }

    /// Waits until a fresh head covers the log's `len` events; its size.
    async fn head_covering(&self, key: &str, len: u64) -> anyhow::Result<u64> {
        let client = identity_client();
        loop {
            let head: serde_json::Value = client
                .get(format!("{}/v1/integrity/head?fresh=true", self.base))
                .bearer_auth(key)
                .send()
                .await?
                .json()
                .await?;
            let size = head["tree_size"].as_u64().unwrap_or(0);
            if size >= len {
                return Ok(size);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn views_caught_up(&self) -> anyhow::Result<()> {
        let client = identity_client();
        loop {
            let list: serde_json::Value =
                client.get(format!("{}/v1/projections", self.base)).bearer_auth(KEY).send().await?.json().await?;
            let lagging = list["projections"].as_array().map_or(1, |p| {
                p.iter().filter(|v| v["lag_events"].as_u64() != Some(0) || v["state"] == "rebuilding").count()
            });
            if lagging == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits (at most two minutes) until the server has used less than 5 % of a core for a
    /// second: views that caught up may still merge their segments, and an export measured beside
    /// that measures the merges. Returns the seconds waited.
    fn wait_idle(&self) -> f64 {
        let started = Instant::now();
        let ticks = || {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
            // utime and stime: fields 14 and 15; after the command's closing parenthesis, field 3 (the
            // state) is the first.
            let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
            field(11) + field(12)
        };
        while started.elapsed() < Duration::from_secs(120) {
            let before = ticks();
            std::thread::sleep(Duration::from_secs(1));
            // Clock ticks are 1/100 s: under 5 ticks in a second is under 5 % of a core.
            if ticks().saturating_sub(before) < 5 {
                break;
            }
        }
        started.elapsed().as_secs_f64()
    }

    /// (VmRSS, RssAnon) in KiB.
    fn rss(&self) -> (u64, u64) {
        rss_of(self.child.id())
    }

    /// Positions/s, the (VmRSS, RssAnon) right before the export and their peaks during it (KiB),
    /// and its bytes.
    async fn export(&self, key: &str, size: u64, format: &str) -> anyhow::Result<Exported> {
        let before = self.rss();
        let stop = Arc::new(AtomicBool::new(false));
        let (peak, peak_anon) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let pid = self.child.id();
        let sampler = {
            let (stop, peak, peak_anon) = (Arc::clone(&stop), Arc::clone(&peak), Arc::clone(&peak_anon));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (rss, anon) = rss_of(pid);
                    peak.fetch_max(rss, Ordering::Relaxed);
                    peak_anon.fetch_max(anon, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let started = Instant::now();
        let mut response = identity_client()
            .get(format!("{}/v1/audit/export?tree_size={size}&format={format}", self.base))
            .bearer_auth(key)
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "export: {}", response.status());
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await? {
            bytes += chunk.len() as u64;
        }
        let rate = size as f64 / started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        sampler.join().expect("sampler");
        Ok(Exported { rate, before, peak: (peak.load(Ordering::Relaxed), peak_anon.load(Ordering::Relaxed)), bytes })
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// (VmRSS, RssAnon) of process `pid`, in KiB.
fn rss_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that asks for the export as it is: reqwest's `gzip` feature is on in this build (the
/// `elasticsearch` crate turns it on), and a client that accepts gzip would measure deflate.
fn identity_client() -> reqwest::Client {
    reqwest::Client::builder().no_gzip().build().expect("an HTTP client")
}
