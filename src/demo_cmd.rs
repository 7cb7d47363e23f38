//! `annals demo --messages N`: a realistic workload for a running server, through the normal
//! append path (`POST /v1/streams/{stream}/events`, schema-validated like any client's), so the
//! quick start has something to search and the benchmarks have data shaped like production.
//!
//! Each message gets the life a notification platform records: enqueued, rendered, routed (or
//! throttled first), sent, then delivered / opened / clicked, or undeliverable with a reason, or
//! canceled before sending — across email, SMS, push and chat, over several providers each, with
//! delays between steps. Every 40th message comes with an `audit.recorded` event (template,
//! brand, API key and workspace member changes). A seed makes the workload repeatable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::{DateTime, Duration, Utc};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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
                let at = start + Duration::milliseconds((86_400_000 * n / total.max(1)) as i64);
                let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n);
                let id = message_id(seed, n);
                let message = message_events(&mut rng, &id, n, at);
                events.fetch_add(message.len() as u64, Ordering::Relaxed);
                append(&client, &base, &key, &format!("message-{id}"), message).await?;
                if n % 40 == 0 {
                    let (stream, event) = audit_event(&mut rng, n, at);
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

/// A message id unique per seed, sortable by creation like a ULID-ish id would be.
fn message_id(seed: u64, n: u64) -> String {
    format!("msg_{seed:x}_{n:010}")
}

const CHANNELS: [(&str, u32, &[&str]); 4] = [
    ("email", 60, &["ses", "sendgrid", "postmark"]),
    ("sms", 20, &["twilio", "vonage"]),
    ("push", 15, &["fcm", "apns"]),
    ("chat", 5, &["slack"]),
];

const NOTIFICATIONS: [(&str, &str); 6] = [
    ("order-shipped", "Your order #{n} has shipped"),
    ("password-reset", "Reset your password"),
    ("invoice-ready", "Your invoice {n} is ready"),
    ("welcome", "Welcome aboard"),
    ("weekly-digest", "Your week in review"),
    ("login-alert", "New sign-in to your account"),
];

/// The events of one message, in the order a platform would record them.
fn message_events(rng: &mut StdRng, id: &str, n: u64, at: DateTime<Utc>) -> Vec<Value> {
    let roll = rng.gen_range(0..100);
    let (channel, providers) = pick_channel(roll);
    let provider = providers[rng.gen_range(0..providers.len())];
    let (notification, subject) = NOTIFICATIONS[rng.gen_range(0..NOTIFICATIONS.len())];
    let user = rng.gen_range(0..50_000u32);
    let mut recipient = json!({ "id": format!("user_{user}") });
    match channel {
        "email" => recipient["email"] = json!(format!("user{user}@example.com")),
        "sms" => recipient["phone"] = json!(format!("+1415555{:04}", user % 10_000)),
        _ => {}
    }
    let template = json!({ "id": format!("tmpl_{notification}"), "version": rng.gen_range(1..20) });
    let mut t = at;
    let mut step = |rng: &mut StdRng, min_ms: i64, max_ms: i64| {
        t += Duration::milliseconds(rng.gen_range(min_ms..max_ms));
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let mut events = vec![event(
        "message.enqueued",
        json!({
            "message_id": id, "recipient": recipient, "notification": notification, "template": template,
            "channel": channel, "tags": [if notification == "weekly-digest" { "marketing" } else { "transactional" }],
            "subject": subject.replace("{n}", &n.to_string()), "occurred_at": step(rng, 0, 1),
        }),
    )];
    let fate = rng.gen_range(0..1000);
    if fate < 10 {
        events.push(event("message.canceled", json!({ "message_id": id, "occurred_at": step(rng, 50, 2_000) })));
        return events;
    }
    events.push(event(
        "message.rendered",
        json!({ "message_id": id, "template": template, "occurred_at": step(rng, 5, 50) }),
    ));
    if fate < 40 {
        let throttled = json!({ "message_id": id, "occurred_at": step(rng, 5, 50) });
        events.push(event("message.throttled", throttled));
    }
    if fate < 55 {
        let none = json!({ "message_id": id, "reason": "NO_PROVIDERS", "occurred_at": step(rng, 5, 50) });
        events.push(event("message.undeliverable", none));
        return events;
    }
    let routed =
        json!({ "message_id": id, "channel": channel, "provider": provider, "occurred_at": step(rng, 5, 100) });
    events.push(event("message.routed", routed));
    if fate < 80 {
        let detail = "the provider answered 503 three times";
        let failed = json!({ "message_id": id, "reason": "PROVIDER_ERROR", "error_detail": detail,
            "provider": provider, "occurred_at": step(rng, 100, 3_000) });
        events.push(event("message.undeliverable", failed));
        return events;
    }
    let provider_message_id = format!("{provider}-{:016x}", rng.gen::<u64>());
    let sent = json!({ "message_id": id, "channel": channel, "provider": provider,
        "provider_message_id": provider_message_id, "occurred_at": step(rng, 50, 500) });
    events.push(event("message.sent", sent));
    if fate < 130 {
        let reason = if channel == "email" && fate < 115 { "BOUNCED" } else { "UNSUBSCRIBED" };
        let bounced =
            json!({ "message_id": id, "reason": reason, "provider": provider, "occurred_at": step(rng, 500, 60_000) });
        events.push(event("message.undeliverable", bounced));
        return events;
    }
    let delivered = json!({ "message_id": id, "provider": provider, "provider_message_id": provider_message_id,
        "occurred_at": step(rng, 200, 30_000) });
    events.push(event("message.delivered", delivered));
    if channel != "sms" && fate < 500 {
        events.push(event("message.opened", json!({ "message_id": id, "occurred_at": step(rng, 10_000, 3_600_000) })));
        if fate < 250 {
            let clicked = json!({ "message_id": id, "url": format!("https://example.com/l/{n}"),
                "occurred_at": step(rng, 1_000, 600_000) });
            events.push(event("message.clicked", clicked));
        }
    }
    events
}

fn pick_channel(roll: u32) -> (&'static str, &'static [&'static str]) {
    let mut acc = 0;
    for (channel, weight, providers) in CHANNELS {
        acc += weight;
        if roll < acc {
            return (channel, providers);
        }
    }
    (CHANNELS[0].0, CHANNELS[0].2)
}

/// An audit event of a workspace's configuration changes, with its stream name.
fn audit_event(rng: &mut StdRng, n: u64, at: DateTime<Utc>) -> (String, Value) {
    const CHANGES: [(&str, &str, &str); 6] = [
        ("template", "template.updated", "update"),
        ("template", "template.published", "update"),
        ("brand", "brand.updated", "update"),
        ("api_key", "api_key.created", "create"),
        ("api_key", "api_key.revoked", "delete"),
        ("member", "workspace.member_invited", "create"),
    ];
    let (target_type, action, crud) = CHANGES[rng.gen_range(0..CHANGES.len())];
    let target_id = format!("{target_type}_{}", rng.gen_range(0..200));
    let outcome = if rng.gen_range(0..100) < 3 { "failure" } else { "success" };
    let actor = rng.gen_range(0..12);
    let mut data = json!({
        "actor": { "id": format!("user_{actor}"), "type": "user", "name": format!("Team member {actor}"),
                   "ip": format!("203.0.113.{actor}") },
        "action": action, "crud": crud,
        "target": { "type": target_type, "id": target_id },
        "outcome": outcome,
        "request_id": format!("req_{n:x}"),
        "occurred_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    if outcome == "failure" {
        data["reason"] = json!("permission denied");
    }
    if crud == "update" {
        data["changes"] = json!({ "before": { "version": n % 7 }, "after": { "version": n % 7 + 1 } });
    }
    (format!("audit-{target_type}-{target_id}"), event("audit.recorded", data))
}

fn event(event_type: &str, data: Value) -> Value {
    json!({ "type": event_type, "data": data })
}
