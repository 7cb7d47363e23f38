//! Opens the event store that `[store] kind` names. Each backend is one arm of `open` and one
//! variant of `OpenStore`; the rest of the program sees an `Arc<dyn EventStore>`.

use std::sync::Arc;

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::postgres::{PostgresConfig, PostgresStore};
use annals_store::EventStore;

use crate::settings::{StoreKind, StoreSettings};
use crate::Error;

/// An open event store, kept by its backend type so that it can be closed (flushed and its
/// directory released) at the end.
#[derive(Debug)]
pub enum OpenStore {
    Embedded(EmbeddedStore),
    /// With the configuration its leases connect with (a connection of their own each).
    Postgres(PostgresStore, PostgresConfig),
}

impl OpenStore {
    /// The store as the API and the projectors see it.
    pub fn events(&self) -> Arc<dyn EventStore> {
        match self {
            OpenStore::Embedded(store) => Arc::new(store.clone()),
            OpenStore::Postgres(store, _) => Arc::new(store.clone()),
        }
    }

    /// The leases of a store several processes share (`None`: one process owns it).
    pub fn leases(&self) -> Option<crate::compose::Leases> {
        match self {
            OpenStore::Embedded(_) => None,
            OpenStore::Postgres(_, config) => {
                Some(crate::compose::Leases::new(Arc::new(crate::compose::lease::PostgresLeases::new(config.clone()))))
            }
        }
    }

    /// Closes it: every acknowledged append is durable, and the directory is free again.
    pub async fn close(self) -> Result<(), Error> {
        match self {
            OpenStore::Embedded(store) => Ok(store.close().await?),
            OpenStore::Postgres(store, _) => Ok(store.close().await?),
        }
    }
}

/// Opens the store `settings` names (checked already: a url for postgres).
pub async fn open(settings: &StoreSettings) -> Result<OpenStore, Error> {
    match settings.kind {
        StoreKind::Embedded => {
            let config = EngineConfig::new(&settings.data_dir).min_free_bytes(settings.min_free_bytes);
            Ok(OpenStore::Embedded(EmbeddedStore::open(config).await?))
        }
        StoreKind::Postgres => {
            let url = settings.url.as_deref().unwrap_or_default();
            open_postgres(url, settings.pool_size.unwrap_or(StoreSettings::DEFAULT_POOL_SIZE)).await
        }
    }
}

/// The PostgreSQL arm: connects (creating or migrating the schema; a newer schema than this
/// build knows is refused).
async fn open_postgres(url: &str, pool_size: usize) -> Result<OpenStore, Error> {
    let config = PostgresConfig::new(url).pool_size(pool_size);
    let store = PostgresStore::connect(config.clone()).await?;
    Ok(OpenStore::Postgres(store, config))
}
