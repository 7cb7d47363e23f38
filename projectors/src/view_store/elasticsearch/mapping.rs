//! A [`ViewSchema`] as an Elasticsearch composable index template with explicit, **strict**
//! mappings (`dynamic: strict`): a document with a field the template does not name is refused
//! (a `400`, parked), never added to the mapping. What a projection stores for reads (the whole
//! document, the message timeline included) sits in `source`, an object with `enabled: false`:
//! kept in `_source`, never parsed into fields, so user data can never grow the mapping (the
//! "Limit of total fields [1000] has been exceeded" failure of sinks that index user JSON).
//!
//! Shapes: `PUT /_index_template/{name}` with `index_patterns`, `template.settings`,
//! `template.mappings` (elasticsearch-specification `indices/put_index_template`); the field
//! types `keyword`, `text` with a `keyword` sub-field, `date_nanos`, `boolean`, `long`, and
//! `object` with `enabled: false` are the mapping types of `specification/_types/mapping`.

use serde_json::{json, Map, Value};

use crate::error::ViewError;
use crate::view_store::{FieldKind, FieldValue, ViewDoc, ViewSchema};

/// Fields every document has besides the schema's: the tenant (filter and routing), the view id
/// (the sort's tie-break: `_id` is not sortable by default), the version, and the stored source.
pub(crate) const RESERVED: [&str; 4] = ["tenant", "id", "version", "source"];

/// The longest keyword value indexed (longer ones are stored in `source` but not searchable by
/// term); the text sub-field uses it too.
const IGNORE_ABOVE: u32 = 8191;

/// Refuses a schema the mapping cannot represent, naming the field.
pub(crate) fn check(schema: &ViewSchema) -> Result<(), ViewError> {
    for field in &schema.fields {
        if RESERVED.contains(&field.name) || field.name.starts_with('_') || field.name.contains('.') {
            let reason = format!("field name {:?} is reserved in the Elasticsearch mapping", field.name);
            return Err(ViewError::BadQuery { view: schema.name, reason });
        }
    }
    match schema.fields.iter().find(|f| f.name == schema.default_sort) {
        Some(f) if f.kind == FieldKind::Time => Ok(()),
        _ => Err(ViewError::BadQuery {
            view: schema.name,
            reason: format!("default sort {:?} is not a Time field", schema.default_sort),
        }),
    }
}

/// The `mappings` of every generation's index of `schema`.
pub fn mappings(schema: &ViewSchema) -> Value {
    let mut properties = Map::new();
    properties.insert("tenant".into(), json!({ "type": "keyword" }));
    properties.insert("id".into(), json!({ "type": "keyword" }));
    properties.insert("version".into(), json!({ "type": "long", "index": false }));
    properties.insert("source".into(), json!({ "type": "object", "enabled": false }));
    for field in &schema.fields {
        let mapping = match field.kind {
            FieldKind::Keyword => json!({ "type": "keyword", "ignore_above": IGNORE_ABOVE }),
            FieldKind::Text => json!({
                "type": "text",
                "fields": { "keyword": { "type": "keyword", "ignore_above": IGNORE_ABOVE } }
            }),
            // Nanoseconds, so a cursor's time is the document's, not a millisecond rounding of it.
            FieldKind::Time => json!({ "type": "date_nanos" }),
            FieldKind::Bool => json!({ "type": "boolean" }),
        };
        properties.insert(field.name.into(), mapping);
    }
    json!({ "dynamic": "strict", "properties": properties })
}

/// The composable template of `schema`'s generations (`{prefix}{view}-*`).
pub fn index_template(schema: &ViewSchema, prefix: &str, shards: u32, replicas: u32) -> Value {
    json!({
        "index_patterns": [format!("{prefix}{}-*", schema.name)],
        "priority": 200,
        "template": {
            "settings": {
                "index": {
                    "number_of_shards": shards,
                    "number_of_replicas": replicas,
                    "refresh_interval": "1s"
                }
            },
            "mappings": mappings(schema)
        },
        "_meta": { "managed_by": "annals" }
    })
}

/// Refuses a document the mapping would refuse for annals' own fault (a field the schema does not
/// declare, a value of another kind, several values in a Time or Bool field), before anything
/// of its batch is sent: such a batch is a projection bug, and writes nothing (the contract's
/// `BadQuery`). What only Elasticsearch can judge (a value its field cannot parse) comes back
/// per item as a `400`.
pub(crate) fn validate(schema: &ViewSchema, doc: &ViewDoc) -> Result<(), ViewError> {
    let bad = |reason: String| ViewError::BadQuery { view: schema.name, reason };
    for (name, values) in &doc.fields {
        let Some(field) = schema.fields.iter().find(|f| f.name == *name) else {
            return Err(bad(format!("document {:?} has the undeclared field {name:?}", doc.id)));
        };
        let single = matches!(field.kind, FieldKind::Time | FieldKind::Bool);
        if single && values.len() > 1 {
            return Err(bad(format!(
                "document {:?} has {} values in the {:?} field {name:?}",
                doc.id,
                values.len(),
                field.kind
            )));
        }
        for value in values {
            let fits = matches!(
                (field.kind, value),
                (FieldKind::Keyword | FieldKind::Text, FieldValue::Str(_))
                    | (FieldKind::Time, FieldValue::Time(_))
                    | (FieldKind::Bool, FieldValue::Bool(_))
            );
            if !fits {
                return Err(bad(format!("document {:?} has {value:?} in the {:?} field {name:?}", doc.id, field.kind)));
            }
        }
    }
    Ok(())
}
