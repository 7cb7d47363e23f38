//! `annals serve`: builds the settings from flags, `ANNALS_*` variables and an optional TOML file,
//! runs the HTTP API until SIGINT or SIGTERM, then shuts down cleanly (requests in flight finish,
//! the store closes with everything acknowledged on disk).

use std::path::PathBuf;

use annals_query_api::{Application, Settings, SettingsLayer};
use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080; env: ANNALS_LISTEN].
    #[arg(long)]
    listen: Option<String>,
    /// Data directory of the embedded store [default: ./data; env: ANNALS_DATA_DIR].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TOML file with any setting by its lowercase name (listen, data_dir, max_page, ...; the
    /// README lists them all); flags and ANNALS_* variables override it [env: ANNALS_CONFIG].
    #[arg(long, env = "ANNALS_CONFIG")]
    config: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Installed before anything else: a SIGTERM that arrives while the store opens (a supervisor
    // giving up on a slow start) must still mean a clean shutdown, not the default instant death.
    let signals = Signals::install()?;
    let flags = SettingsLayer { listen: args.listen, data_dir: args.data_dir, ..SettingsLayer::default() };
    let settings = Settings::load(args.config.as_deref(), std::env::vars(), flags)?;
    let app = Application::build(settings).await.context("cannot start")?;
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
