//! `annals serve`: builds the settings from flags, `ANNALS_*` variables and an optional TOML file
//! (`annals::settings`), composes the process its role runs (`annals::compose`) until SIGINT or
//! SIGTERM, then shuts down cleanly (requests in flight finish, the store closes with everything
//! acknowledged on disk).

use std::path::PathBuf;

use annals::compose::Server;
use annals::settings::{Flags, Settings};
use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080; env: ANNALS_HTTP__LISTEN or ANNALS_LISTEN].
    #[arg(long)]
    listen: Option<String>,
    /// Data directory of the embedded store [default: ./data; env: ANNALS_STORE__DATA_DIR or
    /// ANNALS_DATA_DIR].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// What this process runs: all (the API and the projectors, the default), api or projector
    /// [env: ANNALS_ROLE].
    #[arg(long)]
    role: Option<String>,
    /// TOML file of settings by section ([store], [views], [http], [projectors], [invalidations]; the README
    /// lists them all); ANNALS_* variables and flags override it [env: ANNALS_CONFIG].
    #[arg(long, env = "ANNALS_CONFIG")]
    config: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Installed before anything else: a SIGTERM that arrives while the store opens (a supervisor
    // giving up on a slow start) must still mean a clean shutdown, not the default instant death.
    let signals = Signals::install()?;
    let flags = Flags { role: args.role, listen: args.listen, data_dir: args.data_dir };
    let mut settings = Settings::load(args.config.as_deref(), std::env::vars(), flags)?;
    if let Some(soft) = raise_descriptor_limit() {
        // Every connection is a descriptor; the store, the views and the logs need some too.
        let fits = soft.saturating_sub(RESERVED_DESCRIPTORS).max(16);
        if settings.http.max_connections as u64 > fits {
            tracing::warn!(
                max_connections = settings.http.max_connections,
                lowered_to = fits,
                descriptor_limit = soft,
                "ANNALS_MAX_CONNECTIONS does not fit the descriptor limit; lowered"
            );
            settings.http.max_connections = fits as usize;
        }
    }
    let app = Server::build(settings).await.context("cannot start")?;
    if let Some(key) = app.bootstrap_key() {
        // Shown once: only its hash is stored. Lost it? Create another operator key with this
        // one, or start a new store with ANNALS_ADMIN_KEY set.
        eprintln!("annals: created an operator key (shown only now, store it safely):\n  {key}");
    }
    eprintln!("annals listening on http://{}", app.local_addr());
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        signals.recv().await;
        eprintln!("annals: shutting down");
        signal.cancel();
    });
    app.run_until_stopped(shutdown).await?;
    Ok(())
}

/// Descriptors kept for the store's segments, the views' index files and the logs when
/// `max_connections` is fitted under the descriptor limit.
const RESERVED_DESCRIPTORS: u64 = 128;

/// Raises the soft limit on open descriptors to the hard limit (many distributions start
/// services at 1,024, which a thousand idle connections exhaust) and logs both; returns the soft
/// limit in force (`None`: unlimited).
fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    if before.current != before.maximum {
        let raised = Rlimit { current: before.maximum, maximum: before.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, soft = ?before.current, hard = ?before.maximum, "cannot raise the descriptor limit");
        }
    }
    let now = getrlimit(Resource::Nofile);
    let show = |limit: Option<u64>| limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    tracing::info!(
        soft = %show(now.current),
        hard = %show(now.maximum),
        soft_at_start = %show(before.current),
        "descriptor limit"
    );
    now.current
}

/// SIGINT and SIGTERM, both meaning "shut down cleanly".
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
