//! Offline verification of an NDJSON export (`annals verify`): the signature of its head, every
//! line's leaf against its event bytes and decoded fields, completeness (one line per position,
//! in order, from `from_position` to the head's size, none of the tenant's events hidden as
//! another tenant's, no record passed off as another type), the range proof of those leaves to the
//! signed head, and consistency with a head saved earlier. Needs only the file and the public key.
//!
//! Two passes over the file, both streaming: the first finds the trailer (the tenant's tag is in
//! it), the second rebuilds the leaves in O(log n) memory (`annals_integrity::RangeVerifier`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use annals_integrity::{verify_consistency, LeafIndex, RangeVerifier, SignedTreeHead, TreePublicKey};
use base64::Engine as _;

use super::export_format::{record_data, ExportLine, Trailer, EXPORT_FORMAT};
use super::leaf;

/// What a verified export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub tenant: String,
    pub tree_size: u64,
    pub from_position: u64,
    pub records: u64,
    pub other: u64,
    pub foreign: u64,
}

/// The first thing wrong with an export: where (line, position) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {reason}", position.map(|p| format!(" (position {p})")).unwrap_or_default())]
pub struct VerifyFailure {
    /// 1-based; 0 for the file as a whole.
    pub line: u64,
    pub position: Option<u64>,
    pub reason: String,
}

fn fail<T>(line: u64, position: Option<u64>, reason: impl Into<String>) -> Result<T, VerifyFailure> {
    Err(VerifyFailure { line, position, reason: reason.into() })
}

/// Verifies the export at `path` with `key`, and its consistency with `previous` when given.
pub fn verify_export(
    path: &Path,
    key: &TreePublicKey,
    previous: Option<&SignedTreeHead>,
) -> Result<Verified, VerifyFailure> {
    let lines = || -> Result<_, VerifyFailure> {
        let file = File::open(path).or_else(|e| fail(0, None, format!("cannot open {}: {e}", path.display())))?;
        Ok(BufReader::new(file).lines())
    };
    // Pass 1: the trailer, which must be the last line.
    let mut last: Option<(u64, String)> = None;
    for (i, line) in lines()?.enumerate() {
        let line = line.or_else(|e| fail(i as u64 + 1, None, format!("cannot read: {e}")))?;
        last = Some((i as u64 + 1, line));
    }
    let Some((trailer_line, text)) = last else { return fail(0, None, "the export is empty") };
    let trailer = match serde_json::from_str::<ExportLine>(&text) {
        Ok(ExportLine::Trailer(t)) => *t,
        _ => return fail(trailer_line, None, "the last line is not a trailer: the export is cut short"),
    };
    check_trailer(&trailer, trailer_line, key, previous)?;
    let tag = parse_hex::<32>(&trailer.tag)
        .ok_or_else(|| bad(trailer_line, None, "the trailer's tag is not 32 hex bytes"))?;
    let size = trailer.head.tree_size.get();
    let messages = message_selection(&trailer, trailer_line, &mut lines()?)?;

    // Pass 2: one line per position, each leaf rebuilt and fed to the range verifier.
    let mut verifier = RangeVerifier::new(LeafIndex::new(trailer.from_position));
    let mut next = trailer.from_position;
    // The first line whose bytes differ from the leaf the tree holds at its position.
    let mut rewritten: Option<(u64, u64)> = None;
    let mut found = Verified {
        tenant: trailer.tenant.clone(),
        tree_size: size,
        from_position: trailer.from_position,
        records: 0,
        other: 0,
        foreign: 0,
    };
    for (i, text) in lines()?.enumerate() {
        let n = i as u64 + 1;
        if n == trailer_line {
            break;
        }
        let text = text.or_else(|e| fail(n, None, format!("cannot read: {e}")))?;
        let line: ExportLine =
            serde_json::from_str(&text).or_else(|e| fail(n, None, format!("not an export line: {e}")))?;
        let position = match &line {
            ExportLine::Record(r) => r.position,
            ExportLine::Other { position, .. } | ExportLine::Foreign { position, .. } => *position,
            ExportLine::Trailer(_) => return fail(n, None, "a trailer before the last line"),
        };
        if position != next {
            return fail(
                n,
                Some(position),
                format!("expected position {next}: a line is missing, repeated or out of order"),
            );
        }
        if position >= size {
            return fail(n, Some(position), format!("position {position} is beyond the head's tree size {size}"));
        }
        let tree_leaf_hash = match &line {
            ExportLine::Record(r) => r.tree_leaf_hash.clone(),
            ExportLine::Other { tree_leaf_hash, .. } | ExportLine::Foreign { tree_leaf_hash, .. } => {
                tree_leaf_hash.clone()
            }
            ExportLine::Trailer(_) => None,
        };
        let leaf = match line {
            ExportLine::Record(record) => {
                let (bytes, event) = own_event(&record.event_bytes, &trailer, n, position)?;
                if !selects(&trailer, messages.as_ref(), &event, n)? {
                    return fail(n, Some(position), "a record that the export's selection does not select");
                }
                let stream = event.stream.strip_prefix(&format!("{}/", trailer.tenant)).unwrap_or(&event.stream);
                let fields_match = record.stream == stream
                    && record.revision == event.revision
                    && record.event_id == event.id
                    && record.event_type == event.event_type
                    && record.recorded_at == event.recorded_at
                    && record.data.get() == record_data(&event.data).get();
                if !fields_match {
                    return fail(n, Some(position), "the record's fields differ from its event bytes");
                }
                found.records += 1;
                leaf::leaf(&tag, &bytes)
            }
            ExportLine::Other { event_bytes, .. } => {
                let (bytes, event) = own_event(&event_bytes, &trailer, n, position)?;
                if selects(&trailer, messages.as_ref(), &event, n)? {
                    return fail(n, Some(position), "an event the export's selection selects is not given as a record");
                }
                found.other += 1;
                leaf::leaf(&tag, &bytes)
            }
            ExportLine::Foreign { leaf, .. } => {
                let leaf = parse_hex::<64>(&leaf)
                    .ok_or_else(|| bad(n, Some(position), "a foreign leaf is not 64 hex bytes"))?;
                if leaf[..32] == tag {
                    return fail(n, Some(position), "an event of the tenant is given as another tenant's");
                }
                found.foreign += 1;
                leaf
            }
            ExportLine::Trailer(_) => unreachable!("handled above"),
        };
        let computed = leaf::leaf_hash(&leaf);
        match tree_leaf_hash {
            Some(text) => {
                let held = annals_integrity::Hash::from_hex(&text)
                    .or_else(|e| fail(n, Some(position), format!("tree_leaf_hash: {e}")))?;
                if held != computed {
                    rewritten.get_or_insert((n, position));
                }
                // The tree's hash: if the signed head holds it, the range proof says so below.
                verifier.push(held);
            }
            None => verifier.push(computed),
        }
        next += 1;
    }
    if next != size.max(trailer.from_position) {
        return fail(
            trailer_line,
            None,
            format!("the export ends before position {next}; its head covers up to {size}"),
        );
    }
    if let Some(proof) = &trailer.range_proof {
        if proof.first.get() != trailer.from_position || proof.last.get() + 1 != size {
            return fail(trailer_line, None, "the range proof is not for the exported positions");
        }
        let made = verifier.finish(proof, &trailer.head.head());
        if let Some((line, position)) = rewritten {
            let signed = if made.is_ok() {
                "which the signed head holds"
            } else {
                "(and the lines do not make the signed head)"
            };
            return fail(
                line,
                Some(position),
                format!("the event bytes differ from the leaf the tree took in at this position, {signed}: the log was changed after the event was appended"),
            );
        }
        made.or_else(|e| fail(trailer_line, None, format!("the lines do not make the signed head: {e}")))?;
    } else if trailer.from_position < size {
        return fail(trailer_line, None, "the trailer has no range proof");
    }
    Ok(found)
}

/// Whether the trailer's selection selects `event` (of the tenant): for a message export, whether
/// its stream is among the `selected` ones and it is a `message.*` event.
fn selects(
    trailer: &Trailer,
    selected: Option<&HashSet<String>>,
    event: &leaf::DecodedEvent,
    line: u64,
) -> Result<bool, VerifyFailure> {
    Ok(match selected {
        Some(streams) => event.event_type.starts_with("message.") && streams.contains(&event.stream),
        None => {
            let recorded = event.to_recorded().or_else(|e| fail(line, Some(event.position), e))?;
            trailer.selection.selects_audit(&recorded)
        }
    })
}

/// For a message export: the streams whose message document, folded from every `message.*` event
/// of the tenant in the export (the whole log up to the head), the selection selects. Memory: one
/// document per message of the tenant. Lines this pass cannot read are left to pass 2 to name.
fn message_selection(
    trailer: &Trailer,
    trailer_line: u64,
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
) -> Result<Option<HashSet<String>>, VerifyFailure> {
    if !trailer.selection.is_messages() {
        return Ok(None);
    }
    if trailer.from_position != 0 {
        return fail(
            trailer_line,
            None,
            "a message export starts at position 0 (a message's state is its whole history)",
        );
    }
    let mut docs: HashMap<String, Option<annals_projectors::MessageDoc>> = HashMap::new();
    for text in lines.take(usize::try_from(trailer_line - 1).unwrap_or(usize::MAX)).map_while(Result::ok) {
        let event_bytes = match serde_json::from_str::<ExportLine>(&text) {
            Ok(ExportLine::Record(r)) => r.event_bytes,
            Ok(ExportLine::Other { event_bytes, .. }) => event_bytes,
            _ => continue,
        };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(event_bytes) else { continue };
        let Ok(event) = leaf::decode_event_bytes(&bytes) else { continue };
        if leaf::namespace(&event.stream) != trailer.tenant || !event.event_type.starts_with("message.") {
            continue;
        }
        let Ok(recorded) = event.to_recorded() else { continue };
        super::selection::fold_into(docs.entry(event.stream.clone()).or_default(), &recorded);
    }
    let selected =
        docs.into_iter().filter(|(_, doc)| doc.as_ref().is_some_and(|d| trailer.selection.selects_message_doc(d)));
    Ok(Some(selected.map(|(stream, _)| stream).collect()))
}

fn bad(line: u64, position: Option<u64>, reason: &str) -> VerifyFailure {
    VerifyFailure { line, position, reason: reason.into() }
}

fn check_trailer(
    trailer: &Trailer,
    line: u64,
    key: &TreePublicKey,
    previous: Option<&SignedTreeHead>,
) -> Result<(), VerifyFailure> {
    if trailer.format != EXPORT_FORMAT {
        return fail(line, None, format!("format {:?}; this build verifies {EXPORT_FORMAT}", trailer.format));
    }
    key.verify(&trailer.head).or_else(|e| fail(line, None, format!("the trailer's head: {e}")))?;
    let Some(previous) = previous else { return Ok(()) };
    key.verify(previous).or_else(|e| fail(0, None, format!("the previous head: {e}")))?;
    let (old, new) = (previous.tree_size, trailer.head.tree_size);
    if old > new {
        return fail(line, None, format!("the previous head (size {old}) is newer than the export's (size {new})"));
    }
    match &trailer.consistency_proof {
        _ if old == new && previous.root_hash == trailer.head.root_hash => Ok(()),
        Some(proof) if proof.from_size == old => verify_consistency(proof, &previous.head(), &trailer.head.head())
            .or_else(|e| fail(line, None, format!("the export's head does not extend the previous head: {e}"))),
        _ => fail(
            line,
            None,
            format!("the export carries no consistency proof from size {old}: export again with since_tree_size={old}"),
        ),
    }
}

fn own_event(
    event_bytes: &str,
    trailer: &Trailer,
    line: u64,
    position: u64,
) -> Result<(Vec<u8>, leaf::DecodedEvent), VerifyFailure> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(event_bytes)
        .or_else(|e| fail(line, Some(position), format!("event bytes are not base64: {e}")))?;
    let event = leaf::decode_event_bytes(&bytes).or_else(|e| fail(line, Some(position), e))?;
    if event.position != position {
        return fail(line, Some(position), format!("the event bytes are of position {}", event.position));
    }
    if leaf::namespace(&event.stream) != trailer.tenant {
        return fail(line, Some(position), "the event is not of the export's tenant");
    }
    Ok((bytes, event))
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Parses a saved head (the JSON of `GET /v1/integrity/head`).
pub fn parse_head(text: &str) -> Result<SignedTreeHead, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}
