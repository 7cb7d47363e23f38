//! The read models as the OpenAPI document describes them: a message (`GET /v1/messages/{id}`,
//! the items of `GET /v1/messages`) and an audit entry (`GET /v1/audit/{event_id}`, the items of
//! `GET /v1/audit`), so that a generated client gets typed objects instead of dictionaries.
//!
//! The documents themselves are `annals_projectors`' `MessageDoc`, `TimelineEntry` and
//! `AuditDoc`, as `routes/search.rs` (`client_source`) shows them to a tenant (no `tenant`
//! field, stream names without the tenant's prefix). Those types live with the folds that build
//! them and know nothing of HTTP, so their wire schemas are written here; the tests below fold
//! real events into documents and check each one against these schemas, field by field, so the
//! two cannot drift apart unnoticed.

#![allow(dead_code)] // the types describe JSON the views make; nothing constructs them

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// One message: where it is (`status`), what it is, where it went, and its `timeline`. Every
/// field but the identity ones comes from the latest event that carries it.
#[derive(Serialize, ToSchema)]
pub struct Message {
    /// The id in the message's stream name, `message-{message_id}`.
    pub message_id: String,
    /// The message's stream, `message-{message_id}`.
    pub stream: String,
    pub status: MessageStatus,
    pub recipient_id: Option<String>,
    pub recipient_email: Option<String>,
    pub recipient_phone: Option<String>,
    /// The notification (the product's name for this kind of message).
    pub notification: Option<String>,
    pub template_id: Option<String>,
    pub template_version: Option<u32>,
    pub channel: Option<Channel>,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub tags: Vec<String>,
    pub subject: Option<String>,
    /// From the latest `message.undeliverable`; kept when engagement overrides the status.
    pub error_reason: Option<UndeliverableReason>,
    pub error_detail: Option<String>,
    /// When the store recorded the message's first event.
    pub first_event_at: DateTime<Utc>,
    /// When the store recorded the message's latest event.
    pub last_event_at: DateTime<Utc>,
    /// The position of the latest event applied: the document's version.
    pub last_position: u64,
    /// Every event applied, in log order, each once.
    pub timeline: Vec<TimelineEntry>,
}

/// Where a message is; see the README for the order in which events decide it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageStatus {
    Enqueued,
    Routed,
    Sent,
    Delivered,
    Opened,
    Clicked,
    Undeliverable,
    Canceled,
    Throttled,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Push,
    Chat,
    InApp,
    Webhook,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UndeliverableReason {
    Bounced,
    ProviderError,
    Unsubscribed,
    NoProviders,
}

/// One event of a message's timeline, with the fields of its data the document uses.
#[derive(Serialize, ToSchema)]
pub struct TimelineEntry {
    pub event_id: Uuid,
    pub event_type: MessageEventType,
    pub position: u64,
    pub revision: u64,
    /// The store's commit time.
    pub recorded_at: DateTime<Utc>,
    /// The producer's own time, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<UndeliverableReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<String>,
    /// `message.canceled`: the sender's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `message.throttled`: when the sender will try again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub enum MessageEventType {
    #[serde(rename = "message.enqueued")]
    Enqueued,
    #[serde(rename = "message.routed")]
    Routed,
    #[serde(rename = "message.rendered")]
    Rendered,
    #[serde(rename = "message.sent")]
    Sent,
    #[serde(rename = "message.delivered")]
    Delivered,
    #[serde(rename = "message.opened")]
    Opened,
    #[serde(rename = "message.clicked")]
    Clicked,
    #[serde(rename = "message.undeliverable")]
    Undeliverable,
    #[serde(rename = "message.canceled")]
    Canceled,
    #[serde(rename = "message.throttled")]
    Throttled,
}

/// Who a message is for, as its `message.enqueued` said.
#[derive(Serialize, ToSchema)]
pub struct Recipient {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateRef {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// One audited action (an `audit.recorded` event), flattened.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    /// The entry's id: `GET /v1/audit/{event_id}`.
    pub event_id: Uuid,
    /// The event's position in the log: the document's version.
    pub position: u64,
    /// The event's stream (`audit-{target_type}-{target_id}` by convention).
    pub stream: String,
    pub actor_id: String,
    pub actor_type: ActorType,
    pub actor_name: Option<String>,
    pub actor_ip: Option<String>,
    pub actor_user_agent: Option<String>,
    /// Dotted and lowercase, e.g. `template.updated`.
    pub action: String,
    pub crud: Crud,
    pub target_type: String,
    pub target_id: String,
    pub target_name: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    /// When the action happened, by the producer's clock.
    pub occurred_at: DateTime<Utc>,
    /// When the store committed the event.
    pub recorded_at: DateTime<Utc>,
    /// `before` and `after` as recorded (any JSON each).
    #[schema(value_type = Option<Object>)]
    pub changes: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    User,
    ApiKey,
    System,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Crud {
    Create,
    Read,
    Update,
    Delete,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

#[cfg(test)]
mod tests;
