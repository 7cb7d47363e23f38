//! Model-based property test of the embedded engine.
//!
//! Why this exists: the conformance suite checks each promise of the `EventStore` contract in a
//! hand-written scenario; the bugs that survive such tests hide in combinations nobody wrote down
//! (a retry after a reopen after a failed partial overlap, a filtered read right after a rolled
//! segment, ...). Here proptest generates random sequences of operations — appends with every
//! `ExpectedRevision` mode over a few streams, exact retries of earlier appends, batches that
//! partly overlap stored events or send stored ids to another stream, stream and `$all` reads
//! with filters, a subscription drained along the way, close + reopen — and runs each against an
//! `EmbeddedStore` and against a tiny in-memory model of the contract (a vector of events,
//! per-stream revisions, an id map). Every result, success values and error variants alike, must
//! agree with the model. Where the contract leaves a choice open (which error wins when an append
//! breaks two rules), the model accepts each allowed answer and nothing else.
//!
//! 32 cases of up to 40 operations by default; set `PROPTEST_CASES` for more. The operations and
//! the model are here; the harness that runs a case against both is `model/harness.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use annals_store::engine::{EmbeddedStore, EngineConfig};
use annals_store::{
    AppendResult, CurrentRevision, Direction, EventData, EventFilter, EventStore, ExpectedRevision, Position, ReadFrom,
    ReadStreamOutcome, RecordedEvent, Revision, StoreError, StreamId, SubscribeFrom, Subscription, SubscriptionMessage,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use uuid::Uuid;

const STREAMS: [&str; 4] = ["acct-1", "acct-2", "user-1", "acct-10"];
const TYPES: [&str; 3] = ["Opened", "OpenedAgain", "Closed"];
const TYPE_PREFIXES: [&str; 4] = ["Opened", "Open", "Closed", "Deposited"];
const STREAM_PREFIXES: [&str; 4] = ["acct-", "acct-1", "user-", "nobody-"];
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// An expected revision, resolved against the model's state when the operation runs.
#[derive(Clone, Debug)]
enum Exp {
    Any,
    NoStream,
    StreamExists,
    /// `Exact(current)`, or `NoStream` for a missing stream: usually succeeds.
    Current,
    /// `Exact(current + delta)` (clamped at 0): usually fails.
    Off(i8),
    Exact(u64),
}

#[derive(Clone, Debug)]
struct Ev {
    ty: usize,
    n: u8,
    metadata: bool,
}

#[derive(Clone, Debug)]
enum FromSpec {
    Start,
    End,
    /// An existing revision/position.
    At(Index),
    /// `k` past the end (forwards reads only; backwards reads use `End` instead).
    Past(u8),
}

#[derive(Clone, Debug)]
struct Filter {
    types: Vec<usize>,
    streams: Vec<usize>,
}

#[derive(Clone, Debug)]
enum Target {
    All(Filter),
    Stream(usize),
}

#[derive(Clone, Debug)]
enum SubFrom {
    Start,
    End,
    /// After an existing position/revision (`Start` when there is none).
    After(Index),
}

#[derive(Clone, Debug)]
enum Op {
    /// Fresh events (possibly none).
    Append {
        stream: usize,
        exp: Exp,
        events: Vec<Ev>,
    },
    /// Re-sends an earlier append attempt exactly: same stream, expected revision, events.
    Retry {
        which: Index,
    },
    /// The first `keep` events of an earlier successful append mixed with fresh ones.
    Overlap {
        which: Index,
        keep: Index,
        stream: usize,
        exp: Exp,
        fresh: Vec<Ev>,
        fresh_first: bool,
    },
    /// The events of an earlier successful append, sent to `stream` (maybe the same) with `exp`.
    Resend {
        which: Index,
        stream: usize,
        exp: Exp,
    },
    /// Fresh events with one id repeated.
    Duplicate {
        stream: usize,
        events: Vec<Ev>,
        dup: Index,
    },
    ReadStream {
        stream: usize,
        from: FromSpec,
        backwards: bool,
        max: usize,
    },
    ReadAll {
        from: FromSpec,
        backwards: bool,
        max: usize,
        filter: Filter,
    },
    Head,
    /// Drains the open subscription (if any), then opens a new one and reads it to `CaughtUp`.
    Subscribe {
        target: Target,
        from: SubFrom,
    },
    /// Reads what the open subscription must have received since it was last drained.
    Drain,
    Reopen,
}

fn exp() -> impl Strategy<Value = Exp> {
    prop_oneof![
        2 => Just(Exp::Any),
        1 => Just(Exp::NoStream),
        1 => Just(Exp::StreamExists),
        3 => Just(Exp::Current),
        1 => (-2i8..=2).prop_map(Exp::Off),
        1 => (0u64..6).prop_map(Exp::Exact),
    ]
}

fn ev() -> impl Strategy<Value = Ev> {
    (0..TYPES.len(), any::<u8>(), prop::bool::weighted(0.2)).prop_map(|(ty, n, metadata)| Ev { ty, n, metadata })
}

fn from() -> impl Strategy<Value = FromSpec> {
    prop_oneof![
        2 => Just(FromSpec::Start),
        1 => Just(FromSpec::End),
        3 => any::<Index>().prop_map(FromSpec::At),
        1 => (0u8..3).prop_map(FromSpec::Past),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    prop_oneof![
        2 => Just(Filter { types: vec![], streams: vec![] }),
        3 => (prop::collection::vec(0..TYPE_PREFIXES.len(), 0..3), prop::collection::vec(0..STREAM_PREFIXES.len(), 0..3))
            .prop_map(|(types, streams)| Filter { types, streams }),
    ]
}

fn stream_idx() -> impl Strategy<Value = usize> {
    0..STREAMS.len()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (stream_idx(), exp(), prop::collection::vec(ev(), 1..5))
            .prop_map(|(stream, exp, events)| Op::Append { stream, exp, events }),
        1 => (stream_idx(), exp()).prop_map(|(stream, exp)| Op::Append { stream, exp, events: vec![] }),
        4 => any::<Index>().prop_map(|which| Op::Retry { which }),
        2 => (any::<Index>(), any::<Index>(), stream_idx(), exp(), prop::collection::vec(ev(), 1..3), any::<bool>())
            .prop_map(|(which, keep, stream, exp, fresh, fresh_first)| Op::Overlap {
                which, keep, stream, exp, fresh, fresh_first
            }),
        2 => (any::<Index>(), stream_idx(), exp()).prop_map(|(which, stream, exp)| Op::Resend { which, stream, exp }),
        1 => (stream_idx(), prop::collection::vec(ev(), 1..4), any::<Index>())
            .prop_map(|(stream, events, dup)| Op::Duplicate { stream, events, dup }),
        3 => (stream_idx(), from(), any::<bool>(), 0usize..12)
            .prop_map(|(stream, from, backwards, max)| Op::ReadStream { stream, from, backwards, max }),
        3 => (from(), any::<bool>(), 0usize..20, filter())
            .prop_map(|(from, backwards, max, filter)| Op::ReadAll { from, backwards, max, filter }),
        1 => Just(Op::Head),
        2 => (prop_oneof![filter().prop_map(Target::All), stream_idx().prop_map(Target::Stream)],
              prop_oneof![Just(SubFrom::Start), Just(SubFrom::End), any::<Index>().prop_map(SubFrom::After)])
            .prop_map(|(target, from)| Op::Subscribe { target, from }),
        2 => Just(Op::Drain),
        1 => Just(Op::Reopen),
    ]
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct ModelEvent {
    id: Uuid,
    stream: StreamId,
    revision: u64,
    event_type: String,
    data: Bytes,
    metadata: Bytes,
}

/// The contract, naively: the log in position order, each stream's positions, each id's position.
#[derive(Default)]
struct Model {
    log: Vec<ModelEvent>,
    streams: HashMap<StreamId, Vec<u64>>,
    ids: HashMap<Uuid, u64>,
}

/// An error the model allows.
#[derive(Clone, Debug)]
enum Allowed {
    Empty,
    Duplicate(Uuid),
    Wrong {
        expected: ExpectedRevision,
        actual: CurrentRevision,
    },
    /// Naming one of these stored ids and one of these streams.
    Conflict {
        ids: Vec<Uuid>,
        streams: Vec<StreamId>,
    },
}

enum Outcome {
    Ok(AppendResult),
    /// Any one of these errors (the contract does not order them).
    Err(Vec<Allowed>),
}

impl Model {
    fn current(&self, stream: &StreamId) -> Option<u64> {
        self.streams.get(stream).map(|p| p.len() as u64 - 1)
    }

    /// What an append must do, and does it to the model when it succeeds.
    fn append(&mut self, stream: &StreamId, expected: ExpectedRevision, events: &[EventData]) -> Outcome {
        if events.is_empty() {
            let mut allowed = vec![Allowed::Empty];
            allowed.extend(self.revision_error(stream, expected));
            return Outcome::Err(allowed);
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = events.iter().map(EventData::id).find(|id| !seen.insert(*id)) {
            return Outcome::Err(vec![Allowed::Duplicate(dup)]);
        }
        let stored: Vec<Option<u64>> = events.iter().map(|e| self.ids.get(&e.id()).copied()).collect();
        let revision_error = self.revision_error(stream, expected);
        if stored.iter().all(Option::is_none) {
            if let Some(e) = revision_error {
                return Outcome::Err(vec![e]);
            }
            let first_revision = self.current(stream).map_or(0, |r| r + 1);
            let first_position = self.log.len() as u64;
            for (i, e) in events.iter().enumerate() {
                let position = self.log.len() as u64;
                self.log.push(ModelEvent {
                    id: e.id(),
                    stream: stream.clone(),
                    revision: first_revision + i as u64,
                    event_type: e.event_type().to_owned(),
                    data: e.data().clone(),
                    metadata: e.metadata().clone(),
                });
                self.streams.entry(stream.clone()).or_default().push(position);
                self.ids.insert(e.id(), position);
            }
            let n = events.len() as u64;
            return Outcome::Ok(AppendResult {
                stream: stream.clone(),
                first_revision: Revision(first_revision),
                last_revision: Revision(first_revision + n - 1),
                first_position: pos(first_position),
                last_position: pos(first_position + n - 1),
            });
        }
        if stored.iter().all(Option::is_some) {
            let found: Vec<&ModelEvent> = stored.iter().map(|p| &self.log[p.unwrap() as usize]).collect();
            let first = found[0].revision;
            let in_place = found.iter().enumerate().all(|(i, e)| e.stream == *stream && e.revision == first + i as u64)
                && match expected {
                    ExpectedRevision::Exact(r) => first == r.0 + 1,
                    ExpectedRevision::NoStream => first == 0,
                    ExpectedRevision::Any | ExpectedRevision::StreamExists => true,
                };
            if in_place {
                let (p0, pn) = (stored[0].unwrap(), stored[stored.len() - 1].unwrap());
                return Outcome::Ok(AppendResult {
                    stream: stream.clone(),
                    first_revision: Revision(first),
                    last_revision: Revision(found[found.len() - 1].revision),
                    first_position: pos(p0),
                    last_position: pos(pn),
                });
            }
        }
        // Partly stored, or stored elsewhere: a conflict (or, if the expectation fails too, that).
        let mut streams = vec![stream.clone()];
        let mut ids = Vec::new();
        for (e, p) in events.iter().zip(&stored) {
            if let Some(p) = p {
                ids.push(e.id());
                streams.push(self.log[*p as usize].stream.clone());
            }
        }
        let mut allowed = vec![Allowed::Conflict { ids, streams }];
        allowed.extend(revision_error);
        Outcome::Err(allowed)
    }

    fn revision_error(&self, stream: &StreamId, expected: ExpectedRevision) -> Option<Allowed> {
        let current = self.current(stream);
        let holds = match expected {
            ExpectedRevision::Any => true,
            ExpectedRevision::NoStream => current.is_none(),
            ExpectedRevision::StreamExists => current.is_some(),
            ExpectedRevision::Exact(r) => current == Some(r.0),
        };
        let actual = current.map_or(CurrentRevision::NoStream, |r| CurrentRevision::Current(Revision(r)));
        (!holds).then_some(Allowed::Wrong { expected, actual })
    }

    /// Positions `read_stream` must return, or `None` for `StreamNotFound`.
    fn read_stream(&self, stream: &StreamId, from: ReadFrom<Revision>, dir: Direction, max: usize) -> Option<Vec<u64>> {
        let positions = self.streams.get(stream)?;
        let n = positions.len() as u64;
        let revs: Vec<u64> = match dir {
            Direction::Forwards => {
                let start = match from {
                    ReadFrom::Start => 0,
                    ReadFrom::End => n,
                    ReadFrom::At(r) => r.0,
                    ReadFrom::After(r) => r.0 + 1,
                };
                (start..n).take(max).collect()
            }
            Direction::Backwards => {
                let start = match from {
                    ReadFrom::Start => 0,
                    ReadFrom::End => n - 1,
                    ReadFrom::At(r) => r.0,
                    ReadFrom::After(r) => match r.0.checked_sub(1) {
                        Some(before) => before,
                        None => return Some(Vec::new()),
                    },
                };
                assert!(start < n, "the test never reads backwards from past the end");
                (0..=start).rev().take(max).collect()
            }
        };
        Some(revs.into_iter().map(|r| positions[r as usize]).collect())
    }

    fn read_all(&self, from: ReadFrom<Position>, dir: Direction, max: usize, filter: &Filter) -> Vec<u64> {
        let n = self.log.len() as u64;
        let matching = |p: &u64| filter.matches(&self.log[*p as usize]);
        match dir {
            Direction::Forwards => {
                let start = match from {
                    ReadFrom::Start => 0,
                    ReadFrom::End => n,
                    ReadFrom::At(p) => idx(p),
                    ReadFrom::After(p) => idx(p) + 1,
                };
                (start..n).filter(matching).take(max).collect()
            }
            Direction::Backwards => {
                if n == 0 {
                    return Vec::new();
                }
                let start = match from {
                    ReadFrom::Start => 0,
                    ReadFrom::End => n - 1,
                    ReadFrom::At(p) => idx(p),
                    ReadFrom::After(p) => match idx(p).checked_sub(1) {
                        Some(before) => before,
                        None => return Vec::new(),
                    },
                };
                assert!(start < n, "the test never reads backwards from past the end");
                (0..=start).rev().filter(matching).take(max).collect()
            }
        }
    }
}

impl Filter {
    fn to_event_filter(&self) -> EventFilter {
        let mut f = EventFilter::all();
        for t in &self.types {
            f = f.event_type_prefix(TYPE_PREFIXES[*t]);
        }
        for s in &self.streams {
            f = f.stream_prefix(STREAM_PREFIXES[*s]);
        }
        f
    }

    /// The contract's rule, written independently of `EventFilter::matches`.
    fn matches(&self, e: &ModelEvent) -> bool {
        let type_ok = self.types.is_empty() || self.types.iter().any(|t| e.event_type.starts_with(TYPE_PREFIXES[*t]));
        let stream_ok =
            self.streams.is_empty() || self.streams.iter().any(|s| e.stream.as_str().starts_with(STREAM_PREFIXES[*s]));
        type_ok && stream_ok
    }
}

/// Whether `e`, returned by an append to `stream`, is the allowed error `allowed`.
fn error_matches(allowed: &Allowed, e: &StoreError, stream: &StreamId) -> bool {
    match (allowed, e) {
        (Allowed::Empty, StoreError::EmptyBatch) => true,
        (Allowed::Duplicate(id), StoreError::DuplicateIdInBatch { event_id }) => id == event_id,
        (
            Allowed::Wrong { expected, actual },
            StoreError::WrongExpectedRevision { stream: s, expected: x, actual: a },
        ) => s == stream && x == expected && a == actual,
        (Allowed::Conflict { ids, streams }, StoreError::IdempotencyConflict { stream: s, event_id, .. }) => {
            ids.contains(event_id) && streams.contains(s)
        }
        _ => false,
    }
}

#[path = "model/harness.rs"]
mod harness;

use crate::{idx, pos};
use harness::run_case;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(32);
    ProptestConfig {
        cases,
        // Each case opens a store on disk; bound the time spent shrinking a failure.
        max_shrink_time: 120_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn embedded_store_agrees_with_the_model(ops in prop::collection::vec(op(), 1..=40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        if let Err(e) = runtime.block_on(run_case(ops)) {
            return Err(TestCaseError::fail(e));
        }
    }
}
