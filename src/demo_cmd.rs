//! `annals demo --messages N`: a realistic workload for a running server, through the normal
//! append path (`POST /v1/streams/{stream}/events`, schema-validated like any client's), so the
//! quick start has something to search and the benchmarks have data shaped like production.
//!
//! The workload itself (`annals_schemas::demo`) is the life a notification platform records for
//! each message, across channels and providers, plus audit events; a seed makes it repeatable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::{Duration, Utc};
use clap::Args;
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How many messages to generate (about 6 events each).
    #[arg(long, default_value_t = 1_000)]
    messages: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: u64,
    /// Seed of the random choices (the same seed gives the same workload).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The server's base URL.
    #[arg(long, env = "ANNALS_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A writer (or admin) key.
    #[arg(long, env = "ANNALS_KEY", hide_env_values = true)]
    key: Option<String>,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let key = args.key.context("a writer key is needed: --key or ANNALS_KEY")?;
    let client = reqwest::Client::new();
    let base = args.url.trim_end_matches('/').to_owned();
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    // Message times spread over the last day, in message order.
    let start = Utc::now() - Duration::hours(24);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, base, key, next, events) =
            (client.clone(), base.clone(), key.clone(), Arc::clone(&next), Arc::clone(&events));
        let (total, seed) = (args.messages, args.seed);
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return anyhow::Ok(());
                }
                let message = annals_schemas::demo::message(seed, n, total, start);
                events.fetch_add(message.events.len() as u64, Ordering::Relaxed);
                append(&client, &base, &key, &message.stream, message.events).await?;
                if let Some((stream, event)) = message.audit {
                    events.fetch_add(1, Ordering::Relaxed);
                    append(&client, &base, &key, &stream, vec![event]).await?;
                }
                if (n + 1) % 10_000 == 0 {
                    eprintln!("annals demo: {} messages", n + 1);
                }
            }
        }));
    }
    for worker in workers {
        worker.await.context("a demo worker panicked")??;
    }
    let secs = started.elapsed().as_secs_f64();
    let events = events.load(Ordering::Relaxed);
    println!(
        "appended {} messages ({events} events) in {secs:.1} s: {:.0} events/s",
        args.messages,
        events as f64 / secs
    );
    Ok(())
}

async fn append(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    stream: &str,
    events: Vec<Value>,
) -> anyhow::Result<()> {
    let url = format!("{base}/v1/streams/{stream}/events");
    let response = client
        .post(&url)
        .bearer_auth(key)
        .json(&json!({ "events": events }))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        bail!("append to {stream} answered {status}: {}", body["detail"].as_str().unwrap_or("no detail"));
    }
    Ok(())
}
