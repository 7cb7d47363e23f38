//! `[store]`: which event store `annals serve` opens, and that backend's own fields. A new
//! backend is a `StoreKind` variant and its fields here, and its arm in `compose/store.rs`.

use std::path::PathBuf;

use super::parse::{positive, Section};

/// The event store backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreKind {
    /// The engine in `annals-store`, in `data_dir`: one process owns it.
    #[default]
    Embedded,
    /// PostgreSQL at `url`, shared by every process of a deployment.
    Postgres,
}

/// `[store]`.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// `kind`: `embedded` (default) or `postgres`.
    pub kind: StoreKind,
    /// `data_dir` (`ANNALS_DATA_DIR`, `--data-dir`): the embedded store's directory; the views
    /// (unless `[views] dir`) and the integrity tree live there too, whatever the store.
    pub data_dir: PathBuf,
    /// `min_free_bytes` (`ANNALS_MIN_FREE_BYTES`, embedded): appends are refused with `507`
    /// while the data directory's filesystem has less free (default 128 MiB), keeping the index
    /// writable, so appends resume by themselves once space is freed.
    pub min_free_bytes: u64,
    /// `url` (postgres): `postgres://USER@HOST/DB` or a key=value connection string.
    pub url: Option<String>,
    /// `pool_size` (postgres): connections to the database, default 16.
    pub pool_size: Option<usize>,
    /// `parallel_insert_min_events` (postgres): appends of this many events or more insert their
    /// rows before they lock the head (in parallel with other groups); smaller ones lock first.
    /// Default: the store's own (`PostgresConfig`, 128). 1 makes every append insert first; a
    /// number above the largest append makes none.
    pub parallel_insert_min_events: Option<usize>,
}

impl StoreSettings {
    /// The pool size when none is set.
    pub const DEFAULT_POOL_SIZE: usize = 16;
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            kind: StoreKind::Embedded,
            data_dir: PathBuf::from("data"),
            min_free_bytes: 128 * 1024 * 1024,
            url: None,
            pool_size: None,
            parallel_insert_min_events: None,
        }
    }
}

impl Section for StoreSettings {
    const NAME: &'static str = "store";
    const KEYS: &'static [(&'static str, Option<&'static str>)] = &[
        ("kind", None),
        ("data_dir", Some("ANNALS_DATA_DIR")),
        ("min_free_bytes", Some("ANNALS_MIN_FREE_BYTES")),
        ("url", None),
        ("pool_size", None),
        ("parallel_insert_min_events", None),
    ];

    fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        match key {
            "kind" => {
                self.kind = match v.trim() {
                    "embedded" => StoreKind::Embedded,
                    "postgres" => StoreKind::Postgres,
                    _ => return Err("must be embedded or postgres".into()),
                }
            }
            "data_dir" if v.is_empty() => return Err("empty".into()),
            "data_dir" => self.data_dir = PathBuf::from(v),
            "min_free_bytes" => {
                self.min_free_bytes = v.trim().parse().map_err(|e| format!("not a number of bytes ({e})"))?
            }
            "url" if v.trim().is_empty() => return Err("empty".into()),
            "url" => self.url = Some(v.trim().to_owned()),
            "pool_size" => {
                let n = positive(v)?;
                if n > 1024 {
                    return Err("at most 1024".into());
                }
                self.pool_size = Some(n);
            }
            "parallel_insert_min_events" => self.parallel_insert_min_events = Some(positive(v)?),
            _ => return Err("not a setting of this section".into()),
        }
        Ok(())
    }
}
