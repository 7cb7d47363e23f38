//! What a shared PostgreSQL adds to the contract: two "processes" (stores on one database)
//! appending concurrently with a subscriber, group commit with a failed check inside the
//! group, a server restart under load, and the schema version check.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use annals_store::postgres::testing::PgCluster;
use annals_store::postgres::PostgresStore;
use annals_store::{
    AppendResult, EventData, EventFilter, EventStore, ExpectedRevision, Revision, StoreError, StreamId, SubscribeFrom,
};
use uuid::Uuid;

use super::config;

const WAIT: Duration = Duration::from_secs(60);

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream name")
}

fn event(n: u64) -> EventData {
    EventData::json("load.tick", &serde_json::json!({ "n": n, "pad": "x".repeat(100) })).expect("valid event")
}

/// Reads a subscription until it has delivered `count` events (or the deadline passes), and
/// checks they come at positions 0, 1, 2, … with no gap and no repeat.
async fn collect(sub: &mut annals_store::Subscription, count: usize) -> Vec<annals_store::RecordedEvent> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let event = tokio::time::timeout(WAIT, sub.next_event())
            .await
            .unwrap_or_else(|_| panic!("subscription stalled after {} of {count} events", seen.len()))
            .expect("subscription ended");
        assert_eq!(event.position.code(), seen.len() as u64, "subscription skipped or repeated a position");
        seen.push(event);
    }
    seen
}

/// Every acknowledged event is in `log` exactly once, where its append said, and nothing else is.
fn check_acknowledged(log: &[annals_store::RecordedEvent], acked: &[(AppendResult, Vec<Uuid>)]) {
    let by_position: HashMap<u64, Uuid> = log.iter().map(|e| (e.position.code(), e.id)).collect();
    let mut expected = HashSet::new();
    for (result, ids) in acked {
        for (i, id) in ids.iter().enumerate() {
            let position = result.first_position.code() + i as u64;
            assert_eq!(by_position.get(&position), Some(id), "acknowledged event {id} is not at position {position}");
            assert!(expected.insert(*id), "event {id} acknowledged twice at different places");
        }
    }
    assert_eq!(expected.len(), log.len(), "the log holds events nobody was told were stored");
}

/// 32 appenders on two stores sharing one database (two processes, as far as PostgreSQL is
/// concerned), single and batched appends, some with a wrong expected revision; a subscriber
/// on the first store, started before them, sees every event once, in position order, with
/// no gap — also those committed by the other store, which only NOTIFY tells it about.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_on_two_stores_and_a_subscriber_see_a_gapless_log() {
    two_stores_and_a_subscriber(config, 5).await;
}

/// The same with every group inserting before it locks the head (`INSERT_THEN_LOCK`): the two
/// stores' groups then insert at once and meet on positions and revisions, not on the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_inserting_before_the_head_lock_see_a_gapless_log() {
    two_stores_and_a_subscriber(super::insert_then_lock::config, 5).await;
}

/// The same with batches of 150 events among the single ones, under the default settings: large
/// groups insert before the head lock and small ones after, in one log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_of_both_write_paths_see_a_gapless_log() {
    two_stores_and_a_subscriber(config, 150).await;
}

async fn two_stores_and_a_subscriber(config: fn(String) -> annals_store::postgres::PostgresConfig, batch: u64) {
    let url = PgCluster::shared().create_database().await;
    let a = PostgresStore::connect(config(url.clone())).await.expect("connect a");
    let b = PostgresStore::connect(config(url)).await.expect("connect b");
    let mut sub = a.subscribe_to_all(SubscribeFrom::Start, EventFilter::all()).await.expect("subscribe");
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let store = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let s = stream(&format!("load-{t}"));
            let mut acked = Vec::new();
            let mut last: Option<Revision> = None;
            for op in 0..20u64 {
                let batch: Vec<EventData> =
                    (0..if op % 3 == 0 { batch } else { 1 }).map(|i| event(op * 10 + i)).collect();
                let ids: Vec<Uuid> = batch.iter().map(EventData::id).collect();
                if op % 7 == 3 {
                    // A wrong expected revision fails alone and writes nothing.
                    let wrong = ExpectedRevision::Exact(Revision(last.map_or(1000, |r| r.0 + 5)));
                    match store.append_to_stream(&s, wrong, batch).await {
                        Err(StoreError::WrongExpectedRevision { .. }) => continue,
                        other => panic!("append with a wrong expected revision: {other:?}"),
                    }
                }
                let expected = last.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
                let result = store.append_to_stream(&s, expected, batch).await.expect("append");
                last = Some(result.last_revision);
                acked.push((result, ids));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("appender"));
    }
    let total: usize = acked.iter().map(|(_, ids)| ids.len()).sum();
    let log = collect(&mut sub, total).await;
    check_acknowledged(&log, &acked);
    assert_eq!(a.head().await.expect("head").map(|p| p.code()), Some(total as u64 - 1), "head is past the last event");
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

/// Appends that wait while the writer is busy form one group (one transaction): a wrong
/// expected revision among them fails that append only; the others commit together (they
/// share the group's `recorded_at`) at consecutive positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_check_in_a_group_fails_only_its_own_append() {
    let cluster = PgCluster::shared();
    let url = cluster.create_database().await;
    let database = url.rsplit("dbname=").next().expect("dbname").to_owned();
    let store = PostgresStore::connect(config(url)).await.expect("connect");
    store.append_to_stream(&stream("g-0"), ExpectedRevision::NoStream, vec![event(0)]).await.expect("first append");
    // Hold the head row: the writer's next group waits for it, and every append sent meanwhile
    // queues up for the group after.
    let blocker = cluster.connect(&database).await;
    blocker.batch_execute("BEGIN; SELECT * FROM annals_head FOR UPDATE").await.expect("lock the head row");
    // The writer keeps a few groups in flight; these fill them (and perhaps the queue), so the
    // appends below all wait in the queue and leave it as one group.
    let mut blocked = Vec::new();
    for i in 0..4u64 {
        let store = store.clone();
        blocked.push(tokio::spawn(async move {
            store.append_to_stream(&stream("g-0"), ExpectedRevision::Any, vec![event(100 + i)]).await
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut pending = Vec::new();
    for i in 0..12u64 {
        let store = store.clone();
        // Every fourth expects a stream that exists to be new: it must fail, alone.
        let (name, expected) = if i % 4 == 1 {
            ("g-0".to_owned(), ExpectedRevision::NoStream)
        } else {
            (format!("g-{}", i + 1), ExpectedRevision::NoStream)
        };
        pending
            .push(tokio::spawn(async move { store.append_to_stream(&stream(&name), expected, vec![event(i)]).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.batch_execute("COMMIT").await.expect("release the head row");
    for task in blocked {
        task.await.expect("task").expect("the blocked appends commit");
    }
    let mut ok = Vec::new();
    for (i, task) in pending.into_iter().enumerate() {
        match task.await.expect("task") {
            Ok(result) => ok.push(result),
            Err(StoreError::WrongExpectedRevision { .. }) if i % 4 == 1 => {}
            other => panic!("append {i}: {other:?}"),
        }
    }
    assert_eq!(ok.len(), 9, "every append with a right expected revision commits");
    let mut positions: Vec<u64> = ok.iter().map(|r| r.first_position.code()).collect();
    positions.sort_unstable();
    assert!(positions.windows(2).all(|w| w[1] == w[0] + 1), "not consecutive positions: {positions:?}");
    let log = store
        .read_all(annals_store::ReadFrom::Start, annals_store::Direction::Forwards, 100, &EventFilter::all())
        .await
        .expect("read");
    assert_eq!(log.len(), 14, "failed appends wrote nothing");
    let group_times: HashSet<_> = positions.iter().map(|p| log[*p as usize].recorded_at).collect();
    assert_eq!(group_times.len(), 1, "the nine appends were not one group (one transaction): {group_times:?}");
    store.close().await.expect("close");
}

/// PostgreSQL stopped as by a crash and started again while appenders run: every append
/// acknowledged before, during or after is present exactly once, appenders that retry with
/// the same ids after a transient failure are answered, and a subscription started before
/// the restart goes on without skipping or repeating an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_load_loses_no_acknowledged_event() {
    let cluster = std::sync::Arc::new(tokio::task::spawn_blocking(PgCluster::start).await.unwrap().expect("start"));
    let url = cluster.create_database().await;
    let store = PostgresStore::connect(config(url)).await.expect("connect");
    let mut sub = store.subscribe_to_all(SubscribeFrom::Start, EventFilter::all()).await.expect("subscribe");
    // The subscriber reads as events come, so it is reading (and failing) while the server
    // is down; it stops once it has every acknowledged event.
    let (total_tx, total_rx) = tokio::sync::watch::channel(usize::MAX);
    let subscriber = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < *total_rx.borrow() {
            match tokio::time::timeout(Duration::from_millis(200), sub.next_event()).await {
                Ok(event) => {
                    let event = event.expect("the subscription ended");
                    assert_eq!(event.position.code(), seen.len() as u64, "subscription skipped or repeated a position");
                    seen.push(event);
                }
                Err(_) => assert!(Instant::now() < deadline_for_subscriber(), "subscription stalled"),
            }
        }
        seen
    });
    let deadline = Instant::now() + WAIT;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let s = stream(&format!("restart-{t}"));
            let mut acked = Vec::new();
            let mut transient = 0;
            for op in 0..60u64 {
                let batch: Vec<EventData> = (0..1 + op % 3).map(|i| event(op * 10 + i)).collect();
                let ids: Vec<Uuid> = batch.iter().map(EventData::id).collect();
                loop {
                    assert!(Instant::now() < deadline, "appends did not resume after the restart");
                    match store.append_to_stream(&s, ExpectedRevision::Any, batch.clone()).await {
                        Ok(result) => {
                            acked.push((result, ids));
                            break;
                        }
                        Err(e) if e.is_transient() => {
                            assert!(matches!(e, StoreError::Unavailable { .. }), "a lost server is Unavailable: {e:?}");
                            transient += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("append failed permanently: {e:?}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acked, transient)
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Stopped as by a crash, and down for a while: the subscription's LISTEN connection breaks,
    // which wakes it, and its reads fail until the server is back.
    let stopping = std::sync::Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || stopping.stop()).await.unwrap().expect("stop postgres");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let starting = std::sync::Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || starting.start_server()).await.unwrap().expect("start postgres");
    let mut acked = Vec::new();
    let mut transient = 0;
    for task in tasks {
        let (a, t) = task.await.expect("appender");
        acked.extend(a);
        transient += t;
    }
    assert!(transient > 0, "the restart did not happen under load (no append failed transiently)");
    let total: usize = acked.iter().map(|(_, ids)| ids.len()).sum();
    total_tx.send(total).expect("subscriber waits");
    let log = subscriber.await.expect("the subscription delivered every event once, in order");
    check_acknowledged(&log, &acked);
    let all = store
        .read_all(annals_store::ReadFrom::Start, annals_store::Direction::Forwards, 100_000, &EventFilter::all())
        .await
        .expect("read");
    assert_eq!(all.len(), total, "the log holds events that were never acknowledged (or lost some)");
    store.close().await.expect("close");
}

fn deadline_for_subscriber() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now) + WAIT * 2
}

/// A database migrated by a newer annals is refused at connect with a message that says so,
/// and is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newer_schema_is_refused() {
    let cluster = PgCluster::shared();
    let url = cluster.create_database().await;
    let database = url.rsplit("dbname=").next().expect("dbname").to_owned();
    let store = PostgresStore::connect(config(url.clone())).await.expect("connect");
    store.append_to_stream(&stream("s"), ExpectedRevision::NoStream, vec![event(0)]).await.expect("append");
    store.close().await.expect("close");
    let client = cluster.connect(&database).await;
    client.batch_execute("INSERT INTO annals_schema (version) VALUES (99)").await.expect("pretend a newer annals");
    match PostgresStore::connect(config(url.clone())).await {
        Err(e @ StoreError::UnsupportedFormat { .. }) => {
            let text = e.to_string();
            assert!(text.contains("schema version 99") && text.contains("newer"), "unclear refusal: {text}");
        }
        other => panic!("a newer schema must be refused, got {other:?}"),
    }
    let versions: BTreeMap<i32, ()> = client
        .query("SELECT version FROM annals_schema", &[])
        .await
        .expect("read versions")
        .iter()
        .map(|r| (r.get(0), ()))
        .collect();
    assert_eq!(versions.keys().copied().collect::<Vec<_>>(), vec![1, 2, 99], "the refusal changed the schema table");
    let events: i64 = client.query_one("SELECT count(*) FROM annals_events", &[]).await.expect("count").get(0);
    assert_eq!(events, 1);
}

/// A database written before schema migration 2 (the append function) is migrated at connect:
/// its events stay as they were, and a large batch then appends after them through the
/// function, gapless, with `recorded_at` never going back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_1_database_is_migrated_and_keeps_its_events() {
    let cluster = PgCluster::shared();
    let url = cluster.create_database().await;
    let database = url.rsplit("dbname=").next().expect("dbname").to_owned();
    let store = PostgresStore::connect(config(url.clone())).await.expect("connect");
    let old: Vec<_> = (0..3).map(event).collect();
    store.append_to_stream(&stream("old"), ExpectedRevision::NoStream, old).await.expect("append");
    store.close().await.expect("close");
    // Back to what version 1 had: no function, one migration recorded.
    let client = cluster.connect(&database).await;
    client
        .batch_execute("DROP FUNCTION annals_append; DELETE FROM annals_schema WHERE version = 2;")
        .await
        .expect("undo migration 2");
    let store = PostgresStore::connect(super::insert_then_lock::config(url)).await.expect("migrate and connect");
    let batch: Vec<_> = (3..503).map(event).collect();
    store.append_to_stream(&stream("new"), ExpectedRevision::NoStream, batch).await.expect("append");
    let all = store
        .read_all(annals_store::ReadFrom::Start, annals_store::Direction::Forwards, 1_000, &EventFilter::all())
        .await
        .expect("read");
    assert_eq!(all.len(), 503);
    assert!(all.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at), "recorded_at went back");
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(all.iter().filter(|e| e.stream.as_str() == "old").count(), 3);
    let versions: i64 = client.query_one("SELECT count(*) FROM annals_schema", &[]).await.expect("count").get(0);
    assert_eq!(versions, 2, "migration 2 was applied once");
    store.close().await.expect("close");
}
