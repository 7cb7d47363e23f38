//! The checks every backend makes of a batch before it reaches its writer: not empty, no event
//! over the size limit, no id twice, the batch within its count and byte limits. One function,
//! so that the embedded engine and PostgreSQL refuse exactly the same batches with the same
//! errors (the conformance suite checks the outcome; this keeps the code from drifting).

use std::collections::HashSet;

use crate::error::StoreError;
use crate::model::EventData;

/// The limits a batch is checked against (each backend's config carries them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchLimits {
    pub max_event_size: usize,
    pub max_batch_events: usize,
    pub max_batch_bytes: usize,
}

/// Checks `events` against `limits`; returns the batch's payload bytes.
pub(crate) fn check_batch(events: &[EventData], limits: BatchLimits) -> Result<usize, StoreError> {
    if events.is_empty() {
        return Err(StoreError::EmptyBatch);
    }
    let mut bytes = 0usize;
    // A set, not a scan of the events before each one: a batch of 10,000 events would be 50
    // million comparisons.
    let mut ids = HashSet::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let size = event.payload_len();
        if size > limits.max_event_size {
            return Err(StoreError::EventTooLarge { index, size, max: limits.max_event_size });
        }
        if !ids.insert(event.id()) {
            return Err(StoreError::DuplicateIdInBatch { event_id: event.id() });
        }
        bytes = bytes.saturating_add(size);
    }
    if events.len() > limits.max_batch_events || bytes > limits.max_batch_bytes {
        return Err(StoreError::BatchTooLarge {
            count: events.len(),
            bytes,
            max_events: limits.max_batch_events,
            max_bytes: limits.max_batch_bytes,
        });
    }
    Ok(bytes)
}
