//! The invalidation conformance suite: the contracts of [`InvalidationSink`] and
//! [`InvalidationFeed`] (module docs of [`crate::invalidation`]), written once and stamped out
//! per backend with [`invalidation_test_suite!`](crate::invalidation_test_suite), as the view
//! stores' `view_store_test_suite!`. Behind the `testsuite` feature.
//!
//! A backend provides an async factory that makes a fresh, empty sink and the feed reading what
//! that sink delivered, keeping at least `retain` invalidations per view (the feed may keep
//! more); the trimming case delivers many more than that. The suite fails with plain panics
//! naming the promise that was broken.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use annals_store::Position;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{
    FlushReason, InvalidatedKey, Invalidation, InvalidationError, InvalidationFeed, InvalidationSink, KeyKind, Scope,
};

/// A sink and the feed of what it delivered, with whatever must live as long as they do.
pub struct Backend {
    pub sink: Arc<dyn InvalidationSink>,
    pub feed: Arc<dyn InvalidationFeed>,
    pub guard: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("sink", &self.sink).field("feed", &self.feed).finish_non_exhaustive()
    }
}

/// Makes a fresh backend retaining at least `retain` invalidations per view.
pub type Make = dyn Fn(usize) -> Pin<Box<dyn Future<Output = Backend> + Send>> + Send + Sync;

/// Stamps one `#[tokio::test]` per conformance case, each calling it with `$factory`: an async
/// function of the retention (`usize`) to [`Backend`].
///
/// ```ignore
/// async fn make(retain: usize) -> Backend { /* … */ }
/// annals_projectors::invalidation_test_suite!(make);
/// ```
#[macro_export]
macro_rules! invalidation_test_suite {
    ($factory:path) => {
        $crate::invalidation_test_suite!(@stamp $factory;
            a_fresh_sink_has_no_checkpoint,
            deliver_then_checkpoint,
            checkpoints_are_per_view,
            duplicates_are_harmless,
            the_feed_is_in_position_order,
            feeds_keep_each_tenant_s_keys_its_own,
            resume_after_a_position,
            a_live_follower_sees_new_deliveries_only,
            a_trimmed_resume_point_flushes_first,
        );
    };
    (@stamp $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let make: &$crate::invalidation::testsuite::Make = &|retain| Box::pin($factory(retain));
                $crate::invalidation::testsuite::$name(make).await;
            }
        )*
    };
}

/// Position `code` (a stored code read back: the suite only needs ordered, distinct positions).
pub fn position(code: u64) -> Position {
    Position::from_code(code)
}

/// An invalidation of `tenant`'s message (and recipient) keys of view `messages`.
pub fn keys(tenant: &str, code: u64, ids: &[&str]) -> Invalidation {
    let mut keys: Vec<InvalidatedKey> = ids
        .iter()
        .flat_map(|id| {
            [
                InvalidatedKey { kind: KeyKind::Message, value: (*id).to_owned() },
                InvalidatedKey { kind: KeyKind::Recipient, value: format!("rcpt-{id}") },
            ]
        })
        .collect();
    keys.sort();
    keys.dedup();
    Invalidation {
        tenant: Some(tenant.to_owned()),
        view: "messages".to_owned(),
        position: position(code),
        scope: Scope::Keys { keys },
    }
}

/// The next `n` items of `stream`, failing after 10 s.
pub async fn take(
    stream: &mut BoxStream<'static, Result<Invalidation, InvalidationError>>,
    n: usize,
) -> Vec<Invalidation> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(invalidation))) => out.push(invalidation),
            Ok(Some(Err(e))) => panic!("the feed failed after {} of {n} invalidations: {e}", out.len()),
            Ok(None) => panic!("the feed ended after {} of {n} invalidations", out.len()),
            Err(_) => panic!("the feed gave {} of {n} invalidations within 10 s: {out:?}", out.len()),
        }
    }
    out
}

/// Nothing more within `wait`.
pub async fn assert_quiet(stream: &mut BoxStream<'static, Result<Invalidation, InvalidationError>>, wait: Duration) {
    if let Ok(Some(item)) = tokio::time::timeout(wait, stream.next()).await {
        panic!("the feed gave {item:?} where nothing was delivered");
    }
}

pub async fn a_fresh_sink_has_no_checkpoint(make: &Make) {
    let backend = make(100).await;
    assert_eq!(backend.sink.checkpoint("messages").await.expect("checkpoint"), None);
}

pub async fn deliver_then_checkpoint(make: &Make) {
    let backend = make(100).await;
    backend
        .sink
        .deliver(&[keys("a", 3, &["m1"]), keys("b", 3, &["m2"]), keys("a", 7, &["m3"])])
        .await
        .expect("deliver");
    assert_eq!(
        backend.sink.checkpoint("messages").await.expect("checkpoint"),
        Some(position(7)),
        "the last delivered position"
    );
    backend.sink.deliver(&[keys("a", 12, &["m1"])]).await.expect("deliver");
    assert_eq!(backend.sink.checkpoint("messages").await.expect("checkpoint"), Some(position(12)));
}

pub async fn checkpoints_are_per_view(make: &Make) {
    let backend = make(100).await;
    let mut audit = keys("a", 9, &["x"]);
    audit.view = "audit".to_owned();
    audit.scope =
        Scope::Keys { keys: vec![InvalidatedKey { kind: KeyKind::AuditTarget, value: "order:1".to_owned() }] };
    backend.sink.deliver(&[keys("a", 4, &["m1"])]).await.expect("deliver");
    backend.sink.deliver(&[audit]).await.expect("deliver");
    assert_eq!(backend.sink.checkpoint("messages").await.expect("checkpoint"), Some(position(4)));
    assert_eq!(backend.sink.checkpoint("audit").await.expect("checkpoint"), Some(position(9)));
    let mut messages = backend.feed.follow("messages", Some(position(0))).await.expect("follow");
    assert_eq!(take(&mut messages, 1).await, vec![keys("a", 4, &["m1"])], "a view's feed carries only that view");
    assert_quiet(&mut messages, Duration::from_millis(300)).await;
}

pub async fn duplicates_are_harmless(make: &Make) {
    let backend = make(100).await;
    let batch = [keys("a", 2, &["m1"]), keys("b", 2, &["m1"]), keys("a", 5, &["m2"])];
    backend.sink.deliver(&batch).await.expect("deliver");
    // A retry of the whole batch, then one of its tail with something new after it.
    backend.sink.deliver(&batch).await.expect("deliver a duplicate");
    backend.sink.deliver(&[batch[2].clone(), keys("b", 8, &["m3"])]).await.expect("deliver an overlap");
    assert_eq!(backend.sink.checkpoint("messages").await.expect("checkpoint"), Some(position(8)));
    let mut feed = backend.feed.follow("messages", Some(position(0))).await.expect("follow");
    let mut seen = Vec::new();
    while !seen.contains(&keys("b", 8, &["m3"])) {
        seen.extend(take(&mut feed, 1).await);
    }
    for expected in batch {
        assert!(seen.contains(&expected), "{expected:?} is missing after duplicates: {seen:?}");
    }
    assert!(seen.windows(2).all(|w| w[0].position <= w[1].position), "duplicates broke the order: {seen:?}");
}

pub async fn the_feed_is_in_position_order(make: &Make) {
    let backend = make(1000).await;
    let mut delivered = Vec::new();
    for batch in 0..20u64 {
        let code = 10 + batch * 3;
        let invalidations: Vec<_> = ["a", "b", "c"].iter().map(|t| keys(t, code, &[&format!("m{batch}")])).collect();
        backend.sink.deliver(&invalidations).await.expect("deliver");
        delivered.extend(invalidations);
    }
    let mut feed = backend.feed.follow("messages", Some(position(0))).await.expect("follow");
    let got = take(&mut feed, delivered.len()).await;
    assert_eq!(got, delivered, "the feed gives what was delivered, in delivery order");
}

pub async fn feeds_keep_each_tenant_s_keys_its_own(make: &Make) {
    let backend = make(100).await;
    // Same ids, tenants whose names look like patterns or other tenants' keys.
    let tenants = ["a", "a:message:m1", "*", "[a]", "é\u{202e}"];
    let delivered: Vec<_> = tenants.iter().map(|t| keys(t, 6, &["m1", "*", "{value}"])).collect();
    backend.sink.deliver(&delivered).await.expect("deliver");
    let mut feed = backend.feed.follow("messages", Some(position(0))).await.expect("follow");
    let got = take(&mut feed, delivered.len()).await;
    for (got, expected) in got.iter().zip(&delivered) {
        assert_eq!(got.tenant, expected.tenant, "an invalidation changed tenant");
        assert_eq!(got, expected, "an invalidation's keys changed on the way");
    }
}

pub async fn resume_after_a_position(make: &Make) {
    let backend = make(100).await;
    let delivered: Vec<_> = (1..=6u64).map(|i| keys("a", i * 10, &[&format!("m{i}")])).collect();
    backend.sink.deliver(&delivered).await.expect("deliver");
    let mut feed = backend.feed.follow("messages", Some(position(30))).await.expect("follow");
    assert_eq!(take(&mut feed, 3).await, delivered[3..].to_vec(), "resuming after 30 gives 40, 50, 60");
    // A position between two invalidations resumes at the next one.
    let mut feed = backend.feed.follow("messages", Some(position(45))).await.expect("follow");
    assert_eq!(take(&mut feed, 2).await, delivered[4..].to_vec());
    let mut feed = backend.feed.follow("messages", Some(position(60))).await.expect("follow");
    assert_quiet(&mut feed, Duration::from_millis(300)).await;
}

pub async fn a_live_follower_sees_new_deliveries_only(make: &Make) {
    let backend = make(100).await;
    backend.sink.deliver(&[keys("a", 1, &["old"])]).await.expect("deliver");
    let mut feed = backend.feed.follow("messages", None).await.expect("follow");
    let fresh = [keys("a", 2, &["new"]), keys("b", 2, &["new"])];
    backend.sink.deliver(&fresh).await.expect("deliver");
    assert_eq!(take(&mut feed, 2).await, fresh.to_vec(), "a follower from now on sees only what came after");
}

pub async fn a_trimmed_resume_point_flushes_first(make: &Make) {
    let backend = make(10).await;
    let delivered: Vec<_> = (1..=400u64).map(|i| keys("a", i, &[&format!("m{i}")])).collect();
    for chunk in delivered.chunks(50) {
        backend.sink.deliver(chunk).await.expect("deliver");
    }
    let mut feed = backend.feed.follow("messages", Some(position(1))).await.expect("follow");
    let first = take(&mut feed, 1).await.remove(0);
    assert_eq!(first.tenant, None, "a trimmed resume point flushes every tenant");
    assert_eq!(first.scope, Scope::WholeView { reason: FlushReason::Trimmed }, "{first:?}");
    assert!(first.position > position(1) && first.position < position(400), "{first:?}");
    // Then what is retained, in order, up to the last delivered.
    let mut last = first.position;
    loop {
        let next = take(&mut feed, 1).await.remove(0);
        assert!(
            next.position > last || (next.position == last && matches!(next.scope, Scope::Keys { .. })),
            "order: {next:?} after {last:?}"
        );
        last = next.position;
        if next == delivered[399] {
            break;
        }
    }
    // A reader whose resume point is retained gets no flush.
    let mut feed = backend.feed.follow("messages", Some(position(398))).await.expect("follow");
    assert_eq!(take(&mut feed, 2).await, delivered[398..].to_vec());
}
