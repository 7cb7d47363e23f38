//! The structural check finds every flaw it names, with the pointer a client can act on, passes
//! every text a document model holds, and agrees with serde_json about what is JSON at all.

use annals_schemas::structure::{check, Flaw, StructureError, MAX_DEPTH};
use proptest::prelude::*;
use serde_json::Value;

fn flaw(text: &str) -> StructureError {
    check(text.as_bytes(), MAX_DEPTH).expect_err(text)
}

#[test]
fn each_flaw_is_found_where_it_is() {
    let cases: &[(&str, &str, Flaw)] = &[
        (r#"{"channel":"fax","channel":"email"}"#, "/channel", Flaw::DuplicateKey),
        (r#"{"events":[{"data":{"a":1,"b":{"x":1,"x":2}}}]}"#, "/events/0/data/b/x", Flaw::DuplicateKey),
        (r#"{"events":[],"events":[]}"#, "/events", Flaw::DuplicateKey),
        // The same key spelled with an escape is the same key.
        (r#"{"a":1,"\u0061":2}"#, "/a", Flaw::DuplicateKey),
        (r#"{"a/b~c":{},"a/b~c":1}"#, "/a~1b~0c", Flaw::DuplicateKey),
        (r#"{"s":["ok","\ud800"]}"#, "/s/1", Flaw::LoneSurrogate),
        (r#"{"s":"\udc00\ud800"}"#, "/s", Flaw::LoneSurrogate),
        (r#"{"s":"\ud800\u0041"}"#, "/s", Flaw::LoneSurrogate),
        (r#"{"s":"\ud800x"}"#, "/s", Flaw::LoneSurrogate),
        (r#"{"k":{"\udfff":1}}"#, "/k", Flaw::LoneSurrogate),
        (r#"{"n":[1,1e400]}"#, "/n/1", Flaw::NumberOutOfRange),
        (r#"{"n":-1E+309}"#, "/n", Flaw::NumberOutOfRange),
        (r#"{"a":1,}"#, "/a", Flaw::Syntax),
        (r#"{"a":01}"#, "/a", Flaw::Syntax),
        (r#"{"a":"x"} x"#, "", Flaw::Syntax),
    ];
    for (text, pointer, expected) in cases {
        let error = flaw(text);
        assert_eq!((error.pointer.as_str(), &error.flaw), (*pointer, expected), "{text}");
    }
    let long = format!("{{\"n\":1{}}}", "0".repeat(400));
    assert_eq!(flaw(&long).flaw, Flaw::NumberOutOfRange);
}

#[test]
fn depth_is_counted_from_the_root_and_deep_texts_do_not_overflow_the_stack() {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(check(nested(MAX_DEPTH).as_bytes(), MAX_DEPTH).is_ok());
    let error = check(nested(MAX_DEPTH + 1).as_bytes(), MAX_DEPTH).unwrap_err();
    assert_eq!(error.flaw, Flaw::TooDeep { limit: MAX_DEPTH });
    assert_eq!(error.pointer, "/0".repeat(MAX_DEPTH));
    let error = check(nested(100_000).as_bytes(), MAX_DEPTH).unwrap_err();
    assert_eq!(error.flaw, Flaw::TooDeep { limit: MAX_DEPTH });
    // serde_json's own limit is the same number: what passes, it parses.
    assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH)).is_ok());
    assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH + 1)).is_err());
    let objects = format!("{}1{}", "{\"a\":".repeat(10), "}".repeat(10));
    assert_eq!(check(objects.as_bytes(), 3).unwrap_err().pointer, "/a/a/a");
}

#[test]
fn what_a_document_model_holds_passes() {
    for text in [
        r#"{}"#,
        r#"[]"#,
        r#" { "a" : [ 1 , -0 , 1.0 , 1e-400 , 4294967296 , 1.7976931348623157e308 , true , false , null ] } "#,
        r#"{"s":"\ud83d\ude00 \u00e9 \" \\ \/ \b \f \n \r \t","é":"ü","":""}"#,
        r#"{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}"#,
        "\"plain\"",
        "12",
    ] {
        assert_eq!(check(text.as_bytes(), MAX_DEPTH), Ok(()), "{text}");
    }
    // Wide objects switch to a set; a duplicate far apart is still found.
    let keys: Vec<String> = (0..1000).map(|i| format!("\"k{i}\":{i}")).collect();
    let wide = format!("{{{}}}", keys.join(","));
    assert_eq!(check(wide.as_bytes(), MAX_DEPTH), Ok(()));
    let dup = format!("{{{},\"k3\":0}}", keys.join(","));
    assert_eq!(flaw(&dup), StructureError { pointer: "/k3".into(), flaw: Flaw::DuplicateKey });
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every value serde_json holds passes, compact or pretty.
    #[test]
    fn any_value_passes(value in json_value()) {
        prop_assert_eq!(check(value.to_string().as_bytes(), MAX_DEPTH), Ok(()));
        prop_assert_eq!(check(serde_json::to_string_pretty(&value).unwrap().as_bytes(), MAX_DEPTH), Ok(()));
    }

    /// A key written twice into any object is found, and named.
    #[test]
    fn a_repeated_key_is_found(value in json_value(), key in any::<String>()) {
        let text = format!("{{\"w\":{value},{k}:1,{k}:2}}", k = Value::String(key.clone()));
        let error = check(text.as_bytes(), MAX_DEPTH).unwrap_err();
        prop_assert_eq!(error.flaw, Flaw::DuplicateKey);
        prop_assert_eq!(error.pointer, format!("/{}", key.replace('~', "~0").replace('/', "~1")));
    }

    /// On any text the check does not panic, and what it passes serde_json reads (for texts
    /// without control characters, the one grammar rule the check leaves to the parser).
    #[test]
    fn it_never_passes_what_serde_json_refuses(
        value in json_value(),
        cut in any::<prop::sample::Index>(),
        byte in prop::sample::select(b"{}[],:\"\\ -.e0u".to_vec()),
    ) {
        let mut text = value.to_string().into_bytes();
        let at = cut.index(text.len() + 1);
        text.insert(at, byte);
        if check(&text, MAX_DEPTH).is_ok() {
            prop_assert!(serde_json::from_slice::<Value>(&text).is_ok(), "{}", String::from_utf8_lossy(&text));
        }
        let _ = check(&text[..at], MAX_DEPTH);
    }

    /// Token soup (the bytes JSON is made of, in any order) never panics the check, and what
    /// it passes serde_json reads.
    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(vec![
        "{", "}", "[", "]", ",", ":", "\"a\"", "\"\\ud800\"", "\"\\udc00\\ud800\"", "\"\\u12\"", "\"\\",
        "1", "-", "0", "1e999", "1.", ".5", "true", "nul", " ", "\"", "\\u0041",
    ]), 0..40)) {
        let text = tokens.concat();
        if check(text.as_bytes(), 4).is_ok() {
            prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "{}", text);
        }
    }
}
