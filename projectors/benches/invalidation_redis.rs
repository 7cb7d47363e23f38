//! Cache invalidations delivered to Redis (issue 15): how many invalidations per second
//! `RedisSink::deliver` gets into Redis under sustained load, in batches shaped like a live
//! projector's, and the delay from a deliver call to a `RedisFeed` follower reading the entry
//! (p50/p99) — next to the server's own pipelined `XADD` rate measured by `redis-benchmark`
//! against the same server in the same run, as a ratio.
//!
//! `cargo bench -p annals-projectors --bench invalidation_redis` prints markdown. Environment:
//! `BENCH_BATCHES` (batches of the throughput run, default 4000), `BENCH_TENANTS` (invalidations
//! per batch: one per tenant, default 4), `BENCH_IDS` (message ids per invalidation, each with
//! its recipient key, default 25), `BENCH_RATE` (batches per second of the delay run, default
//! 200), `BENCH_FSYNC` (`always` or `everysec`, the AOF's, default `everysec`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals_projectors::invalidation::redis::testing::RedisServer;
use annals_projectors::invalidation::redis::{RedisConfig, RedisFeed, RedisOptions, RedisSink};
use annals_projectors::invalidation::{
    InvalidatedKey, Invalidation, InvalidationFeed, InvalidationSink, KeyKind, Scope,
};
use annals_store::Position;
use futures::StreamExt;
use hdrhistogram::Histogram;

/// Alternating rounds of the sink and its peer.
const ROUNDS: u64 = 5;

/// The allocator `annals serve` runs with (src/main.rs), so the figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let batches = env_u64("BENCH_BATCHES", 4000);
    let tenants = env_u64("BENCH_TENANTS", 4);
    let ids = env_u64("BENCH_IDS", 25);
    let rate = env_u64("BENCH_RATE", 200);
    let fsync = std::env::var("BENCH_FSYNC").unwrap_or_else(|_| "everysec".into());
    let server = RedisServer::start_with(&["--appendfsync", &fsync]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let options = RedisOptions { maxlen: 100_000, ..RedisOptions::new(server.url()) };
    let config = RedisConfig::new(&options)?;

    // Rounds alternate the sink and the peer, so that a neighbour's burst (other builds share
    // the cores) weighs on both; the medians and the median of the rounds' ratios are reported.
    let payload = serde_json::to_string(&batch(1, 1, ids)[0])?;
    let sink = runtime.block_on(async { RedisSink::new(config.clone()) })?;
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let (batched, single) = runtime.block_on(async {
            let first = round * (batches + 4001) + 1;
            sink.deliver(&batch(first, tenants, ids)).await?;
            let started = Instant::now();
            for b in 1..=batches {
                sink.deliver(&batch(first + b, tenants, ids)).await?;
            }
            let batched = (batches * tenants) as f64 / started.elapsed().as_secs_f64();
            // A live trickle: one event per commit, one invalidation of one message.
            let started = Instant::now();
            for b in 1..=4000 {
                sink.deliver(&batch(first + batches + b, 1, 1)).await?;
            }
            anyhow::Ok((batched, 4000.0 / started.elapsed().as_secs_f64()))
        })?;
        let peer = redis_benchmark(&server, batches * tenants, &payload)?;
        eprintln!("round {round}: sink {batched:.0}/s, one at a time {single:.0}/s, peer {peer:.0}/s");
        rounds.push((batched, single, peer, batched / peer));
    }
    let median = |f: fn(&(f64, f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (sink_rate, one_rate, peer, ratio) = (median(|r| r.0), median(|r| r.1), median(|r| r.2), median(|r| r.3));

    let delays = runtime.block_on(delay_run(config, rate, tenants, ids))?;

    println!("| Redis invalidations ({tenants} per batch, {} keys each; AOF fsync {fsync}) | figure |", ids * 2);
    println!("|---|---|");
    println!("| `RedisSink::deliver`, {batches} batches back to back (median of {ROUNDS} rounds) | {sink_rate:.0} invalidations/s ({:.0} keys unlinked/s) |", sink_rate * (ids * 2) as f64);
    println!("| `RedisSink::deliver`, one invalidation of one message per call | {one_rate:.0} invalidations/s |");
    println!(
        "| peer: `redis-benchmark -P 16 -c 4 XADD … MAXLEN ~ 100000 * invalidation <{} bytes>`, same server | {peer:.0} XADD/s |",
        payload.len()
    );
    println!("| ratio sink invalidations / pipelined XADD (median of {ROUNDS} rounds' ratios) | {ratio:.2} |");
    println!(
        "| deliver call → entry read by a `RedisFeed` follower, {rate} batches/s | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} batches) |",
        delays.value_at_quantile(0.5) as f64 / 1000.0,
        delays.value_at_quantile(0.99) as f64 / 1000.0,
        delays.max() as f64 / 1000.0,
        delays.len()
    );
    eprintln!("load average: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    Ok(())
}

/// One projector batch at position `b`: an invalidation per tenant, each with `ids` messages
/// and their recipients.
fn batch(b: u64, tenants: u64, ids: u64) -> Vec<Invalidation> {
    (0..tenants)
        .map(|t| {
            let mut keys: Vec<InvalidatedKey> = (0..ids)
                .flat_map(|i| {
                    [
                        InvalidatedKey { kind: KeyKind::Message, value: format!("msg-{b}-{i}") },
                        InvalidatedKey { kind: KeyKind::Recipient, value: format!("user-{}", (b * 7 + i) % 1000) },
                    ]
                })
                .collect();
            keys.sort();
            keys.dedup();
            Invalidation {
                tenant: Some(format!("tenant-{t}")),
                view: "messages".to_owned(),
                position: Position::from_code(b),
                scope: Scope::Keys { keys },
            }
        })
        .collect()
}

/// `redis-benchmark`'s pipelined `XADD … MAXLEN ~` rate against the same server (a stream of its
/// own), each entry as large as one of the sink's (`payload`).
fn redis_benchmark(server: &RedisServer, requests: u64, payload: &str) -> anyhow::Result<f64> {
    let output = std::process::Command::new("redis-benchmark")
        .arg("-s")
        .arg(server.socket())
        .args(["-P", "16", "-c", "4", "-q", "-n"])
        .arg(requests.max(100_000).to_string())
        .args(["XADD", "bench:peer", "MAXLEN", "~", "100000", "*", "invalidation", payload])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    // The last of the lines `-q` rewrites with `\r`: "XADD …: 320512.81 requests per second, p50=…".
    let line = text.rsplit('\r').map(str::trim).find(|l| l.contains("requests per second")).unwrap_or("");
    let figure = line.rsplit_once(": ").and_then(|(_, r)| r.split_whitespace().next()).and_then(|n| n.parse().ok());
    figure.ok_or_else(|| anyhow::anyhow!("cannot read redis-benchmark's answer: {text:?}"))
}

/// Deliveries at `rate` batches per second for 10 s, with a follower timing each position's
/// first entry from the start of its deliver call.
async fn delay_run(config: RedisConfig, rate: u64, tenants: u64, ids: u64) -> anyhow::Result<Histogram<u64>> {
    let sink = RedisSink::new(config.clone())?;
    let feed = RedisFeed::new(config);
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let mut follower = feed.follow("messages", None).await?;
    let base = 1_000_000_000u64;
    let total = rate * 10;
    let reader = {
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            let mut delays = Histogram::<u64>::new(3).expect("histogram");
            let mut last = None;
            while delays.len() < total {
                let Some(item) = follower.next().await else { break };
                let invalidation = item.expect("the feed");
                let code = invalidation.position.code();
                if last == Some(code) {
                    continue;
                }
                last = Some(code);
                let at = sent.lock().expect("lock").remove(&code);
                if let Some(at) = at {
                    delays.record(at.elapsed().as_micros() as u64).expect("record");
                }
            }
            delays
        })
    };
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for b in 0..total {
        tick.tick().await;
        let code = base + b;
        sent.lock().expect("lock").insert(code, Instant::now());
        sink.deliver(&batch(code, tenants, ids)).await?;
    }
    Ok(tokio::time::timeout(Duration::from_secs(30), reader).await??)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
