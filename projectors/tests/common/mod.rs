//! Builders of recorded events for the tests: what the store would hand a projector, made with
//! `RecordedEvent`'s public fields, so the folds are tested without a store; and the view query
//! the runtime tests compare whole views with.

// Each test crate uses a subset of these.
#![allow(dead_code)]

use annals_projectors::view_store::{Query, Sort, ViewReader};
use annals_store::{Position, RecordedEvent, Revision, StreamId};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use uuid::Uuid;

/// A fixed start for `recorded_at`, so documents compare equal across runs.
pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T17:42:10Z").expect("a valid time").with_timezone(&Utc)
}

/// One recorded event with the given identity in the log.
pub fn recorded(
    stream: &str,
    revision: u64,
    position: u64,
    event_type: &str,
    data: &Value,
    recorded_at: DateTime<Utc>,
) -> RecordedEvent {
    RecordedEvent {
        id: Uuid::from_u64_pair(position, revision),
        stream: StreamId::new(stream).expect("a valid stream name"),
        revision: Revision(revision),
        position: Position::from_code(position),
        event_type: event_type.to_owned(),
        data: serde_json::to_vec(data).expect("JSON").into(),
        metadata: Vec::new().into(),
        recorded_at,
    }
}

/// The events of one stream as they would be recorded: revisions 0, 1, 2, …, positions that
/// leave gaps (other streams' events interleave in `$all`), one second apart.
#[derive(Debug)]
pub struct StreamLog {
    pub stream: String,
    pub events: Vec<RecordedEvent>,
    next_position: u64,
}

impl StreamLog {
    pub fn new(stream: &str) -> StreamLog {
        StreamLog { stream: stream.to_owned(), events: Vec::new(), next_position: 100 }
    }

    /// Appends an event and returns it.
    pub fn push(&mut self, event_type: &str, data: Value) -> RecordedEvent {
        let revision = self.events.len() as u64;
        let event = recorded(
            &self.stream,
            revision,
            self.next_position,
            event_type,
            &data,
            t0() + Duration::seconds(revision as i64),
        );
        self.next_position += 7;
        self.events.push(event.clone());
        event
    }
}

/// A tenant's documents, newest first, one page of `limit`.
pub fn newest_first(tenant: &str, limit: usize) -> Query {
    Query {
        tenant: tenant.to_owned(),
        filters: Vec::new(),
        text: None,
        sort: Sort { field: "last_event_at", descending: true },
        limit,
        after: None,
        facets: Vec::new(),
    }
}

/// Every document of `tenant` (up to 1,000) as (id, version, source), by id: what two views
/// that must be equal are compared by.
pub async fn all_docs(view: &dyn ViewReader, tenant: &str) -> Vec<(String, Position, Value)> {
    let page = view.search(&newest_first(tenant, 1_000)).await.expect("a search of the view");
    let mut docs: Vec<_> = page.docs.into_iter().map(|d| (d.id, d.version, d.source)).collect();
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    docs
}
