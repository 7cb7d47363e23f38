//! The PostgreSQL backend against the `EventStore` contract, plus what only it promises.
//!
//! Why this exists: `PostgresStore` must keep every promise the embedded engine keeps, so the
//! same conformance suite is stamped out below, unchanged — one test per case, each on a fresh
//! database of one throwaway cluster that this test binary starts (`PgCluster::shared`: initdb +
//! pg_ctl in a temporary directory, a Unix socket, no TCP port). The modules below test what a
//! shared server adds: many concurrent appenders with a subscriber (gapless, no skip, no
//! repeat), group commit isolating a failed expected revision, a server restart under load,
//! the schema version check, and the lease.

use annals_store::conformance::Limits;
use annals_store::postgres::testing::PgCluster;
use annals_store::postgres::{PostgresConfig, PostgresStore};

/// A small pool: the cluster serves every test of the binary at once.
fn config(url: String) -> PostgresConfig {
    PostgresConfig::new(url).pool_size(4)
}

fn limits() -> Limits {
    let c = config(String::new());
    Limits {
        max_event_size: c.max_event_size,
        max_batch_events: c.max_batch_events,
        max_batch_bytes: c.max_batch_bytes,
    }
}

/// The conformance suite's factory: a store on a fresh database of the shared cluster.
async fn fresh_store() -> (PostgresStore, ()) {
    let url = PgCluster::shared().create_database().await;
    let store = PostgresStore::connect(config(url)).await.expect("connect to a fresh database");
    (store, ())
}

annals_store::event_store_test_suite!(fresh_store, limits = limits());

#[path = "conformance_postgres/load.rs"]
mod load;

#[path = "conformance_postgres/lease.rs"]
mod lease;

/// The same suite with every group inserting before it locks the head (`write.rs`,
/// `INSERT_THEN_LOCK`; by default only groups of 128 events or more do), so both write paths
/// keep the whole contract, and the load cases below run on both too.
mod insert_then_lock {
    use super::*;

    pub(crate) fn config(url: String) -> PostgresConfig {
        super::config(url).parallel_insert_min_events(1)
    }

    async fn fresh_store() -> (PostgresStore, ()) {
        let url = PgCluster::shared().create_database().await;
        let store = PostgresStore::connect(config(url)).await.expect("connect to a fresh database");
        (store, ())
    }

    annals_store::event_store_test_suite!(fresh_store, limits = limits());
}
