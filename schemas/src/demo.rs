//! The demo workload: the life a notification platform records for each message — enqueued,
//! rendered, routed (or throttled first), sent, then delivered / opened / clicked, or
//! undeliverable with a reason, or canceled before sending — across email, SMS, push and chat,
//! over several providers each, with delays between steps, plus an `audit.recorded` event for
//! every 40th message (template, brand, API key and workspace member changes).
//!
//! It lives here, beside the types it instantiates, so that `annals demo` (through HTTP) and the
//! projector benchmarks (straight into a store) generate the same data. Deterministic: message
//! `n` of seed `s` is always the same events.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// One message of the workload: its stream (`message-{id}`, without a tenant), its events as
/// `{"type", "data"}` objects in the order a platform records them, and the audit event that
/// comes with every 40th message (stream, event).
#[derive(Clone, Debug)]
pub struct DemoMessage {
    pub stream: String,
    pub events: Vec<Value>,
    pub audit: Option<(String, Value)>,
}

/// Message `n` of `total` of the workload of `seed`; message times spread evenly from `start`
/// over one day, in message order.
pub fn message(seed: u64, n: u64, total: u64, start: DateTime<Utc>) -> DemoMessage {
    let at = start + Duration::milliseconds((86_400_000 * n / total.max(1)) as i64);
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n);
    let id = message_id(seed, n);
    let events = message_events(&mut rng, &id, n, at);
    let audit = n.is_multiple_of(40).then(|| audit_event(&mut rng, n, at));
    DemoMessage { stream: format!("message-{id}"), events, audit }
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
