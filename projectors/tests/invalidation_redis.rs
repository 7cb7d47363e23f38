//! The Redis invalidation backend against a real `redis-server` (Debian's; `scripts/test.sh`
//! installs it): the conformance suite, then what only Redis promises (issue 15) — the affected
//! keys are gone and nobody else's, the stream and the channel carry each invalidation once, a
//! re-publish after a crash adds nothing, and a Redis killed mid-run loses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_projectors::invalidation::redis::testing::{redis, RedisServer};
use annals_projectors::invalidation::redis::{
    RedisConfig, RedisFeed, RedisHealth, RedisOptions, RedisProbe, RedisSink,
};
use annals_projectors::invalidation::testsuite::{keys, position, take, Backend};
use annals_projectors::invalidation::{
    FlushReason, Invalidation, InvalidationError, InvalidationFeed, InvalidationSink, KeyKind, Scope,
};
use futures::StreamExt;
use redis::AsyncCommands;

fn options(url: &str, maxlen: u64) -> RedisOptions {
    RedisOptions {
        maxlen,
        timeout: Duration::from_millis(500),
        block: Duration::from_millis(500),
        ..RedisOptions::new(url)
    }
}

fn config(url: &str, maxlen: u64) -> RedisConfig {
    RedisConfig::new(&options(url, maxlen)).expect("a valid config")
}

async fn make(retain: usize) -> Backend {
    let server = RedisServer::start().expect("start redis-server");
    let config = config(&server.url(), retain as u64);
    Backend {
        sink: Arc::new(RedisSink::new(config.clone()).expect("sink")),
        feed: Arc::new(RedisFeed::new(config)),
        guard: Box::new(server),
    }
}

annals_projectors::invalidation_test_suite!(make);

async fn client(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test server")
}

/// The cache keys an application would have for `tenant`'s message `id` (default templates).
fn cache_keys(tenant: &str, id: &str) -> [String; 2] {
    let enc = annals_projectors::invalidation::redis::encode;
    [
        format!("annals:{}:message:{}", enc(tenant), enc(id)),
        format!("annals:{}:recipient:{}", enc(tenant), enc(&format!("rcpt-{id}"))),
    ]
}

async fn fill(con: &mut redis::aio::MultiplexedConnection, keys: &[String]) {
    for key in keys {
        let () = con.set(key, "cached").await.expect("set");
    }
}

async fn existing(con: &mut redis::aio::MultiplexedConnection, keys: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for key in keys {
        let exists: bool = con.exists(key).await.expect("exists");
        if exists {
            out.push(key.clone());
        }
    }
    out
}

async fn entries(con: &mut redis::aio::MultiplexedConnection, view: &str) -> Vec<(String, Invalidation)> {
    let reply: redis::streams::StreamRangeReply =
        con.xrange_all(format!("annals:invalidations:{view}")).await.expect("xrange");
    reply
        .ids
        .into_iter()
        .map(|entry| {
            let json: String = entry.get("invalidation").expect("an invalidation field");
            (entry.id, serde_json::from_str(&json).expect("an invalidation"))
        })
        .collect()
}

const TENANTS: &[&str] = &["a", "a*", "a:message:m1", "[a]", "?", "é\u{202e}", "{tenant}"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_drops_the_keys_of_its_tenant_and_nobody_else_s() {
    let server = RedisServer::start().expect("start redis-server");
    let mut con = client(&server).await;
    let mut pubsub = redis::Client::open(server.url()).expect("url").get_async_pubsub().await.expect("pubsub");
    pubsub.subscribe("annals:invalidations").await.expect("subscribe");
    let all: Vec<String> =
        TENANTS.iter().flat_map(|t| ["m1", "*", "m2"].iter().flat_map(|id| cache_keys(t, id))).collect();
    fill(&mut con, &all).await;
    let sink = RedisSink::new(config(&server.url(), 1000)).expect("sink");

    // Every other tenant's invalidation first (of an id nobody cached), then tenant "a"'s, whose
    // last id spelled raw after "a" would name tenant "a:message:m1"'s message "m2".
    let others: Vec<Invalidation> = TENANTS[1..].iter().map(|t| keys(t, 4, &["zz"])).collect();
    sink.deliver(&others).await.expect("deliver");
    let before: Vec<_> = entries(&mut con, "messages").await;
    let theirs = keys("a", 9, &["m1", "*", "m1:message:m2"]);
    sink.deliver(std::slice::from_ref(&theirs)).await.expect("deliver");

    let gone: Vec<String> = [cache_keys("a", "m1"), cache_keys("a", "*")].concat();
    let expected: Vec<String> = all.iter().filter(|k| !gone.contains(k)).cloned().collect();
    assert_eq!(existing(&mut con, &all).await, expected, "exactly the invalidated keys are gone");

    let after = entries(&mut con, "messages").await;
    assert_eq!(after[..before.len()], before[..], "other tenants' entries are untouched");
    assert_eq!(after.len(), TENANTS.len());
    assert_eq!(after.last().expect("an entry").1, theirs);
    assert_eq!(
        after.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>()[..2],
        ["4-1", "4-2"],
        "ids are <position>-<n>"
    );

    let mut messages = pubsub.on_message();
    for (_, expected) in &after {
        let msg =
            tokio::time::timeout(Duration::from_secs(5), messages.next()).await.expect("a message").expect("open");
        let got: Invalidation = serde_json::from_slice(msg.get_payload_bytes()).expect("json");
        assert_eq!(&got, expected, "the channel carries each invalidation in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_view_drops_every_key_of_its_tenant_and_no_other() {
    let server = RedisServer::start().expect("start redis-server");
    let mut con = client(&server).await;
    let ids = ["m1", "*", "x:y"];
    let messages: Vec<String> = TENANTS.iter().flat_map(|t| ids.iter().flat_map(|id| cache_keys(t, id))).collect();
    let enc = annals_projectors::invalidation::redis::encode;
    let audit: Vec<String> =
        TENANTS.iter().map(|t| format!("annals:{}:audit_target:{}", enc(t), enc("order:1"))).collect();
    let foreign = vec!["annals:other".to_owned(), "app:a:message:m1".to_owned()];
    fill(&mut con, &[messages.clone(), audit.clone(), foreign.clone()].concat()).await;
    let sink = RedisSink::new(config(&server.url(), 1000)).expect("sink");

    for victim in ["a*", "a", "[a]"] {
        let flush = Invalidation {
            tenant: Some(victim.to_owned()),
            view: "messages".to_owned(),
            position: position(5),
            scope: Scope::WholeView { reason: FlushReason::Overflow },
        };
        sink.deliver(&[flush]).await.expect("deliver");
        let victims: Vec<String> = ids.iter().flat_map(|id| cache_keys(victim, id)).collect();
        assert!(existing(&mut con, &victims).await.is_empty(), "{victim:?}'s message keys are gone");
    }
    let survivors: Vec<String> = TENANTS
        .iter()
        .filter(|t| !["a*", "a", "[a]"].contains(t))
        .flat_map(|t| ids.iter().flat_map(|id| cache_keys(t, id)))
        .collect();
    assert_eq!(existing(&mut con, &messages).await, survivors, "no other tenant's key was dropped");
    assert_eq!(existing(&mut con, &audit).await, audit, "another view's keys stay");

    let everyone = Invalidation {
        tenant: None,
        view: "messages".to_owned(),
        position: position(6),
        scope: Scope::WholeView { reason: FlushReason::Rebuild },
    };
    sink.deliver(std::slice::from_ref(&everyone)).await.expect("deliver");
    assert!(existing(&mut con, &messages).await.is_empty(), "a flush of every tenant drops every message key");
    assert_eq!(existing(&mut con, &[audit.clone(), foreign.clone()].concat()).await, [audit, foreign].concat());
    assert_eq!(entries(&mut con, "messages").await.last().expect("an entry").1, everyone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republish_after_a_crash_adds_no_entry_and_drops_no_refill() {
    let server = RedisServer::start().expect("start redis-server");
    let mut con = client(&server).await;
    let batch = vec![keys("a", 3, &["m1"]), keys("b", 3, &["m1"]), keys("a", 8, &["m2"])];
    let first = RedisSink::new(config(&server.url(), 1000)).expect("sink");
    assert_eq!(first.deliver_counted(&batch[..2]).await.expect("deliver").appended, 2);
    drop(first);

    // The process restarts; its dispatcher had not seen the answer, so it sends the whole batch.
    // Meanwhile a cache refilled a key from the view (already at position 3 or later).
    let refilled = cache_keys("a", "m1");
    fill(&mut con, &refilled).await;
    let second = RedisSink::new(config(&server.url(), 1000)).expect("sink");
    assert_eq!(second.checkpoint("messages").await.expect("checkpoint"), Some(position(3)), "the checkpoint survives");
    let counted = second.deliver_counted(&batch).await.expect("deliver again");
    assert_eq!((counted.appended, counted.duplicates), (1, 2));
    let again = second.deliver_counted(&batch).await.expect("and again");
    assert_eq!((again.appended, again.duplicates), (0, 3));
    let ids: Vec<String> = entries(&mut con, "messages").await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["3-1", "3-2", "8-1"], "one entry per invalidation");
    assert_eq!(existing(&mut con, &refilled).await, refilled, "a re-publish unlinks nothing");
    assert_eq!(second.checkpoint("messages").await.expect("checkpoint"), Some(position(8)));

    // Once trimmed away, an old invalidation is refused by the stream's order itself.
    let short = RedisSink::new(config(&server.url(), 10)).expect("sink");
    let later: Vec<Invalidation> = (10..400u64).map(|p| keys("c", p, &["m9"])).collect();
    short.deliver(&later).await.expect("deliver");
    let len: u64 = con.xlen("annals:invalidations:messages").await.expect("xlen");
    assert!(len < 200, "the stream was trimmed ({len} entries)");
    let old = short.deliver_counted(&batch[..1]).await.expect("a trimmed re-publish is no error");
    assert_eq!((old.appended, old.duplicates), (0, 1));
    assert_eq!(con.xlen::<_, u64>("annals:invalidations:messages").await.expect("xlen"), len);
}

/// Delivers `batch` as a dispatcher would: retrying transient failures with a short backoff.
async fn deliver_with_retry(sink: &RedisSink, batch: &[Invalidation]) -> u32 {
    let mut failures = 0;
    loop {
        match sink.deliver(batch).await {
            Ok(()) => return failures,
            Err(e) if e.is_transient() => {
                failures += 1;
                assert!(failures < 400, "redis did not come back: {e}");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("a permanent failure during an outage: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_loses_no_invalidation() {
    let server = Arc::new(RedisServer::start().expect("start redis-server"));
    let mut con = client(&server).await;
    let batches: Vec<Vec<Invalidation>> = (0..60u64)
        .map(|b| ["a", "b"].iter().map(|t| keys(t, 100 + b, &[&format!("m{b}"), "shared"])).collect())
        .collect();
    let all_keys: Vec<String> =
        (0..60u64).flat_map(|b| ["a", "b"].iter().flat_map(move |t| cache_keys(t, &format!("m{b}")))).collect();
    fill(&mut con, &all_keys).await;
    let sink = RedisSink::new(config(&server.url(), 10_000)).expect("sink");
    let feed = RedisFeed::new(config(&server.url(), 10_000));
    let mut follower = feed.follow("messages", Some(position(0))).await.expect("follow");

    let outage = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            server.kill();
            tokio::time::sleep(Duration::from_millis(700)).await;
            tokio::task::spawn_blocking(move || server.start_server()).await.expect("join").expect("restart");
        })
    };
    let mut failures = 0;
    for batch in &batches {
        failures += deliver_with_retry(&sink, batch).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    outage.await.expect("outage task");
    assert!(failures > 0, "the run never met the outage (it must overlap the kill)");

    let mut con = client(&server).await;
    assert!(existing(&mut con, &all_keys).await.is_empty(), "every affected key is eventually gone");
    let got: Vec<Invalidation> = entries(&mut con, "messages").await.into_iter().map(|(_, i)| i).collect();
    assert_eq!(got, batches.concat(), "every invalidation once, in order");
    let restarted = RedisSink::new(config(&server.url(), 10_000)).expect("sink");
    assert_eq!(
        restarted.checkpoint("messages").await.expect("checkpoint"),
        Some(position(159)),
        "the checkpoint resumes"
    );

    // The follower's stream ended with a transient error; resuming after what it got, it
    // receives every invalidation exactly as delivered.
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < got.len() {
        assert!(Instant::now() < deadline, "the follower did not catch up: {} of {}", received.len(), got.len());
        match tokio::time::timeout(Duration::from_secs(5), follower.next()).await {
            Ok(Some(Ok(invalidation))) => received.push(invalidation),
            Ok(Some(Err(e))) => {
                assert!(e.is_transient(), "a dead redis is a transient end: {e}");
                // A position's entries arrive together: resuming after the last one received
                // misses nothing.
                let after = received.last().map(|i: &Invalidation| i.position).unwrap_or(position(0));
                follower = loop {
                    match feed.follow("messages", Some(after)).await {
                        Ok(stream) => break stream,
                        Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(50)).await,
                        Err(e) => panic!("{e}"),
                    }
                };
            }
            Ok(None) => panic!("the follower's stream ended without an error"),
            Err(_) => panic!("the follower got nothing for 5 s after {} invalidations", received.len()),
        }
    }
    assert_eq!(received, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_and_tcp_urls_both_work() {
    let unix = RedisServer::start().expect("start redis-server");
    let tcp = RedisServer::start_tcp().expect("start redis-server on a port");
    let socket = unix.socket().display().to_string();
    for url in [format!("unix://{socket}"), format!("redis+unix://{socket}"), tcp.url()] {
        assert!(
            url.starts_with("unix://") || url.starts_with("redis+unix://") || url.starts_with("redis://127.0.0.1:")
        );
        let sink = RedisSink::new(config(&url, 100)).expect("sink");
        let code = 10 + url.len() as u64;
        sink.deliver(&[keys("a", code, &["m1"])]).await.unwrap_or_else(|e| panic!("deliver through {url}: {e}"));
        assert_eq!(sink.checkpoint("messages").await.expect("checkpoint"), Some(position(code)), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_transient_or_permanent_as_a_retry_would_find() {
    let server = RedisServer::start().expect("start redis-server");
    // Nothing listens on this socket: unavailable, quickly, and the sink can be made anyway.
    let missing = format!("unix://{}/nobody.sock", server.dir().display());
    let sink = RedisSink::new(config(&missing, 100)).expect("a sink for a redis that is not there yet");
    let started = Instant::now();
    let error = sink.deliver(&[keys("a", 1, &["m1"])]).await.expect_err("nobody listens");
    assert!(error.is_transient(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "a dead redis must fail fast: {:?}", started.elapsed());
    let probe = RedisProbe::new(&config(&missing, 100)).expect("probe");
    assert!(matches!(probe.check().await, RedisHealth::Degraded { .. }));
    assert_eq!(RedisProbe::new(&config(&server.url(), 100)).expect("probe").check().await, RedisHealth::Up);

    // The view's stream name holds a string: no retry changes that.
    let mut con = client(&server).await;
    let () = con.set("annals:invalidations:messages", "not a stream").await.expect("set");
    let sink = RedisSink::new(config(&server.url(), 100)).expect("sink");
    let error = sink.deliver(&[keys("a", 1, &["m1"])]).await.expect_err("wrong type");
    assert!(matches!(error, InvalidationError::Refused { .. }), "{error}");

    // Templates that could let a tenant's value name another's key are refused, naming the option.
    let mut templates = BTreeMap::new();
    templates.insert(KeyKind::Message, "annals:{tenant}{value}".to_owned());
    let bad = RedisOptions { templates, ..RedisOptions::new(server.url()) };
    assert_eq!(RedisConfig::new(&bad).expect_err("refused").option, "templates.message");
    let bad = RedisOptions { url: "http://localhost".to_owned(), ..RedisOptions::new(server.url()) };
    assert_eq!(RedisConfig::new(&bad).expect_err("refused").option, "url");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_ends_with_a_transient_error_when_redis_dies_and_health_says_degraded() {
    let server = RedisServer::start().expect("start redis-server");
    let config = config(&server.url(), 100);
    let sink = RedisSink::new(config.clone()).expect("sink");
    let probe = RedisProbe::new(&config).expect("probe");
    sink.deliver(&[keys("a", 1, &["m1"])]).await.expect("deliver");
    let mut follower = RedisFeed::new(config).follow("messages", None).await.expect("follow");
    server.kill();
    match tokio::time::timeout(Duration::from_secs(10), follower.next()).await.expect("an answer") {
        Some(Err(e)) => assert!(e.is_transient(), "{e}"),
        other => panic!("a dead redis must end the feed with an error, got {other:?}"),
    }
    assert!(tokio::time::timeout(Duration::from_secs(5), follower.next()).await.expect("an end").is_none());
    assert!(matches!(probe.check().await, RedisHealth::Degraded { .. }), "a dead redis is degraded");
    let server = tokio::task::spawn_blocking(move || {
        server.start_server().expect("restart");
        server
    })
    .await
    .expect("join");
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe.check().await != RedisHealth::Up {
        assert!(Instant::now() < deadline, "the probe did not see redis come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_fails_has_given_each_position_whole() {
    let server = RedisServer::start().expect("start redis-server");
    let config = config(&server.url(), 10_000);
    let sink = RedisSink::new(config.clone()).expect("sink");
    // One entry, then pairs: the feed's first read (512 entries) ends inside a pair.
    let mut delivered = vec![keys("a", 1, &["m"])];
    delivered.extend((2..300u64).flat_map(|p| [keys("a", p, &["m"]), keys("b", p, &["m"])]));
    sink.deliver(&delivered).await.expect("deliver");
    let mut follower = RedisFeed::new(config).follow("messages", Some(position(0))).await.expect("follow");
    let mut received = take(&mut follower, 500).await;
    server.kill();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), follower.next()).await.expect("an answer") {
            Some(Ok(invalidation)) => received.push(invalidation),
            Some(Err(e)) => {
                assert!(e.is_transient(), "{e}");
                break;
            }
            None => panic!("the feed ended without an error"),
        }
    }
    let last = received.last().expect("something").position;
    assert_eq!(
        received.iter().filter(|i| i.position == last).count(),
        2,
        "the last position before the error came whole ({} received)",
        received.len()
    );
    assert_eq!(received[..], delivered[..received.len()]);
}
