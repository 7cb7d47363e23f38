//! Reads: pages of `$all` and of a stream, each one statement per chunk, with every bound of
//! the contract (events, bytes, events examined) applied in SQL by window functions, so a page
//! of large events fetches only the events it returns (plus the one that ends it).
//!
//! A `$all` statement reads the head row and the events below it in one snapshot: since the
//! writer commits positions in order under the head row lock, what it sees is a prefix of the
//! log, and "the end" it reports is exact.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{db_error, position_from_db, position_to_db};
use crate::error::StoreError;
use crate::model::{
    AllPage, Direction, EventFilter, PageLimits, Position, ReadFrom, ReadStreamOutcome, RecordedEvent, Revision,
    StreamId,
};

/// Rows one `$all` statement examines at most; a page reads on in further statements.
const CHUNK: usize = 10_000;

/// The `$all` statement: `$1` where to start (included), `$2` rows to examine, `$3`/`$4` the
/// type and stream prefixes, `$5` bytes still free, `$6` events still wanted, `$7` how many
/// leading matches come whatever their size (1 for a page's first, else 0), `$8` namespace.
/// Rows come back up to and including the one that ends the page; only matches carry data.
fn all_sql(direction: Direction, namespace: bool) -> String {
    let (cmp, dir) = match direction {
        Direction::Forwards => (">=", "ASC"),
        Direction::Backwards => ("<=", "DESC"),
    };
    let ns = if namespace { "AND ev.namespace = $8" } else { "" };
    let matches = "((cardinality($3::text[]) = 0 OR ev.event_type ^@ ANY($3::text[])) \
                   AND (cardinality($4::text[]) = 0 OR ev.stream ^@ ANY($4::text[])))";
    format!(
        "SELECT h.next_position, e.position, e.stream, e.revision, e.id, e.event_type, e.recorded_at, e.m, \
                e.data, e.metadata \
         FROM annals_head h LEFT JOIN LATERAL ( \
           SELECT w.position, w.stream, w.revision, w.id, w.event_type, w.recorded_at, w.m, \
                  CASE WHEN w.m THEN w.data END AS data, CASE WHEN w.m THEN w.metadata END AS metadata \
           FROM ( \
             SELECT s.*, sum(s.msize) OVER o - s.msize AS before_bytes, \
                    count(*) FILTER (WHERE s.m) OVER o - s.m::int AS before_count \
             FROM ( \
               SELECT ev.position, ev.stream, ev.revision, ev.id, ev.event_type, ev.recorded_at, ev.data, \
                      ev.metadata, {matches} AS m, \
                      CASE WHEN {matches} THEN octet_length(ev.event_type) + octet_length(ev.data) \
                           + octet_length(ev.metadata) ELSE 0 END AS msize \
               FROM annals_events ev \
               WHERE ev.position {cmp} $1 AND ev.position < h.next_position {ns} \
               ORDER BY ev.position {dir} LIMIT $2 \
             ) s WINDOW o AS (ORDER BY s.position {dir}) \
           ) w WHERE (w.before_count <= $7 OR w.before_bytes <= $5) AND w.before_count < $6 \
         ) e ON true"
    )
}

/// The plain `$all` statement, for pages bounded by count only with no filter (catch-up reads):
/// `$1` where to start (included), `$2` events; no window functions to compute.
fn all_plain_sql(direction: Direction) -> String {
    let (cmp, dir) = match direction {
        Direction::Forwards => (">=", "ASC"),
        Direction::Backwards => ("<=", "DESC"),
    };
    format!(
        "SELECT h.next_position, e.position, e.stream, e.revision, e.id, e.event_type, e.recorded_at, true, \
                e.data, e.metadata \
         FROM annals_head h LEFT JOIN LATERAL ( \
           SELECT ev.position, ev.stream, ev.revision, ev.id, ev.event_type, ev.recorded_at, ev.data, ev.metadata \
           FROM annals_events ev WHERE ev.position {cmp} $1 AND ev.position < h.next_position \
           ORDER BY ev.position {dir} LIMIT $2 \
         ) e ON true"
    )
}

/// The stream statement: `$1` stream, `$2` revision to start at, `$3` events, `$4` bytes.
fn stream_sql(direction: Direction) -> String {
    let (cmp, dir) = match direction {
        Direction::Forwards => (">=", "ASC"),
        Direction::Backwards => ("<=", "DESC"),
    };
    // The stream's existence comes from the same snapshot as its events: an append that
    // commits between two statements must not make a stream look empty instead of missing.
    format!(
        "SELECT x.found, s.position, s.stream, s.revision, s.id, s.event_type, s.recorded_at, s.data, s.metadata \
         FROM (SELECT EXISTS (SELECT 1 FROM annals_events WHERE stream = $1) AS found) x \
         LEFT JOIN LATERAL ( \
           SELECT ev.*, row_number() OVER o AS n, \
                  sum(octet_length(ev.event_type) + octet_length(ev.data) + octet_length(ev.metadata)) OVER o AS run \
           FROM (SELECT * FROM annals_events WHERE stream = $1 AND revision {cmp} $2 \
                 ORDER BY revision {dir} LIMIT $3) ev \
           WINDOW o AS (ORDER BY ev.revision {dir}) \
         ) s ON s.n = 1 OR s.run <= $4"
    )
}

/// Puts rows in read order by the bigint in `column` (a row without one, the head alone, first).
/// The statements leave the final order out: an `ORDER BY` over a lateral join sorts whole rows
/// again — 10,000 events of 600 bytes spill past `work_mem` — while they arrive in order anyway,
/// and sorting rows that are in order is a linear check here.
fn sort_rows(rows: &mut [Row], column: usize, direction: Direction) {
    rows.sort_by_key(|row| {
        let key = row.get::<_, Option<i64>>(column).unwrap_or(i64::MIN);
        match direction {
            Direction::Forwards => key,
            Direction::Backwards => key.checked_neg().unwrap_or(i64::MAX),
        }
    });
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn event(row: &Row, first: usize, data: Vec<u8>, metadata: Vec<u8>) -> RecordedEvent {
    let stream: String = row.get(first + 1);
    RecordedEvent {
        position: position_from_db(row.get(first)),
        stream: StreamId::from_log(&stream),
        revision: Revision(row.get::<_, i64>(first + 2) as u64),
        id: row.get(first + 3),
        event_type: row.get(first + 4),
        recorded_at: row.get::<_, DateTime<Utc>>(first + 5),
        data: Bytes::from(data),
        metadata: Bytes::from(metadata),
    }
}

/// The position after (forwards) or before (backwards) `p`, as the engine's pages say it.
fn step(p: Position, direction: Direction) -> Option<Position> {
    let p = position_to_db(p);
    match direction {
        Direction::Forwards => Some(position_from_db(p.saturating_add(1))),
        Direction::Backwards => p.checked_sub(1).filter(|v| *v >= 0).map(position_from_db),
    }
}

pub async fn read_all_page(
    client: &deadpool_postgres::Client,
    from: ReadFrom<Position>,
    direction: Direction,
    limits: PageLimits,
    filter: &EventFilter,
) -> Result<AllPage, StoreError> {
    let namespace = filter.namespace();
    let plain = filter.is_all() && limits.max_bytes == usize::MAX;
    let sql = if plain { all_plain_sql(direction) } else { all_sql(direction, namespace.is_some()) };
    let statement = client.prepare_cached(&sql).await.map_err(|e| db_error("read", e))?;
    let types: Vec<&str> = filter.event_type_prefixes.iter().map(String::as_str).collect();
    let streams: Vec<&str> = filter.stream_prefixes.iter().map(String::as_str).collect();
    // Backwards, `End` reads from the head down; forwards, from the head (found below) on.
    let mut cursor = match (from, direction) {
        (ReadFrom::Start, _) => 0,
        (ReadFrom::End, _) => i64::MAX,
        (ReadFrom::At(p), _) => position_to_db(p),
        // Positions are dense here: the one after (or before) is a neighbour, and nothing
        // comes before position 0.
        (ReadFrom::After(p), Direction::Forwards) => position_to_db(p).saturating_add(1),
        (ReadFrom::After(p), Direction::Backwards) => match position_to_db(p).checked_sub(1) {
            Some(before) if before >= 0 => before,
            _ => return Ok(AllPage { events: Vec::new(), next: None, reached_end: true, examined: 0 }),
        },
    };
    let (mut events, mut bytes, mut scanned) = (Vec::new(), 0usize, 0usize);
    let mut first_query = true;
    loop {
        let want = limits.max_count.saturating_sub(events.len());
        let scan_left = limits.max_scan.saturating_sub(scanned);
        let fetch = if filter.is_all() { want.min(scan_left) } else { scan_left }.clamp(1, CHUNK);
        let free_bytes = to_i64(limits.max_bytes).saturating_sub(to_i64(bytes));
        let leading: i64 = if events.is_empty() { 1 } else { 0 };
        let (fetch_db, want_db) = (to_i64(fetch), to_i64(want));
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&cursor, &fetch_db];
        if !plain {
            params.extend::<[&(dyn tokio_postgres::types::ToSql + Sync); 5]>([
                &types as _,
                &streams as _,
                &free_bytes as _,
                &want_db as _,
                &leading as _,
            ]);
            if let Some(ns) = &namespace {
                params.push(ns);
            }
        }
        let mut rows = client.query(&statement, &params).await.map_err(|e| db_error("read", e))?;
        sort_rows(&mut rows, 1, direction);
        let head: i64 = rows[0].get(0);
        if first_query {
            first_query = false;
            match direction {
                Direction::Forwards => {
                    if from == ReadFrom::End {
                        cursor = head;
                    }
                    if cursor >= head || limits.max_count == 0 {
                        let reached_end = limits.max_count > 0 || cursor >= head;
                        let next = match from {
                            ReadFrom::At(p) => p,
                            _ => position_from_db(cursor),
                        };
                        return Ok(AllPage { events, next: Some(next), reached_end, examined: 0 });
                    }
                }
                Direction::Backwards => {
                    if head == 0 || limits.max_count == 0 {
                        let reached_end = limits.max_count > 0;
                        return Ok(AllPage { events, next: None, reached_end, examined: 0 });
                    }
                }
            }
        }
        let mut returned = 0;
        for row in rows.iter().filter(|r| r.get::<_, Option<i64>>(1).is_some()) {
            returned += 1;
            let position = position_from_db(row.get(1));
            cursor = row.get(1);
            if row.get::<_, bool>(7) {
                let data: Vec<u8> = row.get(8);
                let metadata: Vec<u8> = row.get(9);
                let e = event(row, 1, data, metadata);
                let size = e.size();
                if !events.is_empty() && bytes.saturating_add(size) > limits.max_bytes {
                    // Too big for this page: it starts the next one.
                    return Ok(AllPage { events, next: Some(position), reached_end: false, examined: scanned });
                }
                bytes += size;
                events.push(e);
            }
            scanned += 1;
            if events.len() >= limits.max_count || scanned >= limits.max_scan {
                let next = step(position, direction);
                let reached_end = next.is_none();
                return Ok(AllPage { events, next, reached_end, examined: scanned });
            }
        }
        if returned < fetch {
            let next = match direction {
                Direction::Forwards => Some(position_from_db(head)),
                Direction::Backwards => None,
            };
            return Ok(AllPage { events, next, reached_end: true, examined: scanned });
        }
        cursor = match direction {
            Direction::Forwards => cursor + 1,
            Direction::Backwards => cursor - 1,
        };
    }
}

pub async fn read_stream(
    client: &deadpool_postgres::Client,
    stream: &StreamId,
    from: ReadFrom<Revision>,
    direction: Direction,
    max_count: usize,
    max_bytes: usize,
) -> Result<ReadStreamOutcome, StoreError> {
    let start: i64 = match (from, direction) {
        (ReadFrom::Start, _) => 0,
        (ReadFrom::End, _) => i64::MAX,
        (ReadFrom::At(r), _) => i64::try_from(r.0).unwrap_or(i64::MAX),
        // Revision -1 backwards finds no event but still tells whether the stream exists.
        (ReadFrom::After(r), Direction::Forwards) => i64::try_from(r.0).unwrap_or(i64::MAX).saturating_add(1),
        (ReadFrom::After(r), Direction::Backwards) => i64::try_from(r.0).unwrap_or(i64::MAX) - 1,
    };
    let statement = client.prepare_cached(&stream_sql(direction)).await.map_err(|e| db_error("read", e))?;
    let (count, bytes) = (to_i64(max_count), to_i64(max_bytes));
    let mut rows =
        client.query(&statement, &[&stream.as_str(), &start, &count, &bytes]).await.map_err(|e| db_error("read", e))?;
    sort_rows(&mut rows, 3, direction);
    if !rows.first().is_some_and(|row| row.get::<_, bool>(0)) {
        return Ok(ReadStreamOutcome::StreamNotFound);
    }
    let events = rows.iter().filter(|row| row.get::<_, Option<i64>>(1).is_some());
    Ok(ReadStreamOutcome::Events(events.map(|row| event(row, 1, row.get(7), row.get(8))).collect()))
}

/// The position the next event gets (the number of events).
pub async fn next_position(client: &deadpool_postgres::Client) -> Result<i64, StoreError> {
    let statement =
        client.prepare_cached("SELECT next_position FROM annals_head").await.map_err(|e| db_error("read", e))?;
    let row = client.query_one(&statement, &[]).await.map_err(|e| db_error("read", e))?;
    Ok(row.get(0))
}

/// The last revision of `stream`, if it has events.
pub async fn last_revision(client: &deadpool_postgres::Client, stream: &StreamId) -> Result<Option<i64>, StoreError> {
    let row = client
        .query_one("SELECT max(revision) FROM annals_events WHERE stream = $1", &[&stream.as_str()])
        .await
        .map_err(|e| db_error("read", e))?;
    Ok(row.get(0))
}
