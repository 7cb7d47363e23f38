//! Pages of a stream's events bounded in bytes as well as in count, and sent as they are
//! written: over 1 MB events, a page of 1,000 was a 1 GB body built in memory (twice: the events,
//! then their JSON). A page holds events up to `max_page_bytes` of data and metadata (always at
//! least one, however large), and its JSON is produced one event at a time as the client reads.

use annals_store::{Direction, EventStore, ReadFrom, ReadStreamOutcome, RecordedEvent, Revision, StreamId};
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::wire::Event;

/// Events read per store call before the page's event size is known: small, so that the first
/// call over huge events holds little more than the byte bound.
const FIRST_READ: usize = 4;

/// A page of a stream read from `from` in `direction`: at most `limit` events and, past the first,
/// at most `max_bytes` of data and metadata. `None` when the stream has no events; else the
/// events and whether the stream may hold more after them (the page is full, in count or bytes).
///
/// Reads the store a few events at a time, sizing each read by the largest event seen so far, so
/// that memory follows the byte bound and not `limit` × the event size.
// The store's own byte bound (`ANNALS_MAX_PAGE_BYTES` in the store's reads) makes this loop one
// call once merged; the bound here stays correct either way.
pub async fn read_stream_bounded(
    store: &dyn EventStore,
    stream: &StreamId,
    from: ReadFrom<Revision>,
    direction: Direction,
    limit: usize,
    max_bytes: usize,
) -> Result<Option<(Vec<RecordedEvent>, bool)>, ApiError> {
    let mut events: Vec<RecordedEvent> = Vec::new();
    let (mut bytes, mut largest) = (0usize, 0usize);
    let mut from = from;
    loop {
        let room = max_bytes.saturating_sub(bytes);
        let want = room.checked_div(largest).map_or(FIRST_READ, |n| n.max(1)).min(limit - events.len());
        let read = match store.read_stream(stream, from, direction, want).await? {
            ReadStreamOutcome::StreamNotFound if events.is_empty() => return Ok(None),
            ReadStreamOutcome::StreamNotFound => return Ok(Some((events, false))),
            ReadStreamOutcome::Events(read) => read,
        };
        let exhausted = read.len() < want;
        for event in read {
            let size = event.data.len() + event.metadata.len();
            if !events.is_empty() && bytes + size > max_bytes {
                return Ok(Some((events, true)));
            }
            largest = largest.max(size);
            bytes += size;
            events.push(event);
        }
        if exhausted {
            return Ok(Some((events, false)));
        }
        if events.len() == limit || bytes >= max_bytes {
            return Ok(Some((events, true)));
        }
        let last = events.last().expect("a read that is not exhausted returned events").revision;
        from = match direction {
            Direction::Forwards => ReadFrom::At(last.next()),
            Direction::Backwards => match last.0.checked_sub(1) {
                Some(r) => ReadFrom::At(Revision(r)),
                None => return Ok(Some((events, false))),
            },
        };
    }
}

/// `{"events": [...], "next": ...}` (the `Page` of the OpenAPI document), written one event at a
/// time as the client reads.
pub fn page_response(events: Vec<RecordedEvent>, tenant: &Tenant, next: Option<String>) -> Response {
    let tenant = tenant.clone();
    let body = stream::once(async { Bytes::from_static(b"{\"events\":[") })
        .chain(stream::iter(events.into_iter().enumerate()).map(move |(i, e)| {
            let mut json = if i == 0 { Vec::new() } else { vec![b','] };
            serde_json::to_writer(&mut json, &Event::new(e, &tenant)).expect("events serialize");
            Bytes::from(json)
        }))
        .chain(stream::once(async move {
            let next = serde_json::to_string(&next).expect("a string serializes");
            Bytes::from(format!("],\"next\":{next}}}"))
        }))
        .map(Ok::<_, std::convert::Infallible>);
    ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response()
}
