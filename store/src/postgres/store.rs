//! `PostgresStore`: the handle callers hold. It migrates the schema at connect, starts the
//! writer task (group commit) and the `LISTEN` task, validates appends before they reach the
//! writer, and reads through a pool.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use super::checks::Append;
use super::config::PostgresConfig;
use super::shared::Shared;
use super::writer::{self, AppendRequest};
use super::{db_error, position_from_db, reader, schema, subscribe, unavailable};
use crate::batch_check::{check_batch, BatchLimits};
use crate::capabilities::Capabilities;
use crate::error::StoreError;
use crate::event_store::{EventStore, Subscription};
use crate::model::{
    AllPage, AppendResult, Direction, EventData, EventFilter, ExpectedRevision, PageLimits, Position, ReadFrom,
    ReadStreamOutcome, RecordedEvent, Revision, StreamId, SubscribeFrom,
};

/// How many appends may wait for the writer before callers wait to enqueue (back-pressure).
const QUEUE_DEPTH: usize = 4096;

/// The PostgreSQL event store. Cheap to clone; all clones share one writer task and one pool.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    writer: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    writer_task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the LISTEN task and the subscriptions; the writer ends with its channel.
        self.shared.cancel.cancel();
    }
}

impl PostgresStore {
    /// Connects, creates or migrates the schema (refusing a newer one), and starts the writer.
    pub async fn connect(config: PostgresConfig) -> Result<PostgresStore, StoreError> {
        let pg = config.pg_config()?;
        let (mut client, connection) = pg.connect(NoTls).await.map_err(|e| db_error("connect", e))?;
        let driver = tokio::spawn(connection);
        let migrated = schema::migrate(&mut client).await;
        drop(client);
        let _ = driver.await;
        migrated?;
        let manager =
            Manager::from_config(pg.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| unavailable("create pool", e))?;
        let (wake, _) = watch::channel(0u64);
        let groups = writer::GroupSettings {
            max_bytes: config.max_group_bytes,
            in_flight: config.groups_in_flight,
            parallel_insert_min_events: config.parallel_insert_min_events,
        };
        let shared = Arc::new(Shared { config, pool, wake, cancel: CancellationToken::new() });
        tokio::spawn(subscribe::listen(pg.clone(), Arc::clone(&shared)));
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let task = tokio::spawn(writer::run(pg, rx, groups, Arc::clone(&shared)));
        Ok(PostgresStore {
            inner: Arc::new(Inner { shared, writer: Mutex::new(Some(tx)), writer_task: Mutex::new(Some(task)) }),
        })
    }

    /// Stops taking appends, lets the writer finish its group, ends subscriptions and closes the
    /// pool. Every clone then answers `StoreError::Closed`.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.inner.writer.lock().expect("writer lock").take();
        let task = self.inner.writer_task.lock().expect("writer lock").take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.inner.shared.cancel.cancel();
        self.inner.shared.pool.close();
        Ok(())
    }

    fn check_batch(&self, events: &[EventData]) -> Result<usize, StoreError> {
        let config = &self.inner.shared.config;
        let limits = BatchLimits {
            max_event_size: config.max_event_size,
            max_batch_events: config.max_batch_events,
            max_batch_bytes: config.max_batch_bytes,
        };
        check_batch(events, limits)
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    /// Everything the embedded engine promises: positions are given under the one head row, so
    /// they are dense; ids are held by a unique index (durable, for every expected revision,
    /// within a namespace across streams).
    fn capabilities(&self) -> Capabilities {
        Capabilities::everything()
    }

    async fn distance(&self, after: Option<Position>, through: Position) -> Result<Option<u64>, StoreError> {
        Ok(Some(crate::capabilities::DENSE.distance(after, through)))
    }

    async fn close(&self) -> Result<(), StoreError> {
        PostgresStore::close(self).await
    }

    async fn append_to_stream(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        let bytes = self.check_batch(&events)?;
        let (reply, answer) = oneshot::channel();
        let append = Arc::new(Append { stream: stream.clone(), expected, events, bytes });
        let request = AppendRequest { append, reply };
        let tx = self.inner.writer.lock().expect("writer lock").clone().ok_or(StoreError::Closed)?;
        tx.send(request).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn read_stream_bounded(
        &self,
        stream: &StreamId,
        from: ReadFrom<Revision>,
        direction: Direction,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<ReadStreamOutcome, StoreError> {
        let client = self.inner.shared.client().await?;
        reader::read_stream(&client, stream, from, direction, max_count, max_bytes).await
    }

    async fn read_all(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self.read_all_page(from, direction, PageLimits::count(max_count), filter).await?.events)
    }

    async fn read_all_page(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        limits: PageLimits,
        filter: &EventFilter,
    ) -> Result<AllPage, StoreError> {
        let client = self.inner.shared.client().await?;
        reader::read_all_page(&client, from, direction, limits, filter).await
    }

    async fn subscribe_to_all(
        &self,
        from: SubscribeFrom<Position>,
        filter: EventFilter,
    ) -> Result<Subscription, StoreError> {
        subscribe::to_all(&self.inner.shared, from, filter).await
    }

    async fn subscribe_to_stream(
        &self,
        stream: &StreamId,
        from: SubscribeFrom<Revision>,
    ) -> Result<Subscription, StoreError> {
        subscribe::to_stream(&self.inner.shared, stream.clone(), from).await
    }

    async fn writable(&self) -> Result<(), StoreError> {
        self.head().await.map(|_| ())
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        let writer_gone = self.inner.writer.lock().expect("writer lock").as_ref().is_none_or(mpsc::Sender::is_closed);
        if writer_gone {
            return Err(StoreError::Closed);
        }
        let client = self.inner.shared.client().await?;
        let next = reader::next_position(&client).await?;
        Ok((next > 0).then(|| position_from_db(next - 1)))
    }
}
