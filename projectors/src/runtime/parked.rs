//! Parked events and their replay: the record of what a view could not apply, kept in the log
//! itself, one system stream per generation of a view.
//!
//! # The parked stream
//! `$parked-{view}` (generation 1) or `$parked-{view}-gen-{N}` holds three kinds of events:
//!
//! - `$parked` ([`ParkedEntry`]): an event the projection could not apply, with the error. The
//!   projector appends it before its checkpoint passes the event.
//! - `$replay-requested` ([`ReplayRequest`]): an operator asks that parked events be applied
//!   again (after fixing what stopped them). Appended by the API; it gets a position in `$all`
//!   like any event, and the projector meets it in its subscription, in log order.
//! - `$replayed` ([`Replayed`]): what one replay did to one parked event (applied, or failed
//!   again with a new error), appended by the projector before its checkpoint passes the request.
//!
//! A generation has its own stream because a rebuild applies every event again from position 0:
//! what the new generation parks is exactly what the new code cannot apply, and the old entries
//! describe a view that no longer serves.
//!
//! # Why a replay is an event in the log
//! A view keeps a write only when its version is greater than the stored document's (the view
//! contract's idempotence), and a document's version is the position of the last event applied
//! to it. A parked event is older than the documents it touches, so re-applying it "now" needs a
//! version that is newer than everything applied so far and that every replay of the log gives
//! again: the position of the request. The projector applies the parked events when it reaches
//! the request, writes the documents with the request's position as their version and commits
//! them with the request's position as the checkpoint. A crash before that commit meets the
//! request again and does the same work: the selection ([`ParkedLog::to_replay`]) ignores the
//! outcomes recorded at or after the request, and outcomes have ids derived from (stream,
//! request, event), so recording them again is an idempotent retry.

use std::collections::BTreeMap;

use annals_store::{
    Direction, EventData, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom, ReadStreamOutcome,
    RecordedEvent, Revision, StoreError, StreamId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The event type of a parked event's entry.
pub const PARKED: &str = "$parked";
/// The event type of a replay request.
pub const REPLAY_REQUESTED: &str = "$replay-requested";
/// The event type of one replay's outcome for one parked event.
pub const REPLAYED: &str = "$replayed";

/// The parked stream of generation `generation` of `view`.
pub fn parked_stream(view: &str, generation: u64) -> Result<StreamId, StoreError> {
    match generation {
        0 | 1 => StreamId::new(format!("{STREAM_PREFIX}{view}")),
        n => StreamId::new(format!("{STREAM_PREFIX}{view}-gen-{n}")),
    }
}

/// An event a projection could not apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedEntry {
    pub projection: String,
    pub position: u64,
    pub stream: String,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub error: String,
}

/// A request to apply parked events again: those at `positions`, or every one still parked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRequest {
    pub projection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<Vec<u64>>,
}

/// What the replay requested at `replayed_at` did to the parked event at `position`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    pub position: u64,
    pub replayed_at: u64,
    pub outcome: ReplayOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayOutcome {
    /// The event is in the view now.
    Applied,
    /// It failed again; it stays parked.
    Failed,
}

/// One parked event with what replays did to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Parked {
    /// Its entry's revision in the parked stream.
    pub revision: Revision,
    pub parked_at: DateTime<Utc>,
    pub entry: ParkedEntry,
    /// Outcomes in the order they were recorded.
    pub replays: Vec<Replayed>,
}

impl Parked {
    /// Whether a replay has applied it.
    pub fn resolved(&self) -> bool {
        self.replays.iter().any(|r| r.outcome == ReplayOutcome::Applied)
    }
}

/// A parked stream folded: each parked event by its position in the log. `refresh` reads only
/// what was appended since the last call.
#[derive(Debug)]
pub struct ParkedLog {
    stream: StreamId,
    parked: BTreeMap<u64, Parked>,
    from: ReadFrom<Revision>,
}

impl ParkedLog {
    pub fn new(stream: StreamId) -> Self {
        ParkedLog { stream, parked: BTreeMap::new(), from: ReadFrom::Start }
    }

    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// Folds the entries appended since the last refresh.
    pub async fn refresh(&mut self, store: &dyn EventStore) -> Result<&Self, StoreError> {
        const PAGE: usize = 1_000;
        loop {
            let events = match store.read_stream(&self.stream, self.from, Direction::Forwards, PAGE).await? {
                ReadStreamOutcome::Events(events) => events,
                ReadStreamOutcome::StreamNotFound => return Ok(self),
            };
            let Some(last) = events.last() else { return Ok(self) };
            self.from = ReadFrom::At(last.revision.next());
            for event in &events {
                self.fold(event);
            }
            if events.len() < PAGE {
                return Ok(self);
            }
        }
    }

    /// Every parked event, oldest entry first.
    pub fn entries(&self) -> Vec<&Parked> {
        let mut entries: Vec<&Parked> = self.parked.values().collect();
        entries.sort_by_key(|p| p.revision);
        entries
    }

    /// Parked events no replay has applied.
    pub fn unresolved(&self) -> usize {
        self.parked.values().filter(|p| !p.resolved()).count()
    }

    /// The positions a replay requested at `at` applies again: events parked before `at`, among
    /// `positions` if given, that no replay requested before `at` applied. Outcomes recorded at
    /// or after `at` do not count, so the answer is the same however often the request is met.
    pub fn to_replay(&self, at: Position, positions: Option<&[u64]>) -> Vec<Position> {
        self.parked
            .range(..at.code())
            .filter(|(position, _)| positions.is_none_or(|wanted| wanted.contains(position)))
            .filter(|(_, p)| {
                !p.replays.iter().any(|r| r.replayed_at < at.code() && r.outcome == ReplayOutcome::Applied)
            })
            .map(|(position, _)| Position::from_code(*position))
            .collect()
    }

    fn fold(&mut self, event: &RecordedEvent) {
        // Written only by this crate; an entry that does not decode is skipped, not fatal.
        match event.event_type.as_str() {
            PARKED => {
                if let Ok(entry) = serde_json::from_slice::<ParkedEntry>(&event.data) {
                    let parked =
                        Parked { revision: event.revision, parked_at: event.recorded_at, entry, replays: Vec::new() };
                    self.parked.entry(parked.entry.position).or_insert(parked);
                }
            }
            REPLAYED => {
                if let Ok(outcome) = serde_json::from_slice::<Replayed>(&event.data) {
                    if let Some(parked) = self.parked.get_mut(&outcome.position) {
                        // A request redone after a crash by different code may record another
                        // outcome for it: the later one is what its commit did.
                        match parked.replays.iter_mut().find(|r| r.replayed_at == outcome.replayed_at) {
                            Some(earlier) => *earlier = outcome,
                            None => parked.replays.push(outcome),
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Asks the projector of `stream`'s generation to apply parked events again; returns the
/// request's position (the view has done the replay once its checkpoint reaches it).
pub async fn request_replay(
    store: &dyn EventStore,
    stream: &StreamId,
    request: &ReplayRequest,
) -> Result<Position, StoreError> {
    let data = EventData::json(REPLAY_REQUESTED, request)?;
    Ok(store.append_to_stream(stream, ExpectedRevision::Any, vec![data]).await?.last_position)
}

/// Appends replay outcomes (ids from [`replayed_entry`]) in chunks. Redoing a replay after a
/// crash sends the same ids, an idempotent retry; if a chunk is no longer the same (different
/// code parked or applied differently since), the store calls it a conflict: then each outcome
/// of the chunk is appended alone, and one whose id is stored is already recorded.
pub(crate) async fn record_outcomes(
    store: &dyn EventStore,
    stream: &StreamId,
    entries: Vec<EventData>,
) -> Result<(), StoreError> {
    // Well under any store's batch limit; the same chunks every time for the same entries.
    for chunk in entries.chunks(1_000) {
        match store.append_to_stream(stream, ExpectedRevision::Any, chunk.to_vec()).await {
            Err(StoreError::IdempotencyConflict { .. }) => {}
            other => {
                other?;
                continue;
            }
        }
        for entry in chunk {
            match store.append_to_stream(stream, ExpectedRevision::Any, vec![entry.clone()]).await {
                Ok(_) | Err(StoreError::IdempotencyConflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The filter a projector subscribes with: the projection's, widened to let replay requests
/// through — those of every view and generation, so that every generation of a view moves its
/// checkpoint over the same events and a rebuild's checkpoint can be compared with the serving
/// one's (the runtime picks its own by stream and type, and skips the others).
pub fn with_replay_requests(filter: &EventFilter) -> EventFilter {
    let mut widened = filter.clone();
    if !widened.event_type_prefixes.is_empty() {
        widened.event_type_prefixes.push(REPLAY_REQUESTED.to_owned());
    }
    if !widened.stream_prefixes.is_empty() {
        widened.stream_prefixes.push(STREAM_PREFIX.to_owned());
    }
    widened
}

/// Whether `stream` is a parked stream (of any view or generation).
pub fn is_parked_stream(stream: &StreamId) -> bool {
    stream.as_str().starts_with(STREAM_PREFIX)
}

const STREAM_PREFIX: &str = "$parked-";

/// The entry recording that `event` was parked, with an id derived from the stream and the
/// event's position: parking it again (after a crash) is an idempotent retry.
pub(crate) fn parked_entry(
    stream: &StreamId,
    projection: &str,
    event: &RecordedEvent,
    error: String,
) -> Result<EventData, StoreError> {
    let entry = ParkedEntry {
        projection: projection.to_owned(),
        position: event.position.code(),
        stream: event.stream.as_str().to_owned(),
        event_id: event.id,
        event_type: event.event_type.clone(),
        error,
    };
    Ok(EventData::json(PARKED, &entry)?
        .with_id(uuid::Uuid::from_u64_pair(super::hash::stable_hash(stream.as_str()), event.position.code())))
}

/// The entry recording one replay outcome, with an id derived from (stream, request, outcome,
/// event): redoing the request records the same outcome once, and a different one (the code
/// changed between a crash and the redo) as a new entry that supersedes it.
pub(crate) fn replayed_entry(stream: &StreamId, outcome: &Replayed) -> Result<EventData, StoreError> {
    let kind = match outcome.outcome {
        ReplayOutcome::Applied => "applied",
        ReplayOutcome::Failed => "failed",
    };
    let seed = super::hash::stable_hash(&format!("{}/replayed/{}/{kind}", stream.as_str(), outcome.replayed_at));
    Ok(EventData::json(REPLAYED, outcome)?.with_id(uuid::Uuid::from_u64_pair(seed, outcome.position)))
}

#[cfg(test)]
mod tests;
