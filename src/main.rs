//! The `annals` command line: a thin shell over the library crates. `annals serve` runs what its
//! role says, composed by this package's library (`annals::settings`, `annals::compose`);
//! `annals store …` uses the embedded store directly (inspection, repair checks, scripts).

mod demo_cmd;
mod export_cmd;
mod keys_cmd;
mod projections_cmd;
mod serve_cmd;
mod store_cmd;
mod telemetry;
mod verify_cmd;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a request allocates and frees many small buffers on
/// whichever worker thread runs it, and under load glibc's arenas spent about a fifth of the
/// server's CPU in `malloc`/`free` and their locks (perf, BENCHMARKS.md, HTTP API).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "annals", version, about = "Event-sourced audit log and read-model projector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP API and the projectors (by --role) on the store the settings name.
    Serve(serve_cmd::ServeArgs),
    /// Manage API keys through a running server.
    Keys(keys_cmd::KeysArgs),
    /// Use the embedded event store directly.
    Store(store_cmd::StoreArgs),
    /// Append a realistic message-log and audit workload to a running server.
    Demo(demo_cmd::DemoArgs),
    /// List projections, or rebuild one, through a running server.
    Projections(projections_cmd::ProjectionsArgs),
    /// Download an export to a file (resuming a broken download).
    Export(export_cmd::ExportArgs),
    /// Verify an export offline against the log's public key.
    Verify(verify_cmd::VerifyArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _telemetry = match telemetry::init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot set up OpenTelemetry export (OTEL_EXPORTER_OTLP_ENDPOINT): {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve_cmd::run(args).await,
        Command::Keys(args) => keys_cmd::run(args).await,
        Command::Store(args) => store_cmd::run(args).await,
        Command::Demo(args) => demo_cmd::run(args).await,
        Command::Projections(args) => projections_cmd::run(args).await,
        Command::Export(args) => export_cmd::run(args).await,
        Command::Verify(args) => verify_cmd::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line; backtraces are for developers.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
