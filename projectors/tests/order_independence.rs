//! The property the `messages` fold is built around: the document depends on the *set* of a
//! message's events, not on the order they are applied in, how often, or whether the document
//! went through a view store (JSON) between two events.

use crate::common;

use annals_projectors::{fold_message, MessageDoc};
use annals_store::RecordedEvent;
use chrono::Duration;
use common::{recorded, t0};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

const TYPES: [&str; 10] = [
    "message.enqueued",
    "message.routed",
    "message.rendered",
    "message.sent",
    "message.delivered",
    "message.opened",
    "message.clicked",
    "message.undeliverable",
    "message.canceled",
    "message.throttled",
];

/// Valid data of `event_type`; `variant` picks among channels, providers and optional fields so
/// that events of one type disagree with each other.
fn payload(event_type: &str, variant: u8) -> Value {
    let channel = ["email", "sms", "push", "chat"][usize::from(variant % 4)];
    let provider = ["ses", "sendgrid", "twilio"][usize::from(variant % 3)];
    let reason = ["BOUNCED", "PROVIDER_ERROR", "UNSUBSCRIBED", "NO_PROVIDERS"][usize::from(variant % 4)];
    let some = variant.is_multiple_of(2);
    let mut data = match event_type {
        "message.enqueued" => json!({
            "recipient": { "id": format!("user-{variant}"), "email": "ada@example.com" },
            "notification": format!("n{}", variant % 3),
            "template": { "id": "welcome", "version": variant },
            "channel": channel,
            "tags": if some { json!(["a", "b"]) } else { json!([]) },
            "subject": format!("Hello {variant}"),
        }),
        "message.routed" => json!({ "channel": channel, "provider": provider }),
        "message.rendered" if some => json!({ "subject": format!("Rendered {variant}") }),
        "message.rendered" => json!({ "template": { "id": "welcome" } }),
        "message.sent" if some => json!({ "channel": channel, "provider": provider, "provider_message_id": "p1" }),
        "message.sent" => json!({ "channel": channel, "provider": provider }),
        "message.delivered" if some => json!({ "provider_message_id": format!("p{variant}") }),
        "message.undeliverable" => json!({
            "reason": reason,
            "error_detail": if some { json!("550") } else { Value::Null },
        }),
        "message.throttled" if some => json!({ "retry_after": "2026-11-23T18:00:00Z" }),
        _ => json!({}),
    };
    let object = data.as_object_mut().expect("an object");
    object.retain(|_, value| !value.is_null());
    object.insert("message_id".into(), json!("m1"));
    if variant.is_multiple_of(3) {
        object.insert("occurred_at".into(), json!("2026-11-23T17:00:00Z"));
    }
    data
}

/// One message's events as the log would hold them: increasing positions with gaps, revisions
/// 0, 1, 2, …, `recorded_at` never decreasing (sometimes equal).
fn history() -> impl Strategy<Value = Vec<RecordedEvent>> {
    prop::collection::vec((0..TYPES.len(), any::<u8>(), 1..5u64, 0..1500i64), 1..14).prop_map(|steps| {
        let (mut position, mut at) = (10, t0());
        let stream = "acme/message-m1";
        steps
            .into_iter()
            .enumerate()
            .map(|(revision, (kind, variant, gap, millis))| {
                position += gap;
                at += Duration::milliseconds(millis);
                recorded(stream, revision as u64, position, TYPES[kind], &payload(TYPES[kind], variant), at)
            })
            .collect()
    })
}

/// The history, shuffled, with some events delivered again at random places.
fn delivered(events: Vec<RecordedEvent>) -> impl Strategy<Value = Vec<RecordedEvent>> {
    let duplicates = prop::collection::vec((any::<Index>(), any::<Index>()), 0..6);
    (Just(events).prop_shuffle(), duplicates).prop_map(|(mut events, duplicates)| {
        for (which, place) in duplicates {
            let copy = events[which.index(events.len())].clone();
            let at = place.index(events.len() + 1);
            events.insert(at, copy);
        }
        events
    })
}

fn history_and_delivery() -> impl Strategy<Value = (Vec<RecordedEvent>, Vec<RecordedEvent>)> {
    history().prop_flat_map(|events| (Just(events.clone()), delivered(events)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_order_with_duplicates_gives_the_in_order_document((events, delivery) in history_and_delivery()) {
        let in_order = fold_message(&events).expect("valid events apply").expect("a document");
        let shuffled = fold_message(&delivery).expect("valid events apply").expect("a document");
        prop_assert_eq!(&shuffled, &in_order);
        prop_assert_eq!(in_order.timeline.len(), events.len());
        prop_assert!(in_order.timeline.windows(2).all(|w| w[0].position < w[1].position));
    }

    #[test]
    fn a_document_reloaded_from_json_between_events_folds_the_same((events, delivery) in history_and_delivery()) {
        let in_order = fold_message(&events).expect("valid events apply").expect("a document");
        let mut doc: Option<MessageDoc> = None;
        for event in &delivery {
            let next = match doc {
                Some(doc) => {
                    let json = serde_json::to_string(&doc).expect("serializes");
                    let mut reloaded: MessageDoc = serde_json::from_str(&json).expect("deserializes");
                    reloaded.apply(event).expect("valid events apply");
                    reloaded
                }
                None => MessageDoc::from_event(event).expect("valid events apply"),
            };
            doc = Some(next);
        }
        prop_assert_eq!(doc.as_ref(), Some(&in_order));
    }
}
