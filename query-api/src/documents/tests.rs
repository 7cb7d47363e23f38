//! The documented read models against documents the projectors' own code makes from events: each
//! must validate against its schema in the served document, and every field it has must be
//! documented (a field added to `MessageDoc` or `AuditDoc` without its line in `documents.rs`
//! fails here).

use annals_store::{Position, RecordedEvent, Revision, StreamId};
use serde_json::{json, Value};
use utoipa::OpenApi;

use crate::auth::Tenant;

/// The components of the document (`Message` and `AuditEntry` are registered in `ApiDoc`; the
/// served document's paths are checked by `tests/tests/api_openapi.rs`).
fn served() -> Value {
    serde_json::to_value(crate::openapi::ApiDoc::openapi()).unwrap()
}

fn event(stream: &str, revision: u64, position: u64, event_type: &str, data: Value) -> RecordedEvent {
    RecordedEvent {
        id: uuid::Uuid::new_v4(),
        stream: StreamId::new(stream).unwrap(),
        revision: Revision(revision),
        position: Position::from_code(position),
        event_type: event_type.to_owned(),
        data: serde_json::to_vec(&data).unwrap().into(),
        metadata: Vec::new().into(),
        recorded_at: chrono::Utc::now(),
    }
}

/// A message with every field of its document and of its timeline's entries set somewhere.
fn message_events() -> Vec<RecordedEvent> {
    let s = "acme/message-42";
    let at = "2026-11-30T10:00:00Z";
    vec![
        event(
            s,
            0,
            10,
            "message.enqueued",
            json!({ "message_id": "42", "channel": "email", "notification": "order-shipped", "tags": ["orders"],
                    "recipient": { "id": "u-7", "email": "ada@example.com", "phone": "+4915112345678" },
                    "template": { "id": "shipped", "version": 3 }, "subject": "Shipped", "occurred_at": at }),
        ),
        event(
            s,
            1,
            11,
            "message.rendered",
            json!({ "message_id": "42", "template": { "id": "shipped", "version": 3 }, "subject": "Shipped" }),
        ),
        event(s, 2, 12, "message.throttled", json!({ "message_id": "42", "retry_after": at })),
        event(s, 3, 13, "message.routed", json!({ "message_id": "42", "channel": "email", "provider": "ses" })),
        event(
            s,
            4,
            14,
            "message.sent",
            json!({ "message_id": "42", "channel": "email", "provider": "ses", "provider_message_id": "p-1" }),
        ),
        event(
            s,
            5,
            15,
            "message.delivered",
            json!({ "message_id": "42", "provider": "ses", "provider_message_id": "p-1" }),
        ),
        event(
            s,
            6,
            16,
            "message.undeliverable",
            json!({ "message_id": "42", "provider": "ses", "reason": "BOUNCED", "error_detail": "mailbox full" }),
        ),
        event(s, 7, 17, "message.opened", json!({ "message_id": "42", "user_agent": "Mail/1.0" })),
        event(s, 8, 18, "message.clicked", json!({ "message_id": "42", "url": "https://example.com/o/1" })),
        event(s, 9, 19, "message.canceled", json!({ "message_id": "42", "reason": "duplicate" })),
    ]
}

fn audit_event() -> RecordedEvent {
    event(
        "acme/audit-template-t-1",
        0,
        20,
        "audit.recorded",
        json!({
            "actor": { "id": "user-1", "type": "user", "name": "Ada", "ip": "192.0.2.1", "user_agent": "curl/8" },
            "action": "template.updated", "crud": "update",
            "target": { "type": "template", "id": "t-1", "name": "Shipped" },
            "outcome": "failure", "reason": "locked", "request_id": "r-1",
            "occurred_at": "2026-11-24T10:00:00Z",
            "changes": { "before": { "subject": "a" }, "after": { "subject": "b" } }
        }),
    )
}

/// `value` validates against component `name`, and has no field the component does not list
/// (recursively, through the `$ref`s of its properties and items).
fn check(doc: &Value, name: &str, value: &Value) {
    let schema = json!({ "$ref": format!("#/components/schemas/{name}"), "components": doc["components"] });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(value).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{name}: {value:#} does not match its schema: {errors:?}");
    all_fields_documented(doc, &doc["components"]["schemas"][name], value, name);
}

fn all_fields_documented(doc: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    if let Some(one_of) = schema["oneOf"].as_array() {
        // `Option<T>` of a reference: `oneOf [null, T]`.
        for s in one_of.iter().filter(|s| s.get("$ref").is_some()) {
            all_fields_documented(doc, s, value, at);
        }
        return;
    }
    match value {
        Value::Object(map) if schema.get("properties").is_some() => {
            for (field, v) in map {
                let property = &schema["properties"][field];
                assert!(!property.is_null(), "{at}.{field} is in the document but not in its schema");
                all_fields_documented(doc, property, v, &format!("{at}.{field}"));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| all_fields_documented(doc, &schema["items"], v, at)),
        _ => {}
    }
}

#[test]
fn a_message_the_projector_folds_matches_the_documented_message() {
    let doc = served();
    let events = message_events();
    let folded = annals_projectors::fold_message(events.iter()).unwrap().unwrap();
    let tenant = Tenant::new("acme").unwrap();
    let message = crate::routes::search::client_source(serde_json::to_value(&folded).unwrap(), &tenant);
    assert_eq!(message["timeline"].as_array().unwrap().len(), events.len(), "every event applied: {message:#}");
    check(&doc, "Message", &message);
    // Each event type the view applies has an entry, and the documented enums list the same
    // names as the projector's.
    let documented = |name: &str| doc["components"]["schemas"][name]["enum"].clone();
    let types: Vec<&str> = annals_projectors::MessageEventType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(documented("MessageEventType"), json!(types));
    let statuses: Vec<&str> = annals_projectors::MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(documented("MessageStatus"), json!(statuses));
    for (name, schema) in [
        ("Channel", schemars::schema_for!(annals_schemas::message::Channel)),
        ("UndeliverableReason", schemars::schema_for!(annals_schemas::message::UndeliverableReason)),
        ("ActorType", schemars::schema_for!(annals_schemas::audit::ActorType)),
        ("Crud", schemars::schema_for!(annals_schemas::audit::Crud)),
        ("Outcome", schemars::schema_for!(annals_schemas::audit::Outcome)),
    ] {
        assert_eq!(documented(name), schema.as_value()["enum"], "{name}: the documented values are the event schema's");
    }
}

#[test]
fn an_audit_entry_the_projector_makes_matches_the_documented_entry() {
    let doc = served();
    let entry = annals_projectors::AuditDoc::from_event(&audit_event()).unwrap();
    let entry =
        crate::routes::search::client_source(serde_json::to_value(&entry).unwrap(), &Tenant::new("acme").unwrap());
    check(&doc, "AuditEntry", &entry);
    assert_eq!(entry["stream"], "audit-template-t-1", "shown without the tenant");
}
