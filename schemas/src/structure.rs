//! The structural check of a JSON text: what every appended body must pass whatever its event
//! types, because the store keeps bytes as sent and every reader parses them again.
//!
//! The append path parses a body once, with `RawValue` for `data` and `metadata`, which proves
//! only the grammar. A text can be grammatical and still be something no reader holds the same
//! way: a duplicated key (a validator sees the last value, another parser the first, the stored
//! bytes both), nesting deeper than a document model parses (serde_json stops at 128), a lone
//! surrogate escape (`"\ud800"` is no Unicode string), or a number beyond `f64` (`1e400`).
//! [`check`] finds all four in one streaming pass over the bytes, without building a value, and
//! names the JSON pointer of the first one it meets.
//!
//! It is not a grammar check: a grammar error it meets is reported as [`Flaw::Syntax`] with no
//! further promise, and some (an unescaped control character in a string) it does not look for.
//! Callers parse the text too and let their parser word those. The pass keeps no value, only a stack of the enclosing containers (the keys
//! seen in each open object, the index in each open array), so its memory follows the depth and
//! the widest object, not the size of the text.

use std::borrow::Cow;
use std::collections::HashSet;

/// Nesting levels of containers a value may have: what serde_json's recursion limit (128) lets
/// it parse, so that any value that passes is one every reader in this workspace parses.
pub const MAX_DEPTH: usize = 127;

/// What is wrong at [`StructureError::pointer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// Not JSON at all, or not UTF-8 (the caller's parser says why).
    Syntax,
    /// A container nested deeper than the limit (counted from the text's root).
    TooDeep { limit: usize },
    /// The object at the pointer's parent has this key twice; the pointer names the second.
    DuplicateKey,
    /// A `\uD800`–`\uDFFF` escape that is not half of a surrogate pair.
    LoneSurrogate,
    /// A number beyond the range of `f64`.
    NumberOutOfRange,
}

/// The first structural flaw of a text and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructureError {
    /// RFC 6901 pointer of the value (or, for a duplicate, the member) at fault.
    pub pointer: String,
    pub flaw: Flaw,
}

impl std::fmt::Display for StructureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.pointer;
        match &self.flaw {
            Flaw::Syntax => write!(f, "{p:?} is not valid JSON"),
            Flaw::TooDeep { limit } => write!(f, "{p:?} nests containers deeper than {limit} levels"),
            Flaw::DuplicateKey => write!(f, "{p:?} is a duplicate key: each key may appear once in an object"),
            Flaw::LoneSurrogate => {
                write!(f, "{p:?} holds a lone surrogate escape (\\uD800-\\uDFFF not in a pair), which is not Unicode")
            }
            Flaw::NumberOutOfRange => write!(f, "{p:?} is a number beyond the range of a 64-bit float"),
        }
    }
}

/// Checks `text` for the flaws of [`Flaw`], containers nested at most `max_depth` levels.
pub fn check(text: &[u8], max_depth: usize) -> Result<(), StructureError> {
    // JSON is UTF-8; checking it all at once is faster than byte by byte inside strings.
    if std::str::from_utf8(text).is_err() {
        return Err(StructureError { pointer: String::new(), flaw: Flaw::Syntax });
    }
    Scanner { text, at: 0, stack: Vec::with_capacity(8), keys: Vec::with_capacity(32), max_depth }.document()
}

/// Objects with more keys than this keep them in a hash set (a linear search is faster below).
const LINEAR_KEYS: usize = 16;

enum Frame<'a> {
    /// An open object: its keys are `Scanner::keys[first_key..]` up to the next open object's,
    /// the last of them the member being read; a wide one also keeps them in a set.
    Object {
        first_key: usize,
        set: Option<HashSet<Cow<'a, [u8]>>>,
    },
    Array {
        index: usize,
    },
}

struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
    stack: Vec<Frame<'a>>,
    /// The keys of every open object, outermost first: one buffer for the whole text, so that
    /// an object costs no allocation of its own.
    keys: Vec<Cow<'a, [u8]>>,
    max_depth: usize,
}

impl<'a> Scanner<'a> {
    fn document(mut self) -> Result<(), StructureError> {
        self.value()?;
        self.skip_ws();
        if self.at != self.text.len() {
            return Err(self.fail(Flaw::Syntax));
        }
        Ok(())
    }

    /// One value and everything inside it, iteratively (a recursive descent would overflow the
    /// stack on the very nesting this check exists to refuse).
    fn value(&mut self) -> Result<(), StructureError> {
        let base = self.stack.len();
        loop {
            // A value starts here.
            self.skip_ws();
            match self.peek() {
                Some(b'{') => {
                    self.at += 1;
                    self.open(Frame::Object { first_key: self.keys.len(), set: None })?;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.at += 1;
                        self.close();
                    } else {
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.at += 1;
                    self.open(Frame::Array { index: 0 })?;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.at += 1;
                        self.stack.pop();
                    } else {
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return Err(self.fail(Flaw::Syntax)),
            }
            // A value ended: close containers until one continues with a `,`.
            loop {
                if self.stack.len() == base {
                    return Ok(());
                }
                self.skip_ws();
                let is_object = matches!(self.stack.last(), Some(Frame::Object { .. }));
                match (self.peek(), is_object) {
                    (Some(b','), _) => {
                        self.at += 1;
                        if is_object {
                            self.skip_ws();
                            self.key()?;
                        } else if let Some(Frame::Array { index }) = self.stack.last_mut() {
                            *index += 1;
                        }
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.at += 1;
                        self.close();
                    }
                    _ => return Err(self.fail(Flaw::Syntax)),
                }
            }
        }
    }

    fn close(&mut self) {
        if let Some(Frame::Object { first_key, .. }) = self.stack.pop() {
            self.keys.truncate(first_key);
        }
    }

    fn open(&mut self, frame: Frame<'a>) -> Result<(), StructureError> {
        if self.stack.len() >= self.max_depth {
            return Err(self.fail(Flaw::TooDeep { limit: self.max_depth }));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// A member's key and its `:`, checked against the object's other keys.
    fn key(&mut self) -> Result<(), StructureError> {
        if self.peek() != Some(b'"') {
            return Err(self.fail(Flaw::Syntax));
        }
        // A flaw inside a key is the object's: the key has no pointer of its own yet.
        let key = self.string().map_err(|e| StructureError { pointer: self.pointer(self.stack.len() - 1), ..e })?;
        let Some(Frame::Object { first_key, set }) = self.stack.last_mut() else {
            return Err(self.fail(Flaw::Syntax));
        };
        let siblings = &self.keys[*first_key..];
        let duplicate = match set {
            Some(set) => !set.insert(key.clone()),
            None => {
                let duplicate = siblings.contains(&key);
                if !duplicate && siblings.len() >= LINEAR_KEYS {
                    let mut all: HashSet<Cow<'a, [u8]>> = siblings.iter().cloned().collect();
                    all.insert(key.clone());
                    *set = Some(all);
                }
                duplicate
            }
        };
        self.keys.push(key);
        if duplicate {
            return Err(self.fail(Flaw::DuplicateKey));
        }
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.fail(Flaw::Syntax));
        }
        self.at += 1;
        Ok(())
    }

    /// A string starting at `"`: its content (unescaped only when it has escapes).
    fn string(&mut self) -> Result<Cow<'a, [u8]>, StructureError> {
        let text = self.text;
        self.at += 1;
        let start = self.at;
        // The common case: no escape before the closing quote. (Control characters, which
        // JSON refuses unescaped, change no structure: the caller's parser refuses them.)
        match memchr::memchr2(b'"', b'\\', &text[self.at..]) {
            Some(offset) if text[self.at + offset] == b'"' => {
                self.at += offset + 1;
                return Ok(Cow::Borrowed(&text[start..self.at - 1]));
            }
            Some(offset) => self.at += offset,
            None => return Err(self.fail(Flaw::Syntax)),
        }
        let mut owned = text[start..self.at].to_vec();
        loop {
            match text.get(self.at) {
                None => return Err(self.fail(Flaw::Syntax)),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Cow::Owned(owned));
                }
                Some(b'\\') => {
                    let escaped = match text.get(self.at + 1) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let c = self.unicode_escape()?;
                            let mut buf = [0; 4];
                            owned.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            continue;
                        }
                        _ => return Err(self.fail(Flaw::Syntax)),
                    };
                    self.at += 2;
                    let mut buf = [0; 4];
                    owned.extend_from_slice(escaped.encode_utf8(&mut buf).as_bytes());
                }
                Some(&b) => {
                    owned.push(b);
                    self.at += 1;
                }
            }
        }
    }

    /// `\uXXXX` (and its pair's `\uXXXX` for a high surrogate) at `self.at`.
    fn unicode_escape(&mut self) -> Result<char, StructureError> {
        let first = self.hex4(self.at + 2)?;
        self.at += 6;
        match first {
            0xD800..=0xDBFF => {
                if self.text.get(self.at) != Some(&b'\\') || self.text.get(self.at + 1) != Some(&b'u') {
                    return Err(self.fail(Flaw::LoneSurrogate));
                }
                let second = self.hex4(self.at + 2)?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.fail(Flaw::LoneSurrogate));
                }
                self.at += 6;
                let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                char::from_u32(code).ok_or_else(|| self.fail(Flaw::LoneSurrogate))
            }
            0xDC00..=0xDFFF => Err(self.fail(Flaw::LoneSurrogate)),
            code => char::from_u32(code).ok_or_else(|| self.fail(Flaw::Syntax)),
        }
    }

    fn hex4(&self, at: usize) -> Result<u32, StructureError> {
        let digits = self.text.get(at..at + 4).ok_or_else(|| self.fail(Flaw::Syntax))?;
        digits.iter().try_fold(0u32, |acc, &d| {
            let v = (d as char).to_digit(16).ok_or_else(|| self.fail(Flaw::Syntax))?;
            Ok(acc * 16 + v)
        })
    }

    /// A number by the JSON grammar; one that may be beyond `f64` is parsed to see.
    fn number(&mut self) -> Result<(), StructureError> {
        let start = self.at;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.fail(Flaw::Syntax)),
        }
        let int_end = self.at;
        if self.eat(b'.') {
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.fail(Flaw::Syntax));
            }
            self.digits();
        }
        let exponent = matches!(self.peek(), Some(b'e' | b'E'));
        if exponent {
            self.at += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.fail(Flaw::Syntax));
            }
            self.digits();
        }
        // Without an exponent, up to 300 integer digits is far below f64::MAX (about 1.8e308),
        // whatever the fraction; only the rare rest is parsed.
        if !exponent && int_end - start <= 300 {
            return Ok(());
        }
        let token = std::str::from_utf8(&self.text[start..self.at]).map_err(|_| self.fail(Flaw::Syntax))?;
        match token.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(()),
            _ => Err(self.fail(Flaw::NumberOutOfRange)),
        }
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), StructureError> {
        if self.text.get(self.at..self.at + word.len()) != Some(word) {
            return Err(self.fail(Flaw::Syntax));
        }
        self.at += word.len();
        Ok(())
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// The error of `flaw` at the current value: the pointer from the open containers.
    fn fail(&self, flaw: Flaw) -> StructureError {
        StructureError { pointer: self.pointer(self.stack.len()), flaw }
    }

    /// The pointer of the value inside the outermost `depth` open containers.
    fn pointer(&self, depth: usize) -> String {
        // Each open object's member is the last of its keys, which end where the next open
        // object's begin.
        let mut ends = vec![self.keys.len(); self.stack.len()];
        let mut end = self.keys.len();
        for (i, frame) in self.stack.iter().enumerate().rev() {
            ends[i] = end;
            if let Frame::Object { first_key, .. } = frame {
                end = *first_key;
            }
        }
        let mut pointer = String::new();
        for (frame, end) in self.stack[..depth].iter().zip(ends) {
            pointer.push('/');
            match frame {
                Frame::Object { first_key, .. } if end > *first_key => {
                    let key = String::from_utf8_lossy(&self.keys[end - 1]);
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                }
                Frame::Object { .. } => {}
                Frame::Array { index } => pointer.push_str(&index.to_string()),
            }
        }
        pointer
    }
}
