//! Subscriptions: a task per subscriber that reads history in batches and then waits on the
//! published head. Catch-up and live are the same loop, so there is no switch at which an event
//! could be lost or repeated; a subscriber that falls behind simply reads more history. The task
//! holds only a weak reference to the store, so subscriptions end when the store is gone.

use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, watch};

use super::shared::{Head, Shared};
use super::{all, reader};
use crate::error::StoreError;
use crate::event_store::{Batch, Pace, Subscription, SubscriptionMessage};
use crate::model::{
    Direction, EventFilter, PageLimits, Position, ReadFrom, ReadStreamOutcome, RecordedEvent, Revision, StreamId,
    SubscribeFrom,
};

/// Events read per step; also what a subscriber buffers at most (times the channel depth).
const BATCH: usize = 1024;
/// Bytes of events per step, at most (a batch's first event is sent whatever its size): with
/// 1 MB events, 1,024-event batches held a GB per subscriber.
const BATCH_BYTES: usize = 1024 * 1024;
/// Events of `$all` examined per step, at most: a subscription whose filter matches rarely still
/// gives the blocking pool back between steps.
const SCAN: usize = 65_536;
const CHANNEL_DEPTH: usize = 2;

pub fn to_all(shared: &Arc<Shared>, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
    let next = match from {
        SubscribeFrom::Start => Position(0),
        SubscribeFrom::After(p) => p.next(),
        SubscribeFrom::At(p) => p,
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
        SubscribeFrom::At(r) => r,
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
    /// Reads the next batch, and whether there is more to read at once (a bound, not the head,
    /// ended it). `head` is the published head observed before the read; the reader sees at
    /// least that much.
    fn read(&mut self, shared: &Shared, head: Position) -> Result<(Vec<RecordedEvent>, bool), StoreError> {
        match self {
            Cursor::All { next, filter } => {
                if *next >= head {
                    return Ok((Vec::new(), false));
                }
                let limits = PageLimits { max_count: BATCH, max_bytes: BATCH_BYTES, max_scan: SCAN };
                let page = all::read_all_page(shared, ReadFrom::At(*next), Direction::Forwards, limits, filter)?;
                // At the end, `next` is the reader's head, which is at least `head`.
                *next = page.next.unwrap_or(head).max(*next);
                Ok((page.events, !page.reached_end))
            }
            Cursor::Stream { stream, next } => {
                let from = ReadFrom::At(*next);
                let (outcome, by_bytes) =
                    reader::read_stream(shared, stream, from, Direction::Forwards, BATCH, BATCH_BYTES)?;
                let events = match outcome {
                    ReadStreamOutcome::StreamNotFound => Vec::new(),
                    ReadStreamOutcome::Events(events) => events,
                };
                let more = by_bytes || events.len() == BATCH;
                if let Some(last) = events.last() {
                    *next = last.revision.next();
                }
                Ok((events, more))
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
        let (events, full) = match step {
            Ok((returned, Ok(read))) => {
                cursor = returned;
                read
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
