//! Reads of `$all` in pages bounded in events, bytes and events examined (`PageLimits`).
//!
//! Why a file of its own: a filter that pins one namespace (the API's tenant, `acme/…`) reads
//! the namespace's runs of events through `namespace_chunks` instead of walking the whole log,
//! so a small tenant's read costs what it returns, not the size of everyone's log; every other
//! filter walks the log with a [`LogCursor`]. Both feed one [`Collector`], which applies the
//! bounds the same way and says where the next page starts.

use super::index::NamespaceChunk;
use super::reader::{read_run, LogCursor};
use super::shared::Shared;
use crate::error::StoreError;
use crate::model::{namespace_of, AllPage, Direction, EventFilter, PageLimits, Position, ReadFrom, RecordedEvent};

/// Up to `max_count` matching events, reading on until found or the end of the log.
pub fn read_all(
    shared: &Shared,
    from: ReadFrom<Position>,
    direction: Direction,
    max_count: usize,
    filter: &EventFilter,
) -> Result<Vec<RecordedEvent>, StoreError> {
    Ok(read_all_page(shared, from, direction, PageLimits::count(max_count), filter)?.events)
}

pub fn read_all_page(
    shared: &Shared,
    from: ReadFrom<Position>,
    direction: Direction,
    limits: PageLimits,
    filter: &EventFilter,
) -> Result<AllPage, StoreError> {
    // `After` is the next event in the read's direction: with dense positions, the one at the
    // position beside it (a read `At` a position no event has starts at the next event anyway).
    let from = match (from, direction) {
        (ReadFrom::After(p), Direction::Forwards) => ReadFrom::At(p.next()),
        (ReadFrom::After(p), Direction::Backwards) => match p.0.checked_sub(1) {
            Some(before) => ReadFrom::At(Position(before)),
            None => return Ok(AllPage { events: Vec::new(), next: None, reached_end: true, examined: 0 }),
        },
        (from, _) => from,
    };
    let index = shared.index()?;
    let head = shared.head().position;
    let mut page = Collector { limits, filter, direction, events: Vec::new(), bytes: 0, scanned: 0, stop: None };
    match direction {
        Direction::Forwards => {
            let start = match from {
                ReadFrom::Start => Position(0),
                ReadFrom::End => head,
                ReadFrom::At(p) | ReadFrom::After(p) => p,
            };
            if start >= head || limits.max_count == 0 {
                let reached_end = limits.max_count > 0 || start >= head;
                return Ok(AllPage { events: Vec::new(), next: Some(start), reached_end, examined: 0 });
            }
            match filter.namespace() {
                Some(namespace) => {
                    for chunk in index.namespace_chunks(namespace, start, Direction::Forwards)? {
                        let chunk = chunk?;
                        // A chunk lies within one group: published whole or not at all.
                        if chunk.first_position >= head {
                            break;
                        }
                        for event in read_namespace_chunk(shared, &chunk, namespace)? {
                            if event.position >= start && page.offer(event) {
                                return Ok(page.finish(None));
                            }
                        }
                    }
                }
                None => {
                    let point = index.seek_point(start)?.ok_or_else(|| missing_seek_point(start))?;
                    let mut cursor = LogCursor::at(shared, point, head)?;
                    cursor.start = start;
                    while let Some(event) = cursor.next()? {
                        if page.offer(event) {
                            return Ok(page.finish(None));
                        }
                    }
                }
            }
            Ok(page.finish(Some(head)))
        }
        Direction::Backwards => {
            if head.0 == 0 || limits.max_count == 0 {
                let reached_end = limits.max_count > 0;
                return Ok(AllPage { events: Vec::new(), next: None, reached_end, examined: 0 });
            }
            let last = Position(head.0 - 1);
            let mut end = match from {
                ReadFrom::Start => Position(0),
                ReadFrom::End => last,
                ReadFrom::At(p) | ReadFrom::After(p) => p.min(last),
            };
            match filter.namespace() {
                Some(namespace) => {
                    for chunk in index.namespace_chunks(namespace, end, Direction::Backwards)? {
                        let chunk = chunk?;
                        if chunk.first_position >= head {
                            continue;
                        }
                        let events = read_namespace_chunk(shared, &chunk, namespace)?;
                        for event in events.into_iter().rev().filter(|e| e.position <= end) {
                            if page.offer(event) {
                                return Ok(page.finish(None));
                            }
                        }
                    }
                }
                // Walk back one seek point at a time, reading each span forwards.
                None => loop {
                    let point = index.seek_point(end)?.ok_or_else(|| missing_seek_point(end))?;
                    let mut span = Vec::new();
                    let mut cursor = LogCursor::at(shared, point, end.next())?;
                    while let Some(event) = cursor.next()? {
                        span.push(event);
                    }
                    for event in span.into_iter().rev() {
                        if page.offer(event) {
                            return Ok(page.finish(None));
                        }
                    }
                    if point.position.0 == 0 {
                        break;
                    }
                    end = Position(point.position.0 - 1);
                },
            }
            Ok(page.finish(None))
        }
    }
}

/// A page being filled: examines events in read order and stops at the first bound reached.
struct Collector<'f> {
    limits: PageLimits,
    filter: &'f EventFilter,
    direction: Direction,
    events: Vec<RecordedEvent>,
    bytes: usize,
    scanned: usize,
    /// Set when a bound stopped the page: where the next page starts.
    stop: Option<Option<Position>>,
}

impl Collector<'_> {
    /// Examines `event`; `true` once the page is complete.
    fn offer(&mut self, event: RecordedEvent) -> bool {
        let position = event.position;
        if self.filter.matches(event.stream.as_str(), &event.event_type) {
            let size = event.size();
            if !self.events.is_empty() && self.bytes.saturating_add(size) > self.limits.max_bytes {
                // Too big for this page: it starts the next one.
                self.stop = Some(Some(position));
                return true;
            }
            self.bytes += size;
            self.events.push(event);
        }
        self.scanned += 1;
        if self.events.len() >= self.limits.max_count || self.scanned >= self.limits.max_scan {
            self.stop = Some(match self.direction {
                Direction::Forwards => Some(position.next()),
                Direction::Backwards => position.0.checked_sub(1).map(Position),
            });
            return true;
        }
        false
    }

    /// The page; `end_next` is where reading on starts when no bound stopped it (the end).
    fn finish(self, end_next: Option<Position>) -> AllPage {
        let (next, reached_end) = match self.stop {
            Some(Some(next)) => (Some(next), false),
            // Stopped on position 0, backwards: nothing is left either.
            Some(None) => (None, true),
            None => (end_next, true),
        };
        AllPage { events: self.events, next, reached_end, examined: self.scanned }
    }
}

/// Reads and checks every record of a namespace chunk, in position order.
fn read_namespace_chunk(
    shared: &Shared,
    chunk: &NamespaceChunk,
    namespace: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    read_run(shared, chunk.segment, chunk.offset, chunk.bytes, chunk.count, |i, event| {
        let expected = chunk.first_position.0 + i;
        (event.position.0 != expected || namespace_of(event.stream.as_str()) != namespace).then(|| {
            format!(
                "index expects an event of namespace {namespace:?} at position {expected}, record holds {} at {}",
                event.stream, event.position
            )
        })
    })
}

fn missing_seek_point(position: Position) -> StoreError {
    StoreError::Index(format!("no seek point at or before position {position}"))
}
