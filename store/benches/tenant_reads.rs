//! What a small tenant's reads of `$all` cost in a large log (issue 13, item 3): a tenant with
//! 1,000 events in a 10 M-event log pages through all of them, through the namespace index,
//! next to an unfiltered read of as many events (the peer: the cost of reading 1,000 events at
//! all) and to a filter that cannot use the index (the log walk every tenant read was before).
//!
//! `cargo bench -p annals-store --bench tenant_reads` prints a markdown table.
//! Environment: `BENCH_DIR` (default /var/tmp/annals-bench-tenant), `BENCH_LOG_EVENTS`
//! (10,000,000), `BENCH_TENANT_EVENTS` (1,000), `BENCH_REPEATS` (20).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{Direction, EventData, EventFilter, EventStore, ExpectedRevision, PageLimits, ReadFrom, StreamId};

const PAGE: usize = 100;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/annals-bench-tenant".into()));
    let log_events = env_usize("BENCH_LOG_EVENTS", 10_000_000);
    let tenant_events = env_usize("BENCH_TENANT_EVENTS", 1_000);
    let repeats = env_usize("BENCH_REPEATS", 20);
    let _ = std::fs::remove_dir_all(&root);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let store = EmbeddedStore::open(EngineConfig::new(&root)).await?;
        // The big tenant appends batches of 1,000; the small one a single event every
        // `log_events / tenant_events` events, spread over the whole log.
        let every_batches = (log_events / tenant_events / 1000).max(1);
        let started = Instant::now();
        let (mut written, mut small, mut batch) = (0usize, 0usize, 0usize);
        let mut pending = Vec::new();
        while written < log_events {
            let stream = StreamId::new(format!("big/stream-{}", batch % 10_000))?;
            let events: Vec<EventData> = (0..1000).map(|i| event("order.placed", batch * 1000 + i)).collect();
            let s = store.clone();
            pending.push(tokio::spawn(async move { s.append_to_stream(&stream, ExpectedRevision::Any, events).await }));
            batch += 1;
            written += 1000;
            if batch % every_batches == 0 && small < tenant_events {
                let stream = StreamId::new(format!("small/stream-{}", small % 10))?;
                let kind = if small % 10 == 0 { "invoice.paid" } else { "order.placed" };
                store.append_to_stream(&stream, ExpectedRevision::Any, vec![event(kind, small)]).await?;
                small += 1;
                written += 1;
            }
            if pending.len() == 16 {
                for p in pending.drain(..) {
                    p.await??;
                }
            }
        }
        for p in pending.drain(..) {
            p.await??;
        }
        let build = started.elapsed();
        let head = store.head().await?.map_or(0, |p| annals_store::engine::DENSE.index(p) + 1);
        println!(
            "log: {head} events ({small} of the small tenant), built in {:.1} s ({:.0} events/s)",
            build.as_secs_f64(),
            head as f64 / build.as_secs_f64()
        );
        println!();
        println!("| read ({PAGE}-event pages, following `next` to the end) | events | median | p90 | per event |");
        println!("|---|---|---|---|---|");
        let tenant = EventFilter::all().stream_prefix("small/");
        let paid = EventFilter::all().stream_prefix("small/").event_type_prefix("invoice.paid");
        let cases: [(&str, EventFilter, ReadFrom<_>, usize); 4] = [
            ("small tenant, whole log (namespace index)", tenant, ReadFrom::Start, usize::MAX),
            ("small tenant, `types=invoice.paid` (namespace index)", paid, ReadFrom::Start, usize::MAX),
            (
                "peer: unfiltered, the same number of events from the middle",
                EventFilter::all(),
                ReadFrom::At(annals_store::engine::DENSE.position(head / 2)),
                small,
            ),
            (
                "before: small tenant by log walk (first page only)",
                EventFilter::all().stream_prefix("small"),
                ReadFrom::Start,
                PAGE,
            ),
        ];
        for (what, filter, from, cap) in cases {
            let runs = if what.starts_with("before") { repeats.min(3) } else { repeats };
            let mut times = Vec::new();
            let mut count = 0;
            for _ in 0..runs {
                let t = Instant::now();
                count = page_through(&store, from, &filter, cap).await?;
                times.push(t.elapsed());
            }
            times.sort();
            let median = times[times.len() / 2];
            let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
            println!(
                "| {what} | {count} | {} | {} | {:.1} µs |",
                ms(median),
                ms(p90),
                median.as_secs_f64() * 1e6 / count.max(1) as f64
            );
        }
        store.close().await?;
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// Pages from `from` as `GET /v1/events` does, until the end or `cap` events; returns the count.
async fn page_through(
    store: &EmbeddedStore,
    mut from: ReadFrom<annals_store::Position>,
    filter: &EventFilter,
    cap: usize,
) -> anyhow::Result<usize> {
    let mut count = 0;
    loop {
        let limits = PageLimits { max_count: PAGE.min(cap - count), max_bytes: 16 << 20, max_scan: usize::MAX };
        let page = store.read_all_page(from, Direction::Forwards, limits, filter).await?;
        count += page.events.len();
        match page.next {
            Some(next) if !page.reached_end && count < cap => from = ReadFrom::At(next),
            _ => return Ok(count),
        }
    }
}

fn event(event_type: &str, n: usize) -> EventData {
    EventData::json(
        event_type,
        &serde_json::json!({
            "message_id": format!("m-{n}"), "channel": "email", "provider": "ses", "attempt": 1
        }),
    )
    .expect("valid event")
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}
