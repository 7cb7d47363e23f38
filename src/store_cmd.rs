//! `annals store append|read|info|verify`: appends and reads on an embedded store directory,
//! with events as JSON lines, plus the store's figures and a full integrity check.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{
    Direction, EventData, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom, ReadStreamOutcome,
    RecordedEvent, Revision, StreamId,
};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The store's data directory.
    #[arg(long, global = true, default_value = "./data", env = "ANNALS_DATA_DIR")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Append events to a stream, atomically. Events are JSON lines on standard input, each
    /// `{"type": "...", "data": {...}, "metadata"?: {...}, "id"?: "uuid"}`, or one event given
    /// with --type and --data.
    Append {
        #[arg(long)]
        stream: String,
        /// any, no_stream, stream_exists, or the revision the stream's last event must have.
        #[arg(long, default_value = "any")]
        expected: String,
        #[arg(long, requires = "data")]
        r#type: Option<String>,
        #[arg(long, requires = "type")]
        data: Option<String>,
    },
    /// Print events as JSON lines: one stream's, or the global log's.
    Read {
        /// Read this stream; without it, read `$all`.
        #[arg(long)]
        stream: Option<String>,
        /// First revision (with --stream) or position to read.
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        backwards: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only `$all` events whose type starts with this (repeatable).
        #[arg(long)]
        type_prefix: Vec<String>,
        /// Only `$all` events whose stream starts with this (repeatable).
        #[arg(long)]
        stream_prefix: Vec<String>,
    },
    /// Print the store's figures and what its last open recovered.
    Info,
    /// Read and check every record of the log.
    Verify,
}

pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let store = EmbeddedStore::open(EngineConfig::new(&args.data_dir))
        .await
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    if let Some(tail) = &store.recovery_report().truncated {
        eprintln!(
            "recovered: truncated a torn tail of {} bytes at {}:{} (position {}): {}",
            tail.bytes_dropped,
            tail.segment.display(),
            tail.offset,
            tail.position,
            tail.reason
        );
    }
    let result = match args.command {
        StoreCommand::Append { stream, expected, r#type, data } => {
            append(&store, &stream, &expected, r#type, data).await
        }
        StoreCommand::Read { stream, from, backwards, limit, type_prefix, stream_prefix } => {
            let direction = if backwards { Direction::Backwards } else { Direction::Forwards };
            let events = match stream {
                Some(name) => {
                    let from = from
                        .map_or(if backwards { ReadFrom::End } else { ReadFrom::Start }, |r| ReadFrom::At(Revision(r)));
                    match store.read_stream(&StreamId::new(name.clone())?, from, direction, limit).await? {
                        ReadStreamOutcome::StreamNotFound => bail!("stream {name:?} does not exist"),
                        ReadStreamOutcome::Events(events) => events,
                    }
                }
                None => {
                    let filter = EventFilter { event_type_prefixes: type_prefix, stream_prefixes: stream_prefix };
                    let from = from.map_or(if backwards { ReadFrom::End } else { ReadFrom::Start }, |p| {
                        ReadFrom::At(Position::from_code(p))
                    });
                    store.read_all(from, direction, limit, &filter).await?
                }
            };
            let mut out = std::io::stdout().lock();
            for event in &events {
                writeln!(out, "{}", event_json(event))?;
            }
            Ok(())
        }
        StoreCommand::Info => {
            let info = store.info().await?;
            let report = store.recovery_report();
            let head = store.head().await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "data_dir": info.data_dir,
                    "events": annals_store::engine::DENSE.index(info.next_position),
                    "head_position": head,
                    "segments": info.segments,
                    "log_bytes": info.log_bytes,
                    "open_segment_files": info.open_segment_files,
                    "last_open": {
                        "reindexed_events": report.reindexed_events,
                        "index_rebuilt": report.index_rebuilt,
                        "truncated_tail": report.truncated.as_ref().map(|t| json!({
                            "segment": t.segment, "offset": t.offset, "position": t.position.code(),
                            "bytes_dropped": t.bytes_dropped, "reason": t.reason,
                        })),
                    },
                }))?
            );
            Ok(())
        }
        StoreCommand::Verify => {
            let report = store.verify().await?;
            println!(
                "ok: {} segments, {} groups, {} events, {} bytes checked",
                report.segments, report.groups, report.events, report.bytes
            );
            Ok(())
        }
    };
    store.close().await?;
    result
}

async fn append(
    store: &EmbeddedStore,
    stream: &str,
    expected: &str,
    event_type: Option<String>,
    data: Option<String>,
) -> anyhow::Result<()> {
    let stream = StreamId::new(stream)?;
    let expected = parse_expected(expected)?;
    let events = match (event_type, data) {
        (Some(t), Some(d)) => vec![EventData::from_json_bytes(t, d.into_bytes())?],
        _ => {
            let mut events = Vec::new();
            for (n, line) in std::io::stdin().lock().lines().enumerate() {
                let line = line?;
                if !line.trim().is_empty() {
                    events.push(event_from_line(&line).with_context(|| format!("standard input, line {}", n + 1))?);
                }
            }
            events
        }
    };
    let result = store.append_to_stream(&stream, expected, events).await?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

fn parse_expected(s: &str) -> anyhow::Result<ExpectedRevision> {
    Ok(match s {
        "any" => ExpectedRevision::Any,
        "no_stream" => ExpectedRevision::NoStream,
        "stream_exists" => ExpectedRevision::StreamExists,
        n => {
            ExpectedRevision::Exact(Revision(n.parse().with_context(|| {
                format!("--expected {n:?}: use any, no_stream, stream_exists or a revision number")
            })?))
        }
    })
}

fn event_from_line(line: &str) -> anyhow::Result<EventData> {
    let v: Value = serde_json::from_str(line)?;
    let Some(event_type) = v.get("type").and_then(Value::as_str) else { bail!("missing \"type\"") };
    let Some(data) = v.get("data") else { bail!("missing \"data\"") };
    let mut event = EventData::json(event_type, data)?;
    if let Some(metadata) = v.get("metadata") {
        event = event.with_metadata(metadata)?;
    }
    if let Some(id) = v.get("id") {
        let id = id.as_str().context("\"id\" must be a string")?;
        event = event.with_id(id.parse().with_context(|| format!("\"id\" {id:?} is not a UUID"))?);
    }
    Ok(event)
}

fn event_json(e: &RecordedEvent) -> Value {
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap_or(Value::Null);
    json!({
        "position": e.position.code(),
        "stream": e.stream.as_str(),
        "revision": e.revision.0,
        "id": e.id,
        "type": e.event_type,
        "data": parse(&e.data),
        "metadata": if e.metadata.is_empty() { Value::Null } else { parse(&e.metadata) },
        "recorded_at": e.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
}
