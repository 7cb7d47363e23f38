//! `annals export audit --output FILE`: downloads the tenant's audit export
//! (`GET /v1/audit/export`) to a file, with progress on stderr, and resumes a broken download —
//! after a dropped connection in the same run (a few retries), or in a later run on the same file —
//! with `after_position` at the head the download started against, so that the file ends up
//! byte-identical to an unbroken export. Needs a reader or admin key: `--key` or `ANNALS_KEY`.
//!
//! While a download is incomplete, `FILE.export.json` holds what resuming needs (the tree size
//! and format); it is removed once the trailer is in the file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The server's base URL.
    #[arg(long, env = "ANNALS_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// A reader or admin key of the tenant.
    #[arg(long, env = "ANNALS_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
    #[command(subcommand)]
    what: ExportWhat,
}

#[derive(Subcommand, Debug)]
enum ExportWhat {
    /// The audit trail (`GET /v1/audit/export`).
    Audit {
        /// Where to write it; an incomplete download there is resumed.
        #[arg(long)]
        output: PathBuf,
        /// `ndjson` (what `annals verify` checks) or `csv`.
        #[arg(long, default_value = "ndjson")]
        format: String,
        /// Carry the consistency proof from this earlier tree size (see `annals verify --previous-head`).
        #[arg(long)]
        since_tree_size: Option<u64>,
    },
}

/// Retries of a dropped download within one run.
const RETRIES: u32 = 5;

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let key = args.key.context("no key: pass --key or set ANNALS_KEY")?;
    let ExportWhat::Audit { output, format, since_tree_size } = args.what;
    let state_path = sidecar(&output);
    let client = reqwest::Client::new();
    let mut attempt = 0;
    loop {
        let resume = resume_point(&output, &state_path)?;
        let mut query = vec![("format", format.clone())];
        if let Some(since) = since_tree_size {
            query.push(("since_tree_size", since.to_string()));
        }
        match &resume {
            Resume::Complete => {
                let _ = std::fs::remove_file(&state_path);
                eprintln!("{} is complete", output.display());
                return Ok(());
            }
            Resume::Fresh => {}
            Resume::After { position, tree_size } => {
                query.push(("after_position", position.map_or_else(String::new, |p| p.to_string())));
                query.push(("tree_size", tree_size.to_string()));
                query.retain(|(_, v)| !v.is_empty());
            }
        }
        match download(&client, &args.url, &key, &query, &output, &state_path, &format, &resume).await {
            Ok(()) => {
                let _ = std::fs::remove_file(&state_path);
                eprintln!("\nwrote {}", output.display());
                return Ok(());
            }
            Err(e) if attempt < RETRIES && e.downcast_ref::<reqwest::Error>().is_some() => {
                attempt += 1;
                eprintln!("\nthe download broke ({e:#}); resuming (attempt {attempt} of {RETRIES})");
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The length of the file up to its last newline, and its last complete line, reading backwards
/// from the end only as far as that line starts (memory: one line, whatever the file's size).
fn last_complete_line(file: &mut std::fs::File) -> std::io::Result<(u64, Option<String>)> {
    const BLOCK: u64 = 64 * 1024;
    let len = file.metadata()?.len();
    let (mut start, mut tail) = (len, Vec::new());
    loop {
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
        start = from;
        if let Some(end) = tail.iter().rposition(|&b| b == b'\n') {
            let begin = tail[..end].iter().rposition(|&b| b == b'\n').map(|i| i + 1);
            if begin.is_some() || start == 0 {
                let line = String::from_utf8_lossy(&tail[begin.unwrap_or(0)..end]).into_owned();
                return Ok((start + end as u64 + 1, Some(line)));
            }
        } else if start == 0 {
            return Ok((0, None));
        }
    }
}

fn sidecar(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".export.json");
    PathBuf::from(name)
}

enum Resume {
    Fresh,
    Complete,
    /// Continue after `position` (none: no line yet) at the head of `tree_size`.
    After {
        position: Option<u64>,
        tree_size: u64,
    },
}

/// What the file and its sidecar say: a fresh download, a complete one, or where to go on.
/// A partial last line is cut off.
fn resume_point(output: &Path, state_path: &Path) -> anyhow::Result<Resume> {
    let Ok(state) = std::fs::read_to_string(state_path) else {
        if output.exists() {
            bail!(
                "{} exists and is no incomplete download of `annals export`; choose another --output",
                output.display()
            );
        }
        return Ok(Resume::Fresh);
    };
    let state: Value = serde_json::from_str(&state).context("the download's state file")?;
    let tree_size = state["tree_size"].as_u64().context("the state file has no tree_size")?;
    let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(output)?;
    let (complete, last) = last_complete_line(&mut file)?;
    file.set_len(complete)?;
    let Some(last) = last else { return Ok(Resume::After { position: None, tree_size }) };
    let last = last.trim_end();
    if last.starts_with(",trailer,") || last.contains("\"kind\":\"trailer\"") {
        return Ok(Resume::Complete);
    }
    let position = match serde_json::from_str::<Value>(last) {
        Ok(line) => line["position"].as_u64(),
        // CSV: the position is the first cell (none in the header row).
        Err(_) => last.split(',').next().and_then(|cell| cell.parse().ok()),
    };
    Ok(Resume::After { position, tree_size })
}

#[allow(clippy::too_many_arguments)]
async fn download(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    query: &[(&str, String)],
    output: &Path,
    state_path: &Path,
    format: &str,
    resume: &Resume,
) -> anyhow::Result<()> {
    let mut response = client
        .get(format!("{}/v1/audit/export", url.trim_end_matches('/')))
        .bearer_auth(key)
        .query(query)
        .send()
        .await?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        bail!("the server answered {status}: {body}");
    }
    let tree_size: u64 = response
        .headers()
        .get("annals-export-tree-size")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("the response has no Annals-Export-Tree-Size header")?;
    if matches!(resume, Resume::Fresh) {
        std::fs::write(state_path, json!({ "tree_size": tree_size, "format": format }).to_string())?;
    }
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(output)?;
    let (mut written, mut shown) = (0u64, Instant::now());
    while let Some(chunk) = response.chunk().await? {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
        if shown.elapsed() > Duration::from_millis(500) {
            eprint!("\r{:.1} MiB of the export at tree size {tree_size}", written as f64 / 1_048_576.0);
            shown = Instant::now();
        }
    }
    file.sync_all()?;
    match resume_point(output, state_path)? {
        Resume::Complete => Ok(()),
        _ => bail!("the export ended without its trailer; run the same command again to resume"),
    }
}
