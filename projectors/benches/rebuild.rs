//! The read side's benchmark (issue 4): how fast a projection is rebuilt from the log into its
//! tantivy view, how much memory that takes, and how fast the rebuilt view answers the searches a
//! log UI makes — with the store's own catch-up read of the same events measured in the same run,
//! so the rebuild rate is also a ratio to the rate the log can be read at.
//!
//! `cargo bench -p annals-projectors --bench rebuild` prints a markdown table for BENCHMARKS.md.
//! Environment: `BENCH_DIR` (default /var/tmp/annals-rebuild-bench), `BENCH_MESSAGES` (200,000;
//! the demo workload, ~6 events each, as `annals demo` makes them), `BENCH_SEARCHES` (500 per
//! query shape), `BENCH_BATCH` (the projector's batch size) and `BENCH_PARALLELISM` (its
//! partitioned workers; default 1).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_projectors::view_store::{Filter, Query, Sort};
use annals_projectors::{MessagesProjection, Projection, Projector, ProjectorConfig, TantivyViewStore};
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{EventData, EventStore, ExpectedRevision, Position, StreamId, SubscribeFrom, SubscriptionMessage};
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

/// The allocator `annals serve` runs with (src/main.rs), so the figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TENANT: &str = "demo";

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/annals-rebuild-bench".into()));
    let messages = env_u64("BENCH_MESSAGES", 200_000);
    let searches = env_u64("BENCH_SEARCHES", 500) as usize;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let store = EmbeddedStore::open(EngineConfig::new(root.join("store"))).await?;
        let started = Instant::now();
        let (events, last) = load_workload(&store, messages).await?;
        eprintln!("loaded {messages} messages ({events} message events) in {:.1} s", started.elapsed().as_secs_f64());

        println!("| measure | result | limit measured in this run | ratio |");
        println!("|---|---|---|---|");
        let read_rate = catch_up_rate(&store, last).await?;
        println!("| store: catch-up subscription over the `message.*` events | {read_rate:.0} events/s | | |");

        reset_peak_rss();
        let rss_before = rss_kib("VmRSS");
        let view = Arc::new(TantivyViewStore::open(&root.join("view"), MessagesProjection.schema())?);
        let (started, cpu) = (Instant::now(), cpu_seconds());
        rebuild(&store, &view, last).await;
        let secs = started.elapsed().as_secs_f64();
        let cores = (cpu_seconds() - cpu) / secs;
        let rate = events as f64 / secs;
        println!(
            "| rebuild of `messages` from position 0 ({messages} messages, {events} events, {} worker(s)) | {secs:.1} s, {rate:.0} events/s, {cores:.1} cores busy | catch-up read {read_rate:.0} events/s | {:.2} |",
            parallelism(),
            rate / read_rate
        );
        println!(
            "| process memory during the rebuild | peak RSS {} MiB (before: {} MiB) | | |",
            rss_kib("VmHWM") / 1024,
            rss_before / 1024
        );

        for (name, query) in search_shapes() {
            let latencies = time_searches(&view, &query, searches)?;
            println!(
                "| search: {name} | p50 {:.1} ms, p99 {:.1} ms ({searches} runs, {} matches) | | |",
                latencies.0, latencies.1, latencies.2
            );
        }
        store.close().await?;
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// Appends the demo workload, 64 messages in flight (one append per message, as `annals demo`
/// does). Returns the number of `message.*` events and the position of the last event.
async fn load_workload(store: &EmbeddedStore, messages: u64) -> anyhow::Result<(u64, Position)> {
    let start = chrono::Utc::now() - chrono::Duration::hours(24);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (store, next) = (store.clone(), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let (mut events, mut last) = (0u64, Position::from_code(0));
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= messages {
                    return anyhow::Ok((events, last));
                }
                let message = annals_schemas::demo::message(1, n, messages, start);
                events += message.events.len() as u64;
                last = last.max(append(&store, &message.stream, &message.events).await?);
                if let Some((stream, event)) = message.audit {
                    append(&store, &stream, &[event]).await?;
                }
            }
        }));
    }
    let (mut events, mut last) = (0, Position::from_code(0));
    for task in tasks {
        let (e, l) = task.await??;
        events += e;
        last = last.max(l);
    }
    Ok((events, last))
}

async fn append(store: &EmbeddedStore, stream: &str, events: &[serde_json::Value]) -> anyhow::Result<Position> {
    let stream = StreamId::new(format!("{TENANT}/{stream}"))?;
    let data = events
        .iter()
        .map(|e| EventData::json(e["type"].as_str().unwrap_or_default().to_owned(), &e["data"]))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(store.append_to_stream(&stream, ExpectedRevision::Any, data).await?.last_position)
}

/// Events per second of a subscription from the start through `last`, with the projection's
/// filter: the rate at which the log hands a projector its events.
async fn catch_up_rate(store: &EmbeddedStore, last: Position) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut subscription = store.subscribe_to_all(SubscribeFrom::Start, MessagesProjection.filter()).await?;
    let mut count = 0u64;
    loop {
        if let SubscriptionMessage::Event(event) = subscription.next().await? {
            count += 1;
            if event.position >= last {
                break;
            }
        }
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

fn parallelism() -> usize {
    env_u64("BENCH_PARALLELISM", ProjectorConfig::default().parallelism as u64) as usize
}

/// Runs the live projector code path from position 0 until it has applied `last`.
async fn rebuild(store: &EmbeddedStore, view: &Arc<TantivyViewStore>, last: Position) {
    let store: Arc<dyn EventStore> = Arc::new(store.clone());
    let defaults = ProjectorConfig::default();
    let batch_size = env_u64("BENCH_BATCH", defaults.batch_size as u64) as usize;
    let config = ProjectorConfig { batch_size, parallelism: parallelism(), ..defaults };
    let projector = Projector::new(store, view.clone(), MessagesProjection, config);
    let status = projector.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(projector.run(shutdown.clone()));
    while !status.has_applied(last) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let _ = task.await;
}

/// The searches a message-log UI makes: the API's query shapes (50 per page, facets by status
/// and channel), filtered and full-text.
fn search_shapes() -> Vec<(&'static str, Query)> {
    let base = |filters: Vec<Filter>, text: Option<&str>| Query {
        tenant: TENANT.to_owned(),
        filters,
        text: text.map(str::to_owned),
        sort: Sort { field: "first_event_at", descending: true },
        limit: 50,
        after: None,
        facets: vec!["status", "channel"],
    };
    let term = |field, value: &str| Filter::Term { field, values: vec![value.to_owned()] };
    let last_hour = Filter::TimeRange {
        field: "first_event_at",
        from: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
        to: None,
    };
    vec![
        ("newest first, no filter", base(vec![], None)),
        ("status = UNDELIVERABLE", base(vec![term("status", "UNDELIVERABLE")], None)),
        ("channel = sms and status = DELIVERED", base(vec![term("channel", "sms"), term("status", "DELIVERED")], None)),
        ("recipient = one user", base(vec![term("recipient", &first_recipient())], None)),
        ("tag = marketing, last hour", base(vec![term("tag", "marketing"), last_hour], None)),
        ("full text `invoice`", base(vec![], Some("invoice"))),
        (
            "full text `reset password` and channel = email",
            base(vec![term("channel", "email")], Some("reset password")),
        ),
    ]
}

/// The recipient id of the workload's first message: a recipient that has messages.
fn first_recipient() -> String {
    let first = annals_schemas::demo::message(1, 0, 1, chrono::Utc::now());
    first.events[0]["data"]["recipient"]["id"].as_str().unwrap_or_default().to_owned()
}

/// p50 and p99 in milliseconds, and the matches of the query.
fn time_searches(view: &TantivyViewStore, query: &Query, runs: usize) -> anyhow::Result<(f64, f64, u64)> {
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut total = 0;
    for _ in 0..runs {
        let started = Instant::now();
        total = view.search_blocking(query)?.total;
        histogram.record(started.elapsed().as_micros() as u64)?;
    }
    Ok((histogram.value_at_quantile(0.5) as f64 / 1e3, histogram.value_at_quantile(0.99) as f64 / 1e3, total))
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (clock ticks of
/// 1/100 s, Linux's `USER_HZ`).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Resets the kernel's peak-RSS mark (`VmHWM`), so the peak read later is the rebuild's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim_start_matches(':').trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
