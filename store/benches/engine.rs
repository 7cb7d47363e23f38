//! The embedded engine's benchmark, with the disk's own limits measured in the same run so that
//! every figure is also a ratio to what the hardware allows.
//!
//! `cargo bench -p annals-store --bench engine` prints a markdown table for BENCHMARKS.md.
//! Environment: `BENCH_DIR` (default /var/tmp/annals-bench, must be on the disk under test),
//! `BENCH_BATCHED_EVENTS` (2,000,000), `BENCH_SINGLE_SECS` (10), `BENCH_OPEN_EVENTS` (10,000,000;
//! 0 skips the open-time part).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{Direction, EventData, EventFilter, EventStore, ExpectedRevision, ReadFrom, Revision, StreamId};
use hdrhistogram::Histogram;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/annals-bench".into()));
    let batched_events = env_usize("BENCH_BATCHED_EVENTS", 2_000_000);
    let single_secs = env_usize("BENCH_SINGLE_SECS", 10) as u64;
    let open_events = env_usize("BENCH_OPEN_EVENTS", 10_000_000);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    println!("event: {} bytes of JSON data, type `message.sent`", sample_event(0, 0).data().len());
    println!();
    println!("| measure | result | limit measured in this run | ratio |");
    println!("|---|---|---|---|");

    let sync_4k = disk_sync_rate(&root, 4096, Duration::from_secs(3))?;
    let sync_512k = disk_sync_rate(&root, 512 * 1024, Duration::from_secs(5))?;
    let seq_1m = disk_sync_rate(&root, 8 << 20, Duration::from_secs(5))?;
    println!("| disk: 4 KiB write + fdatasync | {:.0} syncs/s | | |", sync_4k.0);
    println!("| disk: 512 KiB write + fdatasync | {:.0} MB/s | | |", sync_512k.1 / 1e6);
    println!("| disk: 8 MiB write + fdatasync | {:.0} MB/s | | |", seq_1m.1 / 1e6);

    rt.block_on(async {
        // Batched appends: batches of 1,000 events to one stream each, one appender and four.
        for appenders in [1usize, 4] {
            let dir = root.join(format!("batched-{appenders}"));
            let store = EmbeddedStore::open(EngineConfig::new(&dir)).await?;
            let per = batched_events / appenders / 1000;
            // Events are built before the clock starts: the figure is the store's, not serde's.
            let batches: Vec<Vec<Vec<EventData>>> = (0..appenders)
                .map(|a| (0..per).map(|b| (0..1000).map(|i| sample_event(a * per + b, i)).collect()).collect())
                .collect();
            let started = Instant::now();
            let mut tasks = Vec::new();
            for (a, batches) in batches.into_iter().enumerate() {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for (b, events) in batches.into_iter().enumerate() {
                        let stream = StreamId::new(format!("bench-{a}-{b}")).expect("valid");
                        store.append_to_stream(&stream, ExpectedRevision::NoStream, events).await?;
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            let secs = started.elapsed().as_secs_f64();
            let events = (per * appenders * 1000) as f64;
            let info = store.info().await?;
            let mbps = info.log_bytes as f64 / secs / 1e6;
            println!(
                "| durable batched appends, 1,000/batch, {appenders} appender(s) | {:.0} events/s ({mbps:.0} MB/s of log) | 512 KiB write+fdatasync: {:.0} MB/s | {:.2} |",
                events / secs,
                sync_512k.1 / 1e6,
                mbps / (sync_512k.1 / 1e6)
            );
            if appenders == 1 {
                println!("| log bytes per event | {:.0} B | | |", info.log_bytes as f64 / events);
                // Catch-up read of $all: pages of 4,096 through read_all, then a subscription.
                let started = Instant::now();
                let mut from = ReadFrom::Start;
                let mut n = 0usize;
                loop {
                    let page = store.read_all(from, Direction::Forwards, 4096, &EventFilter::all()).await?;
                    let Some(last) = page.last() else { break };
                    from = ReadFrom::At(last.position.next());
                    n += page.len();
                }
                let secs = started.elapsed().as_secs_f64();
                println!("| catch-up read of $all (read_all, pages of 4,096) | {:.0} events/s | | |", n as f64 / secs);
                let started = Instant::now();
                let mut sub = store.subscribe_to_all(annals_store::SubscribeFrom::Start, EventFilter::all()).await?;
                let mut seen = 0usize;
                while seen < n {
                    sub.next_event().await?;
                    seen += 1;
                }
                let secs = started.elapsed().as_secs_f64();
                println!("| catch-up of $all (subscribe_to_all from start) | {:.0} events/s | | |", seen as f64 / secs);
            }
            store.close().await?;
        }

        // Single-event appends from 64 concurrent writers, each to its own stream with Exact.
        let dir = root.join("single");
        let store = EmbeddedStore::open(EngineConfig::new(&dir)).await?;
        let deadline = Instant::now() + Duration::from_secs(single_secs);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..64usize {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let stream = StreamId::new(format!("single-{w}")).expect("valid");
                let mut hist = Histogram::<u64>::new(3).expect("histogram");
                let mut expected = ExpectedRevision::NoStream;
                let mut i = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = store.append_to_stream(&stream, expected, vec![sample_event(w, i)]).await?;
                    hist.record(t.elapsed().as_micros() as u64).expect("in range");
                    expected = ExpectedRevision::Exact(r.last_revision);
                    i += 1;
                }
                anyhow::Ok(hist)
            }));
        }
        let mut hist = Histogram::<u64>::new(3)?;
        for t in tasks {
            hist.add(t.await??)?;
        }
        let secs = started.elapsed().as_secs_f64();
        let rate = hist.len() as f64 / secs;
        println!(
            "| durable single-event appends, 64 writers | {rate:.0} events/s, p50 {} µs, p99 {} µs, p99.9 {} µs | 4 KiB write+fdatasync: {:.0}/s | {:.1}× the sync rate |",
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
            sync_4k.0,
            rate / sync_4k.0
        );
        store.close().await?;

        if open_events > 0 {
            open_time(&root.join("open"), open_events, &sync_512k).await?;
        }
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// Builds a store of `n` events over 1/6 as many message streams, then times opens.
async fn open_time(dir: &Path, n: usize, _disk: &(f64, f64)) -> anyhow::Result<()> {
    let store = EmbeddedStore::open(EngineConfig::new(dir)).await?;
    let started = Instant::now();
    let appenders = 4;
    let mut tasks = Vec::new();
    for a in 0..appenders {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Batches of 1,000 events over 166 streams of 6 events: many streams, as in a message log.
            for b in 0..n / appenders / 1000 {
                for s in 0..166usize {
                    let stream = StreamId::new(format!("message-{a}-{b}-{s}")).expect("valid");
                    let count = if s == 165 { 10 } else { 6 };
                    let events = (0..count).map(|i| sample_event(s, i)).collect();
                    store.append_to_stream(&stream, ExpectedRevision::NoStream, events).await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let info = store.info().await?;
    let build_secs = started.elapsed().as_secs_f64();
    store.close().await?;
    let events = info.next_position.0 as f64;
    let index_bytes = dir_size(&dir.join("index"));
    println!(
        "| building a {}-event store (6-event message streams, 4 appenders) | {:.0} events/s | | |",
        info.next_position.0,
        events / build_secs
    );
    println!(
        "| disk bytes per event | log {:.0} B + index {:.0} B | | |",
        info.log_bytes as f64 / events,
        index_bytes as f64 / events
    );
    let started = Instant::now();
    let store = EmbeddedStore::open(EngineConfig::new(dir)).await?;
    let clean = started.elapsed();
    let head = store.head().await?;
    let check = store
        .read_stream(&StreamId::new("message-0-0-0")?, ReadFrom::At(Revision(0)), Direction::Forwards, 10)
        .await?
        .into_events();
    anyhow::ensure!(check.len() == 6 && head.is_some(), "reopened store lost events");
    store.close().await?;
    println!("| open of a {}-event store after a clean close | {} ms | | |", info.next_position.0, clean.as_millis());
    std::fs::remove_dir_all(dir.join("index"))?;
    let started = Instant::now();
    let store = EmbeddedStore::open(EngineConfig::new(dir)).await?;
    let rebuild = started.elapsed();
    store.close().await?;
    println!(
        "| open with the index deleted (full rebuild from the log) | {} ms ({:.0} events/s) | | |",
        rebuild.as_millis(),
        events / rebuild.as_secs_f64()
    );
    Ok(())
}

/// A realistic message-log event: about 500 bytes of JSON data. The JSON is rendered once per
/// (stream, sequence) pair by formatting, not through `serde_json::Value`, and checked by the
/// store's constructor as any client's event would be.
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

/// Writes `size`-byte blocks each followed by `fdatasync` for `secs`: (syncs/s, bytes/s).
fn disk_sync_rate(dir: &Path, size: usize, secs: Duration) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("disk-probe");
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    let block = vec![0xA5u8; size];
    let started = Instant::now();
    let (mut n, mut offset) = (0u64, 0u64);
    while started.elapsed() < secs {
        file.write_all_at(&block, offset)?;
        file.sync_data()?;
        offset += size as u64;
        n += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok((n as f64 / elapsed, offset as f64 / elapsed))
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let meta = entry.metadata();
            match meta {
                Ok(m) if m.is_dir() => total += dir_size(&entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
