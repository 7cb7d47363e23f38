//! The embedded engine's benchmark, with the disk's own limits measured in the same run so that
//! every figure is also a ratio to what the hardware allows.
//!
//! `cargo bench -p annals-store --bench engine` prints a markdown table for BENCHMARKS.md.
//!
//! The disk is measured two ways, since they differ by about 2× on ext4: writes that extend a
//! file ("append") and writes over blocks written before ("overwrite", what the engine does in a
//! preallocated segment). Appends are measured in steady state: each store first writes one full
//! segment, because the first segment of a new store is not preallocated (module doc of
//! `engine`, "Preallocation"); single-event appends also run with preallocation off, for the
//! ratio.
//! Environment: `BENCH_DIR` (default /var/tmp/annals-bench, must be on the disk under test),
//! `BENCH_PREALLOCATE` (1; 0 runs the batched appends without preallocation, for comparison),
//! `BENCH_BATCHED_EVENTS` (2,000,000), `BENCH_SINGLE_SECS` (10), `BENCH_OPEN_EVENTS` (10,000,000;
//! 0 skips the open-time part).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use annals_store::engine::DENSE;
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

    let mut limits = Vec::new();
    for (size, secs) in [(4096, 3), (512 * 1024, 4), (8 << 20, 4)] {
        let append = disk_sync_rate(&root, size, Duration::from_secs(secs), false)?;
        let overwrite = disk_sync_rate(&root, size, Duration::from_secs(secs), true)?;
        println!(
            "| disk: {} KiB write + fdatasync | append {:.0}/s ({:.0} MB/s), overwrite {:.0}/s ({:.0} MB/s) | | |",
            size / 1024,
            append.0,
            append.1 / 1e6,
            overwrite.0,
            overwrite.1 / 1e6
        );
        limits.push(overwrite);
    }
    let (sync_4k, sync_512k) = (limits[0], limits[1]);

    rt.block_on(async {
        // Batched appends: batches of 1,000 events to one stream each, 1, 4 and 16 appenders.
        for appenders in [1usize, 4, 16] {
            let dir = root.join(format!("batched-{appenders}"));
            let preallocate = std::env::var("BENCH_PREALLOCATE").map_or(true, |v| v != "0");
            let store = EmbeddedStore::open(EngineConfig::new(&dir).preallocate(preallocate)).await?;
            let warm = warm_up(&store).await?;
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
            let mbps = (info.log_bytes - warm) as f64 / secs / 1e6;
            println!(
                "| durable batched appends, 1,000/batch, {appenders} appender(s) | {:.0} events/s ({mbps:.0} MB/s of log) | 512 KiB overwrite+fdatasync: {:.0} MB/s | {:.2} |",
                events / secs,
                sync_512k.1 / 1e6,
                mbps / (sync_512k.1 / 1e6)
            );
            if appenders == 1 {
                println!("| log bytes per event | {:.0} B | | |", (info.log_bytes - warm) as f64 / events);
                // Catch-up read of $all: pages of 4,096 through read_all, then a subscription.
                let started = Instant::now();
                let mut from = ReadFrom::Start;
                let mut n = 0usize;
                loop {
                    let page = store.read_all(from, Direction::Forwards, 4096, &EventFilter::all()).await?;
                    let Some(last) = page.last() else { break };
                    from = ReadFrom::After(last.position);
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
        let mut rates = Vec::new();
        for preallocate in [true, false] {
            let dir = root.join(format!("single-{preallocate}"));
            let store = EmbeddedStore::open(EngineConfig::new(&dir).preallocate(preallocate)).await?;
            warm_up(&store).await?;
            let (rate, hist) = single_event_appends(&store, Duration::from_secs(single_secs)).await?;
            store.close().await?;
            let _ = std::fs::remove_dir_all(&dir);
            let ratio = match rates.first() {
                Some(with) => format!("{:.1}× the sync rate; preallocation gives {:.2}×", rate / sync_4k.0, with / rate),
                None => format!("{:.1}× the sync rate", rate / sync_4k.0),
            };
            println!(
                "| durable single-event appends, 64 writers, preallocation {} | {rate:.0} events/s, p50 {} µs, p99 {} µs, p99.9 {} µs | 4 KiB overwrite+fdatasync: {:.0}/s | {ratio} |",
                if preallocate { "on" } else { "off" },
                hist.value_at_quantile(0.5),
                hist.value_at_quantile(0.99),
                hist.value_at_quantile(0.999),
                sync_4k.0,
            );
            rates.push(rate);
        }

        if open_events > 0 {
            open_time(&root.join("open"), open_events, &sync_512k).await?;
        }
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// Writes one full segment and a little more in batches, so that what follows is written to a
/// preallocated segment, as in a store that has been running for a while. Returns the log bytes.
async fn warm_up(store: &EmbeddedStore) -> anyhow::Result<u64> {
    let segment = EngineConfig::new("unused").segment_size;
    let mut b = 0usize;
    loop {
        let bytes = store.info().await?.log_bytes;
        if bytes > segment + (16 << 20) {
            return Ok(bytes);
        }
        let stream = StreamId::new(format!("warm-up-{b}")).expect("valid");
        let events = (0..1000).map(|i| sample_event(b, i)).collect();
        store.append_to_stream(&stream, ExpectedRevision::NoStream, events).await?;
        b += 1;
    }
}

/// 64 tasks, each appending one event at a time to its own stream with `Exact`, for `secs`.
async fn single_event_appends(store: &EmbeddedStore, secs: Duration) -> anyhow::Result<(f64, Histogram<u64>)> {
    let deadline = Instant::now() + secs;
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
    Ok((hist.len() as f64 / started.elapsed().as_secs_f64(), hist))
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
    let events = DENSE.index(info.next_position) as f64;
    let index_bytes = dir_size(&dir.join("index"));
    println!(
        "| building a {}-event store (6-event message streams, 4 appenders) | {:.0} events/s | | |",
        DENSE.index(info.next_position),
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
    println!(
        "| open of a {}-event store after a clean close | {} ms | | |",
        DENSE.index(info.next_position),
        clean.as_millis()
    );
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

/// Writes `size`-byte blocks each followed by `fdatasync` for `secs`: (syncs/s, bytes/s). With
/// `overwrite`, into a 1 GiB file zero-filled and synced first (stopping at its end), else
/// extending a new file.
fn disk_sync_rate(dir: &Path, size: usize, secs: Duration, overwrite: bool) -> anyhow::Result<(f64, f64)> {
    const PREFILLED: u64 = 1 << 30;
    let path = dir.join("disk-probe");
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    if overwrite {
        let zeros = vec![0u8; 8 << 20];
        for at in (0..PREFILLED).step_by(zeros.len()) {
            file.write_all_at(&zeros, at)?;
        }
        file.sync_all()?;
    }
    let block = vec![0xA5u8; size];
    let started = Instant::now();
    let (mut n, mut offset) = (0u64, 0u64);
    while started.elapsed() < secs && (!overwrite || offset + size as u64 <= PREFILLED) {
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
