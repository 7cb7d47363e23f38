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
        StoreKind::Postgres => open_postgres(postgres_config(settings)).await,
    }
}

/// The PostgreSQL store's configuration from `[store]`: the store's own defaults where a setting
/// is not given.
fn postgres_config(settings: &StoreSettings) -> PostgresConfig {
    let url = settings.url.as_deref().unwrap_or_default();
    let mut config = PostgresConfig::new(url).pool_size(settings.pool_size.unwrap_or(StoreSettings::DEFAULT_POOL_SIZE));
    if let Some(events) = settings.parallel_insert_min_events {
        config = config.parallel_insert_min_events(events);
    }
    config
}

/// The PostgreSQL arm: connects (creating or migrating the schema; a newer schema than this
/// build knows is refused).
async fn open_postgres(config: PostgresConfig) -> Result<OpenStore, Error> {
    let store = PostgresStore::connect(config.clone()).await?;
    Ok(OpenStore::Postgres(store, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_settings_reach_the_store_s_configuration_and_its_defaults_stay_otherwise() {
        let defaults = postgres_config(&StoreSettings { url: Some("postgres://x@h/db".into()), ..Default::default() });
        assert_eq!(defaults.pool_size, StoreSettings::DEFAULT_POOL_SIZE);
        assert_eq!(defaults.parallel_insert_min_events, PostgresConfig::new("u").parallel_insert_min_events);
        let set = postgres_config(&StoreSettings {
            url: Some("postgres://x@h/db".into()),
            pool_size: Some(3),
            parallel_insert_min_events: Some(1),
            ..Default::default()
        });
        assert_eq!((set.pool_size, set.parallel_insert_min_events), (3, 1));
    }
}
