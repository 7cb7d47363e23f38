//! The checks of an append — expected revision, idempotent retry or conflict — made by the
//! writer against what it knows of the log (the database plus its groups in flight), with the
//! engine's rules and messages (`engine/writer.rs`, `engine/retry.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::position_from_db;
use crate::error::StoreError;
use crate::model::{AppendResult, CurrentRevision, EventData, ExpectedRevision, Revision, StreamId};

/// An append as the writer holds it (shared with the task that writes its group).
#[derive(Debug)]
pub struct Append {
    pub stream: StreamId,
    pub expected: ExpectedRevision,
    pub events: Vec<EventData>,
    pub bytes: usize,
}

/// A stored event id: its stream, revision and position.
#[derive(Clone, Debug)]
pub struct Stored {
    pub stream: String,
    pub revision: i64,
    pub position: i64,
}

/// What the checks see: each stream's last revision (`None`: no stream) and stored ids by
/// (namespace, id). Built from the database and the groups in flight, then extended with each
/// append the group accepts.
#[derive(Default, Debug)]
pub struct View {
    pub streams: HashMap<String, Option<i64>>,
    pub ids: HashMap<(String, Uuid), Stored>,
}

/// An append the group writes: its events get revisions and positions from these.
#[derive(Debug)]
pub struct Accepted {
    pub append: Arc<Append>,
    pub first_revision: i64,
    pub first_position: i64,
}

/// Checks one append; if it is new, gives it the positions from `*next` on and records its
/// effect in `view` (later appends of the group see it).
pub fn decide(
    append: &Arc<Append>,
    view: &mut View,
    next: &mut i64,
    accepted: &mut Vec<Accepted>,
) -> Result<AppendResult, StoreError> {
    let stream = &append.stream;
    let namespace = stream.namespace();
    let found: Vec<(Uuid, Stored)> = append
        .events
        .iter()
        .filter_map(|e| view.ids.get(&(namespace.to_owned(), e.id())).map(|s| (e.id(), s.clone())))
        .collect();
    if !found.is_empty() {
        return retry_result(append, &found);
    }
    let last = view.streams.get(stream.as_str()).copied().flatten();
    let actual = last.map_or(CurrentRevision::NoStream, |r| CurrentRevision::Current(revision(r)));
    let ok = match (append.expected, actual) {
        (ExpectedRevision::Any, _) => true,
        (ExpectedRevision::NoStream, CurrentRevision::NoStream) => true,
        (ExpectedRevision::StreamExists, CurrentRevision::Current(_)) => true,
        (ExpectedRevision::Exact(e), CurrentRevision::Current(a)) => e == a,
        _ => false,
    };
    if !ok {
        return Err(StoreError::WrongExpectedRevision { stream: stream.clone(), expected: append.expected, actual });
    }
    let first_revision = last.map_or(0, |r| r + 1);
    let first_position = *next;
    for (i, event) in append.events.iter().enumerate() {
        let entry = Stored {
            stream: stream.as_str().to_owned(),
            revision: first_revision + i as i64,
            position: first_position + i as i64,
        };
        view.ids.insert((namespace.to_owned(), event.id()), entry);
    }
    let n = append.events.len() as i64;
    *next += n;
    view.streams.insert(stream.as_str().to_owned(), Some(first_revision + n - 1));
    accepted.push(Accepted { append: Arc::clone(append), first_revision, first_position });
    Ok(AppendResult {
        stream: stream.clone(),
        first_revision: revision(first_revision),
        last_revision: revision(first_revision + n - 1),
        first_position: position_from_db(first_position),
        last_position: position_from_db(first_position + n - 1),
    })
}

fn revision(value: i64) -> Revision {
    Revision(u64::try_from(value).expect("revisions are never negative"))
}

/// The answer to an append some of whose ids are stored (`found`, in the batch's order): the
/// original result if it is an exact retry, else `IdempotencyConflict` — the engine's rules,
/// with the stream compared by name.
fn retry_result(append: &Append, found: &[(Uuid, Stored)]) -> Result<AppendResult, StoreError> {
    let stream = &append.stream;
    let conflict =
        |event_id: Uuid, reason: String| StoreError::IdempotencyConflict { stream: stream.clone(), event_id, reason };
    let n = append.events.len();
    let (first_id, first) = &found[0];
    if found.len() < n {
        let missing = append.events.iter().find(|e| !found.iter().any(|(id, _)| *id == e.id())).expect("one missing");
        return Err(conflict(
            *first_id,
            format!(
                "{} of the {n} events are stored already and {} (at least) is not, so the batch is neither new nor a retry",
                found.len(),
                missing.id()
            ),
        ));
    }
    for (i, (id, entry)) in found.iter().enumerate() {
        if entry.stream != stream.as_str() {
            return Err(conflict(*id, "it is stored in another stream".into()));
        }
        if entry.revision != first.revision + i as i64 {
            return Err(conflict(
                *id,
                format!("it is stored at revision {}, not in the order of this batch", entry.revision),
            ));
        }
    }
    let consistent = match append.expected {
        ExpectedRevision::Any | ExpectedRevision::StreamExists => true,
        ExpectedRevision::NoStream => first.revision == 0,
        ExpectedRevision::Exact(r) => r.0.checked_add(1) == u64::try_from(first.revision).ok(),
    };
    if !consistent {
        return Err(conflict(
            *first_id,
            format!("it is stored at revision {}, which does not follow expected {}", first.revision, append.expected),
        ));
    }
    let last = &found[n - 1].1;
    Ok(AppendResult {
        stream: stream.clone(),
        first_revision: revision(first.revision),
        last_revision: revision(last.revision),
        first_position: position_from_db(first.position),
        last_position: position_from_db(last.position),
    })
}
