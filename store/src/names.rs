//! What a stream name or an event type may hold, and the namespace a stream belongs to.
//!
//! Why a file of its own: names are shown to people (a log UI), so characters that are invisible
//! or reorder text (U+202E, zero-width spaces, the BOM) would let one name pass for another; and
//! the namespace (the name up to its first `/`, the API's tenant) scopes event ids and has an
//! index of its own. Both rules are the store's, checked where `StreamId` and `EventData` are made.

use crate::error::StoreError;

/// Longest stream name, in bytes of UTF-8.
pub const MAX_STREAM_NAME_LEN: usize = 256;
/// Longest event type name, in bytes of UTF-8.
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// The first character of `name` that must not be in a stream name or an event type, as (index
/// in characters from 0, the character, its class): a control character (Unicode category Cc), a
/// format character (Cf: bidirectional overrides such as U+202E, zero-width spaces and joiners,
/// the byte-order mark U+FEFF, …) or a noncharacter (U+FDD0..U+FDEF and the last two code points
/// of every plane, U+xFFFE and U+xFFFF). All of them are invisible or reorder text where a name
/// is shown, so two names could look alike, or a name look like another, in a log UI.
pub fn forbidden_character(name: &str) -> Option<(usize, char, &'static str)> {
    use unicode_general_category::{get_general_category, GeneralCategory};
    name.chars().enumerate().find_map(|(index, c)| {
        let class = if c.is_control() {
            "a control character"
        } else if get_general_category(c) == GeneralCategory::Format {
            "an invisible format character"
        } else if ('\u{FDD0}'..='\u{FDEF}').contains(&c) || (c as u32) & 0xFFFE == 0xFFFE {
            "a noncharacter"
        } else {
            return None;
        };
        Some((index, c, class))
    })
}

pub(crate) fn validate_event_type(event_type: &str) -> Result<(), StoreError> {
    if let Some((index, character, class)) = forbidden_character(event_type) {
        let event_type = event_type.to_owned();
        return Err(StoreError::EventTypeCharacter { event_type, index, character, class });
    }
    let reason = if event_type.is_empty() {
        Some("must not be empty")
    } else if event_type.len() > MAX_EVENT_TYPE_LEN {
        Some("must be at most 128 bytes")
    } else if event_type.chars().any(char::is_whitespace) {
        Some("must not contain whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidEventType { event_type: event_type.to_owned(), reason }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;
    use uuid::Uuid;

    use crate::error::StoreError;
    use crate::model::{EventData, StreamId};

    /// Each class of spoofing character is refused in stream names and event types, with the
    /// character and its index named.
    #[test]
    fn names_refuse_characters_that_spoof() {
        let cases = [
            ('\u{202E}', "format"), // right-to-left override
            ('\u{200B}', "format"), // zero-width space
            ('\u{200D}', "format"), // zero-width joiner
            ('\u{FEFF}', "format"), // byte-order mark
            ('\u{FFFE}', "noncharacter"),
            ('\u{10FFFF}', "noncharacter"),
            ('\u{FDD0}', "noncharacter"),
            ('\u{0007}', "control"),
            ('\u{0085}', "control"),
        ];
        for (c, class) in cases {
            let code = format!("U+{:04X}", u32::from(c));
            let name = format!("ab{c}cd");
            match StreamId::new(&name) {
                Err(e @ StoreError::StreamNameCharacter { index: 2, character, .. }) if character == c => {
                    let text = e.to_string();
                    assert!(text.contains(&code) && text.contains(class), "{code}: {text}");
                }
                other => panic!("stream name with {code}: {other:?}"),
            }
            let id = Uuid::now_v7();
            let raw: Box<RawValue> = serde_json::from_str("{}").expect("json");
            match EventData::from_raw_json(id, format!("t.{c}"), raw) {
                Err(e @ StoreError::EventTypeCharacter { index: 2, character, .. }) if character == c => {
                    assert!(e.to_string().contains(&code), "{code}: {e}");
                }
                other => panic!("event type with {code}: {other:?}"),
            }
        }
        // What looks alike but is not invisible stays allowed.
        for ok in ["tenant/message-é", "流-1", "a b", "emoji-🙂", "ä\u{0308}"] {
            StreamId::new(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        EventData::from_json_bytes("message.créé", "{}").expect("letters are fine in types");
    }

    #[test]
    fn namespace_is_the_part_before_the_first_slash() {
        let ns = |s: &str| StreamId::new(s).expect("valid").namespace().to_owned();
        assert_eq!(ns("acme/message-1"), "acme");
        assert_eq!(ns("acme/a/b"), "acme");
        assert_eq!(ns("$keys"), "");
        assert_eq!(ns("plain"), "");
        assert_eq!(ns("/lead"), "");
    }
}
