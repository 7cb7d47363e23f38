//! Subscriptions: a task per subscriber that reads history in batches and then waits on the
//! published head. Catch-up and live are the same loop, so there is no switch at which an event
//! could be lost or repeated; a subscriber that falls behind simply reads more history. The task
//! holds only a weak reference to the store, so subscriptions end when the store is gone.

use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, watch};

use super::reader;
use super::store::{Head, Shared};
use crate::error::StoreError;
use crate::event_store::{Batch, Pace, Subscription, SubscriptionMessage};
use crate::model::{
    Direction, EventFilter, Position, ReadFrom, ReadStreamOutcome, RecordedEvent, Revision, StreamId, SubscribeFrom,
};

/// Events read per step; also what a subscriber buffers at most (times the channel depth).
const BATCH: usize = 1024;
const CHANNEL_DEPTH: usize = 2;

pub fn to_all(shared: &Arc<Shared>, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
    let next = match from {
        SubscribeFrom::Start => Position(0),
        SubscribeFrom::After(p) => p.next(),
        SubscribeFrom::End => shared.head().position,
    };
    let cursor = Cursor::All { next, filter };
    spawn(shared, cursor)
}

pub fn to_stream(
    shared: &Arc<Shared>,
    stream: StreamId,
    from: SubscribeFrom<Revision>,
) -> Result<Subscription, StoreError> {
    let next = match from {
        SubscribeFrom::Start => Revision(0),
        SubscribeFrom::After(r) => r.next(),
        // Resolved now, so that events appended after this call returns are all delivered.
        SubscribeFrom::End => shared.index()?.stream(stream.as_str())?.map_or(Revision(0), |e| e.last_revision.next()),
    };
    Ok(spawn(shared, Cursor::Stream { stream, next }))
}

enum Cursor {
    All { next: Position, filter: EventFilter },
    Stream { stream: StreamId, next: Revision },
}

impl Cursor {
    /// Reads the next batch. `head` is the published head observed before the read; the reader
    /// sees at least that much.
    fn read(&mut self, shared: &Shared, head: Position) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Cursor::All { next, filter } => {
                if *next >= head {
                    return Ok(Vec::new());
                }
                let events = reader::read_all(shared, ReadFrom::At(*next), Direction::Forwards, BATCH, filter)?;
                *next = match events.last() {
                    Some(last) if events.len() == BATCH => last.position.next(),
                    // A short batch means the reader scanned to its head, which is at least `head`.
                    Some(last) => last.position.next().max(head),
                    None => head,
                };
                Ok(events)
            }
            Cursor::Stream { stream, next } => {
                let outcome = reader::read_stream(shared, stream, ReadFrom::At(*next), Direction::Forwards, BATCH)?;
                let events = match outcome {
                    ReadStreamOutcome::StreamNotFound => Vec::new(),
                    ReadStreamOutcome::Events(events) => events,
                };
                if let Some(last) = events.last() {
                    *next = last.revision.next();
                }
                Ok(events)
            }
        }
    }
}

fn spawn(shared: &Arc<Shared>, cursor: Cursor) -> Subscription {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let pace = Pace::default();
    let task = tokio::spawn(run(Arc::downgrade(shared), shared.watch_head(), cursor, tx, pace.clone()));
    Subscription::new(rx, task.abort_handle(), pace)
}

async fn run(
    store: Weak<Shared>,
    mut head_rx: watch::Receiver<Head>,
    mut cursor: Cursor,
    tx: mpsc::Sender<Result<Batch, StoreError>>,
    pace: Pace,
) {
    let mut caught_up = false;
    loop {
        let head = head_rx.borrow_and_update().position;
        let Some(shared) = store.upgrade().filter(|s| !s.is_closed()) else {
            let _ = tx.send(Err(StoreError::Closed)).await;
            return;
        };
        let step = tokio::task::spawn_blocking(move || {
            let events = cursor.read(&shared, head);
            (cursor, events)
        })
        .await;
        let events = match step {
            Ok((returned, Ok(events))) => {
                cursor = returned;
                events
            }
            Ok((_, Err(e))) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Err(e) => {
                let _ = tx
                    .send(Err(StoreError::Io {
                        op: "subscription read",
                        path: Default::default(),
                        source: std::io::Error::other(e.to_string()),
                    }))
                    .await;
                return;
            }
        };
        let full = events.len() == BATCH;
        let mut batch: Batch = events.into_iter().map(SubscriptionMessage::Event).collect();
        if !full && !caught_up {
            caught_up = true;
            batch.push(SubscriptionMessage::CaughtUp);
        }
        if !batch.is_empty() && tx.send(Ok(batch)).await.is_err() {
            return;
        }
        if full {
            continue;
        }
        // Publishes during the pause are not missed: `changed` compares with the head we read.
        if let Some(pause) = pace.get() {
            tokio::time::sleep(pause).await;
        }
        // Woken by any publish after the head we read; an error means the store is gone.
        if head_rx.changed().await.is_err() {
            let _ = tx.send(Err(StoreError::Closed)).await;
            return;
        }
    }
}
