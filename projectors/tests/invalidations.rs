//! Invalidations projected from the log (issue 15), against the real embedded store and tantivy
//! views hosted as a process hosts them: after appends, each tenant's invalidation carries its
//! own keys at the batch's position and is handed out only once the view shows the change; a
//! rebuild hands out exactly one whole-view invalidation at its switch and nothing per document;
//! a slow sink's queue collapses into whole-view invalidations without slowing the projection;
//! the in-process feed gives a follower whose resume point was trimmed a flush first.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals_projectors::host::tantivy::TantivyHosting;
use annals_projectors::invalidation::memory::MemoryInvalidations;
use annals_projectors::invalidation::queue::{Invalidations, SinkQueue};
use annals_projectors::invalidation::{
    dispatch, FlushReason, InvalidatedKey, Invalidation, InvalidationError, InvalidationFeed, InvalidationSink,
    KeyKind, Scope,
};
use annals_projectors::{
    control, AuditProjection, HostedView, MessagesProjection, OpenView, Projection, ProjectorConfig, ViewHosting,
};
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{EventData, EventStore, ExpectedRevision, Position, StreamId};
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// A sink that records what it is given, checks on each delivery that the view already shows
/// it (the invalidation's position is within the serving generation's checkpoint), and takes
/// `delay` per delivery.
#[derive(Debug, Default)]
struct Recording {
    got: Mutex<Vec<Invalidation>>,
    early: Mutex<Vec<String>>,
    views: Mutex<Vec<Arc<HostedView>>>,
    delay: Duration,
}

#[async_trait]
impl InvalidationSink for Recording {
    fn name(&self) -> &'static str {
        "recording"
    }

    async fn deliver(&self, batch: &[Invalidation]) -> Result<(), InvalidationError> {
        let views = self.views.lock().unwrap().clone();
        for i in batch {
            if let Some(view) = views.iter().find(|v| v.name() == i.view) {
                let seen = view.checkpoint().await.unwrap().map(|c| c.position);
                if seen < Some(i.position) {
                    self.early.lock().unwrap().push(format!("{i:?} handed out at checkpoint {seen:?}"));
                }
            }
        }
        tokio::time::sleep(self.delay).await;
        self.got.lock().unwrap().extend(batch.iter().cloned());
        Ok(())
    }

    async fn checkpoint(&self, _view: &str) -> Result<Option<Position>, InvalidationError> {
        Ok(None)
    }
}

struct Hosted {
    store: EmbeddedStore,
    messages: Arc<HostedView>,
    audit: Arc<HostedView>,
    queue: Arc<SinkQueue>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

async fn host(sink: Arc<Recording>, capacity: usize) -> Hosted {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(dir.path().join("store"))).await.unwrap();
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let queue = SinkQueue::new("recording", capacity);
    let out = Invalidations::new(vec![Arc::clone(&queue)]);
    let shutdown = CancellationToken::new();
    let config = ProjectorConfig { flush_interval: Duration::from_millis(20), ..ProjectorConfig::default() };
    let hosting = |name: &str, schema| -> Arc<dyn ViewHosting> {
        Arc::new(TantivyHosting::open(&dir.path().join("views").join(name), schema).unwrap())
    };
    let m = OpenView::open(hosting("messages", MessagesProjection.schema()), MessagesProjection).await.unwrap();
    let a = OpenView::open(hosting("audit", AuditProjection.schema()), AuditProjection).await.unwrap();
    let (messages, t1) = m.invalidations(out.clone()).start(Arc::clone(&shared), config.clone(), shutdown.clone());
    let (audit, t2) = a.invalidations(out).start(shared, config, shutdown.clone());
    *sink.views.lock().unwrap() = vec![Arc::clone(&messages), Arc::clone(&audit)];
    let sink_dyn: Arc<dyn InvalidationSink> = sink;
    let t3 = dispatch::start(sink_dyn, Arc::clone(&queue), std::future::ready(Vec::new()), shutdown.clone());
    Hosted { store, messages, audit, queue, shutdown, tasks: vec![t1, t2, t3], _dir: dir }
}

impl Hosted {
    async fn append(&self, stream: &str, event_type: &str, data: Value) -> Position {
        let event = EventData::json(event_type, &data).unwrap();
        let stream = StreamId::new(stream).unwrap();
        self.store.append_to_stream(&stream, ExpectedRevision::Any, vec![event]).await.unwrap().last_position
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
        drop((self.messages, self.audit));
        self.store.close().await.unwrap();
    }
}

async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn enqueued(id: &str) -> Value {
    json!({ "message_id": id, "recipient": { "id": format!("user-{id}"), "email": format!("{id}@example.com") },
            "channel": "email", "subject": "s" })
}

fn audit(target: &str, actor: &str) -> Value {
    json!({ "actor": { "id": actor, "type": "api_key" }, "action": "api_key.created", "crud": "create",
            "target": { "type": "api_key", "id": target }, "outcome": "success", "occurred_at": "2026-11-23T17:43:00Z" })
}

fn key(kind: KeyKind, value: &str) -> InvalidatedKey {
    InvalidatedKey { kind, value: value.to_owned() }
}

fn keys_of(got: &[Invalidation], tenant: &str, view: &str) -> BTreeSet<InvalidatedKey> {
    let mut keys = BTreeSet::new();
    for i in got.iter().filter(|i| i.tenant.as_deref() == Some(tenant) && i.view == view) {
        if let Scope::Keys { keys: k } = &i.scope {
            assert!(k.windows(2).all(|w| w[0] < w[1]), "keys sorted without duplicates: {k:?}");
            keys.extend(k.iter().cloned());
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_hand_out_each_tenants_keys_at_the_batchs_position_once_visible() {
    let sink = Arc::new(Recording::default());
    let h = host(Arc::clone(&sink), 1024).await;
    h.append("acme/message-m1", "message.enqueued", enqueued("m1")).await;
    h.append("other/message-m2", "message.enqueued", enqueued("m2")).await;
    let a = h.append("acme/audit-api_key-k1", "audit.recorded", audit("k1", "key_9")).await;
    let last = h
        .append("acme/message-m1", "message.sent", json!({ "message_id": "m1", "channel": "email", "provider": "ses" }))
        .await;
    until("every invalidation", Duration::from_secs(30), || {
        let got = sink.got.lock().unwrap();
        got.iter().any(|i| i.view == "messages" && i.position >= last) && got.iter().any(|i| i.view == "audit")
    })
    .await;
    let got = sink.got.lock().unwrap().clone();
    assert_eq!(sink.early.lock().unwrap().clone(), Vec::<String>::new(), "handed out before visible");
    let expect = |v: &[InvalidatedKey]| v.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(
        keys_of(&got, "acme", "messages"),
        expect(&[
            key(KeyKind::Message, "m1"),
            key(KeyKind::Recipient, "m1@example.com"),
            key(KeyKind::Recipient, "user-m1")
        ])
    );
    assert_eq!(
        keys_of(&got, "other", "messages"),
        expect(&[
            key(KeyKind::Message, "m2"),
            key(KeyKind::Recipient, "m2@example.com"),
            key(KeyKind::Recipient, "user-m2")
        ])
    );
    assert_eq!(
        keys_of(&got, "acme", "audit"),
        expect(&[key(KeyKind::AuditTarget, "api_key:k1"), key(KeyKind::Actor, "key_9")])
    );
    assert!(keys_of(&got, "other", "audit").is_empty(), "nothing of acme's audit under other");
    for i in &got {
        // One per tenant and batch, at the batch's last position: within what the view applied.
        assert!(i.tenant.is_some() && matches!(i.scope, Scope::Keys { .. }), "{i:?}");
        let at =
            |p: Position| got.iter().filter(|j| j.view == i.view && j.position == p && j.tenant == i.tenant).count();
        assert_eq!(at(i.position), 1, "one invalidation per tenant and batch: {got:?}");
    }
    let audit_inv = got.iter().find(|i| i.view == "audit").unwrap();
    assert_eq!(audit_inv.position, a, "the audit view's batch ends at its one event");
    let positions: Vec<Position> = got.iter().filter(|i| i.view == "messages").map(|i| i.position).collect();
    assert!(positions.windows(2).all(|w| w[0] <= w[1]), "position order: {positions:?}");
    assert_eq!(*positions.last().unwrap(), last);
    h.stop().await;
}

/// A parked event changes no document, but answers read from the log beside it (a message's
/// history) now hold it: the message's keys are invalidated at its batch's position, also when
/// the message has no document yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_event_invalidates_the_keys_of_the_document_it_could_not_change() {
    let sink = Arc::new(Recording::default());
    let h = host(Arc::clone(&sink), 1024).await;
    let first = h.append("acme/message-p1", "message.enqueued", enqueued("p1")).await;
    until("the enqueued message's invalidation", Duration::from_secs(30), || {
        sink.got.lock().unwrap().iter().any(|i| i.view == "messages" && i.position >= first)
    })
    .await;
    // `channel` is not a channel's name: the messages projection cannot apply it and parks it.
    let bad = h.append("acme/message-p1", "message.sent", json!({ "message_id": "p1", "channel": 42 })).await;
    until("the parked event's invalidation", Duration::from_secs(30), || {
        sink.got.lock().unwrap().iter().any(|i| i.view == "messages" && i.position >= bad)
    })
    .await;
    let got = sink.got.lock().unwrap().clone();
    let after: Vec<&Invalidation> = got.iter().filter(|i| i.view == "messages" && i.position >= bad).collect();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].tenant.as_deref(), Some("acme"));
    let Scope::Keys { keys } = &after[0].scope else { panic!("keys: {after:?}") };
    assert!(keys.contains(&key(KeyKind::Message, "p1")), "{keys:?}");
    assert_eq!(h.messages.serving().status.snapshot().parked, 1, "the event was parked, not applied");
    // A message whose first event is parked has no document: its key names it all the same.
    let orphan = h.append("acme/message-p2", "message.sent", json!({ "message_id": "p2", "channel": 42 })).await;
    until("the first event's invalidation", Duration::from_secs(30), || {
        sink.got.lock().unwrap().iter().any(|i| i.view == "messages" && i.position >= orphan)
    })
    .await;
    let got = sink.got.lock().unwrap().clone();
    let last = got.iter().rev().find(|i| i.view == "messages").unwrap();
    assert_eq!(last.scope, Scope::Keys { keys: vec![key(KeyKind::Message, "p2")] }, "{last:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_hands_out_one_whole_view_invalidation_at_its_switch_and_nothing_per_document() {
    let sink = Arc::new(Recording::default());
    let h = host(Arc::clone(&sink), 1024).await;
    let mut last = Position::from_code(0);
    for i in 0..15 {
        last = h.append(&format!("acme/message-r{i}"), "message.enqueued", enqueued(&format!("r{i}"))).await;
    }
    until("the live generation's invalidations", Duration::from_secs(30), || {
        sink.got.lock().unwrap().iter().any(|i| i.position >= last)
    })
    .await;
    let before = sink.got.lock().unwrap().len();
    let shared: Arc<dyn EventStore> = Arc::new(h.store.clone());
    control::request_rebuild(shared.as_ref(), MessagesProjection::NAME).await.unwrap();
    let messages = Arc::clone(&h.messages);
    until("the switch", Duration::from_secs(40), || messages.serving().number == 2).await;
    until("the switch's invalidation", Duration::from_secs(20), || sink.got.lock().unwrap().len() > before).await;
    // The new generation is live now: a later append is handed out per key again.
    let after = h.append("acme/message-r99", "message.enqueued", enqueued("r99")).await;
    until("the new generation's invalidations", Duration::from_secs(30), || {
        sink.got.lock().unwrap().iter().any(|i| i.position >= after)
    })
    .await;
    let got = sink.got.lock().unwrap().clone();
    let since: Vec<&Invalidation> = got[before..].iter().collect();
    let whole: Vec<&&Invalidation> = since.iter().filter(|i| matches!(i.scope, Scope::WholeView { .. })).collect();
    assert_eq!(whole.len(), 1, "{since:?}");
    assert_eq!(whole[0].scope, Scope::WholeView { reason: FlushReason::Rebuild });
    assert_eq!(whole[0].tenant, None);
    assert_eq!(whole[0].view, "messages");
    assert!(whole[0].position >= last);
    let keyed: Vec<&&Invalidation> = since.iter().filter(|i| matches!(i.scope, Scope::Keys { .. })).collect();
    assert_eq!(keyed.len(), 1, "only the append after the switch, nothing of the rebuild's documents: {since:?}");
    assert_eq!(keyed[0].position, after);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sinks_queue_collapses_into_whole_view_invalidations_and_the_projection_goes_on() {
    let sink = Arc::new(Recording { delay: Duration::from_millis(500), ..Recording::default() });
    let h = host(Arc::clone(&sink), 4).await;
    let started = Instant::now();
    let mut last = Position::from_code(0);
    let mut at = Vec::new();
    for i in 0..40 {
        let tenant = if i % 2 == 0 { "acme" } else { "other" };
        last = h.append(&format!("{tenant}/message-s{i}"), "message.enqueued", enqueued(&format!("s{i}"))).await;
        at.push(last);
        // Separate batches (the flush interval is 20 ms).
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let messages = Arc::clone(&h.messages);
    until("the projection applies everything", Duration::from_secs(30), || messages.serving().status.has_applied(last))
        .await;
    let projected = started.elapsed();
    assert!(h.queue.stats.overflows.load(std::sync::atomic::Ordering::Relaxed) > 0, "the queue overflowed");
    // 40 batches at 500 ms per delivery would take 20 s: the projection did not wait for them.
    assert!(projected < Duration::from_secs(12), "{projected:?}");
    until("the sink catches up", Duration::from_secs(30), || {
        sink.got.lock().unwrap().iter().any(|i| i.position >= last)
    })
    .await;
    let got = sink.got.lock().unwrap().clone();
    let overflow = Scope::WholeView { reason: FlushReason::Overflow };
    assert!(got.iter().any(|i| i.scope == overflow), "a whole-view invalidation replaced the keys: {got:?}");
    // Nothing lost: every message is named by a key, or covered by a flush of its tenant (or of
    // every tenant) at or after its position.
    for (i, &appended) in at.iter().enumerate() {
        let tenant = if i % 2 == 0 { "acme" } else { "other" };
        let id = format!("s{i}");
        let named = keys_of(&got, tenant, "messages").contains(&key(KeyKind::Message, &id));
        let flushed = got.iter().any(|j| {
            j.scope == overflow && (j.tenant.is_none() || j.tenant.as_deref() == Some(tenant)) && j.position >= appended
        });
        assert!(named || flushed, "message {id} of {tenant} is neither invalidated nor flushed: {got:?}");
    }
    h.stop().await;
}

fn inv(tenant: &str, at: u64) -> Invalidation {
    Invalidation {
        tenant: Some(tenant.into()),
        view: "messages".into(),
        position: Position::from_code(at),
        scope: Scope::Keys { keys: vec![key(KeyKind::Message, &format!("m{at}"))] },
    }
}

#[tokio::test]
async fn the_memory_feed_resumes_from_its_ring_and_flushes_a_resume_point_it_trimmed() {
    let memory = MemoryInvalidations::new(3);
    let feed: Arc<dyn InvalidationFeed> = Arc::new(memory.clone());
    let mut live = feed.follow("messages", None).await.unwrap();
    memory.deliver(&(1..=5).map(|at| inv("acme", at)).collect::<Vec<_>>()).await.unwrap();
    for at in 1..=5 {
        assert_eq!(live.next().await.unwrap().unwrap().position, Position::from_code(at));
    }
    assert_eq!(memory.checkpoint("messages").await.unwrap(), Some(Position::from_code(5)));
    // Retained: 3, 4, 5. After 3: 4 and 5, no flush.
    let mut resumed = feed.follow("messages", Some(Position::from_code(3))).await.unwrap();
    assert_eq!(resumed.next().await.unwrap().unwrap(), inv("acme", 4));
    assert_eq!(resumed.next().await.unwrap().unwrap(), inv("acme", 5));
    // After 1: 2 was trimmed away, so a flush of every tenant comes first.
    let mut trimmed = feed.follow("messages", Some(Position::from_code(1))).await.unwrap();
    let first = trimmed.next().await.unwrap().unwrap();
    assert_eq!((first.tenant.clone(), first.scope.clone()), (None, Scope::WholeView { reason: FlushReason::Trimmed }));
    assert_eq!(first.position, Position::from_code(2));
    assert_eq!(trimmed.next().await.unwrap().unwrap(), inv("acme", 3));
    // A follower that does not read while many arrive never blocks the sink, and is given a
    // flush, not a gap.
    let mut lagging = feed.follow("messages", None).await.unwrap();
    let many: Vec<Invalidation> = (6..200).map(|at| inv("acme", at)).collect();
    tokio::time::timeout(Duration::from_secs(2), memory.deliver(&many)).await.expect("never blocks").unwrap();
    let first = lagging.next().await.unwrap().unwrap();
    assert_eq!(first.scope, Scope::WholeView { reason: FlushReason::Trimmed }, "{first:?}");
    let rest: Vec<Invalidation> = lagging.take(3).map(|i| i.unwrap()).collect().await;
    assert_eq!(rest, vec![inv("acme", 197), inv("acme", 198), inv("acme", 199)]);
}

/// A batch hands out one invalidation per tenant, all at the batch's position. A follower that
/// falls behind the channel in the middle of them resumes at that position again, not after it:
/// the other tenants' invalidations there are not lost (given twice at worst, which is harmless).
#[tokio::test]
async fn a_memory_follower_behind_in_the_middle_of_a_position_loses_none_of_its_tenants() {
    let memory = MemoryInvalidations::new(1000);
    let feed: Arc<dyn InvalidationFeed> = Arc::new(memory.clone());
    let mut live = feed.follow("messages", None).await.unwrap();
    memory.deliver(&[inv("t0", 5)]).await.unwrap();
    assert_eq!(live.next().await.unwrap().unwrap(), inv("t0", 5));
    // More than the channel (1000 for a ring of 1000) and the ring hold, all at the same position.
    let same: Vec<Invalidation> = (1..5000).map(|t| inv(&format!("t{t}"), 5)).collect();
    memory.deliver(&same).await.unwrap();
    memory.deliver(&[inv("t0", 6)]).await.unwrap();
    let mut got: Vec<Invalidation> = Vec::new();
    while got.last().is_none_or(|i| i.position < Position::from_code(6)) {
        got.push(tokio::time::timeout(Duration::from_secs(5), live.next()).await.unwrap().unwrap().unwrap());
    }
    // Every tenant at 5 is covered: by its own invalidation, or by a whole-view flush at 5 or later
    // (the ring kept only the last 1000 of them).
    let flushed = got.iter().any(|i| i.tenant.is_none() && i.position >= Position::from_code(5));
    for t in 1..5000 {
        let tenant = format!("t{t}");
        assert!(flushed || got.iter().any(|i| i.tenant.as_deref() == Some(tenant.as_str())), "{tenant} lost");
    }
    assert!(flushed, "the ring no longer holds all of position 5: a flush is due");
}

/// A sink that fails its first `failures` deliveries with a transient error, and says it has
/// delivered nothing yet.
#[derive(Debug, Default)]
struct Flaky {
    failures: Mutex<u32>,
    got: Mutex<Vec<(Instant, Invalidation)>>,
}

#[async_trait]
impl InvalidationSink for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }

    async fn deliver(&self, batch: &[Invalidation]) -> Result<(), InvalidationError> {
        {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(InvalidationError::Unavailable { backend: "flaky", reason: "down".into() });
            }
        }
        self.got.lock().unwrap().extend(batch.iter().map(|i| (Instant::now(), i.clone())));
        Ok(())
    }

    async fn checkpoint(&self, _view: &str) -> Result<Option<Position>, InvalidationError> {
        Ok(None)
    }
}

#[tokio::test]
async fn a_dispatcher_flushes_a_sink_behind_its_view_retries_in_order_and_waits_for_visibility() {
    use annals_projectors::invalidation::queue::Queued;
    let sink = Arc::new(Flaky { failures: Mutex::new(2), ..Flaky::default() });
    let queue = SinkQueue::new("flaky", 16);
    let later = tokio::time::Instant::now() + Duration::from_millis(400);
    queue.push(Queued { invalidation: inv("acme", 6), not_before: None });
    queue.push(Queued { invalidation: inv("acme", 7), not_before: Some(later) });
    let shutdown = CancellationToken::new();
    let views = std::future::ready(vec![("messages".to_owned(), Some(Position::from_code(5)))]);
    let started = Instant::now();
    let sink_dyn: Arc<dyn InvalidationSink> = Arc::clone(&sink) as Arc<dyn InvalidationSink>;
    let task = dispatch::start(sink_dyn, Arc::clone(&queue), views, shutdown.clone());
    until("every delivery", Duration::from_secs(10), || sink.got.lock().unwrap().len() == 3).await;
    let got = sink.got.lock().unwrap().clone();
    let resumed = Invalidation {
        tenant: None,
        view: "messages".into(),
        position: Position::from_code(5),
        scope: Scope::WholeView { reason: FlushReason::Resumed },
    };
    let delivered: Vec<Invalidation> = got.iter().map(|(_, i)| i.clone()).collect();
    assert_eq!(delivered, vec![resumed, inv("acme", 6), inv("acme", 7)], "the flush first, then in order");
    assert_eq!(queue.stats.retries.load(std::sync::atomic::Ordering::Relaxed), 2);
    // Held until the view shows it: not before its `not_before`.
    assert!(got[2].0.duration_since(started) >= Duration::from_millis(390), "{:?}", got[2].0.duration_since(started));
    shutdown.cancel();
    task.await.unwrap();
}

/// The sink/feed conformance suite, stamped for the in-process backend (the one Redis keeps
/// too, in `invalidation_redis.rs`): one contract, every backend.
mod memory_conformance {
    use std::sync::Arc;

    use annals_projectors::invalidation::memory::MemoryInvalidations;
    use annals_projectors::invalidation::testsuite::Backend;

    async fn make(retain: usize) -> Backend {
        let memory = MemoryInvalidations::new(retain);
        Backend { sink: Arc::new(memory.clone()), feed: Arc::new(memory), guard: Box::new(()) }
    }

    annals_projectors::invalidation_test_suite!(make);
}
