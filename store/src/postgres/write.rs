//! The write of one group: the statement that moves the head row only from where the group's
//! decisions assumed it and inserts the group's events in the same transaction, and what a
//! group adds to the writer's view of the log for the groups decided after it.

use std::sync::Arc;

use tokio_postgres::{Client, Statement};
use uuid::Uuid;

use super::checks::{Accepted, Stored, View};

/// One statement, one transaction: move the head from where the checks assumed it ($11, $12:
/// position and the token of the group that put it there) past the group, and insert the
/// group's events only if that succeeded. 0 rows moved: the assumption was stale.
pub const WRITE: &str = "WITH h AS ( \
      UPDATE annals_head SET next_position = $9, last_group = $10, \
             last_recorded_at = greatest(last_recorded_at, clock_timestamp()) \
      WHERE next_position = $11 AND last_group = $12 RETURNING last_recorded_at), \
    ins AS ( \
      INSERT INTO annals_events (position, stream, revision, namespace, id, event_type, data, metadata, recorded_at) \
      SELECT u.p, u.s, u.r, u.n, u.i, u.t, u.d, u.m, h.last_recorded_at FROM h, \
             unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::uuid[], $6::text[], $7::bytea[], \
                    $8::bytea[]) AS u(p, s, r, n, i, t, d, m) RETURNING 1) \
    SELECT (SELECT count(*) FROM h), (SELECT count(*) FROM ins), pg_notify('annals_events', '')";

/// The write failed on the unique (namespace, id) index: an id of the group is stored.
pub fn stored_id(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some("annals_events_namespace_id")
    })
}

pub fn added_by(accepted: &[Accepted]) -> View {
    let mut view = View::default();
    for a in accepted {
        let stream = a.append.stream.as_str().to_owned();
        let namespace = a.append.stream.namespace().to_owned();
        for (i, event) in a.append.events.iter().enumerate() {
            let entry = Stored {
                stream: stream.clone(),
                revision: a.first_revision + i as i64,
                position: a.first_position + i as i64,
            };
            view.ids.insert((namespace.clone(), event.id()), entry);
        }
        view.streams.insert(stream, Some(a.first_revision + a.append.events.len() as i64 - 1));
    }
    view
}

/// Writes a group: `true` if the head was where it was assumed (the group is committed),
/// `false` if not (nothing was written).
pub async fn write_group(
    client: Arc<Client>,
    write: Statement,
    accepted: Vec<Accepted>,
    [end, expected_position]: [i64; 2],
    [token, expected_token]: [Uuid; 2],
) -> Result<bool, tokio_postgres::Error> {
    let mut positions = Vec::new();
    let (mut streams, mut revisions, mut namespaces) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ids, mut types, mut data, mut metadata) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for a in &accepted {
        for (i, event) in a.append.events.iter().enumerate() {
            positions.push(a.first_position + i as i64);
            streams.push(a.append.stream.as_str());
            revisions.push(a.first_revision + i as i64);
            namespaces.push(a.append.stream.namespace());
            ids.push(event.id());
            types.push(event.event_type());
            data.push(event.data().as_ref());
            metadata.push(event.metadata().as_ref());
        }
    }
    let row = client
        .query_one(
            &write,
            &[
                &positions,
                &streams,
                &revisions,
                &namespaces,
                &ids,
                &types,
                &data,
                &metadata,
                &end,
                &token,
                &expected_position,
                &expected_token,
            ],
        )
        .await?;
    Ok(row.get::<_, i64>(0) == 1)
}
