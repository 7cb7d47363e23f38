//! `EventStore::close`: what every backend does when the process that holds it stops.
//!
//! Why this exists: `close` is part of the contract (the binary closes whichever backend it
//! built, through the trait), so what a caller sees afterwards must not depend on the backend:
//! subscriptions end with `Closed`, appends and reads answer `Closed`, and a second close is
//! harmless.

use super::subscribe::{read_until_caught_up, subscribe_all};
use super::{append, events, stream, within};
use crate::{EventFilter, EventStore, ExpectedRevision, StoreError, SubscribeFrom};

/// After `close`, a subscription ends with `Closed`, appends and `head` answer `Closed`, and
/// closing again changes nothing.
pub async fn close_ends_subscriptions_and_later_calls<S: EventStore>(store: &S) {
    let s = stream("close-1");
    append(store, &s, ExpectedRevision::Any, &events("C", 0, 2)).await;
    let mut sub = subscribe_all(store, SubscribeFrom::Start, EventFilter::all()).await;
    assert_eq!(read_until_caught_up(&mut sub, "before close").await.len(), 2);

    within("close()", store.close()).await.expect("close succeeds");
    match within("the subscription after close", sub.next()).await {
        Err(StoreError::Closed) => {}
        other => panic!("a subscription after close: expected Err(Closed), got {other:?}"),
    }
    let late = within("append after close", store.append_to_stream(&s, ExpectedRevision::Any, events("C", 2, 1)));
    assert!(matches!(late.await, Err(StoreError::Closed)), "an append after close must answer Closed");
    assert!(matches!(within("head after close", store.head()).await, Err(StoreError::Closed)), "head after close");
    match within("a second close()", store.close()).await {
        Ok(()) | Err(StoreError::Closed) => {}
        Err(e) => panic!("a second close must be harmless, got {e:?}"),
    }
}
