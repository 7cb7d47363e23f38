//! The `audit` view: one flat document per `audit.recorded` event.
//!
//! Audit events are facts that are never updated, so there is no fold: a document is its event,
//! flattened so that a view store can filter on every field (actor, action, target, outcome)
//! without nested queries. The document's id is the event id and its version the event's
//! position, so writing it twice is a no-op.

use annals_schemas::audit::{ActorType, AuditRecorded, Crud, Outcome};
use annals_store::{Position, RecordedEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{decode, split_tenant};
use crate::error::ApplyError;

/// The one event type the `audit` view applies.
pub const AUDIT_RECORDED: &str = "audit.recorded";

/// One audited action, as the `audit` view stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditDoc {
    /// The document's id: `GET /v1/audit/{event_id}`.
    pub event_id: Uuid,
    /// The document's version.
    pub position: Position,
    /// The stored stream name (`[{tenant}/]audit-{target_type}-{target_id}` by convention).
    pub stream: String,
    /// The stream-name prefix before the first `/`; empty when there is none.
    pub tenant: String,
    pub actor_id: String,
    pub actor_type: ActorType,
    #[serde(default)]
    pub actor_name: Option<String>,
    #[serde(default)]
    pub actor_ip: Option<String>,
    #[serde(default)]
    pub actor_user_agent: Option<String>,
    /// Dotted, lowercase (`template.updated`); queries match it by prefix (`template.*`).
    pub action: String,
    pub crud: Crud,
    pub target_type: String,
    pub target_id: String,
    #[serde(default)]
    pub target_name: Option<String>,
    pub outcome: Outcome,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    /// When the action happened, by the producer's clock (required by the schema).
    pub occurred_at: DateTime<Utc>,
    /// When the store committed the event.
    pub recorded_at: DateTime<Utc>,
    /// `{"before": …, "after": …}` as recorded, for display; not searched field by field.
    #[serde(default)]
    pub changes: Option<serde_json::Value>,
}

impl AuditDoc {
    /// The document of an `audit.recorded` event. Fails for any other type and for data that
    /// does not decode as [`AuditRecorded`].
    pub fn from_event(event: &RecordedEvent) -> Result<AuditDoc, ApplyError> {
        if event.event_type != AUDIT_RECORDED {
            return Err(ApplyError::UnknownEventType {
                view: "audit",
                event_type: event.event_type.clone(),
                position: event.position,
            });
        }
        let audit: AuditRecorded = decode(event)?;
        let (tenant, _) = split_tenant(event.stream.as_str());
        let changes = match audit.changes {
            Some(changes) => Some(serde_json::to_value(changes).map_err(|source| ApplyError::InvalidData {
                event_type: event.event_type.clone(),
                position: event.position,
                source,
            })?),
            None => None,
        };
        Ok(AuditDoc {
            event_id: event.id,
            position: event.position,
            stream: event.stream.to_string(),
            tenant: tenant.to_owned(),
            actor_id: audit.actor.id,
            actor_type: audit.actor.actor_type,
            actor_name: audit.actor.name,
            actor_ip: audit.actor.ip,
            actor_user_agent: audit.actor.user_agent,
            action: audit.action,
            crud: audit.crud,
            target_type: audit.target.target_type,
            target_id: audit.target.id,
            target_name: audit.target.name,
            outcome: audit.outcome,
            reason: audit.reason,
            request_id: audit.request_id,
            occurred_at: audit.occurred_at,
            recorded_at: event.recorded_at,
            changes,
        })
    }
}
