//! Leases: one owner at a time for a named job across processes, as the `projector` role takes
//! them per view (`projector.rs`). A backend that several processes share brings its own (on
//! PostgreSQL a session-level advisory lock on a dedicated connection, `PostgresLease`); the
//! role needs only "wait until it is mine", "tell me the moment it is not", and "let it go".

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use annals_store::postgres::{PostgresConfig, PostgresLease};
use annals_store::StoreError;
use tokio_util::sync::CancellationToken;

/// A future of this module's trait objects.
pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where leases come from.
pub trait LeaseSource: Send + Sync + std::fmt::Debug {
    /// Waits until the lease `name` is free and takes it.
    fn acquire<'a>(&'a self, name: &'a str) -> Boxed<'a, Result<Lease, StoreError>>;
}

/// What a backend's lease keeps alive while it is held (dropping it lets the lease go).
pub trait Held: Send + Sync + std::fmt::Debug {
    /// Lets the lease go now.
    fn release(self: Box<Self>) -> Boxed<'static, ()>;
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    lost: CancellationToken,
    held: Box<dyn Held>,
}

impl Lease {
    /// `lost` fires the moment the holder must stop (the backend says it no longer holds it).
    pub fn new(lost: CancellationToken, held: Box<dyn Held>) -> Lease {
        Lease { lost, held }
    }

    /// Cancelled once the lease is lost.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    pub async fn release(self) {
        self.held.release().await;
    }
}

/// The leases of a process's store.
#[derive(Clone, Debug)]
pub struct Leases(Arc<dyn LeaseSource>);

impl Leases {
    pub fn new(source: Arc<dyn LeaseSource>) -> Leases {
        Leases(source)
    }

    pub async fn acquire(&self, name: &str) -> Result<Lease, StoreError> {
        self.0.acquire(name).await
    }
}

/// PostgreSQL's leases: a session-level advisory lock per name, each on a connection of its own
/// (`annals_store::postgres::PostgresLease`), lost the moment that connection ends or stops
/// answering its heartbeat.
pub struct PostgresLeases {
    config: PostgresConfig,
}

impl PostgresLeases {
    pub fn new(config: PostgresConfig) -> PostgresLeases {
        PostgresLeases { config }
    }
}

impl std::fmt::Debug for PostgresLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the URL, which may hold a password.
        f.debug_struct("PostgresLeases").finish_non_exhaustive()
    }
}

impl LeaseSource for PostgresLeases {
    fn acquire<'a>(&'a self, name: &'a str) -> Boxed<'a, Result<Lease, StoreError>> {
        Box::pin(async move {
            let lease = PostgresLease::acquire(&self.config, name).await?;
            Ok(Lease::new(lease.lost(), Box::new(lease)))
        })
    }
}

impl Held for PostgresLease {
    fn release(self: Box<Self>) -> Boxed<'static, ()> {
        Box::pin(async move { (*self).release().await })
    }
}
