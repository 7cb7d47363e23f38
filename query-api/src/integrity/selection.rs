//! Which of the tenant's events an export gives as `record` lines: the search route's own filters,
//! evaluated on the view's own document of the event (`annals_projectors::view_match`), so that an
//! export holds exactly what paging through `GET /v1/audit` or `GET /v1/messages` returns.
//!
//! - The audit trail (`event_types = ["audit.recorded"]`): one document per event, the audit
//!   projection's, filtered by `actor`, `action` (`*`: a prefix), `target_type`, `target_id`,
//!   `outcome`, `q` (full text) and `from`/`to` over `recorded_at`.
//! - The message log (`event_types = ["message.*"]`): one document per message stream, folded from
//!   all its `message.*` events up to the export's head (the projector's fold), filtered by
//!   `status`, `recipient`, `channel`, `provider`, `template`, `tag`, `has_errors`, `q` and
//!   `from`/`to` over the message's creation (`first_event_at`); every `message.*` event of a
//!   selected message is a record. A message's state depends on its whole history, so a message
//!   export always starts at position 0 (the verifier folds the same events again).
//!
//! Shared by the export route and by `annals verify`, which applies the trailer's selection again.

use annals_projectors::view_match::doc_matches;
use annals_projectors::view_store::{Filter, ViewDoc};
use annals_projectors::{AuditProjection, MessageDoc, MessagesProjection, Projection, AUDIT_RECORDED};
use annals_store::RecordedEvent;
use serde::{Deserialize, Serialize};

/// The event types of a message export.
pub const MESSAGE_TYPES: &str = "message.*";

/// What an export selects (module doc); stated in its trailer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    pub event_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Statuses (upper case, as the view holds them); a message must have one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_errors: Option<bool>,
    /// Full text, as the search's `q`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

impl Selection {
    /// Whether this is a message export (documents per message) rather than an audit export.
    pub fn is_messages(&self) -> bool {
        self.event_types.iter().any(|t| t == MESSAGE_TYPES)
    }

    /// The view filters, built as the search routes build them.
    fn filters(&self) -> Vec<Filter> {
        let mut filters = Vec::new();
        if let Some(action) = &self.action {
            filters.push(match action.strip_suffix('*') {
                Some(prefix) => Filter::Prefix { field: "action", prefix: prefix.to_owned() },
                None => Filter::Term { field: "action", values: vec![action.clone()] },
            });
        }
        if let Some(values) = &self.status {
            filters.push(Filter::Term { field: "status", values: values.clone() });
        }
        for (field, value) in [
            ("actor", &self.actor),
            ("target_type", &self.target_type),
            ("target_id", &self.target_id),
            ("outcome", &self.outcome),
            ("recipient", &self.recipient),
            ("channel", &self.channel),
            ("provider", &self.provider),
            ("template", &self.template),
            ("tag", &self.tag),
        ] {
            if let Some(v) = value {
                filters.push(Filter::Term { field, values: vec![v.clone()] });
            }
        }
        if let Some(value) = self.has_errors {
            filters.push(Filter::Bool { field: "has_errors", value });
        }
        if self.from.is_some() || self.to.is_some() {
            let field = if self.is_messages() { "first_event_at" } else { "recorded_at" };
            filters.push(Filter::TimeRange { field, from: self.from, to: self.to });
        }
        filters
    }

    /// Whether no filter and no full text is given (`event_types` aside).
    fn unfiltered(&self) -> bool {
        self.filters().is_empty() && self.q.is_none()
    }

    fn matches(&self, doc: &ViewDoc) -> bool {
        doc_matches(doc, &self.filters(), self.q.as_deref(), &["text"])
    }

    /// For an audit export: whether `event` (of the tenant) is a record — an `audit.recorded`
    /// event whose audit document the search would return. True only for data that parsed as one
    /// JSON document (the projection decodes it whole): the export writes such data unchecked
    /// (`export_write::record_data_text`).
    pub fn selects_audit(&self, event: &RecordedEvent) -> bool {
        if self.is_messages() || event.event_type != AUDIT_RECORDED {
            return false;
        }
        let projection = AuditProjection;
        let mut doc = None;
        if projection.doc_key(event).is_none() || projection.apply(&mut doc, event).is_err() {
            return false;
        }
        // Without filters every document matches: the view's document is not built (an export
        // of the whole trail is the common case, and `to_view` serializes the document).
        doc.is_some_and(|doc| self.unfiltered() || self.matches(&projection.to_view(&doc)))
    }

    /// For a message export: whether `event` (of the tenant) is a record, given its stream's
    /// document at the export's head (`message_doc`, none when the view has none).
    pub fn selects_message(&self, event: &RecordedEvent, message_doc: Option<&MessageDoc>) -> bool {
        event.event_type.starts_with("message.") && message_doc.is_some_and(|doc| self.selects_message_doc(doc))
    }

    /// For a message export: whether the search would return the message of this document.
    pub fn selects_message_doc(&self, doc: &MessageDoc) -> bool {
        self.is_messages() && self.matches(&MessagesProjection.to_view(doc))
    }
}

/// A message document folded one event at a time, as the projector folds it: an event that
/// cannot be applied is left out (the projector parks it).
pub fn fold_into(doc: &mut Option<MessageDoc>, event: &RecordedEvent) {
    if !event.event_type.starts_with("message.") {
        return;
    }
    match doc {
        Some(d) => {
            let _ = d.apply(event);
        }
        None => *doc = MessageDoc::from_event(event).ok(),
    }
}
