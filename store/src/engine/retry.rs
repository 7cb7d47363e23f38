//! The answer to an append some of whose ids are stored: the original result if it is an exact
//! retry, else `IdempotencyConflict` saying why not. (The writer decides which ids are stored,
//! in the append's namespace only; this only compares.)

use uuid::Uuid;

use super::index::IdEntry;
use crate::error::StoreError;
use crate::model::{AppendResult, EventData, ExpectedRevision, StreamId};

/// What of an append the answer depends on (borrowed from the writer's request, so this file
/// does not import the writer that calls it).
pub struct Retried<'a> {
    pub stream: &'a StreamId,
    pub expected: ExpectedRevision,
    pub events: &'a [EventData],
}

/// The answer to an append some of whose ids are stored: the original result if it is an exact
/// retry, otherwise `IdempotencyConflict` saying precisely why not.
pub fn retry_result(
    request: Retried<'_>,
    stream_number: Option<u64>,
    stored: &[(Uuid, IdEntry)],
) -> Result<AppendResult, StoreError> {
    let stream = request.stream;
    let conflict =
        |event_id: Uuid, reason: String| StoreError::IdempotencyConflict { stream: stream.clone(), event_id, reason };
    let n = request.events.len();
    let (first_id, first) = stored[0];
    if stored.len() < n {
        let missing =
            request.events.iter().find(|e| !stored.iter().any(|(id, _)| *id == e.id())).expect("one is missing");
        return Err(conflict(
            first_id,
            format!(
                "{} of the {n} events are stored already and {} (at least) is not, so the batch is neither new nor a retry",
                stored.len(),
                missing.id()
            ),
        ));
    }
    for (i, (id, entry)) in stored.iter().enumerate() {
        if Some(entry.stream_number) != stream_number {
            return Err(conflict(*id, "it is stored in another stream".into()));
        }
        if entry.revision.0 != first.revision.0 + i as u64 {
            return Err(conflict(
                *id,
                format!("it is stored at revision {}, not in the order of this batch", entry.revision),
            ));
        }
    }
    let consistent = match request.expected {
        ExpectedRevision::Any | ExpectedRevision::StreamExists => true,
        ExpectedRevision::NoStream => first.revision.0 == 0,
        // `checked_add`: the client names `r`, and `u64::MAX` must be a conflict, not a panic.
        ExpectedRevision::Exact(r) => r.0.checked_add(1) == Some(first.revision.0),
    };
    if !consistent {
        return Err(conflict(
            first_id,
            format!("it is stored at revision {}, which does not follow expected {}", first.revision, request.expected),
        ));
    }
    let last = stored[n - 1].1;
    Ok(AppendResult {
        stream: stream.clone(),
        first_revision: first.revision,
        last_revision: last.revision,
        first_position: first.position,
        last_position: last.position,
    })
}
