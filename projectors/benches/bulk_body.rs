//! Bulk body building for the Elasticsearch backend (issue 16): message documents per second
//! serialised into `_bulk` bodies in-process, so that annals is never what limits a rebuild into
//! Elasticsearch. The documents are the `messages` view's, folded from the demo workload's events
//! (timelines of ~6 entries, as `annals demo` makes them); nothing is sent anywhere.
//!
//! In the same run, the least any writer must do for the same documents is measured too: their
//! `source` JSON copied into one buffer (the bulk body holds it verbatim), so the ratio says
//! what the action lines and fields cost on top.
//!
//! `cargo bench -p annals-projectors --features elasticsearch --bench bulk_body`; environment:
//! `BENCH_DOCS` (default 100,000), `BENCH_ROUNDS` (default 5; the best round is reported).

use std::time::Instant;

use annals_projectors::view_store::elasticsearch::bulk::{bodies, WriteMode};
use annals_projectors::view_store::ViewDoc;
use annals_projectors::{fold_message, MessagesProjection, Projection};
use annals_store::{Position, RecordedEvent, Revision, StreamId};

/// The allocator `annals serve` runs with (src/main.rs), so the figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let count = env_u64("BENCH_DOCS", 100_000);
    let rounds = env_u64("BENCH_ROUNDS", 5).max(1);
    let docs = documents(count)?;
    let which: Vec<usize> = (0..docs.len()).collect();
    let index = "annals-messages-000002";

    let (mut best, mut bytes, mut requests) = (f64::MAX, 0usize, 0usize);
    for _ in 0..rounds {
        let started = Instant::now();
        let built = bodies(index, WriteMode::ExternalVersion, &docs, &which, 1000, 5 * 1024 * 1024);
        best = best.min(started.elapsed().as_secs_f64());
        bytes = built.iter().map(|b| b.body.len()).sum();
        requests = built.len();
        std::hint::black_box(built);
    }
    let mut copy_best = f64::MAX;
    for _ in 0..rounds {
        let started = Instant::now();
        let mut buffer = Vec::with_capacity(bytes);
        for doc in &docs {
            buffer.extend_from_slice(doc.source.get().as_bytes());
            buffer.push(b'\n');
        }
        copy_best = copy_best.min(started.elapsed().as_secs_f64());
        std::hint::black_box(buffer);
    }
    let rate = docs.len() as f64 / best;
    let copy_rate = docs.len() as f64 / copy_best;
    println!("| measure | result | limit measured in this run | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| `_bulk` bodies of {} `messages` documents (1 thread, best of {rounds}) | {rate:.0} docs/s, {:.0} MB/s, {} requests of ≤1000 docs, {:.0} bytes/doc | copying the documents' `source` JSON alone: {copy_rate:.0} docs/s | {:.2} |",
        docs.len(),
        bytes as f64 / best / 1e6,
        requests,
        bytes as f64 / docs.len() as f64,
        rate / copy_rate
    );
    Ok(())
}

/// `count` message documents of the demo workload, as the projection hands them to a view.
fn documents(count: u64) -> anyhow::Result<Vec<ViewDoc>> {
    let start = chrono::Utc::now() - chrono::Duration::hours(24);
    let mut position = 0u64;
    let mut docs = Vec::with_capacity(count as usize);
    for n in 0..count {
        let message = annals_schemas::demo::message(1, n, count, start);
        let stream = StreamId::new(format!("demo/{}", message.stream))?;
        let events: Vec<RecordedEvent> = message
            .events
            .iter()
            .enumerate()
            .map(|(revision, e)| {
                position += 1;
                RecordedEvent {
                    id: uuid::Uuid::from_u64_pair(position, revision as u64),
                    stream: stream.clone(),
                    revision: Revision(revision as u64),
                    position: Position::from_code(position),
                    event_type: e["type"].as_str().unwrap_or_default().to_owned(),
                    data: serde_json::to_vec(&e["data"]).expect("JSON").into(),
                    metadata: Vec::new().into(),
                    recorded_at: start,
                }
            })
            .collect();
        let doc = fold_message(&events)?.ok_or_else(|| anyhow::anyhow!("message {n} folds to no document"))?;
        docs.push(MessagesProjection.to_view(&doc));
    }
    Ok(docs)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
