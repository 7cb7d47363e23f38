//! Cache-key templates: how an invalidated key becomes a Redis key, and how a whole view of a
//! tenant becomes a `SCAN` pattern that matches that tenant's keys and nobody else's.
//!
//! Why a module of its own: tenants and key values are chosen by clients (a message id, an audit
//! target), and a key or a pattern built from them by plain substitution would let one tenant's
//! values name another's keys (`tenant = "a:message:x"` against `tenant = "a"`) or widen a
//! pattern (`*`, `?`, `[`). So every substituted value is percent-encoded (RFC 3986: ASCII
//! letters, digits and `-._~` are kept, every other UTF-8 byte is `%XX` in upper case), which
//! leaves none of Redis' glob characters and none of a template's delimiters in it, and a
//! template must delimit its placeholders with a character the encoding never emits (`:`,
//! `/`, `{`, …), so an encoded value is one unambiguous segment. Applications build their cache
//! keys with the same rule ([`encode`], or the same few lines in their language).

use crate::invalidation::KeyKind;

/// One placeholder of a template.
const TENANT: &str = "{tenant}";
const VALUE: &str = "{value}";
const VIEW: &str = "{view}";

/// A key template such as `annals:{tenant}:message:{value}`: one `{tenant}` and one `{value}`,
/// each next to a delimiter or an end of the template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    text: String,
}

/// Why a template was refused (the settings layer names the setting).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {template:?}: {reason}")]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

impl KeyTemplate {
    /// Checks `text`: exactly one `{tenant}` and one `{value}`, each placeholder preceded and
    /// followed by a delimiter (a character [`encode`] never emits) or an end of the template.
    pub fn parse(text: &str) -> Result<KeyTemplate, TemplateError> {
        check_placeholders(text, &[TENANT, VALUE])?;
        Ok(KeyTemplate { text: text.to_owned() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The Redis key of `value` for `tenant`.
    pub fn render(&self, tenant: &str, value: &str) -> String {
        self.text.replace(TENANT, &encode(tenant)).replace(VALUE, &encode(value))
    }

    /// A `SCAN MATCH` pattern for every key of this template of `tenant` (every tenant with
    /// `None`): the literal parts escaped for Redis' glob, `{value}` (and `{tenant}` for `None`)
    /// as `*`. An encoded tenant is a delimited segment with no glob character, so the pattern
    /// matches no key of another tenant of this template.
    pub fn pattern(&self, tenant: Option<&str>) -> String {
        let mut out = String::with_capacity(self.text.len() + 8);
        let mut rest = self.text.as_str();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix(TENANT) {
                match tenant {
                    Some(tenant) => out.push_str(&encode(tenant)),
                    None => out.push('*'),
                }
                rest = after;
            } else if let Some(after) = rest.strip_prefix(VALUE) {
                out.push('*');
                rest = after;
            } else {
                let c = rest.chars().next().expect("rest is not empty");
                if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
                    out.push('\\');
                }
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        out
    }
}

/// A template naming a per-view key (the stream, the channel): `{view}` at most once, delimited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewTemplate {
    text: String,
}

impl ViewTemplate {
    pub fn parse(text: &str) -> Result<ViewTemplate, TemplateError> {
        if text.is_empty() {
            return Err(TemplateError { template: text.to_owned(), reason: "is empty".to_owned() });
        }
        if text.contains(VIEW) {
            check_placeholders(text, &[VIEW])?;
        }
        Ok(ViewTemplate { text: text.to_owned() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn render(&self, view: &str) -> String {
        self.text.replace(VIEW, &encode(view))
    }
}

fn check_placeholders(text: &str, required: &[&str]) -> Result<(), TemplateError> {
    let refuse = |reason: String| Err(TemplateError { template: text.to_owned(), reason });
    for placeholder in required {
        let count = text.matches(placeholder).count();
        if count != 1 {
            return refuse(format!("needs {placeholder} exactly once (found it {count} times)"));
        }
        let at = text.find(placeholder).expect("counted once");
        let before = text[..at].chars().next_back();
        let after = text[at + placeholder.len()..].chars().next();
        // A neighbour must be a character the encoding never emits, and not another
        // placeholder: two values side by side could split one string two ways.
        let delimited = |c: Option<char>, side: &str| match c {
            None => Ok(()),
            Some('{' | '}') => Err(format!("{placeholder} must not touch another placeholder")),
            Some(c) if is_encoded_char(c) => {
                Err(format!("{placeholder} needs a delimiter {side} it (such as ':'), not {c:?}"))
            }
            Some(_) => Ok(()),
        };
        if let Err(reason) = delimited(before, "before").and_then(|()| delimited(after, "after")) {
            return refuse(reason);
        }
    }
    let stray = text.replace(TENANT, "").replace(VALUE, "").replace(VIEW, "");
    if stray.contains('{') || stray.contains('}') {
        return refuse("has an unknown placeholder or a stray brace".to_owned());
    }
    Ok(())
}

/// Whether [`encode`] may emit `c`: a template needs something else around its placeholders.
fn is_encoded_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%')
}

/// The percent-encoding of `value`: ASCII letters, digits and `-._~` kept, every other byte of
/// its UTF-8 as `%XX` (upper-case hex). Injective, and its output holds no glob character and no
/// template delimiter.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The kinds of keys a view's invalidations carry: what a whole-view invalidation of that view
/// drops. A view this code does not know drops every kind (too much is harmless).
pub fn kinds_of_view(view: &str) -> &'static [KeyKind] {
    match view {
        "messages" => &[KeyKind::Message, KeyKind::Recipient],
        "audit" => &[KeyKind::AuditTarget, KeyKind::Actor],
        _ => &[KeyKind::Message, KeyKind::Recipient, KeyKind::AuditTarget, KeyKind::Actor],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &[&str] = &[
        "a",
        "a:message:x",
        "*",
        "a*",
        "?",
        "[ab]",
        "a]",
        "\\",
        "{tenant}",
        "{value}",
        "%41",
        "é",
        "\u{202e}rtl",
        "\0nul",
        "a b",
        "🦀",
        "^x",
        "",
    ];

    #[test]
    fn encoded_values_hold_no_glob_character_nor_delimiter() {
        for value in HOSTILE {
            let encoded = encode(value);
            assert!(encoded.chars().all(is_encoded_char), "{value:?} encoded as {encoded:?}");
        }
        assert_eq!(encode("order:42/é"), "order%3A42%2F%C3%A9");
    }

    #[test]
    fn rendering_is_injective_across_tenants_and_values() {
        let template = KeyTemplate::parse("annals:{tenant}:message:{value}").unwrap();
        let mut seen = std::collections::HashMap::new();
        for tenant in HOSTILE {
            for value in HOSTILE {
                let key = template.render(tenant, value);
                if let Some(other) = seen.insert(key.clone(), (tenant, value)) {
                    panic!("{key:?} names both {other:?} and {:?}", (tenant, value));
                }
            }
        }
    }

    #[test]
    fn a_tenant_pattern_is_literal_but_for_the_value() {
        let template = KeyTemplate::parse("annals:{tenant}:message:{value}").unwrap();
        assert_eq!(template.pattern(Some("a*")), "annals:a%2A:message:*");
        assert_eq!(template.pattern(Some("[x]?")), "annals:%5Bx%5D%3F:message:*");
        assert_eq!(template.pattern(None), "annals:*:message:*");
        let odd = KeyTemplate::parse("c[1]*:{tenant}/{value}").unwrap();
        assert_eq!(odd.pattern(Some("t")), "c\\[1\\]\\*:t/*");
    }

    #[test]
    fn templates_must_delimit_their_placeholders() {
        for bad in [
            "annals:{tenant}{value}",
            "annals:{tenant}:x{value}",
            "annals:{tenant}-{value}",
            "annals:{value}",
            "annals:{tenant}",
            "{tenant}:{value}:{value}",
            "a:{tenant}:{other}:{value}",
            "a:{tenant}:}:{value}",
        ] {
            assert!(KeyTemplate::parse(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["annals:{tenant}:message:{value}", "{tenant}/{value}", "x:{value}:{tenant}"] {
            assert!(KeyTemplate::parse(good).is_ok(), "{good:?} was refused");
        }
        assert!(ViewTemplate::parse("annals:{view}:invalidations").is_ok());
        assert!(ViewTemplate::parse("annals:invalidations").is_ok());
        assert!(ViewTemplate::parse("annals:x{view}").is_err());
        assert!(ViewTemplate::parse("").is_err());
    }
}
