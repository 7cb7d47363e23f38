//! How the suite runs on a backend whose positions are sparse: through [`DenseView`], which
//! numbers the backend's events 0, 1, 2, … in log order, so that every case — written with the
//! positions of a dense log — checks the same promises (order, atomicity, content, no gap and no
//! duplicate in reads, pages and subscriptions) on any backend.
//!
//! Why this exists: KurrentDB's positions are byte offsets; a case that expects an append to get
//! "position 5" is checking density, which such a backend does not promise, while everything else
//! the case checks it does promise. Rather than write each case twice, the suite renumbers: the
//! view learns the backend's positions by reading its log (asserting that they strictly increase),
//! and translates every position on the way in (indexes to the backend's positions, which are
//! always positions the backend handed out) and on the way out. `event_store_test_suite!` puts a
//! backend behind it when its `Capabilities::dense_positions` is `None`.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, Mutex};

use super::ALL;
use crate::capabilities::DENSE;
use crate::{
    AllPage, AppendResult, Capabilities, Direction, EventData, EventFilter, EventStore, ExpectedRevision, Pace,
    PageLimits, Position, ReadFrom, ReadStreamOutcome, RecordedEvent, Revision, StoreError, StreamId, SubscribeFrom,
    Subscription, SubscriptionMessage,
};

/// A backend seen with dense positions (module doc).
#[derive(Debug)]
pub struct DenseView<S> {
    inner: Arc<S>,
    /// The backend's positions of the events seen so far, in log order: index `i` is event `i`.
    known: Arc<Mutex<Vec<Position>>>,
}

impl<S: EventStore> DenseView<S> {
    pub fn new(inner: S) -> Self {
        DenseView { inner: Arc::new(inner), known: Arc::default() }
    }
}

/// Reads the backend's log past what `known` holds.
async fn refresh<S: EventStore>(inner: &S, known: &mut Vec<Position>) -> Result<(), StoreError> {
    loop {
        let from = known.last().map_or(ReadFrom::Start, |p| ReadFrom::After(*p));
        let page = inner.read_all(from, Direction::Forwards, ALL, &EventFilter::all()).await?;
        for event in &page {
            if let Some(last) = known.last() {
                assert!(event.position > *last, "positions must strictly increase: {} after {last}", event.position);
            }
            known.push(event.position);
        }
        if page.len() < ALL {
            return Ok(());
        }
    }
}

/// The index of the backend's `position`: of its event, or (for a position no known event has,
/// such as a page's `next` past the end) the number of events before it.
async fn index_of<S: EventStore>(
    inner: &S,
    known: &Mutex<Vec<Position>>,
    position: Position,
) -> Result<(u64, bool), StoreError> {
    let mut known = known.lock().await;
    if known.last().is_none_or(|last| *last < position) {
        refresh(inner, &mut known).await?;
    }
    Ok(match known.binary_search(&position) {
        Ok(i) => (i as u64, true),
        Err(i) => (i as u64, false),
    })
}

async fn relabel<S: EventStore>(
    inner: &S,
    known: &Mutex<Vec<Position>>,
    mut event: RecordedEvent,
) -> Result<RecordedEvent, StoreError> {
    event.position = Position(index_of(inner, known, event.position).await?.0);
    Ok(event)
}

impl<S: EventStore> DenseView<S> {
    /// The backend's position of event `index`, if the log has it.
    async fn position_of(&self, index: Position) -> Result<Option<Position>, StoreError> {
        let mut known = self.known.lock().await;
        if index.0 >= known.len() as u64 {
            refresh(self.inner.as_ref(), &mut known).await?;
        }
        Ok(usize::try_from(index.0).ok().and_then(|i| known.get(i).copied()))
    }

    async fn relabel_all(&self, events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            out.push(relabel(self.inner.as_ref(), &self.known, event).await?);
        }
        Ok(out)
    }

    /// `from` in the backend's positions; `None` where no event can be read (forwards from past
    /// the last event).
    async fn translate_from(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
    ) -> Result<Option<ReadFrom<Position>>, StoreError> {
        Ok(match from {
            ReadFrom::Start => Some(ReadFrom::Start),
            ReadFrom::End => Some(ReadFrom::End),
            ReadFrom::At(i) | ReadFrom::After(i) => match (self.position_of(i).await?, direction) {
                (Some(p), _) => {
                    Some(if matches!(from, ReadFrom::At(_)) { ReadFrom::At(p) } else { ReadFrom::After(p) })
                }
                // Past the last event: nothing forwards, everything backwards.
                (None, Direction::Forwards) => None,
                (None, Direction::Backwards) => Some(ReadFrom::End),
            },
        })
    }

    fn relay(&self, mut inner: Subscription, keep: impl Fn(u64) -> bool + Send + 'static) -> Subscription {
        let (store, known) = (Arc::clone(&self.inner), Arc::clone(&self.known));
        let (tx, rx) = mpsc::channel(2);
        let task = tokio::spawn(async move {
            loop {
                let message = match inner.next().await {
                    Ok(SubscriptionMessage::Event(event)) => match relabel(store.as_ref(), &known, event).await {
                        Ok(event) if keep(event.position.0) => Ok(vec![SubscriptionMessage::Event(event)]),
                        Ok(_) => continue,
                        Err(e) => Err(e),
                    },
                    Ok(SubscriptionMessage::CaughtUp) => Ok(vec![SubscriptionMessage::CaughtUp]),
                    Err(e) => Err(e),
                };
                let end = message.is_err();
                if tx.send(message).await.is_err() || end {
                    return;
                }
            }
        });
        Subscription::new(rx, task.abort_handle(), Pace::default())
    }
}

#[async_trait]
impl<S: EventStore> EventStore for DenseView<S> {
    fn capabilities(&self) -> Capabilities {
        Capabilities { dense_positions: Some(DENSE), ..self.inner.capabilities() }
    }

    async fn append_to_stream(
        &self,
        stream: &StreamId,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        let mut result = self.inner.append_to_stream(stream, expected, events).await?;
        result.first_position = Position(index_of(self.inner.as_ref(), &self.known, result.first_position).await?.0);
        result.last_position = Position(index_of(self.inner.as_ref(), &self.known, result.last_position).await?.0);
        Ok(result)
    }

    async fn read_stream_bounded(
        &self,
        stream: &StreamId,
        from: ReadFrom<Revision>,
        direction: Direction,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<ReadStreamOutcome, StoreError> {
        Ok(match self.inner.read_stream_bounded(stream, from, direction, max_count, max_bytes).await? {
            ReadStreamOutcome::Events(events) => ReadStreamOutcome::Events(self.relabel_all(events).await?),
            ReadStreamOutcome::StreamNotFound => ReadStreamOutcome::StreamNotFound,
        })
    }

    async fn read_all(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self.translate_from(from, direction).await? {
            Some(from) => self.relabel_all(self.inner.read_all(from, direction, max_count, filter).await?).await,
            None => Ok(Vec::new()),
        }
    }

    async fn read_all_page(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        limits: PageLimits,
        filter: &EventFilter,
    ) -> Result<AllPage, StoreError> {
        let Some(translated) = self.translate_from(from, direction).await? else {
            // Forwards past the last event: the end, and read on from there.
            let next = match from {
                ReadFrom::At(i) => i,
                _ => Position(self.known.lock().await.len() as u64),
            };
            return Ok(AllPage {
                events: Vec::new(),
                next: Some(next),
                reached_end: limits.max_count > 0,
                examined: 0,
            });
        };
        let page = self.inner.read_all_page(translated, direction, limits, filter).await?;
        let next = match page.next {
            None => None,
            Some(p) => {
                let (i, is_event) = index_of(self.inner.as_ref(), &self.known, p).await?;
                match direction {
                    Direction::Forwards => Some(Position(i)),
                    // Backwards from a position no event has: from the event before it.
                    Direction::Backwards if is_event => Some(Position(i)),
                    Direction::Backwards => i.checked_sub(1).map(Position),
                }
            }
        };
        Ok(AllPage { events: self.relabel_all(page.events).await?, next, ..page })
    }

    async fn subscribe_to_all(
        &self,
        from: SubscribeFrom<Position>,
        filter: EventFilter,
    ) -> Result<Subscription, StoreError> {
        let (from, keep): (_, Box<dyn Fn(u64) -> bool + Send>) = match from {
            SubscribeFrom::Start => (SubscribeFrom::Start, Box::new(|_| true)),
            SubscribeFrom::End => (SubscribeFrom::End, Box::new(|_| true)),
            SubscribeFrom::After(i) | SubscribeFrom::At(i) => match self.position_of(i).await? {
                Some(p) if matches!(from, SubscribeFrom::After(_)) => (SubscribeFrom::After(p), Box::new(|_| true)),
                Some(p) => (SubscribeFrom::At(p), Box::new(|_| true)),
                // Past the last event: the events to come, from the index asked on.
                None => {
                    let first = if matches!(from, SubscribeFrom::After(_)) { i.0 + 1 } else { i.0 };
                    (SubscribeFrom::End, Box::new(move |index| index >= first))
                }
            },
        };
        let inner = self.inner.subscribe_to_all(from, filter).await?;
        Ok(self.relay(inner, keep))
    }

    async fn subscribe_to_stream(
        &self,
        stream: &StreamId,
        from: SubscribeFrom<Revision>,
    ) -> Result<Subscription, StoreError> {
        let inner = self.inner.subscribe_to_stream(stream, from).await?;
        Ok(self.relay(inner, |_| true))
    }

    async fn writable(&self) -> Result<(), StoreError> {
        self.inner.writable().await
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        match self.inner.head().await? {
            Some(p) => Ok(Some(Position(index_of(self.inner.as_ref(), &self.known, p).await?.0))),
            None => Ok(None),
        }
    }

    async fn distance(&self, after: Option<Position>, through: Position) -> Result<Option<u64>, StoreError> {
        let past = || StoreError::Index(format!("distance through {through}: no such event"));
        let through = self.position_of(through).await?.ok_or_else(past)?;
        let after = match after {
            Some(i) => Some(self.position_of(i).await?.ok_or_else(past)?),
            None => None,
        };
        self.inner.distance(after, through).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}
