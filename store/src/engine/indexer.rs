//! The second stage of the write pipeline: for each durable group, in order, commit its index
//! entries, publish the new head, and only then answer the appends that depend on it. It runs on
//! its own thread so the writer can write and sync the next group meanwhile.

use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::error;

use super::index::{IndexedRecord, StreamEntry, Watermark};
use super::shared::{Head, Shared};
use crate::error::StoreError;
use crate::model::{AppendResult, StreamId};

pub type Reply = (oneshot::Sender<Result<AppendResult, StoreError>>, Result<AppendResult, StoreError>);

/// A group the writer has made durable (or, with no records, only answers to give in order).
pub struct IndexJob {
    pub records: Vec<IndexedRecord>,
    pub streams: Vec<(StreamId, StreamEntry)>,
    pub segment: u64,
    pub group_offset: u64,
    pub watermark: Watermark,
    pub next_stream_number: u64,
    pub replies: Vec<Reply>,
}

/// Commits jobs in order and answers each job's appenders once its events are published.
pub fn run(shared: Arc<Shared>, jobs: mpsc::Receiver<IndexJob>) {
    for job in jobs {
        if !job.records.is_empty() && shared.poisoned().is_none() {
            if let Err(e) = commit(&shared, &job) {
                error!(error = %e, "index commit failed; the store accepts no more appends until reopened");
                shared.poison(e.to_string());
            }
        }
        let published = shared.head().position;
        for (reply, result) in job.replies {
            // An answer is given only for events that are published; anything else failed with
            // the group (the events may still be on disk: a reopen indexes them from the log).
            let result = match result {
                Ok(r) if r.last_position >= published => Err(shared.poisoned_error()),
                other => other,
            };
            let _ = reply.send(result);
        }
    }
}

fn commit(shared: &Shared, job: &IndexJob) -> Result<(), StoreError> {
    let index = shared.index()?;
    let mut batch = index.batch();
    for (name, entry) in &job.streams {
        index.insert_stream(&mut batch, name.as_str(), *entry);
    }
    index.insert_group(&mut batch, job.segment, job.group_offset, &job.records);
    index.commit(batch, job.watermark, job.next_stream_number)?;
    shared.publish(Head {
        position: job.watermark.position,
        segment: job.watermark.segment,
        offset: job.watermark.offset,
    });
    Ok(())
}
