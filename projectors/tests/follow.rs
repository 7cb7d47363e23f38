//! A view read in one place and written in another (an `api` process beside a `projector`
//! process, issue 14): a follower opened on the same directory as a host's, with its own
//! hosting handle, reads what the host's projector commits, and serves a rebuild the host
//! carries out — the switch of `CURRENT` made elsewhere — once the new generation has caught
//! up, with every document and no step back in its checkpoint.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_projectors::host::tantivy::TantivyHosting;
use annals_projectors::{control, MessagesProjection, OpenView, Projection, ProjectorConfig, ViewHosting};
use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{EventData, EventStore, ExpectedRevision, StreamId};
use serde_json::json;
use tokio_util::sync::CancellationToken;

async fn until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reads_the_hosts_commits_and_serves_its_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EngineConfig::new(dir.path().join("store"))).await.unwrap();
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let views = dir.path().join("views/messages");
    let hosting =
        |_| -> Arc<dyn ViewHosting> { Arc::new(TantivyHosting::open(&views, MessagesProjection.schema()).unwrap()) };
    let shutdown = CancellationToken::new();
    let config = ProjectorConfig { flush_interval: Duration::from_millis(20), ..ProjectorConfig::default() };
    let opened = OpenView::open(hosting(0), MessagesProjection).await.unwrap();
    let (hosted, host) = opened.start(Arc::clone(&shared), config, shutdown.clone());
    let (followed, follower) =
        annals_projectors::host::follow(hosting(1), &MessagesProjection, Arc::clone(&shared), shutdown.clone())
            .await
            .unwrap();

    let mut last = None;
    for i in 0..20 {
        let data =
            json!({ "message_id": format!("f{i}"), "recipient": { "id": "u" }, "channel": "email", "subject": "s" });
        let stream = StreamId::new(format!("acme/message-f{i}")).unwrap();
        let event = EventData::json("message.enqueued", &data).unwrap();
        last = Some(store.append_to_stream(&stream, ExpectedRevision::Any, vec![event]).await.unwrap().last_position);
    }
    let last = last.unwrap();
    let reached = |view: Arc<annals_projectors::HostedView>| async move {
        view.checkpoint().await.unwrap().is_some_and(|c| c.position >= last)
    };
    until("the follower reads the host's commits", Duration::from_secs(10), || reached(followed.clone())).await;
    assert_eq!(followed.serving().number, 1);
    let before = common::all_docs(followed.serving().reader.as_ref(), "acme").await;
    assert_eq!(before.len(), 20);
    until("the follower's status is caught up", Duration::from_secs(5), || {
        let f = followed.clone();
        async move { f.serving().status.snapshot().caught_up }
    })
    .await;

    let generation = control::request_rebuild(shared.as_ref(), MessagesProjection::NAME).await.unwrap();
    assert_eq!(generation, 2);
    until("the host switches", Duration::from_secs(20), || {
        let h = hosted.clone();
        async move { h.serving().number == 2 }
    })
    .await;
    until("the follower serves the rebuilt generation", Duration::from_secs(5), || {
        let f = followed.clone();
        async move { f.serving().number == 2 && f.rebuild().is_none() }
    })
    .await;
    let after = common::all_docs(followed.serving().reader.as_ref(), "acme").await;
    assert_eq!(after, before, "the rebuilt generation holds the same documents");
    assert!(followed.checkpoint().await.unwrap().is_some_and(|c| c.position >= last), "no step back");

    shutdown.cancel();
    host.await.unwrap();
    follower.await.unwrap();
    drop((hosted, followed));
    store.close().await.unwrap();
}
