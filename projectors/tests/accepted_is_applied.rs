//! What the append accepts, the projections apply (issue 13, item 4): for every registered type
//! and version, payloads generated from the published schema's own constraints — with the edges
//! a schema lets through (whole numbers written `1.0`, 2^32, `-0`, negatives, huge and non-ASCII
//! strings, every corner of RFC 3339, duplicated keys) — are put through the append's checks
//! (the structural scan, then `Registry::validate`), and each one accepted must fold into its
//! view without error, index within range and survive the view's round trip.
//!
//! The append's checks are restated here in the order `query-api`'s `wire.rs` runs them (this
//! crate cannot depend on the API); they are two library calls, so the restatement is exact.

use annals_projectors::{AuditProjection, MessagesProjection, Projection};
use annals_schemas::structure::{check, MAX_DEPTH};
use annals_schemas::Registry;
use annals_store::{Position, RecordedEvent, Revision, StreamId};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};
use serde_json::{Map, Value};

/// A strategy of values for `schema` (a node of the published schema `root`).
fn values(schema: &Value, root: &Value) -> BoxedStrategy<Value> {
    let Some(node) = schema.as_object() else {
        // `true`: any JSON.
        return any_json();
    };
    if let Some(Value::String(target)) = node.get("$ref") {
        let name = target.trim_start_matches("#/$defs/");
        return values(&root["$defs"][name], root);
    }
    let mut options: Vec<BoxedStrategy<Value>> = Vec::new();
    if let Some(Value::Array(branches)) = node.get("anyOf") {
        for branch in branches {
            options.push(values(branch, root));
        }
    }
    if let Some(Value::Array(choices)) = node.get("enum") {
        // The choices, and near misses the validator must refuse.
        let mut choices = choices.clone();
        choices.push(Value::from("EMAIL"));
        options.push(proptest::sample::select(choices).boxed());
    }
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ if options.is_empty() && node.get("format").is_none() => vec!["any"],
        _ => Vec::new(),
    };
    if node.get("format").is_some() && !types.contains(&"string") {
        options.push(strings(node));
    }
    for t in types {
        options.push(match t {
            "object" => objects(node, root),
            "array" => prop::collection::vec(values(node.get("items").unwrap_or(&Value::Bool(true)), root), 0..4)
                .prop_map(Value::Array)
                .boxed(),
            "string" => strings(node),
            "integer" => integers(),
            "number" => prop_oneof![integers(), any::<f64>().prop_map(Value::from)].boxed(),
            "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
            "null" => Just(Value::Null).boxed(),
            _ => any_json(),
        });
    }
    Union::new(options).boxed()
}

/// An object of the schema's properties: required ones always, the others sometimes; now and
/// then a property the schema does not name.
fn objects(node: &Map<String, Value>, root: &Value) -> BoxedStrategy<Value> {
    let required: Vec<&str> =
        node.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    for (name, schema) in node.get("properties").and_then(Value::as_object).into_iter().flatten() {
        let name = name.clone();
        let value = values(schema, root);
        fields.push(if required.contains(&name.as_str()) {
            value.prop_map(move |v| Some((name.clone(), v))).boxed()
        } else {
            prop::option::weighted(0.6, value.prop_map(move |v| (name.clone(), v))).boxed()
        });
    }
    fields.push(prop::option::weighted(0.05, ("[a-z]{1,8}", any_json())).boxed());
    fields.prop_map(|members| Value::Object(members.into_iter().flatten().collect())).boxed()
}

/// Whole numbers and what JSON Schema counts as one: the `u32` edges, 2^32, negatives, `-0`,
/// and whole floats (`1.0`).
fn integers() -> BoxedStrategy<Value> {
    prop_oneof![
        proptest::sample::select(vec![0i64, 1, 12, i64::from(u32::MAX), 1 << 32, -1, i64::MIN, i64::MAX])
            .prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        any::<u32>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        proptest::sample::select(vec![0.0f64, -0.0, 1.0, 12.0, 4294967295.0, 4294967296.0, 1e300, -1.0, 0.5])
            .prop_map(Value::from),
    ]
    .boxed()
}

/// Strings for the node's `format` or `pattern` (and their near misses), else any: Unicode,
/// control characters, empty, huge.
fn strings(node: &Map<String, Value>) -> BoxedStrategy<Value> {
    let any = prop_oneof![
        any::<String>(),
        Just(String::new()),
        "[\\x00-\\x1f\"\\\\/~]{0,4}",
        (1usize..70_000).prop_map(|n| "é".repeat(n / 2)),
    ]
    .boxed();
    let formatted: BoxedStrategy<String> = match (node.get("format").and_then(Value::as_str), node.get("pattern")) {
        (_, Some(Value::String(pattern))) => {
            let pattern = pattern.trim_start_matches('^').trim_end_matches('$');
            proptest::string::string_regex(pattern).expect("a pattern proptest can generate").boxed()
        }
        (Some("date-time"), _) => date_times(),
        (Some("email"), _) => "[a-zA-Z0-9.+_-]{1,12}@[a-z0-9-]{1,12}(\\.[a-z]{2,6}){0,2}".boxed(),
        (Some("ipv4"), _) => "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}".boxed(),
        (Some("ipv6"), _) => "([0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}".boxed(),
        _ => any.clone(),
    };
    prop_oneof![4 => formatted, 1 => any].prop_map(Value::String).boxed()
}

/// RFC 3339 date-times at every edge a validator might let through: years 0000 and 9999,
/// leap seconds, lowercase separators, far offsets, long fractions.
fn date_times() -> BoxedStrategy<String> {
    let year =
        prop_oneof![Just(0u32), Just(1), Just(1677), Just(1970), Just(2262), Just(2300), Just(9999), 0u32..10_000];
    let time = (0u32..=24, 0u32..=60, 0u32..=61);
    let fraction = prop_oneof![Just(String::new()), "\\.[0-9]{1,12}"];
    let separator = proptest::sample::select(vec!["T", "t", " "]);
    let offset = prop_oneof![Just("Z".to_owned()), Just("z".to_owned()), "[+-](0[0-9]|1[0-9]|2[0-4]):[0-5][0-9]"];
    (year, 1u32..=13, 1u32..=31, separator, time, fraction, offset)
        .prop_map(|(y, mo, d, sep, (h, mi, s), frac, off)| {
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}")
        })
        .boxed()
}

fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        integers(),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(8, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,3}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// The data's text as a client sends it, sometimes with a member of the top-level object
/// written twice (the second time with another value).
fn text_of(data: &Value, duplicate: Option<(prop::sample::Index, Value)>) -> String {
    let text = data.to_string();
    match (data.as_object(), duplicate) {
        (Some(map), Some((index, other))) if !map.is_empty() => {
            let key = map.keys().nth(index.index(map.len())).expect("a key");
            format!("{},{}:{}}}", &text[..text.len() - 1], Value::from(key.as_str()), other)
        }
        _ => text,
    }
}

/// What the append path accepts: the structural scan of the event's data (at its depth in the
/// body, as `routes/streams.rs` checks the whole body), then its type's schema and Rust type.
fn accepted(registry: &Registry, event_type: &str, text: &str) -> bool {
    if check(text.as_bytes(), MAX_DEPTH).is_err() {
        return false;
    }
    let Ok(data) = serde_json::from_str::<Value>(text) else { return false };
    data.is_object() && registry.validate(event_type, None, &data).is_ok()
}

fn event(event_type: &str, stream: &str, position: u64, text: &str) -> RecordedEvent {
    RecordedEvent {
        id: uuid::Uuid::from_u64_pair(position, 7),
        stream: StreamId::new(stream).expect("a valid stream name"),
        revision: Revision(position),
        position: Position::from_code(position),
        event_type: event_type.to_owned(),
        data: text.as_bytes().to_vec().into(),
        metadata: Vec::new().into(),
        recorded_at: DateTime::<Utc>::from_timestamp(1_790_000_000, 0).expect("a time")
            + chrono::Duration::seconds(position as i64),
    }
}

/// Folds `events` as the projector does, from no document, and checks the outcome as the view
/// store takes it: every time within what the index holds, the source read back as the same.
fn applies<P: Projection>(projection: &P, events: &[RecordedEvent]) -> Result<(), String>
where
    P::Doc: PartialEq + std::fmt::Debug,
{
    let mut doc = None;
    for event in events {
        projection
            .apply(&mut doc, event)
            .map_err(|e| format!("{} at {}: {e}", event.event_type, event.position.code()))?;
    }
    let doc = doc.ok_or("no document")?;
    let view = projection.to_view(&doc);
    for (field, values) in &view.fields {
        for value in values {
            if let annals_projectors::view_store::FieldValue::Time(t) = value {
                t.timestamp_nanos_opt()
                    .ok_or_else(|| format!("indexed time {field} = {t} is out of the index's range"))?;
            }
        }
    }
    let back: P::Doc = serde_json::from_str(view.source.get()).map_err(|e| format!("the source reads back: {e}"))?;
    if back != doc {
        return Err(format!("the source reads back as another document: {back:?} vs {doc:?}"));
    }
    Ok(())
}

/// One registered type's generated payloads, each maybe with a duplicated key.
fn payloads() -> impl Strategy<Value = (String, Vec<String>)> {
    let registry = Registry::new();
    let per_type: Vec<BoxedStrategy<(String, Vec<String>)>> = registry
        .schemas()
        .into_iter()
        .map(|info| {
            let event_type = info.event_type.clone();
            let one = (
                values(&info.schema, &info.schema),
                prop::option::weighted(0.1, (any::<prop::sample::Index>(), any_json())),
            )
                .prop_map(|(data, duplicate)| text_of(&data, duplicate));
            prop::collection::vec(one, 1..4).prop_map(move |texts| (event_type.clone(), texts)).boxed()
        })
        .collect();
    Union::new(per_type)
}

/// Sets the message id to the stream's, as a producer does (the id in the stream name is not
/// a schema's business; a wrong one is parked by design, see `ApplyError::MessageIdMismatch`).
/// A text with a duplicated key is kept as it is: a round trip through a map would drop it.
fn with_message_id(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut map)) if map.contains_key("message_id") && check(text.as_bytes(), MAX_DEPTH).is_ok() => {
            map.insert("message_id".into(), "m-1".into());
            Value::Object(map).to_string()
        }
        _ => text.to_owned(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn every_payload_the_append_accepts_is_applied((event_type, texts) in payloads()) {
        let registry = Registry::new();
        let mut events = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let text = with_message_id(text);
            if accepted(&registry, &event_type, &text) {
                events.push((text.clone(), event(&event_type, "acme/message-m-1", i as u64 + 1, &text)));
            }
        }
        for (text, e) in &events {
            let one = std::slice::from_ref(e);
            let result = if event_type == "audit.recorded" {
                applies(&AuditProjection, one)
            } else {
                applies(&MessagesProjection, one)
            };
            prop_assert!(result.is_ok(), "{event_type} {text}: accepted at append, not applied: {}", result.unwrap_err());
        }
        if event_type != "audit.recorded" && !events.is_empty() {
            let all: Vec<RecordedEvent> = events.into_iter().map(|(_, e)| e).collect();
            let result = applies(&MessagesProjection, &all);
            prop_assert!(result.is_ok(), "{event_type}: the accepted events together: {}", result.unwrap_err());
        }
    }
}
