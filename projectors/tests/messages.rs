//! The `messages` fold on realistic histories: every status, the conflict rules, the fields each
//! event feeds, duplicates, tenants and the document's JSON shape.

use crate::common;

use annals_projectors::{fold_message, MessageDoc, MessageEventType, MessageStatus};
use annals_schemas::message::{Channel, UndeliverableReason};
use annals_store::Position;
use chrono::Duration;
use common::{t0, StreamLog};
use serde_json::{json, Value};

fn enqueued(message_id: &str) -> Value {
    json!({
        "message_id": message_id,
        "recipient": { "id": "user-42", "email": "ada@example.com", "phone": "+14155550123" },
        "notification": "order-shipped",
        "template": { "id": "tmpl_8f3a2c", "version": 12 },
        "channel": "email",
        "tags": ["transactional", "orders"],
        "subject": "Your order #48213 has shipped",
        "occurred_at": "2026-11-23T17:42:09.5Z"
    })
}

fn routed(message_id: &str) -> Value {
    json!({ "message_id": message_id, "channel": "email", "provider": "ses" })
}

fn sent(message_id: &str) -> Value {
    json!({ "message_id": message_id, "channel": "email", "provider": "ses", "provider_message_id": "ses-0001" })
}

fn msg(message_id: &str) -> Value {
    json!({ "message_id": message_id })
}

/// The status after folding `types` in log order, each with minimal valid data.
fn status_of(types: &[&str]) -> MessageStatus {
    let mut log = StreamLog::new("message-m1");
    for event_type in types {
        let data = match *event_type {
            "message.enqueued" => enqueued("m1"),
            "message.routed" => routed("m1"),
            "message.sent" => sent("m1"),
            "message.undeliverable" => json!({ "message_id": "m1", "reason": "BOUNCED" }),
            _ => msg("m1"),
        };
        log.push(event_type, data);
    }
    fold_message(&log.events).expect("applies").expect("a document").status
}

#[test]
fn enqueued_message_has_the_fields_of_its_request() {
    let mut log = StreamLog::new("message-01HZX3K9M2");
    let event = log.push("message.enqueued", enqueued("01HZX3K9M2"));
    let doc = MessageDoc::from_event(&event).expect("applies");

    assert_eq!(doc.message_id, "01HZX3K9M2");
    assert_eq!(doc.tenant, "");
    assert_eq!(doc.stream, "message-01HZX3K9M2");
    assert_eq!(doc.status, MessageStatus::Enqueued);
    assert_eq!(doc.recipient_id.as_deref(), Some("user-42"));
    assert_eq!(doc.recipient_email.as_deref(), Some("ada@example.com"));
    assert_eq!(doc.recipient_phone.as_deref(), Some("+14155550123"));
    assert_eq!(doc.notification.as_deref(), Some("order-shipped"));
    assert_eq!(doc.template_id.as_deref(), Some("tmpl_8f3a2c"));
    assert_eq!(doc.template_version, Some(12));
    assert_eq!(doc.channel, Some(Channel::Email));
    assert_eq!(doc.tags, ["transactional", "orders"]);
    assert_eq!(doc.subject.as_deref(), Some("Your order #48213 has shipped"));
    assert_eq!(doc.provider, None);
    assert!(!doc.has_errors());
    assert_eq!(doc.first_event_at, t0());
    assert_eq!(doc.last_event_at, t0());
    assert_eq!(doc.last_position, event.position);
    assert_eq!(doc.timeline.len(), 1);
    assert_eq!(doc.timeline[0].event_id, event.id);
    assert_eq!(doc.timeline[0].event_type, MessageEventType::Enqueued);
    assert_eq!(doc.timeline[0].occurred_at, Some(t0() - Duration::milliseconds(500)));
}

#[test]
fn email_that_is_clicked_goes_through_every_stage() {
    let mut log = StreamLog::new("acme/message-m1");
    log.push("message.enqueued", enqueued("m1"));
    log.push("message.rendered", json!({ "message_id": "m1", "template": { "id": "tmpl_8f3a2c", "version": 13 } }));
    log.push("message.routed", routed("m1"));
    log.push("message.sent", sent("m1"));
    log.push("message.delivered", json!({ "message_id": "m1", "provider": "ses", "provider_message_id": "ses-0001" }));
    log.push("message.opened", json!({ "message_id": "m1", "user_agent": "Mozilla/5.0" }));
    log.push("message.clicked", json!({ "message_id": "m1", "url": "https://example.com/track/48213" }));

    let mut statuses = Vec::new();
    let mut doc = MessageDoc::from_event(&log.events[0]).expect("applies");
    statuses.push(doc.status);
    for event in &log.events[1..] {
        doc.apply(event).expect("applies");
        statuses.push(doc.status);
    }
    use MessageStatus::*;
    assert_eq!(statuses, [Enqueued, Enqueued, Routed, Sent, Delivered, Opened, Clicked]);

    assert_eq!(doc.tenant, "acme");
    assert_eq!(doc.message_id, "m1");
    assert_eq!(doc.template_version, Some(13), "the rendered template is later than the requested one");
    assert_eq!(doc.provider.as_deref(), Some("ses"));
    assert_eq!(doc.provider_message_id.as_deref(), Some("ses-0001"));
    assert_eq!(doc.first_event_at, t0());
    assert_eq!(doc.last_event_at, t0() + Duration::seconds(6));
    assert_eq!(doc.last_position, log.events[6].position);
    let positions: Vec<Position> = doc.timeline.iter().map(|e| e.position).collect();
    let expected: Vec<Position> = log.events.iter().map(|e| e.position).collect();
    assert_eq!(positions, expected);
    assert_eq!(doc.timeline[5].user_agent.as_deref(), Some("Mozilla/5.0"));
    assert_eq!(doc.timeline[6].url.as_deref(), Some("https://example.com/track/48213"));
    assert_eq!(fold_message(&log.events).expect("applies"), Some(doc));
}

#[test]
fn every_status_from_its_usual_history() {
    use MessageStatus::*;
    let cases: &[(&[&str], MessageStatus)] = &[
        (&["message.enqueued"], Enqueued),
        (&["message.enqueued", "message.routed"], Routed),
        (&["message.enqueued", "message.routed", "message.throttled"], Throttled),
        (&["message.enqueued", "message.routed", "message.sent"], Sent),
        (&["message.enqueued", "message.routed", "message.sent", "message.delivered"], Delivered),
        (&["message.enqueued", "message.routed", "message.sent", "message.delivered", "message.opened"], Opened),
        (&["message.enqueued", "message.routed", "message.sent", "message.clicked"], Clicked),
        (&["message.enqueued", "message.routed", "message.sent", "message.undeliverable"], Undeliverable),
        (&["message.enqueued", "message.canceled"], Canceled),
    ];
    for (types, expected) in cases {
        assert_eq!(status_of(types), *expected, "{types:?}");
    }
    assert_eq!(MessageStatus::ALL.len(), cases.len(), "every status has a case");
}

#[test]
fn throttle_and_routing_are_one_stage_and_the_later_wins() {
    use MessageStatus::*;
    assert_eq!(status_of(&["message.enqueued", "message.throttled"]), Throttled);
    assert_eq!(status_of(&["message.enqueued", "message.throttled", "message.routed"]), Routed);
    assert_eq!(status_of(&["message.enqueued", "message.routed", "message.throttled", "message.routed"]), Routed);
    assert_eq!(status_of(&["message.enqueued", "message.routed", "message.throttled", "message.sent"]), Sent);
}

#[test]
fn rendered_never_changes_the_status_but_feeds_subject_and_template() {
    use MessageStatus::*;
    assert_eq!(status_of(&["message.enqueued", "message.rendered"]), Enqueued);
    assert_eq!(status_of(&["message.rendered"]), Enqueued);
    assert_eq!(status_of(&["message.enqueued", "message.routed", "message.rendered"]), Routed);
    assert_eq!(status_of(&["message.enqueued", "message.routed", "message.throttled", "message.rendered"]), Throttled);

    let mut log = StreamLog::new("message-m1");
    log.push("message.enqueued", json!({ "message_id": "m1", "recipient": { "id": "u1" } }));
    log.push(
        "message.rendered",
        json!({ "message_id": "m1", "subject": "Hello Ada", "template": { "id": "welcome" } }),
    );
    let doc = fold_message(&log.events).expect("applies").expect("a document");
    assert_eq!(doc.subject.as_deref(), Some("Hello Ada"));
    assert_eq!(doc.template_id.as_deref(), Some("welcome"));
    assert_eq!(doc.template_version, None);
}

#[test]
fn late_callbacks_never_move_the_status_back() {
    use MessageStatus::*;
    assert_eq!(status_of(&["message.enqueued", "message.opened", "message.sent"]), Opened);
    assert_eq!(status_of(&["message.enqueued", "message.clicked", "message.delivered"]), Clicked);
    assert_eq!(status_of(&["message.enqueued", "message.clicked", "message.opened"]), Clicked);
    assert_eq!(status_of(&["message.sent", "message.routed", "message.enqueued"]), Sent);
    assert_eq!(status_of(&["message.delivered", "message.throttled"]), Delivered);
}

#[test]
fn conflicts_resolve_the_same_in_either_order() {
    use MessageStatus::*;
    let pairs = [
        ("message.delivered", "message.undeliverable", Undeliverable),
        ("message.sent", "message.undeliverable", Undeliverable),
        ("message.canceled", "message.undeliverable", Undeliverable),
        ("message.opened", "message.undeliverable", Opened),
        ("message.clicked", "message.undeliverable", Clicked),
        ("message.sent", "message.canceled", Sent),
        ("message.delivered", "message.canceled", Delivered),
        ("message.routed", "message.canceled", Canceled),
        ("message.throttled", "message.canceled", Canceled),
    ];
    for (a, b, expected) in pairs {
        assert_eq!(status_of(&["message.enqueued", a, b]), expected, "{a} then {b}");
        assert_eq!(status_of(&["message.enqueued", b, a]), expected, "{b} then {a}");
    }
}

#[test]
fn undeliverable_reasons_and_details_are_kept() {
    let reasons = [
        ("BOUNCED", UndeliverableReason::Bounced, Some("550 5.1.1 mailbox unavailable")),
        ("PROVIDER_ERROR", UndeliverableReason::ProviderError, Some("503 from provider")),
        ("UNSUBSCRIBED", UndeliverableReason::Unsubscribed, None),
        ("NO_PROVIDERS", UndeliverableReason::NoProviders, None),
    ];
    for (wire, reason, detail) in reasons {
        let mut log = StreamLog::new("message-m1");
        log.push("message.enqueued", enqueued("m1"));
        let mut data = json!({ "message_id": "m1", "reason": wire, "provider": "sendgrid" });
        if let Some(detail) = detail {
            data["error_detail"] = json!(detail);
        }
        log.push("message.undeliverable", data);
        let doc = fold_message(&log.events).expect("applies").expect("a document");
        assert_eq!(doc.status, MessageStatus::Undeliverable, "{wire}");
        assert!(doc.has_errors());
        assert_eq!(doc.error_reason, Some(reason));
        assert_eq!(doc.error_detail.as_deref(), detail);
        assert_eq!(doc.provider.as_deref(), Some("sendgrid"));
        let json = serde_json::to_value(&doc).expect("serializes");
        assert_eq!(json["error_reason"], json!(wire));
    }
}

#[test]
fn engagement_after_a_bounce_wins_but_the_error_stays_visible() {
    let mut log = StreamLog::new("message-m1");
    log.push("message.enqueued", enqueued("m1"));
    log.push("message.sent", sent("m1"));
    log.push("message.undeliverable", json!({ "message_id": "m1", "reason": "BOUNCED", "error_detail": "soft" }));
    log.push("message.opened", msg("m1"));
    let doc = fold_message(&log.events).expect("applies").expect("a document");
    assert_eq!(doc.status, MessageStatus::Opened);
    assert_eq!(doc.error_reason, Some(UndeliverableReason::Bounced));
    assert_eq!(doc.error_detail.as_deref(), Some("soft"));
}

#[test]
fn the_latest_event_carrying_a_field_sets_it() {
    let mut log = StreamLog::new("message-m1");
    log.push("message.enqueued", enqueued("m1"));
    log.push("message.routed", json!({ "message_id": "m1", "channel": "sms", "provider": "twilio" }));
    log.push("message.undeliverable", json!({ "message_id": "m1", "reason": "PROVIDER_ERROR", "error_detail": "a" }));
    log.push("message.routed", json!({ "message_id": "m1", "channel": "email", "provider": "ses" }));
    log.push("message.undeliverable", json!({ "message_id": "m1", "reason": "NO_PROVIDERS" }));
    // `delivered` without a provider does not clear the provider.
    log.push("message.delivered", msg("m1"));
    let doc = fold_message(&log.events).expect("applies").expect("a document");
    assert_eq!(doc.channel, Some(Channel::Email));
    assert_eq!(doc.provider.as_deref(), Some("ses"));
    assert_eq!(doc.error_reason, Some(UndeliverableReason::NoProviders));
    assert_eq!(doc.error_detail, None, "reason and detail travel together");
    assert_eq!(doc.status, MessageStatus::Undeliverable);

    let reversed = fold_message(log.events.iter().rev()).expect("applies");
    assert_eq!(reversed, Some(doc));
}

#[test]
fn a_duplicate_delivery_changes_nothing() {
    let mut log = StreamLog::new("message-m1");
    log.push("message.enqueued", enqueued("m1"));
    log.push("message.sent", sent("m1"));
    let opened = log.push("message.opened", msg("m1"));
    let mut doc = fold_message(&log.events).expect("applies").expect("a document");
    let before = doc.clone();
    doc.apply(&opened).expect("a duplicate is fine");
    doc.apply(&log.events[0]).expect("a duplicate is fine");
    assert_eq!(doc, before);
    assert!(doc.has_applied(opened.position));
    assert!(!doc.has_applied(Position::from_code(opened.position.code() + 1)));
}

#[test]
fn the_first_event_need_not_be_enqueued() {
    let mut log = StreamLog::new("message-m1");
    log.push("message.enqueued", enqueued("m1"));
    log.push("message.sent", sent("m1"));
    log.push("message.delivered", msg("m1"));
    let mut doc = MessageDoc::from_event(&log.events[2]).expect("applies");
    assert_eq!(doc.status, MessageStatus::Delivered);
    assert_eq!(doc.recipient_email, None);
    doc.apply(&log.events[0]).expect("applies");
    doc.apply(&log.events[1]).expect("applies");
    assert_eq!(doc.first_event_at, t0());
    assert_eq!(doc.last_position, log.events[2].position);
    assert_eq!(Some(doc), fold_message(&log.events).expect("applies"));
}

#[test]
fn as_of_is_the_fold_of_the_events_recorded_by_then() {
    let mut log = StreamLog::new("message-m1");
    log.push("message.enqueued", enqueued("m1"));
    log.push("message.routed", routed("m1"));
    log.push("message.sent", sent("m1"));
    log.push("message.delivered", msg("m1"));
    let as_of = t0() + Duration::seconds(2);
    let doc = fold_message(log.events.iter().filter(|e| e.recorded_at <= as_of)).expect("applies");
    let doc = doc.expect("a document");
    assert_eq!(doc.status, MessageStatus::Sent);
    assert_eq!(doc.last_event_at, as_of);
    assert_eq!(doc.timeline.len(), 3);
    assert_eq!(fold_message([]).expect("nothing to apply"), None);
}

#[test]
fn the_document_serializes_for_a_view_store_and_back() {
    let mut log = StreamLog::new("acme/message-m1");
    log.push("message.enqueued", enqueued("m1"));
    log.push("message.throttled", json!({ "message_id": "m1", "retry_after": "2026-11-23T17:43:00Z" }));
    log.push("message.sent", sent("m1"));
    log.push("message.canceled", json!({ "message_id": "m1", "reason": "too late" }));
    let doc = fold_message(&log.events).expect("applies").expect("a document");
    let json = serde_json::to_value(&doc).expect("serializes");
    assert_eq!(json["status"], "SENT");
    assert_eq!(json["tenant"], "acme");
    assert_eq!(json["stream"], "acme/message-m1");
    assert_eq!(json["channel"], "email");
    assert_eq!(json["last_position"], json!(doc.last_position.code()));
    assert_eq!(json["timeline"][1]["event_type"], "message.throttled");
    assert_eq!(json["timeline"][1]["retry_after"], "2026-11-23T17:43:00Z");
    assert_eq!(json["timeline"][3]["cancel_reason"], "too late");
    assert!(json["timeline"][1].get("provider").is_none(), "absent fields are left out of entries");
    let back: MessageDoc = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, doc);
    for status in MessageStatus::ALL {
        assert_eq!(serde_json::to_value(status).expect("serializes"), json!(status.as_str()));
        assert_eq!(MessageStatus::parse(status.as_str()), Some(status));
    }
}
