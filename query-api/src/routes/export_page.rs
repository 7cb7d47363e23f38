//! One page of an export body (`export_body.rs`): its events read from the log, checked against the
//! tree's own leaf hashes, selected, and written as lines (NDJSON or CSV rows).
//!
//! Why a module of its own: a page depends on nothing but its first position (the log's positions
//! are dense, so every page's range is known before any is read), which lets the body prepare a
//! few pages at once on their own tasks and write them in order. An export is then bounded by the
//! machine's cores instead of by one thread doing read, hash, select, serialize and write one after
//! another (what the export benchmark measured). Memory stays constant: a page of events and its
//! lines per page in flight, and a bounded number of pages in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use annals_integrity::Hash;
use annals_store::{DensePositions, Direction, EventFilter, EventStore, ReadFrom, ReadStreamOutcome, RecordedEvent};

use crate::auth::Tenant;
use crate::integrity::export_format::{self, ExportLine, Selection};
use crate::integrity::export_write;
use crate::integrity::leaf::{self, leaf_hash};
use crate::integrity::selection::fold_into;
use crate::state::AppState;

/// Events per page: one chunk of the body.
pub(super) const PAGE: usize = 512;

/// Message streams whose selection an export remembers (then forgets them all, and folds a message
/// again when it meets it again): bounds the export's memory.
const DECIDED: usize = 4096;

/// What every page of one export shares.
pub(super) struct Export {
    pub(super) state: AppState,
    pub(super) tenant: Tenant,
    pub(super) selection: Selection,
    pub(super) csv: bool,
    /// The export's tree size: the first position past it.
    pub(super) end: u64,
    /// A message export: per message stream met lately, whether its document at the head is
    /// selected. Shared by the pages in flight: a message's events are spread over pages.
    decided: Mutex<HashMap<String, bool>>,
}

impl Export {
    pub(super) fn new(state: AppState, tenant: Tenant, selection: Selection, csv: bool, end: u64) -> Self {
        Self { state, tenant, selection, csv, end, decided: Mutex::new(HashMap::new()) }
    }
}

/// A page's lines, and how many of them are records.
pub(super) struct Page {
    pub(super) lines: Vec<u8>,
    pub(super) records: u64,
}

/// The page of `count` positions from `first`: reads the log (as many reads as it takes), then
/// selects and writes the lines on the blocking pool (it is all CPU: hashing, base64, JSON).
pub(super) async fn prepare(export: Arc<Export>, first: u64, count: usize) -> Result<Page, std::io::Error> {
    let store: &dyn EventStore = export.state.store.as_ref();
    let dense = dense_positions(store)?;
    let mut events: Vec<RecordedEvent> = Vec::with_capacity(count);
    while events.len() < count {
        let next = first + events.len() as u64;
        let want = count - events.len();
        let read = store
            .read_all(ReadFrom::At(dense.position(next)), Direction::Forwards, want, &EventFilter::all())
            .await
            .map_err(std::io::Error::other)?;
        if read.is_empty() {
            return Err(std::io::Error::other(format!("the log ends before position {next}")));
        }
        events.extend(read.into_iter().take(want));
    }
    for (offset, event) in events.iter().enumerate() {
        let expected = first + offset as u64;
        if dense.index(event.position) != expected {
            return Err(std::io::Error::other(format!(
                "the log has position {} where {expected} was expected",
                event.position
            )));
        }
    }
    // The tree's own leaf hashes: a line whose bytes no longer make it says so (the log was changed
    // after the tree took the event in), so that the verifier can name it.
    let stored = export.state.integrity.leaf_hashes(first, count as u64).map_err(std::io::Error::other)?;
    // A message export's selection reads the message's stream: decided here, before the CPU part.
    let mut messages = Vec::new();
    if export.selection.is_messages() {
        messages.reserve(events.len());
        let prefix = export.tenant.prefix();
        for event in &events {
            let own = event.stream.as_str().starts_with(&prefix);
            messages.push(own && message_selected(&export, &dense, event).await?);
        }
    }
    tokio::task::spawn_blocking(move || write_lines(&export, &events, &stored, &messages))
        .await
        .map_err(std::io::Error::other)
}

/// The lines of a page's events. `messages`: a message export's selection per event (empty for an
/// audit export, which selects from the event alone).
fn write_lines(export: &Export, events: &[RecordedEvent], stored: &[Hash], messages: &[bool]) -> Page {
    let mut page = Page { lines: Vec::with_capacity(events.len() * 768), records: 0 };
    // The tags of the page's namespaces (an HMAC each: worth keeping across the page).
    let mut tags: HashMap<&str, [u8; 32]> = HashMap::new();
    let prefix = export.tenant.prefix();
    for (i, (event, stored)) in events.iter().zip(stored).enumerate() {
        let own = event.stream.as_str().starts_with(&prefix);
        let selected = match own {
            false => false,
            true if export.selection.is_messages() => messages[i],
            true => export.selection.selects_audit(event),
        };
        let namespace = leaf::namespace(event.stream.as_str());
        let tag = *tags.entry(namespace).or_insert_with(|| export.state.integrity.tag(namespace));
        let bytes = leaf::event_bytes(event);
        let leaf = leaf::leaf(&tag, &bytes);
        let position = event.position.code();
        // A line whose bytes no longer make the tree's leaf carries the tree's leaf hash.
        let tree_leaf_hash = (leaf_hash(&leaf) != *stored).then_some(stored);
        if !own {
            export_write::write_foreign(&mut page.lines, export.csv, position, &leaf, tree_leaf_hash);
        } else if !selected {
            export_write::write_other(&mut page.lines, export.csv, position, &bytes, tree_leaf_hash);
        } else {
            // An audit record's data was decoded by the selection: it is JSON.
            let data = export_write::record_data_text(&event.data, !export.selection.is_messages());
            let parts = export_write::RecordParts {
                position,
                event_bytes: &bytes,
                stream: export.tenant.client_name(event.stream.as_str()),
                revision: event.revision.0,
                event_id: event.id,
                event_type: &event.event_type,
                recorded_at: event.recorded_at,
                data: &data,
                tree_leaf_hash,
            };
            export_write::write_record(&mut page.lines, export.csv, &parts);
            page.records += 1;
        }
    }
    page
}

/// The export walks the integrity tree's leaves, which are the log's dense positions.
pub(super) fn dense_positions(store: &dyn EventStore) -> Result<DensePositions, std::io::Error> {
    store
        .capabilities()
        .dense_positions
        .ok_or_else(|| std::io::Error::other("the export needs a store with dense positions"))
}

/// Appends one line to `out`: a CSV row, or a JSON object and a newline.
pub(super) fn write_line(out: &mut Vec<u8>, line: &ExportLine, csv: bool) {
    if csv {
        // A scratch buffer per thread: the CSV writer serializes the event's JSON there first.
        thread_local!(static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
        SCRATCH.with_borrow_mut(|scratch| export_format::write_csv_row(out, scratch, line));
    } else {
        serde_json::to_writer(&mut *out, line).expect("an export line serializes");
        out.push(b'\n');
    }
}

/// For a message export: whether `event` (of the tenant) is a record, from its stream's document
/// folded from the stream's events before the export's head (the projector's fold; `selection`).
async fn message_selected(
    export: &Export,
    dense: &DensePositions,
    event: &RecordedEvent,
) -> Result<bool, std::io::Error> {
    if !event.event_type.starts_with("message.") {
        return Ok(false);
    }
    if let Some(&selected) = export.decided.lock().expect("decided lock").get(event.stream.as_str()) {
        return Ok(selected);
    }
    const READ: usize = 1_000;
    let (mut doc, mut from) = (None, ReadFrom::Start);
    loop {
        let read = export.state.store.read_stream(&event.stream, from, Direction::Forwards, READ).await;
        let page = match read.map_err(std::io::Error::other)? {
            ReadStreamOutcome::StreamNotFound => break,
            ReadStreamOutcome::Events(page) => page,
        };
        let before_head: Vec<&RecordedEvent> =
            page.iter().take_while(|e| dense.index(e.position) < export.end).collect();
        before_head.iter().for_each(|e| fold_into(&mut doc, e));
        match page.last() {
            Some(last) if page.len() == READ && before_head.len() == READ => from = ReadFrom::After(last.revision),
            _ => break,
        }
    }
    let selected = export.selection.selects_message(event, doc.as_ref());
    let mut decided = export.decided.lock().expect("decided lock");
    if decided.len() >= DECIDED {
        decided.clear();
    }
    decided.insert(event.stream.as_str().to_owned(), selected);
    Ok(selected)
}
