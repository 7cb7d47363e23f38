//! One line of a message's history, as the `messages` view stores it.
//!
//! The timeline is what a log-search UI shows under a message, and it is also the *whole input*
//! of the message's document: every entry keeps the fields of its event that the document uses,
//! so the document is a pure function of its timeline (see [`super::message`]). That is what makes
//! the fold independent of the order events arrive in, and lets a stored document take further
//! events without re-reading the log.

use annals_schemas::message::{
    Channel, MessageCanceled, MessageClicked, MessageDelivered, MessageEnqueued, MessageOpened, MessageRendered,
    MessageRouted, MessageSent, MessageThrottled, MessageUndeliverable, Recipient, TemplateRef, UndeliverableReason,
};
use annals_store::{Position, RecordedEvent, Revision};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::decode;
use super::message_status::MessageStatus;
use crate::error::ApplyError;

/// The `message.*` event types the `messages` view applies; serialized as the event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

impl MessageEventType {
    pub const ALL: [MessageEventType; 10] = [
        MessageEventType::Enqueued,
        MessageEventType::Routed,
        MessageEventType::Rendered,
        MessageEventType::Sent,
        MessageEventType::Delivered,
        MessageEventType::Opened,
        MessageEventType::Clicked,
        MessageEventType::Undeliverable,
        MessageEventType::Canceled,
        MessageEventType::Throttled,
    ];

    /// The event type as stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageEventType::Enqueued => "message.enqueued",
            MessageEventType::Routed => "message.routed",
            MessageEventType::Rendered => "message.rendered",
            MessageEventType::Sent => "message.sent",
            MessageEventType::Delivered => "message.delivered",
            MessageEventType::Opened => "message.opened",
            MessageEventType::Clicked => "message.clicked",
            MessageEventType::Undeliverable => "message.undeliverable",
            MessageEventType::Canceled => "message.canceled",
            MessageEventType::Throttled => "message.throttled",
        }
    }

    pub fn parse(event_type: &str) -> Option<MessageEventType> {
        MessageEventType::ALL.into_iter().find(|t| t.as_str() == event_type)
    }

    /// The status this event claims for its message, if any. `message.rendered` claims none:
    /// rendering is a step inside the enqueued/routed stage, not a state a message is reported in,
    /// so it never changes the status.
    pub fn status(self) -> Option<MessageStatus> {
        match self {
            MessageEventType::Enqueued => Some(MessageStatus::Enqueued),
            MessageEventType::Routed => Some(MessageStatus::Routed),
            MessageEventType::Rendered => None,
            MessageEventType::Sent => Some(MessageStatus::Sent),
            MessageEventType::Delivered => Some(MessageStatus::Delivered),
            MessageEventType::Opened => Some(MessageStatus::Opened),
            MessageEventType::Clicked => Some(MessageStatus::Clicked),
            MessageEventType::Undeliverable => Some(MessageStatus::Undeliverable),
            MessageEventType::Canceled => Some(MessageStatus::Canceled),
            MessageEventType::Throttled => Some(MessageStatus::Throttled),
        }
    }
}

/// One applied event of a message: its identity in the log, its times, and the fields of its
/// payload that the document or the UI uses (absent fields are omitted from the JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub event_id: Uuid,
    pub event_type: MessageEventType,
    pub position: Position,
    pub revision: Revision,
    /// The store's commit time: what the document's times and `as_of` go by.
    pub recorded_at: DateTime<Utc>,
    /// The producer's own time, when it gave one; shown, never used for ordering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    /// `enqueued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
    /// `enqueued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
    /// `enqueued`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// `enqueued`, `rendered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    /// `enqueued`, `rendered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `enqueued`, `routed`, `sent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// `routed`, `sent`, `delivered`, `undeliverable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// `sent`, `delivered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// `undeliverable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<UndeliverableReason>,
    /// `undeliverable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<String>,
    /// `canceled`: the sender's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// `opened`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// `clicked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `throttled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<DateTime<Utc>>,
}

impl TimelineEntry {
    /// The entry of `event`, whose stream is message `message_id`. Fails when the type is not a
    /// message event type, the data does not decode as its schema type, or the data names another
    /// message.
    pub fn from_event(event: &RecordedEvent, message_id: &str) -> Result<TimelineEntry, ApplyError> {
        let event_type = MessageEventType::parse(&event.event_type).ok_or_else(|| ApplyError::UnknownEventType {
            view: "messages",
            event_type: event.event_type.clone(),
            position: event.position,
        })?;
        let mut entry = TimelineEntry {
            event_id: event.id,
            event_type,
            position: event.position,
            revision: event.revision,
            recorded_at: event.recorded_at,
            occurred_at: None,
            recipient: None,
            notification: None,
            tags: Vec::new(),
            template: None,
            subject: None,
            channel: None,
            provider: None,
            provider_message_id: None,
            error_reason: None,
            error_detail: None,
            cancel_reason: None,
            user_agent: None,
            url: None,
            retry_after: None,
        };
        let data_message_id = match event_type {
            MessageEventType::Enqueued => {
                let e: MessageEnqueued = decode(event)?;
                entry.occurred_at = e.occurred_at;
                entry.recipient = Some(e.recipient);
                entry.notification = e.notification;
                entry.tags = e.tags;
                entry.template = e.template;
                entry.subject = e.subject;
                entry.channel = e.channel;
                e.message_id
            }
            MessageEventType::Routed => {
                let e: MessageRouted = decode(event)?;
                entry.occurred_at = e.occurred_at;
                entry.channel = Some(e.channel);
                entry.provider = Some(e.provider);
                e.message_id
            }
            MessageEventType::Rendered => {
                let e: MessageRendered = decode(event)?;
                entry.occurred_at = e.occurred_at;
                entry.template = e.template;
                entry.subject = e.subject;
                e.message_id
            }
            MessageEventType::Sent => {
                let e: MessageSent = decode(event)?;
                entry.occurred_at = e.occurred_at;
                entry.channel = Some(e.channel);
                entry.provider = Some(e.provider);
                entry.provider_message_id = e.provider_message_id;
                e.message_id
            }
            MessageEventType::Delivered => {
                let e: MessageDelivered = decode(event)?;
                entry.occurred_at = e.occurred_at;
                entry.provider = e.provider;
                entry.provider_message_id = e.provider_message_id;
                e.message_id
            }
            MessageEventType::Opened => {
                let e: MessageOpened = decode(event)?;
                entry.occurred_at = e.occurred_at;
                entry.user_agent = e.user_agent;
                e.message_id
            }
            MessageEventType::Clicked => {
                let e: MessageClicked = decode(event)?;
                entry.occurred_at = e.occurred_at;
                entry.url = e.url;
                e.message_id
            }
            MessageEventType::Undeliverable => {
                let e: MessageUndeliverable = decode(event)?;
                entry.occurred_at = e.occurred_at;
                entry.error_reason = Some(e.reason);
                entry.error_detail = e.error_detail;
                entry.provider = e.provider;
                e.message_id
            }
            MessageEventType::Canceled => {
                let e: MessageCanceled = decode(event)?;
                entry.occurred_at = e.occurred_at;
                entry.cancel_reason = e.reason;
                e.message_id
            }
            MessageEventType::Throttled => {
                let e: MessageThrottled = decode(event)?;
                entry.occurred_at = e.occurred_at;
                entry.retry_after = e.retry_after;
                e.message_id
            }
        };
        if data_message_id != message_id {
            return Err(ApplyError::MessageIdMismatch {
                stream_message_id: message_id.to_owned(),
                data_message_id,
                position: event.position,
            });
        }
        Ok(entry)
    }
}
