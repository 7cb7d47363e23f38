//! The log UI's searches at scale (issue 13): the landing page (newest first, no filter, total
//! and facets) must cost the same whatever the number of messages, next to filtered searches,
//! and next to the same landing page counted match by match (the way every search was answered
//! before counts were kept at commit), all in one run on one view.
//!
//! The view is built straight through the tantivy backend's commit in bulk-load mode (no log, no
//! projector: only the index's shape matters here), with the `messages` mapping and documents
//! shaped like the demo workload's; a tenth of them are then rewritten (a later status), as
//! live traffic does, so the index holds deleted documents too.
//!
//! `cargo bench -p annals-projectors --bench search` prints a markdown table. Environment:
//! `BENCH_DIR` (default /var/tmp/annals-search-bench), `BENCH_MESSAGES` (1,000,000),
//! `BENCH_SEARCHES` (300 per query shape).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use annals_projectors::view_store::{FieldValue, Filter, Query, Sort, ViewBatch, ViewDoc};
use annals_projectors::{MessagesProjection, Projection, TantivyViewStore};
use annals_store::Position;
use chrono::{DateTime, Duration, Utc};
use hdrhistogram::Histogram;

/// The allocator `annals serve` runs with (src/main.rs), so the figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TENANT: &str = "demo";
const BATCH: u64 = 20_000;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/annals-search-bench".into()));
    let messages = env_u64("BENCH_MESSAGES", 1_000_000);
    let searches = env_u64("BENCH_SEARCHES", 300) as usize;
    let _ = std::fs::remove_dir_all(&root);
    let view = TantivyViewStore::open(&root, MessagesProjection.schema())?;
    let started = Instant::now();
    build(&view, messages)?;
    let built = started.elapsed().as_secs_f64();
    eprintln!("built {messages} messages in {built:.1} s");
    // Reopened, so that no merge started by the end of the bulk load runs during the
    // measurements (on two cores a merge thread takes half the machine); and each shape is
    // searched a few times before it is timed, as a served view's would have been.
    drop(view);
    let view = TantivyViewStore::open(&root, MessagesProjection.schema())?;
    for (_, query) in shapes() {
        for _ in 0..20 {
            view.search_blocking(&query)?;
        }
    }
    eprintln!(
        "load average before the searches: {}",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );

    println!(
        "| search ({messages} messages, 50 per page, facets by status and channel) | p50 | p99 | CPU per search (mean) | runs | matches |"
    );
    println!("|---|---|---|---|---|---|");
    let mut landing_p99 = 0.0;
    let mut old_p99 = 0.0;
    let row = |name: &str, t: &Timings, runs: usize| {
        println!("| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {runs} | {} |", t.p50, t.p99, t.cpu_mean, t.total);
    };
    for (name, query) in shapes() {
        // Searches that visit every match take up to a second each at 5 M: fewer runs.
        let slow = ["counted match by match", "not counted", "full text"];
        let runs = if slow.iter().any(|s| name.contains(s)) { (searches / 6).max(10) } else { searches };
        let t = time_searches(&view, &query, runs)?;
        if name.starts_with("landing page: newest") {
            landing_p99 = t.p99;
        }
        if name.starts_with("the same landing page counted") {
            old_p99 = t.p99;
        }
        row(name, &t, runs);
    }
    // The second page of the landing query, through its cursor.
    let first = view.search_blocking(&landing())?;
    let second = Query { after: first.next.clone(), ..landing() };
    row("landing page, second page (cursor)", &time_searches(&view, &second, searches)?, searches);
    println!();
    eprintln!(
        "load average after the searches: {}",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    println!(
        "landing p99 {landing_p99:.2} ms against {old_p99:.2} ms counted match by match: {:.1}× faster (built in {built:.0} s)",
        old_p99 / landing_p99.max(0.001)
    );
    drop(view);
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// Commits `messages` documents in batches, then rewrites every tenth with a later status.
fn build(view: &TantivyViewStore, messages: u64) -> anyhow::Result<()> {
    let start = Utc::now() - Duration::hours(24);
    let step = (24 * 3600 * 1_000_000 / messages.max(1)) as i64; // microseconds between messages
    view.bulk_load_blocking(true)?;
    let mut position = 0u64;
    let commit = |docs: Vec<ViewDoc>, position: u64| -> anyhow::Result<()> {
        let checkpoint = Some(annals_projectors::view_store::Checkpoint { position: Position::from_code(position) });
        view.commit_blocking(&ViewBatch { upserts: docs, checkpoint })?;
        Ok(())
    };
    let mut n = 0;
    while n < messages {
        let end = (n + BATCH).min(messages);
        let docs =
            (n..end).map(|i| doc(i, start + Duration::microseconds(step * i as i64), false, position + i)).collect();
        position += end - n;
        commit(docs, position)?;
        n = end;
    }
    let mut n = 0;
    while n < messages {
        let end = (n + BATCH * 10).min(messages);
        let docs = (n..end)
            .step_by(10)
            .map(|i| doc(i, start + Duration::microseconds(step * i as i64), true, position + i))
            .collect();
        position += end - n;
        commit(docs, position)?;
        n = end;
    }
    view.bulk_load_blocking(false)?;
    Ok(())
}

/// A message shaped like the demo workload's: status, channel, provider, recipient (one in 40
/// messages' recipients repeats), template, tags, subject, first and last event times.
fn doc(i: u64, created: DateTime<Utc>, later: bool, version: u64) -> ViewDoc {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7;
    let status = match (h % 100, later) {
        (_, true) => "CLICKED",
        (0..=39, _) => "DELIVERED",
        (40..=54, _) => "SENT",
        (55..=69, _) => "OPENED",
        (70..=74, _) => "CLICKED",
        (75..=86, _) => "UNDELIVERABLE",
        (87..=92, _) => "ROUTED",
        (93..=96, _) => "THROTTLED",
        _ => "CANCELED",
    };
    let channel = ["email", "sms", "push", "chat"][(h / 100 % 4) as usize];
    let provider = ["ses", "sendgrid", "twilio", "fcm"][(h / 400 % 4) as usize];
    let recipient = format!("user-{}", h / 1600 % (i / 40 + 1));
    let subjects = ["Your invoice is ready", "Reset your password", "Your order has shipped", "Weekly digest"];
    let subject = subjects[(h / 7 % 4) as usize];
    let template = format!("tmpl_{}", h / 11 % 12);
    let tag = ["orders", "marketing", "security"][(h / 13 % 3) as usize];
    let last = created + Duration::seconds((h % 600) as i64 + if later { 3600 } else { 0 });
    let mut fields: BTreeMap<&'static str, Vec<FieldValue>> = BTreeMap::new();
    let mut put = |name, value: FieldValue| fields.entry(name).or_default().push(value);
    put("status", FieldValue::Str(status.into()));
    put("channel", FieldValue::Str(channel.into()));
    put("provider", FieldValue::Str(provider.into()));
    put("recipient", FieldValue::Str(recipient.clone()));
    put("template", FieldValue::Str(template.clone()));
    put("tag", FieldValue::Str(tag.into()));
    put("has_errors", FieldValue::Bool(status == "UNDELIVERABLE"));
    put("text", FieldValue::Str(subject.into()));
    put("text", FieldValue::Str(recipient.clone()));
    put("first_event_at", FieldValue::Time(created));
    put("last_event_at", FieldValue::Time(last));
    let id = format!("{TENANT}/message-{i}");
    let source = serde_json::json!({
        "message_id": i.to_string(), "stream": id, "status": status, "channel": channel, "provider": provider,
        "recipient_id": recipient, "template_id": template, "tags": [tag], "subject": subject,
        "first_event_at": created, "last_event_at": last,
        "timeline": [{ "type": "message.enqueued", "recorded_at": created }, { "type": "message.sent", "recorded_at": last }],
    });
    ViewDoc {
        id,
        tenant: TENANT.into(),
        version: Position::from_code(version),
        fields,
        source: serde_json::value::to_raw_value(&source).expect("a document serializes"),
    }
}

/// The landing page as `GET /v1/messages` asks for it.
fn landing() -> Query {
    Query {
        tenant: TENANT.to_owned(),
        filters: vec![],
        text: None,
        sort: Sort { field: "first_event_at", descending: true },
        limit: 50,
        after: None,
        facets: vec!["status", "channel"],
    }
}

fn shapes() -> Vec<(&'static str, Query)> {
    let term = |field, value: &str| Filter::Term { field, values: vec![value.to_owned()] };
    let with = |filters: Vec<Filter>, text: Option<&str>| Query { filters, text: text.map(str::to_owned), ..landing() };
    vec![
        ("landing page: newest first, no filter", landing()),
        (
            "landing page, oldest first",
            Query { sort: Sort { field: "first_event_at", descending: false }, ..landing() },
        ),
        (
            "the same landing page counted match by match (facet on provider too: not counted)",
            Query { facets: vec!["status", "channel", "provider"], ..landing() },
        ),
        ("status = UNDELIVERABLE", with(vec![term("status", "UNDELIVERABLE")], None)),
        ("channel = sms and status = DELIVERED", with(vec![term("channel", "sms"), term("status", "DELIVERED")], None)),
        ("recipient = one user", with(vec![term("recipient", "user-0")], None)),
        ("provider = ses (not counted)", with(vec![term("provider", "ses")], None)),
        ("full text `invoice`", with(vec![], Some("invoice"))),
    ]
}

/// Wall-clock p50 and p99, this thread's mean CPU time per search (ms), and the query's matches.
/// The CPU time is the search's own work, whatever else the machine runs meanwhile (on a shared
/// two-core machine, wall-clock tails are mostly waits for a core); a mean, because the kernel
/// accounts it in scheduler ticks (4 ms here), which only a sum over many runs makes precise.
fn time_searches(view: &TantivyViewStore, query: &Query, runs: usize) -> anyhow::Result<Timings> {
    let mut wall = Histogram::<u64>::new(3)?;
    let mut cpu = 0u64;
    let mut total = 0;
    for _ in 0..runs {
        let (started, cpu_started) = (Instant::now(), thread_cpu_micros());
        total = view.search_blocking(query)?.total;
        wall.record(started.elapsed().as_micros() as u64)?;
        cpu += thread_cpu_micros().saturating_sub(cpu_started);
    }
    let ms = |h: &Histogram<u64>, q| h.value_at_quantile(q) as f64 / 1e3;
    let cpu_mean = cpu as f64 / runs.max(1) as f64 / 1e3;
    Ok(Timings { p50: ms(&wall, 0.5), p99: ms(&wall, 0.99), cpu_mean, total })
}

struct Timings {
    p50: f64,
    p99: f64,
    cpu_mean: f64,
    total: u64,
}

/// This thread's time on a CPU so far, from `/proc/thread-self/schedstat` (nanoseconds; the
/// workspace forbids the `unsafe` a `clock_gettime` call would need).
fn thread_cpu_micros() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    stat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0) / 1_000
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
