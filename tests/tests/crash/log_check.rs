//! Checking a killed child's work: its ack log (what the store acknowledged) and a scan of the
//! reopened store that verifies every acknowledged batch is present, whole and in order.

use super::*;
use annals_store::engine::DENSE;

/// One line of a child's ack log: an append the store acknowledged.
#[derive(Debug)]
pub(crate) struct Ack {
    pub(crate) line: usize,
    pub(crate) stream: String,
    pub(crate) batch: String,
    pub(crate) ids: Vec<Uuid>,
    pub(crate) first_revision: u64,
    pub(crate) last_revision: u64,
    pub(crate) first_position: u64,
    pub(crate) last_position: u64,
    pub(crate) data_hash: u64,
}

/// What has been verified so far: the log up to `len` events, as the parent last closed it.
#[derive(Clone, Debug)]
pub(crate) struct Verified {
    /// Number of events verified (positions `0..len`).
    pub(crate) len: u64,
    /// Running hash of every verified event (id, stream, revision, position, type, data).
    pub(crate) prefix_hash: u64,
    /// Id of the event at `len - 1`.
    pub(crate) last_id: Option<Uuid>,
    /// Next revision of each stream.
    pub(crate) next_revision: HashMap<String, u64>,
    /// `recorded_at` of the event at `len - 1`, in µs.
    pub(crate) last_recorded_at: i64,
}

impl Verified {
    pub(crate) fn empty() -> Self {
        Verified {
            len: 0,
            prefix_hash: FNV_OFFSET,
            last_id: None,
            next_revision: HashMap::new(),
            last_recorded_at: i64::MIN,
        }
    }
}

/// The batch being walked through while scanning `$all`: the next event must continue it.
#[derive(Debug)]
pub(crate) struct OpenBatch {
    pub(crate) batch: String,
    pub(crate) size: u64,
    pub(crate) next_index: u64,
    pub(crate) stream: String,
    pub(crate) first_position: u64,
}

/// Checks events one by one, in position order, against every invariant that can be checked on
/// the event stream alone.
pub(crate) struct Scanner {
    pub(crate) state: Verified,
    pub(crate) open_batch: Option<OpenBatch>,
}

impl Scanner {
    pub(crate) fn push(&mut self, event: &RecordedEvent) -> anyhow::Result<()> {
        let at = || format!("event at position {} (id {}, stream {})", event.position, event.id, event.stream);
        let state = &mut self.state;
        ensure!(
            DENSE.index(event.position) == state.len,
            "{}: expected position {} (positions must be contiguous)",
            at(),
            state.len
        );
        let stream = event.stream.as_str().to_owned();
        let next_revision = state.next_revision.entry(stream.clone()).or_insert(0);
        ensure!(
            event.revision.0 == *next_revision,
            "{}: revision {} but the stream's next revision is {} (revisions must be contiguous from 0)",
            at(),
            event.revision,
            next_revision
        );
        *next_revision += 1;
        let recorded_at = event.recorded_at.timestamp_micros();
        ensure!(
            recorded_at >= state.last_recorded_at,
            "{}: recorded_at {} µs is before the previous event's {} µs",
            at(),
            recorded_at,
            state.last_recorded_at
        );
        state.last_recorded_at = recorded_at;

        // Content: the child's JSON, with a payload that matches its checksum.
        let data: serde_json::Value =
            serde_json::from_slice(&event.data).with_context(|| format!("{}: data is not JSON", at()))?;
        let field = |name: &str| data.get(name).ok_or_else(|| anyhow!("{}: data has no {name:?}: {data}", at()));
        let str_field = |name: &str| field(name)?.as_str().ok_or_else(|| anyhow!("{}: {name:?} is not a string", at()));
        let u64_field = |name: &str| field(name)?.as_u64().ok_or_else(|| anyhow!("{}: {name:?} is not a u64", at()));
        let batch = str_field("batch")?.to_owned();
        let size = u64_field("batch_size")?;
        let index = u64_field("index")?;
        ensure!(str_field("stream")? == stream, "{}: data names stream {:?}", at(), str_field("stream")?);
        let payload = str_field("payload")?;
        let check = format!("{:016x}", fnv1a(FNV_OFFSET, payload.as_bytes()));
        ensure!(str_field("check")? == check, "{}: payload does not match its checksum (content damaged)", at());
        let expected_type = if size == 1 { "crash.single" } else { "crash.batched" };
        ensure!(event.event_type == expected_type, "{}: event type {:?}", at(), event.event_type);
        ensure!(event.metadata.is_empty(), "{}: unexpected metadata", at());

        // Atomicity: a batch's events are contiguous and complete.
        match self.open_batch.take() {
            Some(open) => {
                ensure!(
                    batch == open.batch && index == open.next_index && stream == open.stream,
                    "{}: batch {} ({} events, stream {}, from position {}) is partial: its event {} should be \
                     here but this is event {} of batch {}",
                    at(),
                    open.batch,
                    open.size,
                    open.stream,
                    open.first_position,
                    open.next_index,
                    index,
                    batch
                );
                if index + 1 < open.size {
                    self.open_batch = Some(OpenBatch { next_index: index + 1, ..open });
                }
            }
            None => {
                ensure!(
                    index == 0,
                    "{}: event {} of batch {} ({} events) without the events before it: a partial batch",
                    at(),
                    index,
                    batch,
                    size
                );
                if size > 1 {
                    self.open_batch = Some(OpenBatch {
                        batch,
                        size,
                        next_index: 1,
                        stream: stream.clone(),
                        first_position: state.len,
                    });
                }
            }
        }

        let mut h = state.prefix_hash;
        h = fnv1a(h, event.id.as_bytes());
        h = fnv1a(h, stream.as_bytes());
        h = fnv1a(h, &event.revision.0.to_le_bytes());
        h = fnv1a(h, &DENSE.index(event.position).to_le_bytes());
        h = fnv1a(h, event.event_type.as_bytes());
        h = fnv1a(h, &(event.data.len() as u64).to_le_bytes());
        h = fnv1a(h, &event.data);
        state.prefix_hash = h;
        state.last_id = Some(event.id);
        state.len += 1;
        Ok(())
    }

    /// The log ended: it must not end inside a batch.
    pub(crate) fn finish(&self) -> anyhow::Result<()> {
        if let Some(open) = &self.open_batch {
            bail!(
                "the log ends inside batch {} of stream {} ({} events from position {}): only {} of them are \
                 visible — a partial append",
                open.batch,
                open.stream,
                open.size,
                open.first_position,
                open.next_index
            );
        }
        Ok(())
    }
}

/// What a child wrote: how long its open took (if it got that far) and the appends it acked.
#[derive(Debug, Default)]
pub(crate) struct AckLog {
    pub(crate) open_ms: Option<u64>,
    pub(crate) acks: Vec<Ack>,
}

pub(crate) fn parse_acks(path: &Path) -> anyhow::Result<AckLog> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "", // not even one whole line: the kill came before the first one was written out
    };
    let mut log = AckLog::default();
    for (n, line) in complete.lines().enumerate() {
        let line_no = n + 1;
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}:{line_no}: not JSON: {line}", path.display()))?;
        if v.get("ready").is_some() {
            ensure!(line_no == 1, "{}:{line_no}: \"ready\" after acks", path.display());
            log.open_ms = v.get("open_ms").and_then(serde_json::Value::as_u64);
            continue;
        }
        ensure!(log.open_ms.is_some(), "{}:{line_no}: an ack before \"ready\"", path.display());
        let get = |name: &str| v.get(name).ok_or_else(|| anyhow!("{}:{line_no}: no {name:?}", path.display()));
        let num = |name: &str| get(name)?.as_u64().ok_or_else(|| anyhow!("{}:{line_no}: bad {name:?}", path.display()));
        let text = |name: &str| {
            get(name)?.as_str().map(str::to_owned).ok_or_else(|| anyhow!("{}:{line_no}: bad {name:?}", path.display()))
        };
        let ids = get("ids")?
            .as_array()
            .ok_or_else(|| anyhow!("{}:{line_no}: bad \"ids\"", path.display()))?
            .iter()
            .map(|id| id.as_str().and_then(|s| Uuid::parse_str(s).ok()))
            .collect::<Option<Vec<Uuid>>>()
            .ok_or_else(|| anyhow!("{}:{line_no}: bad id in \"ids\"", path.display()))?;
        let data_hash = u64::from_str_radix(&text("data_hash")?, 16)
            .with_context(|| format!("{}:{line_no}: bad \"data_hash\"", path.display()))?;
        log.acks.push(Ack {
            line: line_no,
            stream: text("stream")?,
            batch: text("batch")?,
            ids,
            first_revision: num("first_revision")?,
            last_revision: num("last_revision")?,
            first_position: num("first_position")?,
            last_position: num("last_position")?,
            data_hash,
        });
    }
    Ok(log)
}
