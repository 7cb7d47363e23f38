//! What every section shares: the `Section` trait (a table name, its keys, and how it parses
//! them) and the parsers of numbers and durations, so that each section file reads its own
//! fields and `load.rs` only finds which layer gave what.

use std::time::Duration;

/// One section of the settings: its table name, its keys and how it parses them.
pub(super) trait Section {
    /// The TOML table (`[http]`); `ANNALS_HTTP__…` in the environment.
    const NAME: &'static str;
    /// Each key, with the flat environment variable of earlier versions that also sets it.
    const KEYS: &'static [(&'static str, Option<&'static str>)];
    /// Parses `value` into the field of `key` (one of `KEYS`); the reason if it is not valid.
    fn set(&mut self, key: &str, value: &str) -> Result<(), String>;
}

pub(super) fn positive(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number ({e})")),
    }
}

pub(super) fn seconds(v: &str) -> Result<Duration, String> {
    Ok(Duration::from_secs(positive(v)? as u64))
}
