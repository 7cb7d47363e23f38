//! The `audit` view document from the golden `audit.recorded` examples of `annals-schemas`.

use crate::common;

use annals_projectors::AuditDoc;
use annals_schemas::audit::{ActorType, Crud, Outcome};
use annals_store::Position;
use common::{recorded, t0};
use serde_json::{json, Value};

/// The valid examples of `schemas/examples/audit.recorded.v1.json`: the payloads every version
/// of the schema accepts.
fn golden() -> Vec<Value> {
    let examples: Value =
        serde_json::from_str(include_str!("../../schemas/examples/audit.recorded.v1.json")).expect("JSON");
    examples["valid"].as_array().expect("a list of examples").clone()
}

#[test]
fn audit_doc_flattens_a_full_event() {
    let data = &golden()[0];
    let event = recorded("acme/audit-template-tmpl_8f3a2c", 3, 41, "audit.recorded", data, t0());
    let doc = AuditDoc::from_event(&event).expect("applies");

    assert_eq!(doc.event_id, event.id);
    assert_eq!(doc.position, Position::from_code(41));
    assert_eq!(doc.stream, "acme/audit-template-tmpl_8f3a2c");
    assert_eq!(doc.tenant, "acme");
    assert_eq!(doc.actor_id, "user_123");
    assert_eq!(doc.actor_type, ActorType::User);
    assert_eq!(doc.actor_name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(doc.actor_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(doc.actor_user_agent.as_deref(), Some("Mozilla/5.0"));
    assert_eq!(doc.action, "template.updated");
    assert_eq!(doc.crud, Crud::Update);
    assert_eq!(doc.target_type, "template");
    assert_eq!(doc.target_id, "tmpl_8f3a2c");
    assert_eq!(doc.target_name.as_deref(), Some("Order shipped"));
    assert_eq!(doc.outcome, Outcome::Success);
    assert_eq!(doc.reason, None);
    assert_eq!(doc.request_id.as_deref(), Some("req_2b9c"));
    assert_eq!(doc.occurred_at.to_rfc3339(), "2026-11-23T17:42:10+00:00");
    assert_eq!(doc.recorded_at, t0());
    assert_eq!(
        doc.changes,
        Some(json!({ "before": { "subject": "Shipped" }, "after": { "subject": "Your order has shipped" } }))
    );

    let json = serde_json::to_value(&doc).expect("serializes");
    assert_eq!(json["actor_type"], "user");
    assert_eq!(json["crud"], "update");
    assert_eq!(json["outcome"], "success");
    assert_eq!(json["position"], 41);
    assert_eq!(serde_json::from_value::<AuditDoc>(json).expect("deserializes"), doc);
}

#[test]
fn audit_doc_of_a_failure_without_optional_fields() {
    let data = &golden()[1];
    let event = recorded("audit-api_key-key_2", 0, 7, "audit.recorded", data, t0());
    let doc = AuditDoc::from_event(&event).expect("applies");
    assert_eq!(doc.tenant, "");
    assert_eq!(doc.actor_type, ActorType::ApiKey);
    assert_eq!(doc.actor_name, None);
    assert_eq!(doc.crud, Crud::Create);
    assert_eq!(doc.outcome, Outcome::Failure);
    assert_eq!(doc.reason.as_deref(), Some("quota exceeded"));
    assert_eq!(doc.changes, None);
}

#[test]
fn every_golden_example_makes_a_document() {
    for (i, data) in golden().iter().enumerate() {
        let event = recorded("t/audit-x-y", i as u64, i as u64, "audit.recorded", data, t0());
        let doc = AuditDoc::from_event(&event).unwrap_or_else(|e| panic!("example {i}: {e}"));
        assert_eq!(doc.tenant, "t");
    }
}
