//! The oldest event a view has not applied yet, found without rescanning the log on every ask.
//!
//! A projection reads only the events its filter matches, so its checkpoint stays at the last
//! event it applied however far the log has moved on: the `audit` view's checkpoint in a log of
//! messages can be millions of positions behind the head with nothing left to apply. Finding the
//! first matching event after the checkpoint is then a scan to the head — and `/metrics` (every
//! scrape), `/v1/projections` and every read-your-writes wait ask for it. The scan remembers how
//! far it found nothing, so the next one starts there and reads only what was appended since.
//!
//! Why this is sound: events are immutable and every event below the store's head is readable
//! (the `EventStore` contract), so "no event in `(checkpoint, through]` matches the filter" stays
//! true forever, and stays true for any later checkpoint (checkpoints never go back: a rebuilt
//! generation serves only once it has passed the old one's).

use std::sync::Mutex;

use annals_store::{Direction, EventFilter, EventStore, Position, ReadFrom, RecordedEvent, StoreError};

/// How far the log is known to hold nothing unapplied, for one view.
#[derive(Debug, Default)]
pub struct UnappliedScan {
    known: Mutex<Option<NothingBetween>>,
}

/// No event matching the view's filter lies in `(after, through]`.
#[derive(Clone, Copy, Debug)]
struct NothingBetween {
    after: Option<Position>,
    through: Position,
}

impl UnappliedScan {
    /// The first event after `checkpoint` that `filter` matches, if any.
    pub async fn oldest(
        &self,
        store: &dyn EventStore,
        filter: &EventFilter,
        checkpoint: Option<Position>,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        // Read first: whatever the scan below finds nothing in, up to here, is settled.
        let head = store.head().await?;
        let known = *self.known.lock().expect("scan lock");
        let mut from = checkpoint.map_or(ReadFrom::Start, ReadFrom::After);
        if let Some(known) = known.filter(|k| k.after <= checkpoint && checkpoint.is_none_or(|c| k.through > c)) {
            from = ReadFrom::After(known.through);
        }
        let oldest = store.read_all(from, Direction::Forwards, 1, filter).await?.into_iter().next();
        if let (None, Some(head)) = (&oldest, head) {
            let mut known = self.known.lock().expect("scan lock");
            // Keep the furthest fact when two scans race.
            if known.is_none_or(|k| k.through < head) {
                *known = Some(NothingBetween { after: checkpoint, through: head });
            }
        }
        Ok(oldest)
    }
}

#[cfg(test)]
mod tests {
    use annals_store::engine::{EmbeddedStore, EngineConfig};
    use annals_store::{EventData, ExpectedRevision, StreamId};

    use super::*;

    /// Whatever the interleaving of appends, checkpoints and asks, the remembered scan answers
    /// what a scan from the checkpoint answers.
    #[tokio::test]
    async fn it_answers_what_a_full_scan_answers() {
        let tmp = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(EngineConfig::new(tmp.path())).await.unwrap();
        let filter = EventFilter::all().event_type_prefix("audit.");
        let scan = UnappliedScan::default();
        let stream = StreamId::new("s").unwrap();
        let mut checkpoint: Option<Position> = None;
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for step in 0..300 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            match seed % 5 {
                // Mostly other events, as in a log of messages with an audit event now and then.
                0..=2 => {
                    let kind = if seed.is_multiple_of(11) { "audit.recorded" } else { "message.sent" };
                    let event = EventData::json(kind, &serde_json::json!({ "step": step })).unwrap();
                    store.append_to_stream(&stream, ExpectedRevision::Any, vec![event]).await.unwrap();
                }
                // The projector applies the oldest waiting event.
                3 => {
                    if let Some(next) = full_scan(&store, &filter, checkpoint).await {
                        checkpoint = Some(next.position);
                    }
                }
                _ => {}
            }
            let remembered = scan.oldest(&store, &filter, checkpoint).await.unwrap().map(|e| e.position);
            let full = full_scan(&store, &filter, checkpoint).await.map(|e| e.position);
            assert_eq!(remembered, full, "step {step}, checkpoint {checkpoint:?}");
        }
        store.close().await.unwrap();
    }

    async fn full_scan(store: &EmbeddedStore, filter: &EventFilter, after: Option<Position>) -> Option<RecordedEvent> {
        let from = after.map_or(ReadFrom::Start, ReadFrom::After);
        store.read_all(from, Direction::Forwards, 1, filter).await.unwrap().into_iter().next()
    }
}
