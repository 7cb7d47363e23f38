//! The one error of the `annals` library (settings and composition): what stops `annals serve`
//! before or while it starts. Every variant is permanent for this start (the operator fixes a
//! setting, the disk or the port); none is retried.

use std::path::PathBuf;

/// Why `annals serve` cannot start (or stop cleanly).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value that does not parse or is out of range, named as the operator wrote it.
    #[error("invalid setting {setting} = {value:?}: {reason}")]
    InvalidSetting { setting: String, value: String, reason: String },
    /// A config file that cannot be read, is not TOML, or names an unknown setting.
    #[error("config file {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// Settings valid one by one that no process can run together; `reason` says what to use.
    #[error("invalid setting {setting}: {reason}")]
    Combination { setting: String, reason: String },
    /// A valid setting whose backend or role this build does not have yet.
    #[error("{setting} = {value:?} is not available in this build: {reason}")]
    NotBuilt { setting: &'static str, value: &'static str, reason: &'static str },
    #[error(transparent)]
    Store(#[from] annals_store::StoreError),
    #[error(transparent)]
    Api(#[from] annals_query_api::Error),
}
