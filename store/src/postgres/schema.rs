//! The database schema as numbered migrations, applied at connect in one transaction under an
//! advisory lock (two processes starting at once do not both migrate). A database whose
//! schema is newer than this build knows is refused: an older build must not write events a
//! newer one would misread, nor "repair" what it does not understand.

use tokio_postgres::Client;

use super::db_error;
use crate::error::StoreError;

/// Migrations in order; the schema version is the number of migrations applied. Never edit a
/// published one: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the log, its head row, and the indexes of the append checks and the reads.
    r#"
    CREATE TABLE annals_head (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        next_position bigint NOT NULL,
        last_recorded_at timestamptz NOT NULL,
        last_group uuid NOT NULL
    );
    INSERT INTO annals_head (singleton, next_position, last_recorded_at, last_group)
        VALUES (true, 0, 'epoch', '00000000-0000-0000-0000-000000000000');
    CREATE TABLE annals_events (
        position bigint PRIMARY KEY,
        stream text COLLATE "C" NOT NULL,
        revision bigint NOT NULL,
        namespace text COLLATE "C" NOT NULL,
        id uuid NOT NULL,
        event_type text COLLATE "C" NOT NULL,
        data bytea NOT NULL,
        metadata bytea NOT NULL,
        recorded_at timestamptz NOT NULL,
        CONSTRAINT annals_events_stream_revision UNIQUE (stream, revision),
        CONSTRAINT annals_events_namespace_id UNIQUE (namespace, id)
    );
    CREATE INDEX annals_events_namespace_position ON annals_events (namespace, position);
    "#,
    // 2: the append of a large group as one function (`write.rs`, `INSERT_THEN_LOCK`): the rows
    // are inserted before the head row is locked, so the groups in flight insert in parallel.
    r#"
    CREATE FUNCTION annals_append(
        _positions bigint[], _streams text[], _revisions bigint[], _namespaces text[], _ids uuid[],
        _types text[], _data bytea[], _metadata bytea[],
        _from bigint, _from_group uuid, _from_key integer, _end bigint, _group uuid, _key integer
    ) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        _at timestamptz := clock_timestamp();
        _head bigint;
        _last timestamptz;
        _lock_timeout text;
    BEGIN
        -- Held until this transaction ends: the next group of this process waits on it.
        PERFORM pg_advisory_xact_lock(1634627169, _key);
        INSERT INTO annals_events (position, stream, revision, namespace, id, event_type, data, metadata, recorded_at)
            SELECT u.p, u.s, u.r, u.n, u.i, u.t, u.d, u.m, _at
            FROM unnest(_positions, _streams, _revisions, _namespaces, _ids, _types, _data, _metadata)
                AS u(p, s, r, n, i, t, d, m);
        -- The group before this one, if this process is still writing it: wait for its end, but
        -- not for long. This group holds its rows while it waits, and the one before may wait
        -- for another process's group that waits for these rows (same positions): a cycle the
        -- deadlock detector would break only after a second. A timeout makes this group stale.
        _lock_timeout := current_setting('lock_timeout');
        PERFORM set_config('lock_timeout', '100ms', true);
        PERFORM pg_advisory_xact_lock_shared(1634627169, _from_key);
        PERFORM set_config('lock_timeout', _lock_timeout, true);
        -- Its statement may not have taken that lock yet (it went out first, but on another
        -- connection): while the committed head is short of where this group assumed it, wait
        -- and look again (bounded: a group that failed leaves it short forever).
        FOR _attempt IN 1..40 LOOP
            SELECT next_position INTO _head FROM annals_head;
            EXIT WHEN _head >= _from;
            PERFORM pg_sleep(0.0005);
        END LOOP;
        -- NOWAIT: a head that is where this group assumed and locked is held by a group of
        -- another process that assumed the same and will win; waiting for it could deadlock
        -- (it may wait for this group's rows). Both that and a head elsewhere are stale.
        PERFORM 1 FROM annals_head WHERE next_position = _from AND last_group = _from_group FOR UPDATE NOWAIT;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'annals: the head is not at position % of group %', _from, _from_group
                USING ERRCODE = 'AN001';
        END IF;
        UPDATE annals_head
            SET next_position = _end, last_group = _group, last_recorded_at = greatest(last_recorded_at, _at)
            RETURNING last_recorded_at INTO _last;
        -- A group that started later committed first with a later time: never go back.
        IF _last > _at THEN
            UPDATE annals_events SET recorded_at = _last WHERE position >= _from AND position < _end;
        END IF;
        PERFORM pg_notify('annals_events', '');
    END
    $$;
    "#,
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Key of the advisory lock held while migrating (any constant; "annals" in ASCII).
const MIGRATION_LOCK: i64 = 0x616e_6e61_6c73;

/// Brings the database to [`SCHEMA_VERSION`], or refuses one that is newer.
pub async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(|e| db_error("migrate", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(|e| db_error("migrate", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS annals_schema (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(|e| db_error("migrate", e))?;
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM annals_schema", &[])
        .await
        .map_err(|e| db_error("migrate", e))?;
    let current: i32 = row.get(0);
    if current > SCHEMA_VERSION {
        return Err(newer_schema(current));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await.map_err(|e| db_error("migrate", e))?;
        tx.execute("INSERT INTO annals_schema (version) VALUES ($1)", &[&version])
            .await
            .map_err(|e| db_error("migrate", e))?;
        tracing::info!(version, "applied postgresql schema migration");
    }
    tx.commit().await.map_err(|e| db_error("migrate", e))
}

fn newer_schema(found: i32) -> StoreError {
    StoreError::UnsupportedFormat {
        file: "postgresql table annals_schema".into(),
        reason: format!(
            "the database has schema version {found}, newer than version {SCHEMA_VERSION} that this build of annals \
             knows; run a newer annals against it (nothing was changed)"
        ),
    }
}
