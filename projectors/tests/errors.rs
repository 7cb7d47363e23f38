//! Events the folds cannot apply: a typed error naming the event, never a panic, and the
//! document left as it was (so the projector can park the event and carry on).

use crate::common;

use annals_projectors::{fold_message, fold_message_skipping, ApplyError, AuditDoc, MessageDoc};
use annals_store::Position;
use common::{recorded, t0, StreamLog};
use serde_json::json;

fn doc_with_enqueued() -> (StreamLog, MessageDoc) {
    let mut log = StreamLog::new("message-m1");
    let event = log.push("message.enqueued", json!({ "message_id": "m1", "recipient": { "id": "u1" } }));
    let doc = MessageDoc::from_event(&event).expect("applies");
    (log, doc)
}

#[test]
fn data_that_does_not_match_the_schema_is_invalid_data() {
    let (mut log, mut doc) = doc_with_enqueued();
    let before = doc.clone();
    let cases = [
        ("message.sent", json!({ "message_id": "m1", "provider": "ses" })),
        ("message.undeliverable", json!({ "message_id": "m1", "reason": "bounced" })),
        ("message.routed", json!({ "message_id": "m1", "channel": "fax", "provider": "x" })),
        ("message.opened", json!({ "message_id": "m1", "colour": "red" })),
        ("message.clicked", json!(["not", "an", "object"])),
    ];
    for (event_type, data) in cases {
        let event = log.push(event_type, data);
        let error = doc.apply(&event).expect_err("refused");
        assert!(matches!(&error, ApplyError::InvalidData { .. }), "{event_type}: {error}");
        assert_eq!(error.position(), event.position);
        assert!(error.to_string().contains(event_type), "{error}");
    }
    assert_eq!(doc, before);

    let event = recorded("message-m2", 0, 1, "message.enqueued", &json!({ "message_id": "m2" }), t0());
    assert!(matches!(MessageDoc::from_event(&event), Err(ApplyError::InvalidData { .. })));
}

#[test]
fn data_naming_another_message_is_refused() {
    let (mut log, mut doc) = doc_with_enqueued();
    let event = log.push("message.delivered", json!({ "message_id": "m2" }));
    let error = doc.apply(&event).expect_err("refused");
    match error {
        ApplyError::MessageIdMismatch { stream_message_id, data_message_id, position } => {
            assert_eq!((stream_message_id.as_str(), data_message_id.as_str()), ("m1", "m2"));
            assert_eq!(position, event.position);
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn an_event_of_another_stream_is_refused() {
    let (_, mut doc) = doc_with_enqueued();
    let event = recorded("message-m2", 0, 500, "message.sent", &json!({ "message_id": "m2" }), t0());
    assert!(matches!(doc.apply(&event), Err(ApplyError::WrongStream { .. })));

    let mut log = StreamLog::new("message-m1");
    log.push("message.enqueued", json!({ "message_id": "m1", "recipient": { "id": "u1" } }));
    let events = [log.events[0].clone(), event];
    assert!(matches!(fold_message(&events), Err(ApplyError::WrongStream { .. })));
}

#[test]
fn a_stream_that_is_not_a_message_stream_is_refused() {
    for stream in ["audit-template-t1", "acme/audit-template-t1", "message-", "acme/message-", "messages-m1"] {
        let event = recorded(stream, 0, 1, "message.opened", &json!({ "message_id": "m1" }), t0());
        let error = MessageDoc::from_event(&event).expect_err("refused");
        assert!(matches!(error, ApplyError::NotAMessageStream { .. }), "{stream}: {error}");
    }
}

#[test]
fn an_unknown_event_type_is_refused() {
    let (mut log, mut doc) = doc_with_enqueued();
    let event = log.push("message.retried", json!({ "message_id": "m1" }));
    let error = doc.apply(&event).expect_err("refused");
    assert!(matches!(error, ApplyError::UnknownEventType { view: "messages", .. }), "{error}");
}

#[test]
fn an_unknown_schema_version_is_refused() {
    let (mut log, mut doc) = doc_with_enqueued();
    let mut event = log.push("message.opened", json!({ "message_id": "m1" }));
    event.metadata = serde_json::to_vec(&json!({ "schema_version": 2 })).expect("JSON").into();
    let error = doc.apply(&event).expect_err("refused");
    assert!(matches!(error, ApplyError::UnsupportedSchemaVersion { .. }), "{error}");

    event.metadata = serde_json::to_vec(&json!({ "schema_version": 1, "traceparent": "x" })).expect("JSON").into();
    doc.apply(&event).expect("version 1 applies");
}

#[test]
fn skipping_fold_leaves_out_what_the_projector_would_park() {
    let mut log = StreamLog::new("message-m1");
    log.push("message.enqueued", json!({ "message_id": "m1", "recipient": { "id": "u1" } }));
    log.push("message.sent", json!({ "message_id": "m1" }));
    log.push("message.delivered", json!({ "message_id": "m1" }));
    let mut parked = Vec::new();
    let doc = fold_message_skipping(&log.events, |event, error| parked.push((event.position, error.position())));
    assert_eq!(parked, [(log.events[1].position, log.events[1].position)]);
    let doc = doc.expect("a document");
    assert_eq!(doc.timeline.len(), 2);
    assert_eq!(doc.last_position, log.events[2].position);
    assert!(fold_message(&log.events).is_err());
    assert_eq!(fold_message_skipping(&log.events[1..2], |_, _| {}), None);
}

#[test]
fn audit_errors_are_typed_too() {
    let event = recorded("audit-template-t1", 0, 3, "audit.created", &json!({}), t0());
    let error = AuditDoc::from_event(&event).expect_err("refused");
    assert!(matches!(error, ApplyError::UnknownEventType { view: "audit", .. }), "{error}");

    let event = recorded("audit-template-t1", 0, 4, "audit.recorded", &json!({ "action": "x.y" }), t0());
    let error = AuditDoc::from_event(&event).expect_err("refused");
    assert!(matches!(error, ApplyError::InvalidData { .. }), "{error}");
    assert_eq!(error.position(), Position::from_code(4));
}
