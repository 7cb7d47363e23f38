//! The PostgreSQL backend's benchmark, through the `EventStore` trait in this process, against
//! a throwaway cluster started here with the peer script's server settings
//! (`../shared/peers/postgres.sh`: fsync and synchronous_commit on, shared_buffers 1 GB,
//! max_wal_size 8 GB), so its figures compare with that script's Message-DB-style ones:
//!
//! - single-event appends, 64 writers, each to its own streams of 6 events with an exact
//!   expected revision (the peer's `write_message` with an expected version, 64 clients);
//! - batches of 1,000 events, 4 appenders (the peer's 1,000-row transactions, 4 clients);
//! - catch-up read of the whole log in pages of 10,000 (the peer's keyset pages and COPY),
//!   over at least 2 M events as the peer reads.
//!
//! `cargo bench -p annals-store --bench postgres` prints a markdown table. Environment:
//! `BENCH_SINGLE_SECS` (20), `BENCH_BATCH_SECS` (20), `BENCH_READ_EVENTS` (2,000,000),
//! `BENCH_GROUPS_IN_FLIGHT` (3), `BENCH_PARALLEL_INSERT_MIN_EVENTS` (the default; a huge value
//! writes every group locking the head first, as schema 1 did, to compare the two paths).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_store::postgres::testing::PgCluster;
use annals_store::postgres::{PostgresConfig, PostgresStore};
use annals_store::{
    Direction, EventData, EventFilter, EventStore, ExpectedRevision, PageLimits, ReadFrom, Revision, StreamId,
    SubscribeFrom,
};
use hdrhistogram::Histogram;
use uuid::Uuid;

const PEER_SETTINGS: &str = "max_connections = 200\nshared_buffers = 1GB\nmax_wal_size = 8GB\n";

fn main() -> anyhow::Result<()> {
    let single_secs = env_u64("BENCH_SINGLE_SECS", 20);
    let batch_secs = env_u64("BENCH_BATCH_SECS", 20);
    let read_events = env_u64("BENCH_READ_EVENTS", 2_000_000) as usize;
    let cluster = PgCluster::start_with(PEER_SETTINGS).map_err(|e| anyhow::anyhow!("start cluster: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let url = cluster.create_database().await;
        let database = url.rsplit("dbname=").next().unwrap_or_default().to_owned();
        let in_flight = env_u64("BENCH_GROUPS_IN_FLIGHT", 3) as usize;
        let defaults = PostgresConfig::new(String::new());
        let parallel_min = env_u64("BENCH_PARALLEL_INSERT_MIN_EVENTS", defaults.parallel_insert_min_events as u64);
        let config = PostgresConfig::new(url)
            .pool_size(8)
            .groups_in_flight(in_flight)
            .parallel_insert_min_events(parallel_min as usize);
        let store = PostgresStore::connect(config).await?;
        println!("event: {} bytes of JSON data, type `message.sent`", sample_event(0, 0).data().len());
        println!();
        println!("| measure | result |");
        println!("|---|---|");

        // Events are made before the clock starts (JSON checked once): the figures are the
        // store's, not serde's; each append sends copies with fresh ids.
        let templates: Arc<Vec<EventData>> = Arc::new((0..1024).map(|i| sample_event(i, i % 6)).collect());
        // Single-event appends, 64 writers, exact expected revisions.
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..64usize {
            let (store, stop, templates) = (store.clone(), Arc::clone(&stop), Arc::clone(&templates));
            tasks.push(tokio::spawn(async move {
                let mut latencies = Histogram::<u64>::new(3)?;
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let (k, pos) = (n / 6, n % 6);
                    let stream = StreamId::new(format!("notification-{w}-{k}"))?;
                    let expected = match pos {
                        0 => ExpectedRevision::NoStream,
                        p => ExpectedRevision::Exact(Revision(p as u64 - 1)),
                    };
                    let event = template(&templates, w + n).with_id(Uuid::new_v4());
                    let started = Instant::now();
                    store.append_to_stream(&stream, expected, vec![event]).await?;
                    latencies.record(started.elapsed().as_micros() as u64)?;
                    n += 1;
                }
                anyhow::Ok(latencies)
            }));
        }
        tokio::time::sleep(Duration::from_secs(single_secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut latencies = Histogram::<u64>::new(3)?;
        for t in tasks {
            latencies.add(t.await??)?;
        }
        let rate = latencies.len() as f64 / single_secs as f64;
        println!(
            "| single-event appends, 64 writers, exact expected revision | {rate:.0} events/s (p50 {:.1} ms, p99 {:.1} ms) |",
            latencies.value_at_quantile(0.5) as f64 / 1000.0,
            latencies.value_at_quantile(0.99) as f64 / 1000.0
        );

        // Batches of 1,000 events to a new stream each, 4 appenders.
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for a in 0..4usize {
            let (store, stop, templates) = (store.clone(), Arc::clone(&stop), Arc::clone(&templates));
            tasks.push(tokio::spawn(async move {
                let mut latencies = Histogram::<u64>::new(3)?;
                let mut b = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let events: Vec<EventData> =
                        (0..1000).map(|i| template(&templates, a + b + i).with_id(Uuid::new_v4())).collect();
                    let stream = StreamId::new(format!("batch-{a}-{b}"))?;
                    let started = Instant::now();
                    store.append_to_stream(&stream, ExpectedRevision::NoStream, events).await?;
                    latencies.record(started.elapsed().as_micros() as u64)?;
                    b += 1;
                }
                anyhow::Ok(latencies)
            }));
        }
        tokio::time::sleep(Duration::from_secs(batch_secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut latencies = Histogram::<u64>::new(3)?;
        for t in tasks {
            latencies.add(t.await??)?;
        }
        let rate = latencies.len() as f64 * 1000.0 / batch_secs as f64;
        println!(
            "| batches of 1,000 events, 4 appenders | {rate:.0} events/s (per batch p50 {:.1} ms, p99 {:.1} ms) |",
            latencies.value_at_quantile(0.5) as f64 / 1000.0,
            latencies.value_at_quantile(0.99) as f64 / 1000.0
        );

        // Top up (untimed) so the read covers as many events as the peer's.
        let mut have = store.head().await?.map_or(0, |p| p.code() as usize + 1);
        let mut b = 0usize;
        while have < read_events {
            let events: Vec<EventData> = (0..1000).map(|i| sample_event(9_000_000 + b, i)).collect();
            store.append_to_stream(&StreamId::new(format!("fill-{b}"))?, ExpectedRevision::NoStream, events).await?;
            have += 1000;
            b += 1;
        }
        let client = cluster.connect(&database).await;
        client.batch_execute("VACUUM (ANALYZE) annals_events").await?;
        client.batch_execute("CHECKPOINT").await?;

        // Catch-up read of $all: pages of 10,000 through read_all_page, then a subscription.
        let started = Instant::now();
        let mut from = ReadFrom::Start;
        let mut n = 0usize;
        loop {
            let page =
                store.read_all_page(from, Direction::Forwards, PageLimits::count(10_000), &EventFilter::all()).await?;
            n += page.events.len();
            if page.reached_end {
                break;
            }
            from = ReadFrom::At(page.next.expect("a page that is not the end says where to go on"));
        }
        let secs = started.elapsed().as_secs_f64();
        println!("| catch-up read of $all ({n} events, read_all_page, pages of 10,000) | {:.0} events/s |", n as f64 / secs);
        let started = Instant::now();
        let mut sub = store.subscribe_to_all(SubscribeFrom::Start, EventFilter::all()).await?;
        for _ in 0..n {
            sub.next_event().await?;
        }
        let secs = started.elapsed().as_secs_f64();
        println!("| catch-up of $all (subscribe_to_all from start) | {:.0} events/s |", n as f64 / secs);
        store.close().await?;
        anyhow::Ok(())
    })?;
    drop(cluster);
    Ok(())
}

fn template(templates: &[EventData], n: usize) -> EventData {
    templates[n % templates.len()].clone()
}

/// The engine benchmark's event: ~500 bytes of JSON, like the peer script's.
fn sample_event(stream: usize, i: usize) -> EventData {
    let data = format!(
        concat!(
            r#"{{"message_id":"01HZX3K9M2Q7R4T8V6W1{stream:07}","tenant":"acme-corp","#,
            r#""recipient":{{"id":"user-{stream}","email":"user{stream}@example.com","phone":"+14155550123"}},"#,
            r#""notification":"order-shipped","template":{{"id":"tmpl_8f3a2c","version":12}},"#,
            r#""channel":"email","provider":"sendgrid","provider_message_id":"sg-{stream}-{i}-a8f7e6d5c4b3","#,
            r#""subject":"Your order #48213 has shipped","tags":["transactional","orders"],"#,
            r#""attempt":{i},"occurred_at":"2026-11-23T17:42:10.123456Z","request_id":"req_2b9c6f0e1d4a4c7b"}}"#
        ),
        stream = stream,
        i = i
    );
    EventData::from_json_bytes("message.sent", data.into_bytes()).expect("json")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
