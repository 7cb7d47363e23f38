//! Subscriptions, as in the engine: a task per subscriber that reads pages from the last
//! position it delivered and then waits to be woken — catch-up and live are one loop, so there
//! is no switch at which an event could be lost or repeated.
//!
//! The wake-up is a `watch` counter bumped by this process's writer after each commit and by
//! the `LISTEN annals_events` task for every other process's commits. A notification only says
//! "read again": the read itself decides what is new, so a notification lost while the LISTEN
//! connection was down costs nothing once the task, back, wakes everyone. A read that fails for
//! want of the server is retried with backoff: a PostgreSQL restart pauses subscriptions, it
//! does not end them.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::warn;

use super::shared::Shared;
use super::{is_unavailable, position_from_db, position_to_db, reader};
use crate::error::StoreError;
use crate::event_store::{Batch, Pace, Subscription, SubscriptionMessage};
use crate::model::{
    Direction, EventFilter, PageLimits, Position, ReadFrom, ReadStreamOutcome, RecordedEvent, Revision, StreamId,
    SubscribeFrom,
};

/// Events read per step; also what a subscriber buffers at most (times the channel depth).
const BATCH: usize = 1024;
/// Bytes of events per step, at most (a step's first event comes whatever its size).
const BATCH_BYTES: usize = 1024 * 1024;
/// Events of `$all` examined per step, at most.
const SCAN: usize = 65_536;
const CHANNEL_DEPTH: usize = 2;
/// A live subscription reads again after this long even without a wake-up: the last line of
/// defence should a notification go missing in a way the LISTEN task cannot see.
const POLL: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub async fn to_all(
    shared: &Arc<Shared>,
    from: SubscribeFrom<Position>,
    filter: EventFilter,
) -> Result<Subscription, StoreError> {
    let next = match from {
        SubscribeFrom::Start => 0,
        SubscribeFrom::After(p) => position_to_db(p).saturating_add(1),
        SubscribeFrom::At(p) => position_to_db(p),
        // Resolved now, so that events appended after this call returns are all delivered.
        SubscribeFrom::End => reader::next_position(&shared.client().await?).await?,
    };
    Ok(spawn(shared, Cursor::All { next, filter }))
}

pub async fn to_stream(
    shared: &Arc<Shared>,
    stream: StreamId,
    from: SubscribeFrom<Revision>,
) -> Result<Subscription, StoreError> {
    let next = match from {
        SubscribeFrom::Start => 0,
        SubscribeFrom::After(r) => i64::try_from(r.0).unwrap_or(i64::MAX).saturating_add(1),
        SubscribeFrom::At(r) => i64::try_from(r.0).unwrap_or(i64::MAX),
        SubscribeFrom::End => reader::last_revision(&shared.client().await?, &stream).await?.map_or(0, |r| r + 1),
    };
    Ok(spawn(shared, Cursor::Stream { stream, next }))
}

enum Cursor {
    All { next: i64, filter: EventFilter },
    Stream { stream: StreamId, next: i64 },
}

impl Cursor {
    /// The next batch, and whether there is more to read at once.
    async fn read(&mut self, shared: &Shared) -> Result<(Vec<RecordedEvent>, bool), StoreError> {
        let client = shared.client().await?;
        match self {
            Cursor::All { next, filter } => {
                let limits = PageLimits { max_count: BATCH, max_bytes: BATCH_BYTES, max_scan: SCAN };
                let from = ReadFrom::At(position_from_db(*next));
                let page = reader::read_all_page(&client, from, Direction::Forwards, limits, filter).await?;
                *next = page.next.map_or(*next, position_to_db).max(*next);
                Ok((page.events, !page.reached_end))
            }
            Cursor::Stream { stream, next } => {
                let from = ReadFrom::At(Revision(*next as u64));
                let events =
                    match reader::read_stream(&client, stream, from, Direction::Forwards, BATCH, BATCH_BYTES).await? {
                        ReadStreamOutcome::StreamNotFound => Vec::new(),
                        ReadStreamOutcome::Events(events) => events,
                    };
                if let Some(last) = events.last() {
                    *next = last.revision.0 as i64 + 1;
                }
                let more = !events.is_empty();
                Ok((events, more))
            }
        }
    }
}

fn spawn(shared: &Arc<Shared>, cursor: Cursor) -> Subscription {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let pace = Pace::default();
    let task = tokio::spawn(run(Arc::clone(shared), cursor, tx, pace.clone()));
    Subscription::new(rx, task.abort_handle(), pace)
}

async fn run(shared: Arc<Shared>, mut cursor: Cursor, tx: mpsc::Sender<Result<Batch, StoreError>>, pace: Pace) {
    let mut wake = shared.wake.subscribe();
    let mut caught_up = false;
    let mut backoff = Duration::ZERO;
    loop {
        wake.borrow_and_update();
        let read = tokio::select! {
            read = cursor.read(&shared) => read,
            () = shared.cancel.cancelled() => Err(StoreError::Closed),
        };
        let (events, more) = match read {
            Ok(read) => {
                backoff = Duration::ZERO;
                read
            }
            Err(e) if is_unavailable(&e) && !shared.cancel.is_cancelled() => {
                backoff = (backoff * 2).clamp(Duration::from_millis(50), MAX_BACKOFF);
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "subscription read failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => continue,
                    () = shared.cancel.cancelled() => {
                        let _ = tx.send(Err(StoreError::Closed)).await;
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let mut batch: Batch = events.into_iter().map(SubscriptionMessage::Event).collect();
        if !more && !caught_up {
            caught_up = true;
            batch.push(SubscriptionMessage::CaughtUp);
        }
        if !batch.is_empty() && tx.send(Ok(batch)).await.is_err() {
            return;
        }
        if more {
            continue;
        }
        if let Some(pause) = pace.get() {
            tokio::time::sleep(pause).await;
        }
        tokio::select! {
            changed = wake.changed() => if changed.is_err() {
                let _ = tx.send(Err(StoreError::Closed)).await;
                return;
            },
            () = tokio::time::sleep(POLL) => {}
            () = shared.cancel.cancelled() => {
                let _ = tx.send(Err(StoreError::Closed)).await;
                return;
            }
        }
    }
}

/// The LISTEN task of a store: wakes subscriptions on every NOTIFY of a commit, and once more
/// whenever its connection comes back. Reconnects with backoff until the store is closed.
pub async fn listen(pg: tokio_postgres::Config, shared: Arc<Shared>) {
    let mut pause = Duration::from_millis(50);
    while !shared.cancel.is_cancelled() {
        match pg.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (ntx, mut nrx) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => {
                                if ntx.send(()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                warn!(error = %e, "postgresql LISTEN connection ended");
                                break;
                            }
                        }
                    }
                });
                if client.batch_execute("LISTEN annals_events").await.is_ok() {
                    pause = Duration::from_millis(50);
                    // Whatever was committed while we were away was not announced to us.
                    shared.wake_all();
                    loop {
                        tokio::select! {
                            message = nrx.recv() => match message {
                                Some(()) => shared.wake_all(),
                                None => break,
                            },
                            () = shared.cancel.cancelled() => {
                                driver.abort();
                                return;
                            }
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => warn!(error = %e, "postgresql LISTEN connection cannot connect; retrying"),
        }
        shared.wake_all();
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shared.cancel.cancelled() => return,
        }
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}
