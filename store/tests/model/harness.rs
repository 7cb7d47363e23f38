//! Running one case of the model test: the harness applies each generated operation to the
//! engine and to the model, and compares every answer (kept apart from the operations and the
//! model it drives, in `model.rs`).

use super::*;
use crate::{idx, pos};

/// An append attempt, kept for retries.
#[derive(Clone)]
struct Attempt {
    stream: StreamId,
    expected: ExpectedRevision,
    events: Vec<EventData>,
    ok: bool,
}

struct OpenSubscription {
    sub: Subscription,
    target: Target,
    /// Model positions below this were delivered (or are before the subscription's start).
    cursor: u64,
    what: String,
}

struct Harness {
    dir: PathBuf,
    store: Option<EmbeddedStore>,
    model: Model,
    attempts: Vec<Attempt>,
    next_id: u128,
    subscription: Option<OpenSubscription>,
    /// `recorded_at` of each position, as first read; every later read must agree.
    recorded_at: HashMap<u64, DateTime<Utc>>,
}

type Check = Result<(), String>;

async fn within<F: std::future::Future>(what: &str, fut: F) -> Result<F::Output, String> {
    tokio::time::timeout(WAIT, fut).await.map_err(|_| format!("timed out after {WAIT:?}: {what}"))
}

async fn open(dir: &Path) -> Result<EmbeddedStore, String> {
    let config = EngineConfig::new(dir).segment_size(4 * 1024);
    within("open", EmbeddedStore::open(config)).await?.map_err(|e| format!("open failed: {e:?}"))
}

impl Harness {
    fn store(&self) -> &EmbeddedStore {
        self.store.as_ref().expect("store is open")
    }

    fn event(&mut self, ev: &Ev) -> EventData {
        self.next_id += 1;
        let e = EventData::json(TYPES[ev.ty], &serde_json::json!({ "n": ev.n }))
            .expect("valid event")
            .with_id(Uuid::from_u128(self.next_id));
        if ev.metadata {
            e.with_metadata(&serde_json::json!({ "meta": ev.n })).expect("valid metadata")
        } else {
            e
        }
    }

    fn expected(&self, stream: &StreamId, exp: &Exp) -> ExpectedRevision {
        let current = self.model.current(stream);
        match exp {
            Exp::Any => ExpectedRevision::Any,
            Exp::NoStream => ExpectedRevision::NoStream,
            Exp::StreamExists => ExpectedRevision::StreamExists,
            Exp::Current => current.map_or(ExpectedRevision::NoStream, |r| ExpectedRevision::Exact(Revision(r))),
            Exp::Off(d) => ExpectedRevision::Exact(Revision((current.unwrap_or(0) as i64 + *d as i64).max(0) as u64)),
            Exp::Exact(r) => ExpectedRevision::Exact(Revision(*r)),
        }
    }

    fn successful(&self, which: &Index) -> Option<Attempt> {
        let ok: Vec<&Attempt> = self.attempts.iter().filter(|a| a.ok).collect();
        (!ok.is_empty()).then(|| ok[which.index(ok.len())].clone())
    }

    /// Runs one append on both sides and compares.
    async fn append(&mut self, stream: StreamId, expected: ExpectedRevision, events: Vec<EventData>) -> Check {
        let what =
            format!("append to {stream} with {expected} of {:?}", events.iter().map(|e| e.id()).collect::<Vec<_>>());
        let actual = within(&what, self.store().append_to_stream(&stream, expected, events.clone())).await?;
        let outcome = self.model.append(&stream, expected, &events);
        let ok = match (&outcome, actual) {
            (Outcome::Ok(want), Ok(got)) => {
                if *want != got {
                    return Err(format!("{what}: returned {got:?}, the model says {want:?}"));
                }
                true
            }
            (Outcome::Ok(want), Err(e)) => {
                return Err(format!("{what}: failed with {e:?}, the model says Ok({want:?})"))
            }
            (Outcome::Err(allowed), Ok(got)) => {
                return Err(format!("{what}: returned {got:?}, the model says one of {allowed:?}"))
            }
            (Outcome::Err(allowed), Err(e)) => {
                if !allowed.iter().any(|a| error_matches(a, &e, &stream)) {
                    return Err(format!("{what}: failed with {e:?}, the model says one of {allowed:?}"));
                }
                false
            }
        };
        self.attempts.push(Attempt { stream, expected, events, ok });
        Ok(())
    }

    /// Checks events read from the store against the model's events at `positions`.
    fn check_events(&mut self, got: &[RecordedEvent], positions: &[u64], what: &str) -> Check {
        let got_positions: Vec<u64> = got.iter().map(|e| idx(e.position)).collect();
        if got_positions != positions {
            return Err(format!("{what}: positions {got_positions:?}, the model says {positions:?}"));
        }
        for e in got {
            let want = &self.model.log[idx(e.position) as usize];
            let got_m = ModelEvent {
                id: e.id,
                stream: e.stream.clone(),
                revision: e.revision.0,
                event_type: e.event_type.clone(),
                data: e.data.clone(),
                metadata: e.metadata.clone(),
            };
            if got_m != *want {
                return Err(format!("{what}: event at position {} is {got_m:?}, the model says {want:?}", e.position));
            }
            let first_seen = *self.recorded_at.entry(idx(e.position)).or_insert(e.recorded_at);
            if first_seen != e.recorded_at {
                return Err(format!(
                    "{what}: recorded_at of position {} changed from {first_seen} to {}",
                    e.position, e.recorded_at
                ));
            }
        }
        Ok(())
    }

    async fn read_stream(&mut self, stream: StreamId, from: ReadFrom<Revision>, dir: Direction, max: usize) -> Check {
        let what = format!("read_stream({stream}, {from:?}, {dir:?}, {max})");
        let got = within(&what, self.store().read_stream(&stream, from, dir, max))
            .await?
            .map_err(|e| format!("{what}: failed with {e:?}"))?;
        match (self.model.read_stream(&stream, from, dir, max), got) {
            (None, ReadStreamOutcome::StreamNotFound) => Ok(()),
            (None, ReadStreamOutcome::Events(events)) => {
                Err(format!("{what}: returned {} events, the model says StreamNotFound", events.len()))
            }
            (Some(_), ReadStreamOutcome::StreamNotFound) => {
                Err(format!("{what}: StreamNotFound for an existing stream"))
            }
            (Some(positions), ReadStreamOutcome::Events(events)) => self.check_events(&events, &positions, &what),
        }
    }

    async fn read_all(&mut self, from: ReadFrom<Position>, dir: Direction, max: usize, filter: &Filter) -> Check {
        let event_filter = filter.to_event_filter();
        let what = format!("read_all({from:?}, {dir:?}, {max}, {event_filter:?})");
        let got = within(&what, self.store().read_all(from, dir, max, &event_filter))
            .await?
            .map_err(|e| format!("{what}: failed with {e:?}"))?;
        let positions = self.model.read_all(from, dir, max, filter);
        self.check_events(&got, &positions, &what)
    }

    fn matches(&self, target: &Target, e: &ModelEvent) -> bool {
        match target {
            Target::All(filter) => filter.matches(e),
            Target::Stream(s) => e.stream.as_str() == STREAMS[*s],
        }
    }

    /// Reads what the open subscription must have received since the last drain.
    async fn drain(&mut self) -> Check {
        let Some(mut open) = self.subscription.take() else { return Ok(()) };
        let n = self.model.log.len() as u64;
        let positions: Vec<u64> =
            (open.cursor..n).filter(|p| self.matches(&open.target, &self.model.log[*p as usize])).collect();
        let mut got = Vec::new();
        while got.len() < positions.len() {
            match within(&open.what, open.sub.next()).await? {
                Ok(SubscriptionMessage::Event(e)) => got.push(e),
                Ok(SubscriptionMessage::CaughtUp) => {
                    return Err(format!("{}: a second CaughtUp after {} live events", open.what, got.len()))
                }
                Err(e) => return Err(format!("{}: failed with {e:?}", open.what)),
            }
        }
        self.check_events(&got, &positions, &format!("{} (live)", open.what))?;
        open.cursor = n;
        self.subscription = Some(open);
        Ok(())
    }

    async fn subscribe(&mut self, target: Target, from: SubFrom) -> Check {
        self.drain().await?;
        self.subscription = None;
        let n = self.model.log.len() as u64;
        // The first model position the subscription must deliver, and the call.
        let (start, what, sub) = match &target {
            Target::All(filter) => {
                let from = match from {
                    SubFrom::Start => SubscribeFrom::Start,
                    SubFrom::End => SubscribeFrom::End,
                    SubFrom::After(i) if n > 0 => SubscribeFrom::After(pos(i.index(n as usize) as u64)),
                    SubFrom::After(_) => SubscribeFrom::Start,
                };
                let start = match from {
                    SubscribeFrom::Start => 0,
                    SubscribeFrom::End => n,
                    SubscribeFrom::After(p) => idx(p) + 1,
                    SubscribeFrom::At(p) => idx(p),
                };
                let event_filter = filter.to_event_filter();
                let what = format!("subscribe_to_all({from:?}, {event_filter:?})");
                let sub = within(&what, self.store().subscribe_to_all(from, event_filter)).await?;
                (start, what, sub)
            }
            Target::Stream(s) => {
                let stream = StreamId::new(STREAMS[*s]).expect("valid");
                let positions = self.model.streams.get(&stream).cloned().unwrap_or_default();
                let from = match from {
                    SubFrom::Start => SubscribeFrom::Start,
                    SubFrom::End => SubscribeFrom::End,
                    SubFrom::After(i) if !positions.is_empty() => {
                        SubscribeFrom::After(Revision(i.index(positions.len()) as u64))
                    }
                    SubFrom::After(_) => SubscribeFrom::Start,
                };
                let start = match from {
                    SubscribeFrom::Start => 0,
                    SubscribeFrom::End => n,
                    SubscribeFrom::After(r) => positions[r.0 as usize] + 1,
                    SubscribeFrom::At(r) => positions[r.0 as usize],
                };
                let what = format!("subscribe_to_stream({stream}, {from:?})");
                let sub = within(&what, self.store().subscribe_to_stream(&stream, from)).await?;
                (start, what, sub)
            }
        };
        let mut sub = sub.map_err(|e| format!("{what}: failed with {e:?}"))?;
        let positions: Vec<u64> = (start..n).filter(|p| self.matches(&target, &self.model.log[*p as usize])).collect();
        let mut got = Vec::new();
        loop {
            match within(&what, sub.next()).await? {
                Ok(SubscriptionMessage::Event(e)) => got.push(e),
                Ok(SubscriptionMessage::CaughtUp) => break,
                Err(e) => return Err(format!("{what}: failed with {e:?}")),
            }
        }
        self.check_events(&got, &positions, &format!("{what} (catch-up)"))?;
        self.subscription = Some(OpenSubscription { sub, target, cursor: n, what });
        Ok(())
    }

    async fn reopen(&mut self) -> Check {
        self.drain().await?;
        self.subscription = None;
        let store = self.store.take().expect("store is open");
        within("close", store.close()).await?.map_err(|e| format!("close failed: {e:?}"))?;
        let store = open(&self.dir).await?;
        let report = store.recovery_report().clone();
        if report.truncated.is_some() || report.index_rebuilt {
            return Err(format!("reopen after a clean close repaired something: {report:?}"));
        }
        self.store = Some(store);
        Ok(())
    }

    async fn run(&mut self, op: &Op) -> Check {
        match op {
            Op::Append { stream, exp, events } => {
                let s = StreamId::new(STREAMS[*stream]).expect("valid");
                let expected = self.expected(&s, exp);
                let events = events.iter().map(|e| self.event(e)).collect();
                self.append(s, expected, events).await
            }
            Op::Retry { which } => {
                if self.attempts.is_empty() {
                    return Ok(());
                }
                let a = self.attempts[which.index(self.attempts.len())].clone();
                self.append(a.stream, a.expected, a.events).await
            }
            Op::Overlap { which, keep, stream, exp, fresh, fresh_first } => {
                let Some(a) = self.successful(which) else { return Ok(()) };
                let kept = a.events[..keep.index(a.events.len()) + 1].to_vec();
                let fresh: Vec<EventData> = fresh.iter().map(|e| self.event(e)).collect();
                let events = if *fresh_first { [fresh, kept].concat() } else { [kept, fresh].concat() };
                let s = StreamId::new(STREAMS[*stream]).expect("valid");
                let expected = self.expected(&s, exp);
                self.append(s, expected, events).await
            }
            Op::Resend { which, stream, exp } => {
                let Some(a) = self.successful(which) else { return Ok(()) };
                let s = StreamId::new(STREAMS[*stream]).expect("valid");
                let expected = self.expected(&s, exp);
                self.append(s, expected, a.events).await
            }
            Op::Duplicate { stream, events, dup } => {
                let mut events: Vec<EventData> = events.iter().map(|e| self.event(e)).collect();
                let copy = events[dup.index(events.len())].clone();
                events.push(copy);
                let s = StreamId::new(STREAMS[*stream]).expect("valid");
                self.append(s, ExpectedRevision::Any, events).await
            }
            Op::ReadStream { stream, from, backwards, max } => {
                let s = StreamId::new(STREAMS[*stream]).expect("valid");
                let n = self.model.streams.get(&s).map_or(0, Vec::len) as u64;
                let dir = if *backwards { Direction::Backwards } else { Direction::Forwards };
                let from = match (from, backwards) {
                    (FromSpec::Start, _) => ReadFrom::Start,
                    (FromSpec::End, _) | (FromSpec::Past(_), true) => ReadFrom::End,
                    (FromSpec::At(i), _) => ReadFrom::At(Revision(if n == 0 { 0 } else { i.index(n as usize) as u64 })),
                    (FromSpec::Past(k), false) => ReadFrom::At(Revision(n + *k as u64)),
                };
                self.read_stream(s, from, dir, *max).await
            }
            Op::ReadAll { from, backwards, max, filter } => {
                let n = self.model.log.len() as u64;
                let dir = if *backwards { Direction::Backwards } else { Direction::Forwards };
                let from = match (from, backwards) {
                    (FromSpec::Start, _) => ReadFrom::Start,
                    (FromSpec::End, _) | (FromSpec::Past(_), true) => ReadFrom::End,
                    (FromSpec::At(_), true) if n == 0 => ReadFrom::End,
                    (FromSpec::At(i), _) => ReadFrom::At(pos(if n == 0 { 0 } else { i.index(n as usize) as u64 })),
                    (FromSpec::Past(k), false) => ReadFrom::At(pos(n + *k as u64)),
                };
                self.read_all(from, dir, *max, filter).await
            }
            Op::Head => {
                let got = within("head", self.store().head()).await?.map_err(|e| format!("head failed: {e:?}"))?;
                let want = (self.model.log.len() as u64).checked_sub(1).map(pos);
                if got != want {
                    return Err(format!("head() is {got:?}, the model says {want:?}"));
                }
                Ok(())
            }
            Op::Subscribe { target, from } => self.subscribe(target.clone(), from.clone()).await,
            Op::Drain => self.drain().await,
            Op::Reopen => self.reopen().await,
        }
    }

    /// After the last operation: everything the store holds is the model, in every view.
    async fn final_check(&mut self) -> Check {
        self.drain().await?;
        if let Some(open) = self.subscription.as_mut() {
            if let Ok(message) = tokio::time::timeout(Duration::from_millis(100), open.sub.next()).await {
                return Err(format!("{}: unexpected message after the last event: {message:?}", open.what));
            }
        }
        self.subscription = None;
        let everything = Filter { types: vec![], streams: vec![] };
        self.read_all(ReadFrom::Start, Direction::Forwards, 10_000, &everything).await?;
        self.read_all(ReadFrom::End, Direction::Backwards, 10_000, &everything).await?;
        for name in STREAMS {
            let s = StreamId::new(name).expect("valid");
            self.read_stream(s, ReadFrom::Start, Direction::Forwards, 10_000).await?;
        }
        self.run(&Op::Head).await?;
        let log = within(
            "read_all",
            self.store().read_all(ReadFrom::Start, Direction::Forwards, 10_000, &EventFilter::all()),
        )
        .await?
        .map_err(|e| format!("read_all failed: {e:?}"))?;
        if let Some(w) = log.windows(2).find(|w| w[0].recorded_at > w[1].recorded_at) {
            return Err(format!("recorded_at decreases from position {} to {}", w[0].position, w[1].position));
        }
        Ok(())
    }
}

pub(super) async fn run_case(ops: Vec<Op>) -> Check {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path().join("data");
    let store = open(&dir).await?;
    let mut h = Harness {
        dir,
        store: Some(store),
        model: Model::default(),
        attempts: Vec::new(),
        next_id: 0,
        subscription: None,
        recorded_at: HashMap::new(),
    };
    for (i, op) in ops.iter().enumerate() {
        h.run(op).await.map_err(|e| format!("operation {i} ({op:?}): {e}"))?;
    }
    h.final_check().await.map_err(|e| format!("after the last operation: {e}"))?;
    h.subscription = None;
    if let Some(store) = h.store.take() {
        within("close", store.close()).await?.map_err(|e| format!("close failed: {e:?}"))?;
    }
    Ok(())
}
