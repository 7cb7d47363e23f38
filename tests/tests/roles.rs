//! The `projector` role's keepers under a lease they do not control (in-process, leases from a
//! test source): a view is applied only while its lease is held; the moment the lease is lost
//! the view's projector stops — what arrives afterwards is not applied, not even a batch in
//! hand — and once the lease is granted again the keeper reopens the view (waiting for the
//! writer lock the aborted projector may still hold) and catches up.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::compose::{start_projectors_under_leases, Boxed, Held, Lease, LeaseSource, Leases};
use annals::settings::Settings;
use annals_projectors::host::tantivy::TantivyHosting;
use annals_projectors::{MessagesProjection, Projection, ViewHosting};
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{EventData, EventStore, ExpectedRevision, Position, StoreError, StreamId};
use serde_json::json;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

/// `audit` is granted at once; `messages` each time the test sends a token (its `lost`).
#[derive(Debug)]
struct TestLeases {
    grants: Mutex<mpsc::UnboundedReceiver<CancellationToken>>,
}

#[derive(Debug)]
struct NothingHeld;

impl Held for NothingHeld {
    fn release(self: Box<Self>) -> Boxed<'static, ()> {
        Box::pin(async {})
    }
}

impl LeaseSource for TestLeases {
    fn acquire<'a>(&'a self, name: &'a str) -> Boxed<'a, Result<Lease, StoreError>> {
        Box::pin(async move {
            let lost = match name.ends_with("/messages") {
                true => self.grants.lock().await.recv().await.ok_or(StoreError::Closed)?,
                false => CancellationToken::new(),
            };
            Ok(Lease::new(lost, Box::new(NothingHeld)))
        })
    }
}

async fn append(store: &EmbeddedStore, i: u32) -> Position {
    let data = json!({ "message_id": format!("r{i}"), "recipient": { "id": "u" }, "channel": "email", "subject": "s" });
    let stream = StreamId::new(format!("acme/message-r{i}")).unwrap();
    let event = EventData::json("message.enqueued", &data).unwrap();
    store.append_to_stream(&stream, ExpectedRevision::Any, vec![event]).await.unwrap().last_position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_is_applied_only_while_its_lease_is_held() {
    let tmp = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(tmp.path().join("store"))).await.unwrap();
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let mut settings = Settings::default();
    settings.views.dir = Some(tmp.path().join("views"));
    // Long enough that events read in the last moment before a loss are a batch in hand.
    settings.projectors.flush = Duration::from_millis(1_500);
    let (grant, grants) = mpsc::unbounded_channel();
    let leases = Leases::new(Arc::new(TestLeases { grants: Mutex::new(grants) }));
    let (host, holding) = start_projectors_under_leases(&settings, Arc::clone(&shared), leases).unwrap();
    let held = holding.views.iter().find(|(v, _)| *v == "messages").unwrap().1.clone();
    let hosting = TantivyHosting::open(&tmp.path().join("views/messages"), MessagesProjection.schema()).unwrap();
    let reader = hosting.open_reader(1).await.unwrap();
    let checkpoint = || async { reader.checkpoint().await.unwrap().map(|c| c.position) };
    let until = |what: &'static str, limit: Duration| {
        let deadline = Instant::now() + limit;
        move || assert!(Instant::now() < deadline, "{what} within {limit:?}")
    };

    for i in 0..5 {
        append(&store, i).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.load(Ordering::Relaxed) && checkpoint().await.is_none(), "nothing applied without the lease");

    let lost = CancellationToken::new();
    grant.send(lost.clone()).unwrap();
    let mut last = append(&store, 5).await;
    let check = until("applied once the lease is held", Duration::from_secs(15));
    while checkpoint().await < Some(last) {
        check();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(held.load(Ordering::Relaxed));

    // Lost while a batch is in hand (read, not yet committed): it is not committed, and nothing
    // that comes later is applied while nobody holds the lease.
    let at_loss = checkpoint().await;
    for i in 6..40 {
        last = append(&store, i).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    lost.cancel();
    let check = until("the keeper lets go", Duration::from_secs(5));
    while held.load(Ordering::Relaxed) {
        check();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 40..50 {
        last = append(&store, i).await;
    }
    // Longer than a flush interval and a reader's reload: a projector still running, or one
    // that committed its batch on the way out, would show here.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(checkpoint().await, at_loss, "nothing applied after the lease was lost");

    // Granted again: the keeper reopens the view and catches up.
    grant.send(CancellationToken::new()).unwrap();
    let check = until("caught up after the lease came back", Duration::from_secs(15));
    while checkpoint().await < Some(last) {
        check();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    host.stop().await;
    store.close().await.unwrap();
}

/// Records what a projector process's keepers hand its invalidation sink.
#[derive(Debug, Default)]
struct Recording(std::sync::Mutex<Vec<annals_projectors::invalidation::Invalidation>>);

#[async_trait::async_trait]
impl annals_projectors::invalidation::InvalidationSink for Recording {
    fn name(&self) -> &'static str {
        "recording"
    }

    async fn deliver(
        &self,
        batch: &[annals_projectors::invalidation::Invalidation],
    ) -> Result<(), annals_projectors::invalidation::InvalidationError> {
        self.0.lock().unwrap().extend(batch.iter().cloned());
        Ok(())
    }

    async fn checkpoint(
        &self,
        _: &str,
    ) -> Result<Option<Position>, annals_projectors::invalidation::InvalidationError> {
        Ok(None)
    }
}

/// What a holder that lost its lease had queued for the sinks is gone with it: each takeover
/// flushes the view at its checkpoint before the new holder hands out anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_takeover_flushes_the_view_before_its_invalidations() {
    use annals_projectors::invalidation::{FlushReason, Scope};
    let tmp = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(tmp.path().join("store"))).await.unwrap();
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let mut settings = Settings::default();
    settings.views.dir = Some(tmp.path().join("views"));
    settings.projectors.flush = Duration::from_millis(20);
    let (grant, grants) = mpsc::unbounded_channel();
    let leases = Leases::new(Arc::new(TestLeases { grants: Mutex::new(grants) }));
    let sink = Arc::new(Recording::default());
    let sinks: Vec<Arc<dyn annals_projectors::invalidation::InvalidationSink>> = vec![sink.clone()];
    let (host, _) =
        annals::compose::start_projectors_with_sinks(&settings, Arc::clone(&shared), leases, sinks).unwrap();
    let of_messages = |sink: &Recording| -> Vec<_> {
        sink.0.lock().unwrap().iter().filter(|i| i.view == "messages").cloned().collect()
    };
    let wait = |what: &'static str, at: Position| {
        let sink = Arc::clone(&sink);
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !of_messages(&sink).iter().any(|i| i.position >= at) {
                assert!(Instant::now() < deadline, "{what}: {:?}", of_messages(&sink));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let lost = CancellationToken::new();
    grant.send(lost.clone()).unwrap();
    let first = append(&store, 0).await;
    wait("the first holder's invalidation", first).await;
    lost.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = of_messages(&sink).len();
    grant.send(CancellationToken::new()).unwrap();
    let second = append(&store, 1).await;
    wait("the second holder's invalidation", second).await;
    let got = of_messages(&sink);
    let flush = Scope::WholeView { reason: FlushReason::Resumed };
    assert_eq!(got[before].scope, flush, "the takeover's flush comes first: {got:?}");
    assert_eq!((got[before].tenant.clone(), got[before].position), (None, first));
    assert!(got[before + 1..].iter().all(|i| i.position > first), "{got:?}");
    host.stop().await;
    store.close().await.unwrap();
}
