//! What the append path's checks cost per body, in process: the structural scan
//! (`structure::check`) next to the parse the route already does (`serde_json` with `RawValue`,
//! as `wire::AppendBody`), and the schema validation of a registered type with and without the
//! Rust type's reading (`Registry::validate` now; `jsonschema` alone as before issue 13). Run
//! with `cargo bench -p annals-schemas --bench structure`; `BENCH_ITERS` (default 200,000).

use std::hint::black_box;
use std::time::Instant;

use annals_schemas::structure::{check, MAX_DEPTH};
use annals_schemas::{message::MessageEnqueued, Registry};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// The route's body type, as `query-api`'s `wire.rs` declares it.
#[derive(Deserialize)]
#[allow(dead_code)]
struct AppendBody {
    #[serde(default)]
    expected_revision: Option<Box<RawValue>>,
    events: Vec<NewEvent>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct NewEvent {
    id: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    data: Box<RawValue>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
}

fn per_op(iters: u32, mut op: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        op();
    }
    let started = Instant::now();
    for _ in 0..iters {
        op();
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(iters)
}

fn main() {
    let iters: u32 = std::env::var("BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let enqueued = serde_json::json!({
        "message_id": "01HZX3K9M2", "channel": "email", "notification": "order-shipped",
        "recipient": { "id": "user-42", "email": "ada@example.com", "phone": "+14155550123" },
        "template": { "id": "tmpl_8f3a2c", "version": 12 }, "tags": ["transactional", "orders"],
        "subject": "Your order #48213 has shipped — ça arrive", "occurred_at": "2026-11-23T17:42:10.123456Z"
    });
    let single = serde_json::json!({ "expected_revision": "any", "events": [{
        "id": "0192f0c4-5b8e-7c1a-9d2e-3f4a5b6c7d8e", "type": "message.enqueued", "data": enqueued,
        "metadata": { "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" }
    }] })
    .to_string();
    let opaque = serde_json::json!({ "events": [{ "type": "invoice.paid", "data": {
        "invoice": { "id": "inv_1", "lines": (0..12).map(|i| serde_json::json!({ "sku": format!("sku-{i}"), "qty": i, "price": 9.99 })).collect::<Vec<_>>() },
        "note": "x".repeat(200)
    } }] })
    .to_string();
    let batch = serde_json::json!({ "events": (0..100).map(|_| serde_json::json!({ "type": "message.enqueued", "data": enqueued })).collect::<Vec<_>>() })
    .to_string();

    println!("| body | bytes | structural scan, ns | RawValue parse (the route's), ns | scan / parse |");
    println!("|---|---|---|---|---|");
    for (name, body) in
        [("single registered event", &single), ("single opaque event", &opaque), ("batch of 100", &batch)]
    {
        let n = if body.len() > 10_000 { iters / 50 } else { iters };
        let scan = per_op(n, || {
            black_box(check(black_box(body.as_bytes()), 3 + MAX_DEPTH)).unwrap();
        });
        let parse = per_op(n, || {
            black_box(serde_json::from_slice::<AppendBody>(black_box(body.as_bytes())).unwrap());
        });
        println!("| {name} | {} | {scan:.0} | {parse:.0} | {:.2} |", body.len(), scan / parse);
    }

    let registry = Registry::new();
    let schema = registry.schemas().into_iter().find(|s| s.event_type == "message.enqueued").unwrap().schema;
    let jsonschema_only = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
    let text = enqueued.to_string();
    let parse_value = per_op(iters, || {
        black_box(serde_json::from_str::<Value>(black_box(&text)).unwrap());
    });
    let before = per_op(iters, || {
        assert!(jsonschema_only.is_valid(black_box(&enqueued)));
    });
    let now = per_op(iters, || {
        registry.validate("message.enqueued", None, black_box(&enqueued)).unwrap();
    });
    let reads = per_op(iters, || {
        black_box(MessageEnqueued::deserialize(black_box(&enqueued)).unwrap());
    });
    println!();
    println!("| registered data (message.enqueued) | ns |");
    println!("|---|---|");
    println!("| parse into a Value (already done before) | {parse_value:.0} |");
    println!("| JSON Schema only (before) | {before:.0} |");
    println!("| Registry::validate: schema + Rust type (now) | {now:.0} |");
    println!("| the Rust type's reading alone (`MessageEnqueued::deserialize(&Value)`) | {reads:.0} |");
}
