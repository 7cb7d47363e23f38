//! HTTP appends and searches against two deployments in the same run (issue 14's benchmark):
//! `--role api` + `--role projector` on PostgreSQL (a throwaway cluster, `PgCluster`) and
//! `--role all` on the embedded store. Each gets the same closed-loop load — single-event
//! appends over `BENCH_CONNECTIONS` (64) connections and searches over 2 — for `BENCH_SECS` (10),
//! while the `messages` projection's lag is sampled from the API process every 0.5 s; then the
//! time until the view has the last append (`min_position`). Prints markdown rows and the ratio.
//! The server binary is this build's `annals` (`cargo bench --bench distributed`: release).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_store::postgres::testing::PgCluster;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

const ADMIN_KEY: &str = "annals_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

struct Proc {
    child: Child,
    base: String,
}

impl Proc {
    fn start(dir: &Path, name: &str, role: &str, env: &[(&str, String)]) -> anyhow::Result<Proc> {
        let data = dir.join(name);
        std::fs::create_dir_all(&data)?;
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_annals"))
            .args(["serve", "--listen", "127.0.0.1:0", "--role", role])
            .arg("--data-dir")
            .arg(&data)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("ANNALS_ADMIN_KEY", ADMIN_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(|l| l.strip_prefix("annals listening on ")) {
                return Ok(Proc { child, base: addr.trim().to_owned() });
            }
            anyhow::ensure!(Instant::now() < deadline, "{name} did not start: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Figures {
    appends_per_sec: f64,
    p99_ms: f64,
    searches_per_sec: f64,
    lag_max_s: f64,
    catch_up_s: f64,
}

fn main() -> anyhow::Result<()> {
    let secs = Duration::from_secs(std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10));
    let connections: usize = std::env::var("BENCH_CONNECTIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(64);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let root = tempfile::tempdir()?;
    println!("| deployment | appends/s | append p99 ms | searches/s | `messages` lag, max during load | view has the last append after |");
    println!("|---|---|---|---|---|---|");
    let embedded = rt.block_on(async {
        let all = Proc::start(&root.path().join("all"), "all", "all", &[])?;
        load(&all, secs, connections).await
    })?;
    row("`--role all`, embedded", &embedded);
    let cluster = PgCluster::start().map_err(|e| anyhow::anyhow!("{e}"))?;
    let distributed = rt.block_on(async {
        let url = cluster.create_database().await;
        let dir = root.path().join("pg");
        let env = [
            ("ANNALS_STORE__KIND", "postgres".to_owned()),
            ("ANNALS_STORE__URL", url),
            ("ANNALS_VIEWS__DIR", dir.join("views").display().to_string()),
        ];
        let projector = Proc::start(&dir, "projector", "projector", &env)?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let api = Proc::start(&dir, "api", "api", &env)?;
        let figures = load(&api, secs, connections).await;
        drop(projector);
        figures
    })?;
    row("`--role api` + `--role projector`, PostgreSQL", &distributed);
    println!();
    println!(
        "ratio distributed / embedded: appends {:.2}, searches {:.2}",
        distributed.appends_per_sec / embedded.appends_per_sec,
        distributed.searches_per_sec / embedded.searches_per_sec
    );
    Ok(())
}

fn row(name: &str, f: &Figures) {
    println!(
        "| {name} | {:.0} | {:.1} | {:.0} | {:.2} s | {:.2} s |",
        f.appends_per_sec, f.p99_ms, f.searches_per_sec, f.lag_max_s, f.catch_up_s
    );
}

async fn load(api: &Proc, secs: Duration, connections: usize) -> anyhow::Result<Figures> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(connections + 4).build()?;
    let (status, key) = post(
        &client,
        &api.base,
        ADMIN_KEY,
        "/v1/keys",
        &json!({ "tenant": "bench", "role": "admin", "name": "bench" }),
    )
    .await?;
    anyhow::ensure!(status == 201, "create key: {key}");
    let key = key["key"].as_str().unwrap_or_default().to_owned();
    let end = Instant::now() + secs;
    let last = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..connections {
        let (client, base, key, last) = (client.clone(), api.base.clone(), key.clone(), Arc::clone(&last));
        writers.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3).expect("a histogram");
            let mut n = 0u64;
            while Instant::now() < end {
                let id = format!("w{w}-{n}");
                let data = json!({ "message_id": id, "recipient": { "id": "u", "email": "ada@example.com" }, "channel": "email", "subject": format!("hello {n}") });
                let body = json!({ "events": [{ "type": "message.enqueued", "data": data }] });
                let started = Instant::now();
                let (status, answer) = post(&client, &base, &key, &format!("/v1/streams/message-{id}/events"), &body).await?;
                anyhow::ensure!(status == 201, "append: {answer}");
                latencies.record(started.elapsed().as_micros() as u64)?;
                last.fetch_max(answer["last_position"].as_u64().unwrap_or(0), Ordering::Relaxed);
                n += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut searchers = Vec::new();
    for _ in 0..2 {
        let (client, base, key) = (client.clone(), api.base.clone(), key.clone());
        searchers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                let r = client.get(format!("{base}/v1/messages?q=hello&limit=10")).bearer_auth(&key).send().await?;
                anyhow::ensure!(r.status() == 200, "search: {}", r.text().await?);
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut lag_max = 0f64;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = client.get(format!("{}/v1/projections/messages", api.base)).bearer_auth(ADMIN_KEY).send().await?;
        let p: Value = r.json().await?;
        lag_max = lag_max.max(p["lag_seconds"].as_f64().unwrap_or(0.0));
    }
    let mut all = Histogram::<u64>::new(3)?;
    for w in writers {
        all.add(w.await??)?;
    }
    let mut searches = 0;
    for s in searchers {
        searches += s.await??;
    }
    let stopped = Instant::now();
    let last = last.load(Ordering::Relaxed);
    loop {
        let r = client
            .get(format!("{}/v1/messages?limit=1&min_position={last}", api.base))
            .bearer_auth(&key)
            .send()
            .await?;
        if r.status() == 200 || stopped.elapsed() > Duration::from_secs(300) {
            break;
        }
    }
    Ok(Figures {
        appends_per_sec: all.len() as f64 / secs.as_secs_f64(),
        p99_ms: all.value_at_quantile(0.99) as f64 / 1_000.0,
        searches_per_sec: searches as f64 / secs.as_secs_f64(),
        lag_max_s: lag_max,
        catch_up_s: stopped.elapsed().as_secs_f64(),
    })
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let r = client.post(format!("{base}{path}")).bearer_auth(key).json(body).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}
