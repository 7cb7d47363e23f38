//! `[projectors]`: how the projectors of this process batch, fold and yield the CPU. Each key
//! also answers to its flat name of earlier versions (`ANNALS_PROJECTOR_FLUSH_MS`,
//! `projector_flush_ms` at the top of a file).

use std::time::Duration;

use annals_projectors::background::Priority;
use annals_projectors::ProjectorConfig;

use super::parse::{positive, Section};

/// `[projectors]`.
#[derive(Clone, Debug)]
pub struct ProjectorSettings {
    /// `flush_ms`: how long a projector gathers live events before it commits them to its view
    /// (default 200, at most 60,000): the delay before a write is searchable, against the rate of
    /// view commits (each one syncs files on the disk the log also syncs to).
    pub flush: Duration,
    /// `batch_size`: events per view commit at most (1 to 100,000, default 20,000): bounds a
    /// catching-up projector's memory and commit size.
    pub batch_size: usize,
    /// `parallelism`: partitioned workers per projection (1 to 64, default 1).
    pub parallelism: usize,
    /// `priority`: the CPU priority of projector threads against the API's: `low` (a nice value
    /// of about 10, the default), `idle` or `normal`.
    pub priority: Priority,
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        let config = ProjectorConfig::default();
        ProjectorSettings {
            flush: Duration::from_millis(200),
            batch_size: config.batch_size,
            parallelism: 1,
            priority: Priority::Low,
        }
    }
}

impl ProjectorSettings {
    /// The runtime's configuration.
    pub fn config(&self) -> ProjectorConfig {
        ProjectorConfig {
            flush_interval: self.flush,
            parallelism: self.parallelism,
            batch_size: self.batch_size,
            ..ProjectorConfig::default()
        }
    }
}

impl Section for ProjectorSettings {
    const NAME: &'static str = "projectors";
    const KEYS: &'static [(&'static str, Option<&'static str>)] = &[
        ("flush_ms", Some("ANNALS_PROJECTOR_FLUSH_MS")),
        ("batch_size", Some("ANNALS_PROJECTOR_BATCH_SIZE")),
        ("parallelism", Some("ANNALS_PROJECTOR_PARALLELISM")),
        ("priority", Some("ANNALS_PROJECTOR_PRIORITY")),
    ];

    fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        match key {
            "flush_ms" => {
                let ms = positive(v)?;
                if ms > 60_000 {
                    return Err("at most 60000 (a minute)".into());
                }
                self.flush = Duration::from_millis(ms as u64);
            }
            "batch_size" => {
                let n = positive(v)?;
                if n > 100_000 {
                    return Err("at most 100000".into());
                }
                self.batch_size = n;
            }
            "parallelism" => {
                let n = positive(v)?;
                if n > 64 {
                    return Err("at most 64".into());
                }
                self.parallelism = n;
            }
            "priority" => self.priority = v.trim().parse()?,
            _ => return Err("not a setting of this section".into()),
        }
        Ok(())
    }
}
