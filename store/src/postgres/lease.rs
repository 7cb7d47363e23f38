//! `PostgresLease`: one owner at a time for a named job (a projection), across processes, held
//! as a session-level advisory lock on a connection of its own.
//!
//! # Contract
//!
//! - `acquire` waits until the lock is free; `try_acquire` answers at once (`None`: held
//!   elsewhere). The lock is the server's: it is held exactly as long as the lease's connection
//!   lives, and released when the holder drops the lease, calls `release`, or its process dies
//!   (the server ends the session).
//! - The holder must stop the job as soon as [`PostgresLease::lost`] fires. It fires at once
//!   when the server closes the connection (`pg_terminate_backend`, a server restart, a
//!   proxy), and within [`HEARTBEAT`] plus its timeout when the connection silently stops
//!   answering. In that last case another process may take the lease before the holder
//!   notices: overlap is short but possible, so a job under a lease must be harmless when
//!   run twice (versioned, idempotent writes), never rely on exclusion for correctness.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::PostgresConfig;
use super::db_error;
use crate::error::StoreError;

/// How often the holder checks its connection still answers.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// A held lease. Dropping it releases the lock (the connection closes).
#[derive(Debug)]
pub struct PostgresLease {
    name: String,
    client: Arc<Client>,
    backend_pid: i32,
    lost: CancellationToken,
    heartbeat: JoinHandle<()>,
}

/// The lock key of a lease name: the server's own 64-bit text hash, namespaced so that annals'
/// leases do not meet other advisory locks of the database.
const KEY_SQL: &str = "hashtextextended('annals-lease/' || $1, 0)";

impl PostgresLease {
    /// Waits until the lease `name` is free, and takes it.
    pub async fn acquire(config: &PostgresConfig, name: &str) -> Result<PostgresLease, StoreError> {
        let (client, lost, pid) = connect(config).await?;
        client
            .execute(&format!("SELECT pg_advisory_lock({KEY_SQL})"), &[&name])
            .await
            .map_err(|e| db_error("acquire lease", e))?;
        Ok(Self::held(name, client, lost, pid))
    }

    /// Takes the lease `name` if it is free; `None` if another session holds it.
    pub async fn try_acquire(config: &PostgresConfig, name: &str) -> Result<Option<PostgresLease>, StoreError> {
        let (client, lost, pid) = connect(config).await?;
        let row = client
            .query_one(&format!("SELECT pg_try_advisory_lock({KEY_SQL})"), &[&name])
            .await
            .map_err(|e| db_error("acquire lease", e))?;
        Ok(row.get::<_, bool>(0).then(|| Self::held(name, client, lost, pid)))
    }

    fn held(name: &str, client: Arc<Client>, lost: CancellationToken, backend_pid: i32) -> PostgresLease {
        info!(lease = name, backend_pid, "lease acquired");
        let heartbeat = tokio::spawn(heartbeat(Arc::clone(&client), lost.clone(), name.to_owned()));
        PostgresLease { name: name.to_owned(), client, backend_pid, lost, heartbeat }
    }

    /// Cancelled once the lease is lost (or released): the holder stops at once. Await
    /// `lease.lost().cancelled()`, or check `is_cancelled()` between steps.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Whether the lease is still held, as far as this process knows.
    pub fn is_held(&self) -> bool {
        !self.lost.is_cancelled()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server process of the lease's session (what `pg_terminate_backend` takes).
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// Releases the lease now.
    pub async fn release(self) {
        let _ = self.client.execute(&format!("SELECT pg_advisory_unlock({KEY_SQL})"), &[&self.name]).await;
        self.lost.cancel();
    }
}

impl Drop for PostgresLease {
    fn drop(&mut self) {
        self.heartbeat.abort();
        self.lost.cancel();
    }
}

/// A connection whose token is cancelled when it ends, and its server process id.
async fn connect(config: &PostgresConfig) -> Result<(Arc<Client>, CancellationToken, i32), StoreError> {
    let (client, connection) = config.pg_config()?.connect(NoTls).await.map_err(|e| db_error("connect", e))?;
    let lost = CancellationToken::new();
    let ended = lost.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "lease connection ended");
        }
        ended.cancel();
    });
    let row = client.query_one("SELECT pg_backend_pid()", &[]).await.map_err(|e| db_error("connect", e))?;
    Ok((Arc::new(client), lost, row.get(0)))
}

async fn heartbeat(client: Arc<Client>, lost: CancellationToken, name: String) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT) => {}
            () = lost.cancelled() => break,
        }
        match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(lease = %name, error = %e, "lease connection failed: lease lost");
                lost.cancel();
            }
            Err(_) => {
                warn!(lease = %name, "lease connection stopped answering: lease lost");
                lost.cancel();
            }
        }
    }
    info!(lease = %name, "lease lost or released");
}
