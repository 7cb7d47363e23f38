//! `RedisFeed`: a view's invalidations read back from its Redis stream (`XREAD BLOCK`), for
//! the API processes of a multi-process deployment (each invalidates its in-process cache) and
//! for anything else that follows a view's invalidations from another process.
//!
//! Why it looks at `XINFO STREAM` before reading: a stream trimmed with `MAXLEN ~` forgets its
//! oldest entries, and a reader resuming from a position whose successors were trimmed would
//! otherwise see a silent gap. When the stream has lost entries (more were ever added than it
//! holds, or an `XDEL` past the resume point) and its oldest entry is past the resume point, the
//! reader gets a [`FlushReason::Trimmed`] whole-view invalidation first (guarantee 4). (Redis 7's
//! `max-deleted-entry-id` counts `XDEL` only, not trimming: checked against 7.0.15.) Each
//! `follow` has its own connection, because a blocking read holds its connection until it
//! answers.

use std::collections::VecDeque;
use std::sync::Arc;

use annals_store::Position;
use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Value};

use super::config::{redact, RedisConfig};
use super::sink::dedicated_connection;
use super::stream::{classify, stream_info, EntryId, StreamInfo};
use crate::invalidation::{FlushReason, Invalidation, InvalidationError, InvalidationFeed, Scope};

/// Entries asked for per read.
const READ_COUNT: usize = 512;

/// The Redis [`InvalidationFeed`].
#[derive(Clone)]
pub struct RedisFeed {
    config: Arc<RedisConfig>,
}

impl std::fmt::Debug for RedisFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFeed").field("url", &redact(self.config.url())).finish_non_exhaustive()
    }
}

impl RedisFeed {
    pub fn new(config: RedisConfig) -> RedisFeed {
        RedisFeed { config: Arc::new(config) }
    }
}

struct Follow {
    con: MultiplexedConnection,
    config: Arc<RedisConfig>,
    view: String,
    stream: String,
    cursor: EntryId,
    ready: VecDeque<Invalidation>,
    /// The last position's entries of a read that hit [`READ_COUNT`]: held back until the next
    /// read shows whether that position has more, so that a stream that ends with an error has
    /// given every entry of each position it gave one of (the reader resumes by position).
    held: Vec<Invalidation>,
    failed: bool,
}

#[async_trait]
impl InvalidationFeed for RedisFeed {
    async fn follow(
        &self,
        view: &str,
        after: Option<Position>,
    ) -> Result<BoxStream<'static, Result<Invalidation, InvalidationError>>, InvalidationError> {
        let mut con = dedicated_connection(&self.config).await?;
        let stream = self.config.stream(view);
        let info = stream_info(&mut con, &stream).await.map_err(classify)?;
        let mut ready = VecDeque::new();
        let cursor = match after {
            // From now on: after the last id ever added (0-0 for a stream not made yet).
            None => info.and_then(|i| i.last_generated).unwrap_or(EntryId { code: 0, seq: 0 }),
            Some(position) => {
                let cursor = EntryId::after(position);
                if let Some(lost) = info.and_then(|i| trimmed_past(&i, cursor)) {
                    tracing::info!(view, after = %position, trimmed_up_to = %lost, "resume point trimmed from the redis stream, flushing");
                    ready.push_back(flush(view, lost.code));
                }
                cursor
            }
        };
        let state = Follow {
            con,
            config: Arc::clone(&self.config),
            view: view.to_owned(),
            stream,
            cursor,
            ready,
            held: Vec::new(),
            failed: false,
        };
        Ok(stream::unfold(state, next).boxed())
    }
}

/// Where a reader at `cursor` must flush, if entries after it may be gone: something was
/// removed (more entries were ever added than are held, or an `XDEL` past the cursor) and the
/// oldest entry held (the last id, if none is) is past the cursor. A reader whose cursor is the
/// very last trimmed entry gets a flush too many, which is harmless; a gap would not be.
fn trimmed_past(info: &StreamInfo, cursor: EntryId) -> Option<EntryId> {
    if let Some(deleted) = info.max_deleted.filter(|deleted| *deleted > cursor) {
        return Some(deleted);
    }
    // A server without `entries-added` (before Redis 7) may have trimmed whatever it does not hold.
    let removed = match (info.entries_added, info.length) {
        (Some(added), Some(length)) => added > length,
        _ => true,
    };
    let oldest = info.first_entry.or(info.last_generated).filter(|id| !id.is_zero())?;
    (removed && oldest > cursor).then_some(oldest)
}

fn flush(view: &str, code: u64) -> Invalidation {
    Invalidation {
        tenant: None,
        view: view.to_owned(),
        position: Position::from_code(code),
        scope: Scope::WholeView { reason: FlushReason::Trimmed },
    }
}

async fn next(mut state: Follow) -> Option<(Result<Invalidation, InvalidationError>, Follow)> {
    loop {
        if state.failed {
            return None;
        }
        if let Some(invalidation) = state.ready.pop_front() {
            return Some((Ok(invalidation), state));
        }
        let options = StreamReadOptions::default()
            .block(state.config.block().as_millis().try_into().unwrap_or(usize::MAX))
            .count(READ_COUNT);
        let cursor = state.cursor.to_string();
        let reply: Result<Option<StreamReadReply>, _> =
            state.con.xread_options(&[state.stream.as_str()], &[cursor.as_str()], &options).await;
        match reply {
            Err(e) => {
                state.failed = true;
                tracing::warn!(view = %state.view, error = %e, "redis invalidation feed ended");
                return Some((Err(classify(e)), state));
            }
            // Nothing new within the block: the held position is complete.
            Ok(None) => state.ready.extend(state.held.drain(..)),
            Ok(Some(reply)) => {
                let entries: Vec<_> = reply.keys.into_iter().flat_map(|k| k.ids).collect();
                let full = entries.len() >= READ_COUNT;
                let mut got = std::mem::take(&mut state.held);
                for entry in entries {
                    let Some(id) = EntryId::parse(&entry.id) else { continue };
                    state.cursor = id;
                    let decoded = match entry.map.get("invalidation") {
                        Some(Value::BulkString(bytes)) => serde_json::from_slice::<Invalidation>(bytes).ok(),
                        _ => None,
                    };
                    match decoded {
                        Some(invalidation) if invalidation.view == state.view => got.push(invalidation),
                        // Something else wrote into the stream: what it stands for is unknown, so
                        // the reader drops the view rather than miss an invalidation.
                        _ => {
                            tracing::warn!(view = %state.view, entry = %entry.id, "unreadable entry in the redis invalidation stream, flushing");
                            got.push(flush(&state.view, id.code));
                        }
                    }
                }
                if full {
                    let last = got.last().map(|i| i.position);
                    let keep = got.iter().rev().take_while(|i| Some(i.position) == last).count();
                    state.held = got.split_off(got.len() - keep);
                }
                state.ready.extend(got);
            }
        }
    }
}
