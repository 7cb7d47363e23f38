//! Helpers of the embedded engine's tests (`conformance_embedded.rs`): opening stores, appending
//! and reading with a deadline, and a mixed workload whose every answer is kept for checking.

use super::*;

pub(crate) async fn within<F: Future>(what: &str, fut: F) -> Result<F::Output> {
    tokio::time::timeout(WAIT, fut).await.with_context(|| format!("timed out after {WAIT:?}: {what}"))
}

pub(crate) async fn open(dir: &Path) -> Result<EmbeddedStore> {
    within("open", EmbeddedStore::open(config(dir))).await?.with_context(|| format!("open {}", dir.display()))
}

pub(crate) async fn close(store: EmbeddedStore) -> Result<()> {
    within("close", store.close()).await?.context("close")
}

pub(crate) fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream name")
}

pub(crate) fn event(event_type: &str, n: u64, payload: usize) -> EventData {
    EventData::json(event_type, &serde_json::json!({ "n": n, "pad": "x".repeat(payload) })).expect("valid event")
}

pub(crate) async fn append(
    store: &EmbeddedStore,
    s: &StreamId,
    expected: ExpectedRevision,
    events: &[EventData],
) -> Result<AppendResult> {
    within("append", store.append_to_stream(s, expected, events.to_vec()))
        .await?
        .with_context(|| format!("append of {} events to {s} with {expected}", events.len()))
}

pub(crate) async fn read_all(
    store: &EmbeddedStore,
    from: ReadFrom<Position>,
    direction: Direction,
    max_count: usize,
    filter: &EventFilter,
) -> Result<Vec<RecordedEvent>> {
    within("read_all", store.read_all(from, direction, max_count, filter))
        .await?
        .with_context(|| format!("read_all({from:?}, {direction:?}, {max_count}, {filter:?})"))
}

pub(crate) async fn read_stream(
    store: &EmbeddedStore,
    s: &StreamId,
    from: ReadFrom<Revision>,
    direction: Direction,
    max_count: usize,
) -> Result<ReadStreamOutcome> {
    within("read_stream", store.read_stream(s, from, direction, max_count))
        .await?
        .with_context(|| format!("read_stream({s}, {from:?}, {direction:?}, {max_count})"))
}

pub(crate) async fn whole_log(store: &EmbeddedStore) -> Result<Vec<RecordedEvent>> {
    read_all(store, ReadFrom::Start, Direction::Forwards, 1_000_000, &EventFilter::all()).await
}

/// Everything a reader can observe of a store, for before/after comparisons.
#[derive(Debug, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) head: Option<Position>,
    pub(crate) log: Vec<RecordedEvent>,
    pub(crate) log_backwards: Vec<RecordedEvent>,
    pub(crate) streams: BTreeMap<String, ReadStreamOutcome>,
    pub(crate) streams_backwards: BTreeMap<String, ReadStreamOutcome>,
    pub(crate) filtered: Vec<Vec<RecordedEvent>>,
}

pub(crate) fn filters() -> Vec<EventFilter> {
    vec![
        EventFilter::all().stream_prefix("acct-"),
        EventFilter::all().event_type_prefix("Opened"),
        EventFilter::all().stream_prefix("user-").event_type_prefix("Closed"),
    ]
}

pub(crate) async fn snapshot(store: &EmbeddedStore, stream_names: &[&str]) -> Result<Snapshot> {
    let mut streams = BTreeMap::new();
    let mut streams_backwards = BTreeMap::new();
    for name in stream_names {
        let s = stream(name);
        streams
            .insert(name.to_string(), read_stream(store, &s, ReadFrom::Start, Direction::Forwards, 1_000_000).await?);
        streams_backwards
            .insert(name.to_string(), read_stream(store, &s, ReadFrom::End, Direction::Backwards, 1_000_000).await?);
    }
    let mut filtered = Vec::new();
    for filter in filters() {
        filtered.push(read_all(store, ReadFrom::Start, Direction::Forwards, 1_000_000, &filter).await?);
    }
    Ok(Snapshot {
        head: within("head", store.head()).await??,
        log: whole_log(store).await?,
        log_backwards: read_all(store, ReadFrom::End, Direction::Backwards, 1_000_000, &EventFilter::all()).await?,
        streams,
        streams_backwards,
        filtered,
    })
}

/// Checks two snapshots are equal, naming the first difference.
pub(crate) fn ensure_same(before: &Snapshot, after: &Snapshot, what: &str) -> Result<()> {
    ensure!(before.head == after.head, "{what}: head {:?} became {:?}", before.head, after.head);
    ensure!(before.log.len() == after.log.len(), "{what}: {} events became {}", before.log.len(), after.log.len());
    for (b, a) in before.log.iter().zip(&after.log) {
        ensure!(b == a, "{what}: event at position {} differs:\n before {b:?}\n after  {a:?}", b.position);
    }
    ensure!(before.log_backwards == after.log_backwards, "{what}: read_all backwards differs");
    for (name, b) in &before.streams {
        ensure!(Some(b) == after.streams.get(name), "{what}: read_stream({name}) differs");
        ensure!(
            before.streams_backwards.get(name) == after.streams_backwards.get(name),
            "{what}: read_stream({name}) backwards differs"
        );
    }
    ensure!(before.filtered == after.filtered, "{what}: filtered read_all differs");
    Ok(())
}

/// A successful append and the batch it wrote, to retry later.
pub(crate) struct Appended {
    pub(crate) stream: StreamId,
    pub(crate) expected: ExpectedRevision,
    pub(crate) events: Vec<EventData>,
    pub(crate) result: AppendResult,
}

pub(crate) async fn ensure_retries_return_original(
    store: &EmbeddedStore,
    appended: &[Appended],
    what: &str,
) -> Result<()> {
    let head = within("head", store.head()).await??;
    for a in appended {
        let retry = within("retry", store.append_to_stream(&a.stream, a.expected, a.events.clone())).await?;
        match retry {
            Ok(result) => ensure!(
                result == a.result,
                "{what}: retry of the append to {} with {} returned {result:?}, not the original {:?}",
                a.stream,
                a.expected,
                a.result
            ),
            Err(e) => bail!(
                "{what}: retry of the append to {} with {} must return the original {:?}, failed: {e:?}",
                a.stream,
                a.expected,
                a.result
            ),
        }
    }
    ensure!(within("head", store.head()).await?? == head, "{what}: retries moved the head");
    Ok(())
}

pub(crate) fn segment_files(data_dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(data_dir.join("log")).context("list log/")? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "seg") {
            files.push((path, entry.metadata()?.len()));
        }
    }
    files.sort();
    Ok(files)
}

/// Appends a mixed workload (several streams, every expected-revision mode) and returns what it
/// appended.
pub(crate) async fn mixed_workload(store: &EmbeddedStore, appends: u64, payload: usize) -> Result<Vec<Appended>> {
    let names = ["acct-1", "acct-2", "user-1", "user-2", "acct-10"];
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    let mut done = Vec::new();
    for i in 0..appends {
        let name = names[(i * 7 % 5) as usize];
        let s = stream(name);
        let expected = match (last.get(name), i % 4) {
            (None, 0 | 1) => ExpectedRevision::NoStream,
            (None, _) => ExpectedRevision::Any,
            (Some(r), 0 | 1) => ExpectedRevision::Exact(Revision(*r)),
            (Some(_), 2) => ExpectedRevision::StreamExists,
            (Some(_), _) => ExpectedRevision::Any,
        };
        let ty = ["Opened", "Deposited", "Closed"][(i % 3) as usize];
        let events: Vec<EventData> = (0..1 + i % 3).map(|k| event(ty, i * 10 + k, payload)).collect();
        let result = append(store, &s, expected, &events).await?;
        last.insert(name, result.last_revision.0);
        done.push(Appended { stream: s, expected, events, result });
    }
    Ok(done)
}

pub(crate) const NAMES: [&str; 6] = ["acct-1", "acct-2", "user-1", "user-2", "acct-10", "never-written"];
