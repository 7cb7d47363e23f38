//! What the server's validation accepts beyond what the Rust types say, written into the OpenAPI
//! document. utoipa derives a schema from a field's type (`u64`, `String`), but the server checks
//! more: a page size of at least 1, a stream name without control characters, a tenant of at
//! most 64 lowercase characters. A document that says less than the server checks makes clients
//! send requests that fail, and a schema-driven fuzzer (`tests/tests/api_fuzz.rs`) reports each
//! gap. So each check is stated here, next to the name of the function that makes it, and the
//! fuzzer keeps the two in step: a check added to the server without its line here (or a line
//! here without its check) fails that test.
//!
//! Patterns are ECMA-262 regular expressions that Python's `re`, Rust's `regex` and the
//! `jsonschema` crates read alike: character classes and alternations only, no lookaround, no
//! flags, and characters outside printable ASCII written as `\xHH` or `\uHHHH` escapes (a YAML
//! reader of the JSON, as openapi-spec-validator is, refuses C1 controls and line separators
//! written as themselves).

use serde_json::{json, Value};

/// The largest whole number the API takes anywhere (positions, revisions, page sizes): the
/// OpenAPI document declares them `int64`, and no event can have a position or revision beyond
/// it (the log would hold 2^63 events). Clients whose numbers are doubles hold every position
/// below 2^53 exactly.
pub const MAX_INTEGER: u64 = i64::MAX as u64;

/// `char::is_control`: the Unicode category Cc. Stream names and key names refuse them.
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";
/// What `annals_store::forbidden_character` refuses in stream names and event types (controls,
/// format characters such as U+202E and U+200B, noncharacters), as a character class built from
/// that function itself, so the document cannot drift from it. The Basic Multilingual Plane only:
/// an ECMA-262 pattern without the `u` flag has no escape for a character above U+FFFF, so the
/// few such format characters (U+E0001, the tag characters, …) and noncharacters are refused by
/// the server without being stated in the pattern (`STREAM_DESCRIPTION` says so).
fn name_forbidden() -> String {
    let forbidden =
        |c: u32| char::from_u32(c).is_some_and(|c| annals_store::forbidden_character(&c.to_string()).is_some());
    let escape = |c: u32| if c <= 0xff { format!("\\x{c:02x}") } else { format!("\\u{c:04x}") };
    let mut class = String::new();
    let mut c = 0u32;
    while c <= 0xffff {
        if !forbidden(c) {
            c += 1;
            continue;
        }
        let start = c;
        while c < 0xffff && forbidden(c + 1) {
            c += 1;
        }
        class.push_str(&escape(start));
        if c > start {
            class.push('-');
            class.push_str(&escape(c));
        }
        c += 1;
    }
    class
}

/// `char::is_whitespace` (what `str::trim` removes) apart from the control characters in it.
const SPACE: &str = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Every character `str::trim` removes.
const TRIMMED: &str = r"\t\n\x0b\x0c\r\x85 \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// A stream name as `annals_store::StreamId::new` and `routes/streams.rs` (`client_stream`) take
/// it: not empty, none of the characters `forbidden_character` refuses, no whitespace at either end, not starting with `$`.
/// (Its length limit is in bytes, with the tenant's name: see [`STREAM_DESCRIPTION`].)
pub fn stream_name_pattern() -> String {
    let forbidden = name_forbidden();
    format!("^[^${forbidden}{SPACE}](?:[^{forbidden}]*[^{forbidden}{SPACE}])?$")
}

const STREAM_DESCRIPTION: &str = "The stream's name within the caller's tenant: no control, format (such as U+202E or \
    U+200B) or noncharacters (above U+FFFF too, which the pattern cannot state), no \
    whitespace at either end, not starting with `$` (reserved for the system), and at most 256 bytes of UTF-8 \
    together with the tenant's name and a `/` (a length JSON Schema cannot state in characters)";

/// A message id, whose stream `message-{id}` must be a stream name (`routes/messages.rs`,
/// `message_stream`).
fn message_id_pattern() -> String {
    let forbidden = name_forbidden();
    format!("^[^{forbidden}]*[^{forbidden}{SPACE}]$")
}

/// An event type as `annals_store` validates it: 1 to 128 bytes, no whitespace and none of the
/// characters `forbidden_character` refuses.
fn event_type_pattern() -> String {
    format!("^[^{}{SPACE}]+$", name_forbidden())
}

/// A comma-separated list with at least one entry that is not blank (`routes/events.rs`,
/// `type_filter`: entries are trimmed, empty ones skipped, a list of none refused).
fn nonblank_list_pattern() -> String {
    format!("[^,{TRIMMED}]")
}

/// `status=` of `/v1/messages`: comma-separated statuses in any letter case, blanks around
/// them and empty entries ignored, at least one status (`routes/messages.rs`, `search`).
fn status_list_pattern() -> String {
    let any_case = |word: &str| -> String {
        word.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                } else {
                    c.to_string()
                }
            })
            .collect()
    };
    let status = annals_projectors::MessageStatus::ALL.map(|s| any_case(s.as_str())).join("|");
    let entry = format!("[{TRIMMED}]*(?:{status})?[{TRIMMED}]*");
    format!("^(?:{entry},)*[{TRIMMED}]*(?:{status})[{TRIMMED}]*(?:,{entry})*$")
}

/// A cursor as `routes/search.rs` (`format_cursor`) writes it: `n`, the sort time in nanoseconds
/// since the epoch (any `i64`, which is every time a view can hold), `~`, the document id.
/// `parse_cursor` refuses anything else.
fn cursor_pattern() -> String {
    format!("^n(?:\\+?0*{}|-0*{})~[\\s\\S]+$", at_most("9223372036854775807"), at_most("9223372036854775808"))
}

/// Years the views can search by (`from`, `to`): a view holds times as nanoseconds since 1970 in
/// an `i64`, from 1677-09-21 to 2262-04-11; the document states the whole years within.
const VIEW_YEARS: &str = "^(?:167[89]|16[89][0-9]|1[7-9][0-9]{2}|2[01][0-9]{2}|22[0-5][0-9]|226[01])-";

/// A regular expression for the decimal numbers from 0 to `max` (digits only, no leading zeros).
fn at_most(max: &str) -> String {
    let mut choices = vec![format!("[0-9]{{1,{}}}", max.len() - 1), max.to_owned()];
    for (i, digit) in max.char_indices() {
        if digit > '0' {
            let below = char::from(digit as u8 - 1);
            let rest = max.len() - i - 1;
            choices.push(format!("{}[0-{below}][0-9]{{{rest}}}", &max[..i]));
        }
    }
    format!("(?:{})", choices.join("|"))
}

/// Applies every constraint to `doc`, the document the routes' annotations made.
pub fn constrain(doc: &mut Value) {
    bound_integers(doc);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for operation in item.values_mut() {
                let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_array_mut) else { continue };
                for parameter in parameters {
                    let name = parameter["name"].as_str().unwrap_or_default().to_owned();
                    parameter_constraints(path, &name, parameter);
                }
            }
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    // `wire.rs`: `AppendBody` — `annals_store` refuses an empty batch.
    set(&mut schemas["AppendBody"]["properties"]["events"], json!({ "minItems": 1 }));
    // `annals_store`: `validate_event_type`.
    set(
        &mut schemas["NewEvent"]["properties"]["type"],
        json!({ "minLength": 1, "maxLength": annals_store::MAX_EVENT_TYPE_LEN, "pattern": event_type_pattern() }),
    );
    // `auth/mod.rs`: `Tenant::new`; `routes/keys.rs`: `create` (the name's rule).
    set(
        &mut schemas["CreateKey"]["properties"]["tenant"],
        json!({ "minLength": 1, "maxLength": 64, "pattern": "^[a-z0-9][a-z0-9_-]*$" }),
    );
    set(
        &mut schemas["CreateKey"]["properties"]["name"],
        json!({ "maxLength": 200, "pattern": format!("^[^{CONTROL}]*$") }),
    );
    // `routes/parked.rs`: `replay` — an empty list is a 400 (leave it out to replay all).
    set(&mut schemas["ReplayBody"]["properties"]["positions"], json!({ "minItems": 1 }));
}

/// The constraints of query, path and header parameters, by name (and path where one name means
/// two things).
fn parameter_constraints(path: &str, name: &str, parameter: &mut Value) {
    let schema = &mut parameter["schema"];
    match name {
        // `routes/events.rs`: `limit` — at least 1; larger than the server's page is cut to it.
        "limit" => set(schema, json!({ "format": "int64", "minimum": 1, "maximum": MAX_INTEGER })),
        "types" => set(schema, json!({ "minLength": 1, "pattern": nonblank_list_pattern() })),
        "status" if path == "/v1/messages" => set(schema, json!({ "pattern": status_list_pattern() })),
        // `routes/search.rs`: `descending`.
        "sort" => *schema = json!({ "type": "string", "enum": ["newest", "oldest"] }),
        // `routes/audit.rs`: `search`.
        "outcome" => *schema = json!({ "type": "string", "enum": ["success", "failure"] }),
        "cursor" => set(schema, json!({ "pattern": cursor_pattern() })),
        "from" | "to" if path == "/v1/messages" || path == "/v1/audit" => {
            set(schema, json!({ "pattern": VIEW_YEARS }));
            let described = parameter["description"].as_str().unwrap_or_default().to_owned();
            parameter["description"] = json!(format!("{described} Years 1678 to 2261 (what a view can hold)."));
        }
        "stream" => {
            set(schema, json!({ "minLength": 1, "pattern": stream_name_pattern() }));
            parameter["description"] = json!(STREAM_DESCRIPTION);
        }
        "id" if path.starts_with("/v1/messages/") => set(schema, json!({ "pattern": message_id_pattern() })),
        // Headers are sent or not; `null` is no value a header can have.
        "Last-Event-ID" => {
            *schema = json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_INTEGER })
        }
        "traceparent" => *schema = json!({ "type": "string" }),
        _ => {}
    }
}

/// Every `int64` (Rust's `u64` and `usize` in utoipa's words) gets the `maximum` that `int64`
/// means and the server holds to ([`MAX_INTEGER`], `wire::bounded`).
fn bound_integers(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("format") == Some(&json!("int64")) && !map.contains_key("maximum") {
                map.insert("maximum".into(), json!(MAX_INTEGER));
            }
            map.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// Adds the keywords of `extra` to `schema`; a schema that is missing (a renamed field) is a
/// panic at startup, caught by every test, rather than a constraint silently gone.
fn set(schema: &mut Value, extra: Value) {
    let map = schema.as_object_mut().unwrap_or_else(|| panic!("no schema to constrain with {extra}"));
    if let Value::Object(extra) = extra {
        map.extend(extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        let schema = json!({ "type": "string", "pattern": pattern });
        jsonschema::validator_for(&schema).unwrap().is_valid(&json!(text))
    }

    /// The patterns say what the server's own checks say, on the edge cases of each.
    #[test]
    fn patterns_agree_with_the_checks_they_state() {
        let stream = stream_name_pattern();
        for name in ["a", "message-42", "a b", "ü/x", "$", "$keys", " a", "a ", "a\u{85}", "a\u{3000}", "", "a\tb"] {
            let server = annals_store::StreamId::new(name).is_ok_and(|s| !s.is_system());
            assert_eq!(matches(&stream, name), server, "stream name {name:?}");
        }
        // Characters that spoof names (issue 13, item 16) are refused by the store and the
        // patterns alike; ordinary letters of any script are taken by both.
        let event_type = event_type_pattern();
        for c in [
            '\u{202E}', '\u{200B}', '\u{200D}', '\u{FEFF}', '\u{FFFE}', '\u{FDD0}', '\u{00AD}', 'é', 'ж', '中',
            '\u{FFFD}',
        ] {
            let name = format!("a{c}b");
            let server = annals_store::StreamId::new(&name).is_ok();
            assert_eq!(matches(&stream, &name), server, "stream name {name:?}");
            assert_eq!(matches(&message_id_pattern(), &name), server, "message id {name:?}");
            let typed = annals_store::EventData::json(name.clone(), &json!({})).is_ok();
            assert_eq!(matches(&event_type, &name), typed, "event type {name:?}");
        }
        let status = status_list_pattern();
        for list in ["SENT", "sent", " Sent ,", ",,delivered", "SENT,DELIVERED", "", ",", " , ", "SENDING", "SENT,X"] {
            let entries: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            let server = !entries.is_empty()
                && entries.iter().all(|s| annals_projectors::MessageStatus::parse(&s.to_ascii_uppercase()).is_some());
            assert_eq!(matches(&status, list), server, "status={list:?}");
        }
        let types = nonblank_list_pattern();
        for list in ["a", " ,a", "", ",", " , \t", "message.sent,audit.recorded"] {
            let server = crate::routes::params::type_filter(Some(list)).is_ok();
            assert_eq!(matches(&types, list), server, "types={list:?}");
        }
        let cursor = cursor_pattern();
        for text in [
            "n0~a",
            "n-5~x",
            "n+1764000000000000000~m-1",
            "n9223372036854775807~a",
            "n-9223372036854775808~a",
            "n00012~a",
        ] {
            assert!(matches(&cursor, text), "cursor {text:?}");
            assert!(crate::routes::search::parse_cursor(text).is_ok(), "cursor {text:?}");
        }
        for text in
            ["n9223372036854775808~a", "n-9223372036854775809~a", "n10000000000000000000~a", "n1~", "nx~a", "1~a", "n1"]
        {
            assert!(!matches(&cursor, text), "cursor {text:?}");
            assert!(crate::routes::search::parse_cursor(text).is_err(), "cursor {text:?}");
        }
        let tenant = "^[a-z0-9][a-z0-9_-]*$";
        for name in ["acme", "a", "0-x_y", "-a", "_a", "Acme", "", "a b", "ä"] {
            assert_eq!(matches(tenant, name), crate::auth::Tenant::new(name).is_ok(), "tenant {name:?}");
        }
    }
}
