//! Distributed mode end to end (issue 14): real `annals serve` processes — `--role api` and
//! `--role projector` — on one throwaway PostgreSQL cluster (`PgCluster`), sharing a views
//! directory, each with its own data directory (its integrity tree). What they prove: appends
//! through either API are searchable through both; `min_position` read-your-writes holds across
//! processes; `kill -9` of the projector holding a view's lease hands the view to the other
//! within seconds and the view stays a fold of the log (nothing applied twice, nothing missing);
//! a rebuild requested through one API completes and serves through the other; and every
//! acknowledged append survives `kill -9` of an API process and a PostgreSQL restart under load,
//! exactly once.
//!
//! The binary is `ANNALS_BIN`, which the test command (`scripts/test.sh`) points at the release
//! build, the one operators run; without it, the `annals` that cargo builds for the workspace
//! (`target/debug/annals`, next to this test binary's `deps/`: `cargo test --workspace` builds
//! it; alone, run `cargo build -p annals` first).

use crate::support::{self, ADMIN_KEY};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use annals_store::postgres::testing::PgCluster;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn annals_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ANNALS_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let bin = exe.parent().and_then(Path::parent).expect("target/debug/deps").join("annals");
    assert!(bin.exists(), "{} is missing: run `cargo build -p annals` (or set ANNALS_BIN)", bin.display());
    bin
}

/// One `annals serve` child process, its stderr in `{dir}/{name}.log`.
struct Proc {
    name: String,
    child: Child,
    base: String,
    log: PathBuf,
}

impl Proc {
    fn start(dir: &Path, name: &str, role: &str, url: &str) -> Proc {
        Proc::start_with(dir, name, role, url, &[])
    }

    /// [`Proc::start`] with more environment.
    fn start_with(dir: &Path, name: &str, role: &str, url: &str, env: &[(&str, String)]) -> Proc {
        let data = dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(annals_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--role", role])
            .arg("--data-dir")
            .arg(&data)
            .env("ANNALS_STORE__KIND", "postgres")
            .env("ANNALS_STORE__URL", url)
            .env("ANNALS_STORE__POOL_SIZE", "4")
            .env("ANNALS_VIEWS__DIR", dir.join("views"))
            .env("ANNALS_ADMIN_KEY", ADMIN_KEY)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn annals");
        // Owned at once, so that a start that fails below is killed and reaped on the way out.
        let mut process = Proc { name: name.to_owned(), child, base: String::new(), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = process.log();
            if let Some(addr) = text.lines().find_map(|l| l.strip_prefix("annals listening on ")) {
                process.base = addr.trim().to_owned();
                return process;
            }
            assert!(Instant::now() < deadline, "{name} did not start within 30 s:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`.
    fn kill(&mut self) {
        self.child.kill().unwrap_or_else(|e| panic!("kill {}: {e}", self.name));
        self.child.wait().unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests to one API process with one key.
#[derive(Clone)]
struct Api {
    base: String,
    key: String,
    client: reqwest::Client,
}

impl Api {
    fn new(process: &Proc, key: &str) -> Api {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
        Api { base: process.base.clone(), key: key.to_owned(), client }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.client.get(format!("{}{path}", self.base)).bearer_auth(&self.key).send().await;
        support::decode(response.expect("request")).await
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self.client.post(format!("{}{path}", self.base)).bearer_auth(&self.key).json(body).send().await;
        support::decode(response.expect("request")).await
    }

    /// Appends `(type, data)` to `stream`; the last position.
    async fn append(&self, stream: &str, event_type: &str, data: Value) -> u64 {
        let body = json!({ "events": [{ "type": event_type, "data": data }] });
        let (status, body) = self.post(&format!("/v1/streams/{stream}/events"), &body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["last_position"].as_u64().unwrap()
    }

    /// `GET` that waits (up to `limit`) for a `200`: read-your-writes through a process whose
    /// projector may be between holders.
    async fn get_ok(&self, path: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (status, body) = self.get(path).await;
            if status == StatusCode::OK {
                return body;
            }
            assert!(Instant::now() < deadline, "{path}: {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn enqueued(id: &str) -> Value {
    json!({ "message_id": id, "recipient": { "id": format!("user-{id}"), "email": "ada@example.com" }, "channel": "email", "subject": format!("hello {id}") })
}

/// Which projector process holds `view`'s lease, from their `/metrics`.
async fn holder(projectors: &[&Proc], view: &str) -> Option<usize> {
    let line = format!("annals_projector_lease_held{{projection=\"{view}\"}} 1");
    let mut holders = Vec::new();
    for (i, p) in projectors.iter().enumerate() {
        if let Ok(r) = reqwest::get(format!("{}/metrics", p.base)).await {
            if r.text().await.unwrap_or_default().lines().any(|l| l == line) {
                holders.push(i);
            }
        }
    }
    assert!(holders.len() <= 1, "two processes say they hold {view}: {holders:?}");
    holders.first().copied()
}

async fn wait_for_holder(projectors: &[&Proc], view: &str, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(i) = holder(projectors, view).await {
            return i;
        }
        assert!(Instant::now() < deadline, "no projector took {view} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every message of the view, through `api`, checked against a fold of the log (`?as_of=` folds
/// the stream's events with the projector's code): same status, same timeline.
async fn assert_view_is_a_fold_of_the_log(api: &Api, ids: &[String], last: u64) {
    let page = api.get_ok(&format!("/v1/messages?min_position={last}&limit=200"), Duration::from_secs(20)).await;
    assert_eq!(page["total"], json!(ids.len()), "every message once: {page}");
    for id in ids {
        let doc = api.get_ok(&format!("/v1/messages/{id}?min_position={last}"), Duration::from_secs(10)).await;
        let fold = api.get_ok(&format!("/v1/messages/{id}?as_of=2100-01-01T00:00:00Z"), Duration::from_secs(10)).await;
        assert_eq!(doc["status"], fold["status"], "{id}: {doc} vs {fold}");
        assert_eq!(doc["timeline"], fold["timeline"], "{id}: nothing applied twice or missed: {doc} vs {fold}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apis_and_two_projectors_share_one_postgres() {
    let cluster = PgCluster::start().expect("a PostgreSQL cluster");
    let url = cluster.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let p1 = Proc::start(tmp.path(), "projector-1", "projector", &url);
    let p2 = Proc::start(tmp.path(), "projector-2", "projector", &url);
    // The views exist once their projector opened them (an API process then opens readers).
    for view in ["messages", "audit"] {
        wait_for_holder(&[&p1, &p2], view, Duration::from_secs(15)).await;
    }
    let a1 = Proc::start(tmp.path(), "api-1", "api", &url);
    let a2 = Proc::start(tmp.path(), "api-2", "api", &url);
    let operator = Api::new(&a1, ADMIN_KEY);
    let (status, key) =
        operator.post("/v1/keys", &json!({ "tenant": "acme", "role": "admin", "name": "distributed" })).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let key = key["key"].as_str().unwrap().to_owned();
    let apis = [Api::new(&a1, &key), Api::new(&a2, &key)];

    // Appends through either API, read through the other with read-your-writes.
    let mut ids = Vec::new();
    let mut last = 0;
    for i in 0..8 {
        let id = format!("m{i}");
        last = apis[i % 2].append(&format!("message-{id}"), "message.enqueued", enqueued(&id)).await;
        let doc =
            apis[(i + 1) % 2].get_ok(&format!("/v1/messages/{id}?min_position={last}"), Duration::from_secs(15)).await;
        assert_eq!(doc["status"], json!("ENQUEUED"), "{doc}");
        ids.push(id);
    }

    // The holder of the messages view dies; the other takes over within seconds.
    let mut projectors = [p1, p2];
    let held = wait_for_holder(&[&projectors[0], &projectors[1]], "messages", Duration::from_secs(10)).await;
    projectors[held].kill();
    let killed = Instant::now();
    for (i, id) in ids.clone().iter().enumerate() {
        let sent = json!({ "message_id": id, "channel": "email", "provider": "ses" });
        last = apis[i % 2].append(&format!("message-{id}"), "message.sent", sent).await;
    }
    for i in 8..12 {
        let id = format!("m{i}");
        last = apis[i % 2].append(&format!("message-{id}"), "message.enqueued", enqueued(&id)).await;
        ids.push(id);
    }
    let other = 1 - held;
    let survivor = [&projectors[other]];
    wait_for_holder(&survivor, "messages", Duration::from_secs(10)).await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(10), "takeover took {took:?}:\n{}", projectors[other].log());
    for api in &apis {
        assert_view_is_a_fold_of_the_log(api, &ids, last).await;
    }

    // Each API process keeps its own integrity tree (its own data directory, its own key and
    // secret), fed from the shared log: both reach the log's size.
    for api in &apis {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, head) = api.get("/v1/integrity/head?fresh=true").await;
            if status == StatusCode::OK && head["tree_size"].as_u64().is_some_and(|n| n > last) {
                break;
            }
            assert!(Instant::now() < deadline, "the integrity tree of {} did not grow: {status} {head}", api.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // A parked event, listed through one API, replayed through the other: the projector
    // holding the lease carries the request out and both APIs list its outcome.
    let sent = json!({ "message_id": "x", "channel": "email", "provider": "ses" });
    let parked_at = apis[0].append("orders-1", "message.sent", sent).await;
    let ops = [Api::new(&a1, ADMIN_KEY), Api::new(&a2, ADMIN_KEY)];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, page) = ops[1].get("/v1/projections/messages/parked").await;
        if page["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["entry"]["position"] == json!(parked_at)))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the event was not parked: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, accepted) =
        ops[1].post("/v1/projections/messages/parked/replay", &json!({ "positions": [parked_at] })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    for op in &ops {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, page) = op.get("/v1/projections/messages/parked").await;
            let item = page["items"]
                .as_array()
                .and_then(|items| items.iter().find(|i| i["entry"]["position"] == json!(parked_at)).cloned());
            if item.as_ref().is_some_and(|i| i["replays"].as_array().is_some_and(|r| r.len() == 1)) {
                break;
            }
            assert!(Instant::now() < deadline, "the replay's outcome is not listed by {}: {page}", op.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // A rebuild requested through one API completes and serves through both.
    let (status, accepted) = Api::new(&a1, ADMIN_KEY).post("/v1/projections/messages/rebuild", &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let generation = accepted["generation"].as_u64().unwrap();
    let watcher = Api::new(&a2, ADMIN_KEY);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, progress) = watcher.get("/v1/projections/messages").await;
        if progress["generation"] == json!(generation) && progress["rebuild"].is_null() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuild did not serve through the other API: {progress}\n{}",
            projectors[other].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for api in &apis {
        let page = api.get_ok("/v1/messages?limit=200", Duration::from_secs(5)).await;
        assert_eq!(page["total"], json!(ids.len()), "the rebuilt generation serves everything: {page}");
    }
    drop((a1, a2, projectors));
}

/// Appends through two API processes while one is `kill -9`ed and then PostgreSQL restarts:
/// every acknowledged append is in the log exactly once (writers retry what was not
/// acknowledged with the same event id, which the store deduplicates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_append_survives_an_api_kill_and_a_postgres_restart() {
    let cluster = std::sync::Arc::new(PgCluster::start().expect("a PostgreSQL cluster"));
    let url = cluster.create_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut a1 = Proc::start(tmp.path(), "api-1", "api", &url);
    let a2 = Proc::start(tmp.path(), "api-2", "api", &url);
    let operator = Api::new(&a2, ADMIN_KEY);
    let (status, key) = operator.post("/v1/keys", &json!({ "tenant": "acme", "role": "writer", "name": "load" })).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let key = key["key"].as_str().unwrap().to_owned();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let bases = [a1.base.clone(), a2.base.clone()];
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (client, key, bases, stop) = (client.clone(), key.clone(), bases.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut n = 0u64;
            while !stop.is_cancelled() {
                let id = uuid::Uuid::now_v7();
                let body = json!({ "events": [{ "id": id, "type": "load.tick", "data": { "n": n } }] });
                // Until acknowledged: the same id, through either API (the first writers start
                // on api-1, which dies).
                for attempt in 0.. {
                    let base = &bases[(w + attempt) % 2];
                    let sent = client
                        .post(format!("{base}/v1/streams/load-{w}/events"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status() == StatusCode::CREATED) {
                        acknowledged.push(id);
                        break;
                    }
                    if stop.is_cancelled() && attempt > 200 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                n += 1;
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    a1.kill();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let restart = std::sync::Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || restart.restart().expect("restart PostgreSQL")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    stop.cancel();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(acknowledged.len() > 20, "the load ran: {} appends", acknowledged.len());

    // The whole log through the surviving API (a writer key appends only, the operator's reads
    // no tenant's data: a tenant admin key reads it).
    let (status, reader) =
        operator.post("/v1/keys", &json!({ "tenant": "acme", "role": "admin", "name": "check" })).await;
    assert_eq!(status, StatusCode::CREATED, "{reader}");
    let reader = Api::new(&a2, reader["key"].as_str().unwrap());
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut next = Some("/v1/events?limit=500".to_owned());
    while let Some(path) = next {
        let page = reader.get_ok(&path, Duration::from_secs(20)).await;
        for event in page["events"].as_array().unwrap() {
            if event["stream"].as_str().is_some_and(|s| s.starts_with("load-")) {
                *seen.entry(event["id"].as_str().unwrap().to_owned()).or_default() += 1;
            }
        }
        next = page["next"].as_str().map(str::to_owned);
    }
    for id in &acknowledged {
        assert_eq!(seen.get(&id.to_string()), Some(&1), "acknowledged append {id} present exactly once");
    }
    assert!(seen.values().all(|&n| n == 1), "no event twice");
    drop(a2);
}

/// A projector process holding both views and two API processes on a throwaway PostgreSQL
/// cluster, sharing a throwaway Redis for invalidations, and an admin key of tenant `acme`.
/// Fields drop in order: the processes before Redis and the cluster they use.
struct RedisDeployment {
    p1: Proc,
    a1: Proc,
    a2: Proc,
    key: String,
    _redis: annals_projectors::invalidation::redis::testing::RedisServer,
    _cluster: PgCluster,
    _tmp: tempfile::TempDir,
}

impl RedisDeployment {
    async fn start(key_name: &str) -> RedisDeployment {
        let cluster = PgCluster::start().expect("a PostgreSQL cluster");
        let url = cluster.create_database().await;
        let redis = annals_projectors::invalidation::redis::testing::RedisServer::start().expect("redis-server");
        let env = [("ANNALS_INVALIDATIONS__REDIS_URL", redis.url())];
        let tmp = tempfile::tempdir().unwrap();
        let p1 = Proc::start_with(tmp.path(), "projector-1", "projector", &url, &env);
        for view in ["messages", "audit"] {
            wait_for_holder(&[&p1], view, Duration::from_secs(15)).await;
        }
        let a1 = Proc::start_with(tmp.path(), "api-1", "api", &url, &env);
        let a2 = Proc::start_with(tmp.path(), "api-2", "api", &url, &env);
        let body = json!({ "tenant": "acme", "role": "admin", "name": key_name });
        let (status, key) = Api::new(&a1, ADMIN_KEY).post("/v1/keys", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let key = key["key"].as_str().unwrap().to_owned();
        RedisDeployment { p1, a1, a2, key, _redis: redis, _cluster: cluster, _tmp: tmp }
    }
}

/// Cache invalidations across processes through Redis (issue 15): an API process caches a
/// message's answer; the change, appended through another API process and projected by a
/// projector process, reaches the first one's cache through the Redis stream, so its next read
/// (without `min_position`, which skips the cache) shows the change — a cache that missed the
/// invalidation would serve the old answer for its whole TTL (300 s) — and its
/// `/v1/invalidations` feed carries the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_process_s_cache_is_invalidated_through_redis() {
    let d = RedisDeployment::start("redis").await;
    let (p1, a1) = (&d.p1, &d.a1);
    let (reader, writer) = (Api::new(&d.a1, &d.key), Api::new(&d.a2, &d.key));

    let last = writer.append("message-m1", "message.enqueued", enqueued("m1")).await;
    reader.get_ok(&format!("/v1/messages/m1?min_position={last}"), Duration::from_secs(15)).await;
    // Cached by the reader: the second read is a hit.
    for _ in 0..2 {
        let doc = reader.get_ok("/v1/messages/m1", Duration::from_secs(5)).await;
        assert_eq!(doc["status"], json!("ENQUEUED"), "{doc}");
    }
    let metrics = reqwest::get(format!("{}/metrics", a1.base)).await.unwrap().text().await.unwrap();
    let hits: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("annals_cache_hits_total") && l.contains("messages"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(hits >= 1.0, "the reader's cache served nothing, so the test would prove nothing:\n{metrics}");

    let mut feed = support::SseReader::from_response(
        reader
            .client
            .get(format!("{}/v1/invalidations?view=messages", reader.base))
            .bearer_auth(&reader.key)
            .send()
            .await
            .expect("open the feed"),
    );
    let sent = json!({ "message_id": "m1", "channel": "email", "provider": "ses" });
    let changed = writer.append("message-m1", "message.sent", sent).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, doc) = reader.get("/v1/messages/m1").await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        if doc["status"] == json!("SENT") {
            break;
        }
        assert!(Instant::now() < deadline, "the reader still serves the cached answer: {doc}\n{}", a1.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), feed.frame()).await.expect("an invalidation");
        if frame.comment {
            continue;
        }
        let data: Value = serde_json::from_str(&frame.data).unwrap();
        let names_m1 =
            data["keys"].as_array().is_some_and(|k| k.contains(&json!({ "kind": "message", "value": "m1" })));
        if names_m1 && data["position"].as_u64() >= Some(changed) {
            break;
        }
    }
    // The projector process, where the Redis sink's queue lives, shows it in its `/metrics`.
    let metrics = reqwest::get(format!("{}/metrics", p1.base)).await.unwrap().text().await.unwrap();
    let delivered: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("annals_invalidation_delivered{sink=\"redis\"} ")?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no Redis sink figures in the projector's metrics:\n{metrics}"));
    assert!(delivered >= 2.0, "the projector's Redis sink delivered {delivered}:\n{metrics}");
    assert!(metrics.contains("annals_invalidation_overflows{sink=\"redis\"} 0"), "{metrics}");
}

/// Issue 15's delay figure through Redis, across processes (run with `ANNALS_REDIS_DELAY=N`;
/// without it the test returns at once): one client appends a new message through one API
/// process every 25 ms; for each, the delay from the `201` to the invalidation arriving on
/// another API process's `GET /v1/invalidations` (which follows the Redis stream the projector
/// process's sink writes), against the view's lag as a client of that other process sees it
/// (`?min_position=`), in the same run. Prints the percentiles for BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delay_through_redis_against_the_views_lag() {
    let Some(n) = std::env::var("ANNALS_REDIS_DELAY").ok().and_then(|v| v.parse::<usize>().ok()) else {
        return;
    };
    let d = RedisDeployment::start("delay").await;
    let (reader, writer) = (Api::new(&d.a1, &d.key), Api::new(&d.a2, &d.key));
    let response = reqwest::Client::new()
        .get(format!("{}/v1/invalidations?view=messages", reader.base))
        .bearer_auth(&reader.key)
        .send()
        .await
        .expect("open the feed");
    let mut feed = support::SseReader::from_response(response);
    let heard = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<String, Instant>::new()));
    let listener = {
        let heard = std::sync::Arc::clone(&heard);
        tokio::spawn(async move {
            loop {
                let frame = feed.frame().await;
                if frame.comment {
                    continue;
                }
                let now = Instant::now();
                let data: Value = serde_json::from_str(&frame.data).unwrap();
                for key in data["keys"].as_array().into_iter().flatten().filter(|k| k["kind"] == "message") {
                    heard.lock().unwrap().entry(key["value"].as_str().unwrap().to_owned()).or_insert(now);
                }
            }
        })
    };
    let (mut acked, mut lag) = (Vec::new(), Vec::new());
    for i in 0..n {
        let id = format!("d{i}");
        let at = writer.append(&format!("message-{id}"), "message.enqueued", enqueued(&id)).await;
        let ack = Instant::now();
        acked.push((id.clone(), ack));
        reader.get_ok(&format!("/v1/messages/{id}?min_position={at}"), Duration::from_secs(30)).await;
        lag.push(ack.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    support::report_invalidation_delay("through redis", &acked, lag, &heard).await;
    listener.abort();
}
