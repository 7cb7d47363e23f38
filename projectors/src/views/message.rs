//! The `messages` view: one document per message, with its current status, what it is, where it
//! went, and its timeline.
//!
//! # Why the document is a function of the set of its events
//!
//! Per-stream order is kept by the projector, but the same document must come out of a live
//! projection, a rebuild, a crash and replay (duplicates), parked events replayed late, and an
//! `as_of` fold — so the fold must not depend on the order or the number of times events are
//! applied. It does not, by construction:
//!
//! - The [`TimelineEntry`]s are kept sorted by position, and an event whose position is already
//!   there is a no-op (duplicate delivery). So the timeline is the *set* of applied events.
//! - Every other field is derived from the timeline alone, by absorbing its entries in position
//!   order ([`MessageDoc::apply`] absorbs only the new entry when it lands at the end, the
//!   common case, and re-derives everything when it lands in the middle — the same function
//!   either way).
//!
//! # Field rules
//!
//! - A field takes its value from the entry with the **highest position that carries one**; an
//!   event without the field never clears it. Some fields travel together as one value: the
//!   recipient (id, email, phone), the template (id, version) and the error (reason, detail, from
//!   `message.undeliverable`). `tags` count as carried when non-empty.
//! - Times are the store's `recorded_at`, not the producer's `occurred_at`: it is always present,
//!   comes from one clock, and never decreases along the log, so "first" and "last" agree with
//!   positions and `as_of=t` is simply the prefix of the stream recorded by `t`. `occurred_at` is
//!   kept on each timeline entry for display.
//! - `last_position` is the position of the latest event applied: the document's version for
//!   idempotent writes (a view store keeps the write with the higher version).
//!
//! # Status
//!
//! Every event but `message.rendered` claims a status; the status is the claim of highest
//! precedence, whatever order the events were applied in:
//!
//! `ENQUEUED` < `ROUTED` = `THROTTLED` < `CANCELED` < `SENT` < `DELIVERED` < `UNDELIVERABLE` <
//! `OPENED` < `CLICKED`
//!
//! - The delivery ladder only goes up: a late `sent` after `opened`, or `delivered` after
//!   `clicked`, changes nothing.
//! - `ROUTED` and `THROTTLED` are the same stage (waiting to be sent); between them the one at
//!   the higher position wins, so a message throttled after routing shows `THROTTLED`, and one
//!   routed again after its throttle shows `ROUTED`. This is the only place the log order
//!   matters, and it is the log's order (positions), never the order of application.
//! - `message.rendered` never changes the status: rendering happens inside the enqueued/routed
//!   stage. A message whose only events are `rendered` shows `ENQUEUED`.
//! - Conflicts resolve by precedence, regardless of order:
//!   - `CANCELED` beats the waiting states, but loses to `SENT` and anything after it: a cancel
//!     means "before it was sent", so a provider's acceptance means the cancel lost the race.
//!   - `UNDELIVERABLE` beats `DELIVERED` (and `SENT`, `CANCELED`): a bounce reported after a
//!     delivery receipt (email bounces are often asynchronous) is the fact to act on, and
//!     hiding a failure behind a success would hide it from `has_errors` searches.
//!   - `OPENED` and `CLICKED` beat `UNDELIVERABLE`: engagement is proof the recipient got it.
//!     The error fields stay set, so the failure report is still visible and searchable.

use annals_schemas::message::{Channel, UndeliverableReason};
use annals_store::{Position, RecordedEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use super::message_status::MessageStatus;
use super::message_stream_parts;
use super::timeline::TimelineEntry;
use crate::error::ApplyError;

/// The `messages` view document of one message stream. Built by [`MessageDoc::from_event`] and
/// [`MessageDoc::apply`] (or [`fold_message`]); every field but the identity ones is derived from
/// `timeline` by the rules in the module doc.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageDoc {
    /// From the stream name `[{tenant}/]message-{message_id}`; every event's data must agree.
    pub message_id: String,
    /// The stream-name prefix before the first `/`; empty when there is none.
    pub tenant: String,
    /// The stored stream name: unique across tenants, so the document's id in a view store.
    pub stream: String,
    pub status: MessageStatus,
    #[serde(default)]
    pub recipient_id: Option<String>,
    #[serde(default)]
    pub recipient_email: Option<String>,
    #[serde(default)]
    pub recipient_phone: Option<String>,
    #[serde(default)]
    pub notification: Option<String>,
    #[serde(default)]
    pub template_id: Option<String>,
    #[serde(default)]
    pub template_version: Option<u32>,
    #[serde(default)]
    pub channel: Option<Channel>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub provider_message_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
    /// From the latest `message.undeliverable`; kept even when engagement overrides the status.
    #[serde(default)]
    pub error_reason: Option<UndeliverableReason>,
    #[serde(default)]
    pub error_detail: Option<String>,
    /// `recorded_at` of the earliest applied event.
    pub first_event_at: DateTime<Utc>,
    /// `recorded_at` of the latest applied event.
    pub last_event_at: DateTime<Utc>,
    /// The position of the latest applied event: the document's version.
    pub last_position: Position,
    /// Every applied event, sorted by position, each once.
    pub timeline: Vec<TimelineEntry>,
}

impl MessageDoc {
    /// The document of a message as of its first applied event (not necessarily `enqueued`: a
    /// message's events can reach a projection in any order, or the enqueued one can be parked).
    pub fn from_event(event: &RecordedEvent) -> Result<MessageDoc, ApplyError> {
        let (tenant, message_id) = message_stream_parts(event.stream.as_str()).ok_or_else(|| {
            ApplyError::NotAMessageStream { stream: event.stream.as_str().to_owned(), position: event.position }
        })?;
        let entry = TimelineEntry::from_event(event, message_id)?;
        let mut doc = MessageDoc::blank(message_id.to_owned(), tenant.to_owned(), event.stream.to_string(), &entry);
        doc.absorb(&entry);
        doc.timeline.push(entry);
        Ok(doc)
    }

    /// Applies one event of this message. An event whose position is already in the timeline is
    /// a no-op; otherwise the result does not depend on the order events are applied in (see the
    /// module doc). On error the document is unchanged.
    pub fn apply(&mut self, event: &RecordedEvent) -> Result<(), ApplyError> {
        if event.stream.as_str() != self.stream {
            return Err(ApplyError::WrongStream {
                expected: self.stream.clone(),
                actual: event.stream.as_str().to_owned(),
                position: event.position,
            });
        }
        let index = match self.timeline.binary_search_by_key(&event.position, |entry| entry.position) {
            Ok(_) => return Ok(()),
            Err(index) => index,
        };
        let entry = TimelineEntry::from_event(event, &self.message_id)?;
        if index == self.timeline.len() {
            self.absorb(&entry);
            self.timeline.push(entry);
        } else {
            self.timeline.insert(index, entry);
            self.rederive();
        }
        Ok(())
    }

    /// Whether the event at `position` is already part of this document.
    pub fn has_applied(&self, position: Position) -> bool {
        self.timeline.binary_search_by_key(&position, |entry| entry.position).is_ok()
    }

    /// Whether the message was ever reported undeliverable (the `has_errors` filter).
    pub fn has_errors(&self) -> bool {
        self.error_reason.is_some()
    }

    /// A document with its identity and nothing derived yet: the starting point of every fold.
    fn blank(message_id: String, tenant: String, stream: String, first: &TimelineEntry) -> MessageDoc {
        MessageDoc {
            message_id,
            tenant,
            stream,
            status: MessageStatus::Enqueued,
            recipient_id: None,
            recipient_email: None,
            recipient_phone: None,
            notification: None,
            template_id: None,
            template_version: None,
            channel: None,
            provider: None,
            provider_message_id: None,
            tags: Vec::new(),
            subject: None,
            error_reason: None,
            error_detail: None,
            first_event_at: first.recorded_at,
            last_event_at: first.recorded_at,
            last_position: first.position,
            timeline: Vec::new(),
        }
    }

    /// Derives every field again from the timeline, for an entry inserted before the end.
    fn rederive(&mut self) {
        let timeline = std::mem::take(&mut self.timeline);
        let Some(first) = timeline.first() else { return };
        let mut doc = MessageDoc::blank(
            std::mem::take(&mut self.message_id),
            std::mem::take(&mut self.tenant),
            std::mem::take(&mut self.stream),
            first,
        );
        for entry in &timeline {
            doc.absorb(entry);
        }
        doc.timeline = timeline;
        *self = doc;
    }

    /// Folds one entry into the derived fields. Must be called in position order, each entry
    /// after every entry of lower position: then "the latest carrier wins" is "overwrite".
    fn absorb(&mut self, entry: &TimelineEntry) {
        if let Some(status) = entry.event_type.status() {
            // `>=`: between equal precedences (ROUTED, THROTTLED) the later position wins.
            if status.precedence() >= self.status.precedence() {
                self.status = status;
            }
        }
        if let Some(recipient) = &entry.recipient {
            self.recipient_id.clone_from(&recipient.id);
            self.recipient_email.clone_from(&recipient.email);
            self.recipient_phone.clone_from(&recipient.phone);
        }
        set_if_some(&mut self.notification, &entry.notification);
        if !entry.tags.is_empty() {
            self.tags.clone_from(&entry.tags);
        }
        if let Some(template) = &entry.template {
            self.template_id = Some(template.id.clone());
            self.template_version = template.version;
        }
        set_if_some(&mut self.subject, &entry.subject);
        if entry.channel.is_some() {
            self.channel = entry.channel;
        }
        set_if_some(&mut self.provider, &entry.provider);
        set_if_some(&mut self.provider_message_id, &entry.provider_message_id);
        if entry.error_reason.is_some() {
            self.error_reason = entry.error_reason;
            self.error_detail.clone_from(&entry.error_detail);
        }
        self.first_event_at = self.first_event_at.min(entry.recorded_at);
        self.last_event_at = self.last_event_at.max(entry.recorded_at);
        self.last_position = self.last_position.max(entry.position);
    }
}

fn set_if_some(field: &mut Option<String>, value: &Option<String>) {
    if value.is_some() {
        field.clone_from(value);
    }
}

/// The document of one message from its events, or `None` when there are none: the fold the
/// projector and `GET /v1/messages/{id}?as_of=t` share (for `as_of`, pass the stream's events
/// with `recorded_at <= t`, a prefix of the stream). Stops at the first event that cannot be
/// applied; the events may come in any order and repeat.
pub fn fold_message<'a>(events: impl IntoIterator<Item = &'a RecordedEvent>) -> Result<Option<MessageDoc>, ApplyError> {
    let mut doc: Option<MessageDoc> = None;
    for event in events {
        match &mut doc {
            Some(doc) => doc.apply(event)?,
            None => doc = Some(MessageDoc::from_event(event)?),
        }
    }
    Ok(doc)
}

/// Like [`fold_message`], but an event that cannot be applied is handed to `on_error` and left
/// out, as the projector parks it and carries on. Use this where the result must match the
/// view (an `as_of` read of a message with a parked event), and `fold_message` where any bad
/// event should fail the whole fold.
pub fn fold_message_skipping<'a>(
    events: impl IntoIterator<Item = &'a RecordedEvent>,
    mut on_error: impl FnMut(&'a RecordedEvent, ApplyError),
) -> Option<MessageDoc> {
    let mut doc: Option<MessageDoc> = None;
    for event in events {
        let result = match &mut doc {
            Some(doc) => doc.apply(event),
            None => MessageDoc::from_event(event).map(|first| doc = Some(first)),
        };
        if let Err(error) = result {
            on_error(event, error);
        }
    }
    doc
}
