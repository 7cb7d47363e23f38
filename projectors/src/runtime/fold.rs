//! Turning a batch of events into the view writes of one commit: find each event's document
//! (in the batch, in the cache of recent documents, or else in the view, all misses in one
//! `get_many`), fold the events into them in log order, and encode the changed documents.
//!
//! This is the projector's CPU work, and it runs on the projectors' threads (`background`), so
//! it never holds the async workers that also serve the API: [`gather`] finds what it can
//! without the view, the runtime awaits the view's `get_many` for the misses (if any), and
//! [`apply`] folds and encodes.
//!
//! # The document cache
//! The runtime is the only writer of its view, so a document it committed is still the view's
//! document until it commits that document again: a cache of recent documents is never stale.
//! It saves the view lookup (a dictionary probe per segment and a stored-document decode) for a
//! message whose events arrive over several batches, which is how live traffic looks. It is
//! bounded (two generations: a lookup moves a document to the young one; when the young one is
//! full the old one is dropped), and it lives only as long as one subscription: after any
//! failure the runtime restarts from the checkpoint with an empty cache, so a document of a batch
//! that was never committed cannot be served from it. (A view without an atomic checkpoint can
//! hold documents past its checkpoint after a crash: the cache may then hold a document built
//! from fewer events than the view's until the replay has passed them, and its writes are
//! no-ops by version meanwhile; the fold of the replayed events ends with the same document.)

use std::collections::HashMap;

use annals_store::{Position, RecordedEvent};
use tracing::warn;

use crate::error::ApplyError;
use crate::invalidation::InvalidatedKey;
use crate::view_store::{StoredDoc, ViewDoc};

use super::projection::{DocKey, Projection};

/// The events read since the last commit (the runtime's batch; what one commit writes is a
/// `ViewBatch`).
#[derive(Debug, Default)]
pub(crate) struct EventBatch {
    pub(crate) events: Vec<RecordedEvent>,
    pub(crate) last: Option<Position>,
}

impl EventBatch {
    pub(crate) fn push(&mut self, event: RecordedEvent) {
        self.last = Some(event.position);
        self.events.push(event);
    }

    /// Moves the batch's checkpoint past an event that is not the projection's.
    pub(crate) fn skip(&mut self, position: Position) {
        self.last = Some(position);
    }
}

/// Where a batch's events come from (see `prepare`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// The log, in order, from the checkpoint on.
    Log,
    /// Parked events picked by a replay request.
    Replay,
}

/// A batch folded into documents, ready to commit.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) upserts: Vec<ViewDoc>,
    pub(crate) parked: Vec<(RecordedEvent, ApplyError)>,
    /// The cache keys the upserts and the parked events invalidate, with their tenants
    /// (`Projection::invalidated_keys` of the documents they touched).
    pub(crate) keys: Vec<(String, InvalidatedKey)>,
}

/// The documents of a batch's events as far as the batch and the cache know them, and the
/// keys to look up in the view.
#[derive(Debug)]
pub(crate) struct Gathered<D> {
    keys: Vec<Option<DocKey>>,
    docs: HashMap<DocKey, Option<D>>,
    /// To load with the view's `get_many`, then pass to [`apply`] in this order.
    pub(crate) misses: Vec<DocKey>,
}

/// Finds each event's document in the cache, and which must come from the view.
///
/// `order` says whether `events` come in log order from the checkpoint on (`Order::Log`: the
/// live and rebuild path) or are a replay of parked events (`Order::Replay`). In log order, an
/// event at revision 0 is the first of its stream, and a document's events all come from one
/// stream, so its document cannot be in the view yet (the view holds nothing past its
/// checkpoint): it is not looked up. That is every new message of live traffic, and the lookup
/// (a dictionary probe in each of the view's segments) was the projector's largest cost after
/// indexing. A replayed revision 0 may have a document built from the stream's later events.
pub(crate) fn gather<P: Projection>(
    projection: &P,
    cache: &mut DocCache<P::Doc>,
    events: &[RecordedEvent],
    order: Order,
) -> Gathered<P::Doc> {
    let keys: Vec<Option<DocKey>> = events.iter().map(|e| projection.doc_key(e)).collect();
    let mut docs: HashMap<DocKey, Option<P::Doc>> = HashMap::with_capacity(events.len());
    let mut misses = Vec::new();
    for (event, key) in events.iter().zip(&keys) {
        let Some(key) = key else { continue };
        if !docs.contains_key(key) {
            let cached = cache.take(key);
            let first_of_stream = order == Order::Log && event.revision.0 == 0;
            if cached.is_none() && !first_of_stream {
                misses.push(key.clone());
            }
            docs.insert(key.clone(), cached);
        }
    }
    Gathered { keys, docs, misses }
}

/// Folds `events` into their documents (see the module doc), with `stored` the view's answer
/// for `gathered.misses`. Documents end in `cache`.
pub(crate) fn apply<P: Projection>(
    projection: &P,
    cache: &mut DocCache<P::Doc>,
    events: &[RecordedEvent],
    gathered: Gathered<P::Doc>,
    stored: Vec<Option<StoredDoc>>,
) -> Prepared {
    let Gathered { keys, mut docs, misses } = gathered;
    for (key, stored) in misses.into_iter().zip(stored) {
        let doc = stored.and_then(|stored| match serde_json::from_value(stored.source) {
            Ok(doc) => Some(doc),
            Err(e) => {
                warn!(projection = projection.schema().name, doc = %key.id, error = %e, "stored document does not decode; rebuilding it from later events");
                None
            }
        });
        docs.insert(key, doc);
    }

    let mut parked = Vec::new();
    let mut changed: Vec<&DocKey> = Vec::with_capacity(events.len());
    // The documents of parked events: unchanged, but answers read from the log beside them (a
    // message's history) now hold the parked event, so their keys are invalidated too.
    let mut touched: Vec<&DocKey> = Vec::new();
    for (event, key) in events.iter().zip(&keys) {
        let Some(key) = key else { continue };
        let doc = docs.get_mut(key).expect("every key of the batch was looked up");
        // On failure `doc` is as it was; the event is parked.
        match projection.apply(doc, event) {
            Ok(()) => changed.push(key),
            Err(error) => {
                parked.push((event.clone(), error));
                touched.push(key);
            }
        }
    }
    changed.sort_unstable_by_key(|k| (k.tenant.as_str(), k.id.as_str()));
    changed.dedup();
    let mut upserts = Vec::with_capacity(changed.len());
    upserts.extend(
        changed.iter().filter_map(|key| docs.get(*key).and_then(Option::as_ref).map(|doc| projection.to_view(doc))),
    );
    touched.extend(changed.iter().copied());
    touched.sort_unstable_by_key(|k| (k.tenant.as_str(), k.id.as_str()));
    touched.dedup();
    let mut keys = Vec::new();
    let mut named = Vec::new();
    for key in &touched {
        match docs.get(*key).and_then(Option::as_ref) {
            Some(doc) => projection.invalidated_keys(doc, &mut named),
            None => projection.invalidated_keys_of_key(key, &mut named),
        }
        keys.extend(named.drain(..).map(|k| (key.tenant.clone(), k)));
    }
    for (key, doc) in docs {
        if let Some(doc) = doc {
            cache.put(key, doc);
        }
    }
    Prepared { upserts, parked, keys }
}

/// Recent documents by key, at most `capacity` of them (see the module doc).
#[derive(Debug)]
pub(crate) struct DocCache<D> {
    young: HashMap<DocKey, D>,
    old: HashMap<DocKey, D>,
    capacity: usize,
}

impl<D> DocCache<D> {
    pub(crate) fn new(capacity: usize) -> Self {
        DocCache { young: HashMap::new(), old: HashMap::new(), capacity }
    }

    /// Removes and returns the document of `key`: the caller puts it back once changed.
    pub(crate) fn take(&mut self, key: &DocKey) -> Option<D> {
        self.young.remove(key).or_else(|| self.old.remove(key))
    }

    pub(crate) fn put(&mut self, key: DocKey, doc: D) {
        if self.capacity == 0 {
            return;
        }
        if self.young.len() >= self.capacity.div_ceil(2) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, doc);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> DocKey {
        DocKey { tenant: "t".into(), id: id.to_string() }
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_what_was_used_lately() {
        let mut cache = DocCache::new(10);
        for i in 0..100 {
            cache.put(key(i), i);
            // A document used at every step survives any number of evictions.
            let hot = cache.take(&key(0)).unwrap_or(0);
            cache.put(key(0), hot);
            assert!(cache.len() <= 10, "{} documents cached", cache.len());
        }
        assert_eq!(cache.take(&key(99)), Some(99));
        assert_eq!(cache.take(&key(0)), Some(0));
        assert_eq!(cache.take(&key(3)), None, "long evicted");
        assert_eq!(cache.take(&key(99)), None, "taken documents leave the cache");
    }

    #[test]
    fn a_zero_capacity_cache_holds_nothing() {
        let mut cache = DocCache::new(0);
        cache.put(key(1), 1);
        assert_eq!(cache.take(&key(1)), None);
    }
}
