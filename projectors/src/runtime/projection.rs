//! What a projection is to the runtime: which events it reads, which document each event
//! changes, how it folds one event into that document, and how a document is indexed. The
//! runtime (`runtime/mod.rs`) does everything else — batching, checkpoints, retries, parking — the
//! same way for every projection, live or rebuilding.
//!
//! Documents are typed (`Projection::Doc`) while a batch is built: a message with several events
//! in one batch is decoded from the view once and encoded once, whatever its number of events.

use std::collections::BTreeMap;

use annals_store::{EventFilter, RecordedEvent};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApplyError;
use crate::invalidation::{InvalidatedKey, KeyKind};
use crate::view_store::{FieldDef, FieldKind, FieldValue, ViewDoc, ViewSchema};
use crate::views::audit::{AuditDoc, AUDIT_RECORDED};
use crate::views::message::MessageDoc;
use crate::views::{message_stream_parts, split_tenant};

/// A projection of the log into one view. Implementations are pure: `apply` must give the same
/// document for the same events whatever the batching, restarts or duplicates (the
/// projector contract in ARCHITECTURE.md).
///
/// A document's events all come from one stream (`doc_key` of events of different streams never
/// agree): partitioned workers (`ProjectorConfig::parallelism`) split a batch by stream, and two
/// workers folding one document would each lose the other's events.
pub trait Projection: Send + Sync + std::fmt::Debug + 'static {
    type Doc: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// The view's name and index mapping.
    fn schema(&self) -> ViewSchema;

    /// The events it reads from `$all` (the others never reach `doc_id` or `apply`).
    fn filter(&self) -> EventFilter;

    /// The document `event` changes; `None` when the event does not concern the view.
    fn doc_key(&self, event: &RecordedEvent) -> Option<DocKey>;

    /// Applies `event` to `doc` (`None`: the document does not exist yet). An error means the
    /// event can never be applied: `doc` must then be left as it was, and the runtime parks the
    /// event and goes on. (In place, so a long timeline is never copied per event.)
    fn apply(&self, doc: &mut Option<Self::Doc>, event: &RecordedEvent) -> Result<(), ApplyError>;

    /// The document as the view store indexes it.
    fn to_view(&self, doc: &Self::Doc) -> ViewDoc;

    /// The cache keys a commit of `doc` invalidates (issue 15: what caches of the API's answers
    /// are named by), pushed onto `keys`; the runtime hands them out, per tenant, once the
    /// commit is visible. Declared here, not in the runtime, because only the projection knows
    /// which answers a document feeds. None by default.
    fn invalidated_keys(&self, doc: &Self::Doc, keys: &mut Vec<InvalidatedKey>) {
        let _ = (doc, keys);
    }

    /// The cache keys named by a document's key alone, for an event parked before its document
    /// exists: answers read from the log beside the view (a message's history) show it all the
    /// same. None by default.
    fn invalidated_keys_of_key(&self, key: &DocKey, keys: &mut Vec<InvalidatedKey>) {
        let _ = (key, keys);
    }
}

/// Which document an event changes: its id in the view, and the tenant it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DocKey {
    pub tenant: String,
    pub id: String,
}

impl DocKey {
    /// Document `id` of the tenant of the event's stream (the prefix before its first `/`).
    pub fn of_stream(event: &RecordedEvent, id: String) -> DocKey {
        DocKey { tenant: split_tenant(event.stream.as_str()).0.to_owned(), id }
    }
}

/// `messages`: one document per message stream, its status and timeline (see `views::message`).
#[derive(Clone, Copy, Debug, Default)]
pub struct MessagesProjection;

impl MessagesProjection {
    pub const NAME: &'static str = "messages";
}

impl Projection for MessagesProjection {
    type Doc = MessageDoc;

    fn schema(&self) -> ViewSchema {
        use FieldKind::*;
        let fields = [
            ("status", Keyword),
            ("recipient", Keyword),
            ("channel", Keyword),
            ("provider", Keyword),
            ("template", Keyword),
            ("notification", Keyword),
            ("tag", Keyword),
            ("has_errors", Bool),
            ("error_reason", Keyword),
            ("text", Text),
            ("first_event_at", Time),
            ("last_event_at", Time),
        ];
        ViewSchema {
            name: Self::NAME,
            fields: fields.into_iter().map(|(name, kind)| FieldDef { name, kind }).collect(),
            default_sort: "last_event_at",
            // The facets of every `/v1/messages` page.
            counted: vec!["status", "channel"],
        }
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all().event_type_prefix("message.")
    }

    fn doc_key(&self, event: &RecordedEvent) -> Option<DocKey> {
        // The stored stream name is unique across tenants, so it is the id; streams that are
        // not message streams still get one, so that `apply` parks their events with a reason.
        Some(DocKey::of_stream(event, event.stream.to_string()))
    }

    fn apply(&self, doc: &mut Option<MessageDoc>, event: &RecordedEvent) -> Result<(), ApplyError> {
        match doc {
            // `MessageDoc::apply` leaves the document unchanged when it fails.
            Some(doc) => doc.apply(event),
            None => {
                *doc = Some(MessageDoc::from_event(event)?);
                Ok(())
            }
        }
    }

    fn to_view(&self, doc: &MessageDoc) -> ViewDoc {
        let mut fields = Fields::default();
        fields.put("status", FieldValue::Str(doc.status.as_str().to_owned()));
        for recipient in [&doc.recipient_id, &doc.recipient_email, &doc.recipient_phone].into_iter().flatten() {
            fields.put("recipient", FieldValue::Str(recipient.clone()));
        }
        fields.opt("channel", doc.channel.as_ref().map(serde_name));
        fields.opt("provider", doc.provider.clone());
        fields.opt("template", doc.template_id.clone());
        fields.opt("notification", doc.notification.clone());
        for tag in &doc.tags {
            fields.put("tag", FieldValue::Str(tag.clone()));
        }
        fields.put("has_errors", FieldValue::Bool(doc.has_errors()));
        fields.opt("error_reason", doc.error_reason.as_ref().map(serde_name));
        // Full text: subject, recipient and template, as issue 4's `q` promises.
        let text = [&doc.subject, &doc.recipient_id, &doc.recipient_email, &doc.template_id, &doc.notification];
        for t in text.into_iter().flatten() {
            fields.put("text", FieldValue::Str(t.clone()));
        }
        fields.put("first_event_at", FieldValue::Time(doc.first_event_at));
        fields.put("last_event_at", FieldValue::Time(doc.last_event_at));
        ViewDoc {
            id: doc.stream.clone(),
            tenant: doc.tenant.clone(),
            version: doc.last_position,
            fields: fields.0,
            source: serde_json::value::to_raw_value(doc).expect("a message document serializes"),
        }
    }

    /// The message (its detail and history) and each of its recipients (their message lists).
    /// A message's recipient is set by its first event, so the document after the batch names
    /// every recipient whose list the batch changed.
    fn invalidated_keys(&self, doc: &MessageDoc, keys: &mut Vec<InvalidatedKey>) {
        keys.push(InvalidatedKey { kind: KeyKind::Message, value: doc.message_id.clone() });
        for recipient in [&doc.recipient_id, &doc.recipient_email, &doc.recipient_phone].into_iter().flatten() {
            keys.push(InvalidatedKey { kind: KeyKind::Recipient, value: recipient.clone() });
        }
    }

    /// The message, named by its stream (the document's id).
    fn invalidated_keys_of_key(&self, key: &DocKey, keys: &mut Vec<InvalidatedKey>) {
        if let Some((_, message_id)) = message_stream_parts(&key.id) {
            keys.push(InvalidatedKey { kind: KeyKind::Message, value: message_id.to_owned() });
        }
    }
}

/// `audit`: one document per `audit.recorded` event.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditProjection;

impl AuditProjection {
    pub const NAME: &'static str = "audit";
}

impl Projection for AuditProjection {
    type Doc = AuditDoc;

    fn schema(&self) -> ViewSchema {
        use FieldKind::*;
        let fields = [
            ("actor", Keyword),
            ("actor_type", Keyword),
            ("action", Keyword),
            ("target_type", Keyword),
            ("target_id", Keyword),
            ("outcome", Keyword),
            ("text", Text),
            ("occurred_at", Time),
            ("recorded_at", Time),
        ];
        ViewSchema {
            name: Self::NAME,
            fields: fields.into_iter().map(|(name, kind)| FieldDef { name, kind }).collect(),
            default_sort: "recorded_at",
            // The facet of every `/v1/audit` page.
            counted: vec!["outcome"],
        }
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all().event_type_prefix(AUDIT_RECORDED)
    }

    fn doc_key(&self, event: &RecordedEvent) -> Option<DocKey> {
        (event.event_type == AUDIT_RECORDED).then(|| DocKey::of_stream(event, event.id.to_string()))
    }

    fn apply(&self, doc: &mut Option<AuditDoc>, event: &RecordedEvent) -> Result<(), ApplyError> {
        // One document per event: a second delivery of the same event makes the same document.
        *doc = Some(AuditDoc::from_event(event)?);
        Ok(())
    }

    fn to_view(&self, doc: &AuditDoc) -> ViewDoc {
        let mut fields = Fields::default();
        fields.put("actor", FieldValue::Str(doc.actor_id.clone()));
        fields.put("actor_type", FieldValue::Str(serde_name(&doc.actor_type)));
        fields.put("action", FieldValue::Str(doc.action.clone()));
        fields.put("target_type", FieldValue::Str(doc.target_type.clone()));
        fields.put("target_id", FieldValue::Str(doc.target_id.clone()));
        fields.put("outcome", FieldValue::Str(serde_name(&doc.outcome)));
        let text = [Some(&doc.action), doc.actor_name.as_ref(), doc.target_name.as_ref(), doc.reason.as_ref()];
        for t in text.into_iter().flatten() {
            fields.put("text", FieldValue::Str(t.clone()));
        }
        // The producer's clock may say any RFC 3339 time (0000–9999); the index holds 1677–2262.
        fields.put("occurred_at", FieldValue::Time(indexable(doc.occurred_at)));
        fields.put("recorded_at", FieldValue::Time(indexable(doc.recorded_at)));
        ViewDoc {
            id: doc.event_id.to_string(),
            tenant: doc.tenant.clone(),
            version: doc.position,
            fields: fields.0,
            source: serde_json::value::to_raw_value(doc).expect("an audit document serializes"),
        }
    }

    /// The audited target (`{target_type}:{target_id}`: `GET /v1/audit?target_type=…&target_id=…`)
    /// and the actor.
    fn invalidated_keys(&self, doc: &AuditDoc, keys: &mut Vec<InvalidatedKey>) {
        keys.push(InvalidatedKey { kind: KeyKind::AuditTarget, value: audit_target(&doc.target_type, &doc.target_id) });
        keys.push(InvalidatedKey { kind: KeyKind::Actor, value: doc.actor_id.clone() });
    }
}

/// The value of an audit target's invalidation key.
pub fn audit_target(target_type: &str, target_id: &str) -> String {
    format!("{target_type}:{target_id}")
}

/// The times a view indexes, in whole seconds: 1677-09-21T00:12:44Z to 2262-04-11T23:47:16Z
/// (nanoseconds since the epoch in an `i64`, what tantivy's date fields hold). Queries are held
/// to it (`from`, `to`, cursors: a `400` naming the parameter), documents are clamped into it.
pub fn indexed_times() -> std::ops::RangeInclusive<DateTime<Utc>> {
    let second = |nanos: i64| DateTime::from_timestamp(nanos / 1_000_000_000, 0).expect("within chrono's range");
    second(i64::MIN)..=second(i64::MAX)
}

/// `t` within [`indexed_times`]: a time beyond sorts and filters as the nearest end of that
/// range, while the document's source keeps it as recorded. An audit event's `occurred_at` is
/// the producer's clock, and its schema takes any RFC 3339 time (0000-9999): the view must
/// apply what the append accepted (issue 13) rather than fail to index it.
pub fn indexable(t: DateTime<Utc>) -> DateTime<Utc> {
    let range = indexed_times();
    t.clamp(*range.start(), *range.end())
}

#[derive(Default)]
struct Fields(BTreeMap<&'static str, Vec<FieldValue>>);

impl Fields {
    fn put(&mut self, name: &'static str, value: FieldValue) {
        self.0.entry(name).or_default().push(value);
    }

    fn opt(&mut self, name: &'static str, value: Option<String>) {
        if let Some(v) = value {
            self.put(name, FieldValue::Str(v));
        }
    }
}

/// The name serde gives a unit enum variant (`Channel::Email` → `email`), so filters use the
/// same spelling as the JSON documents.
fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}
