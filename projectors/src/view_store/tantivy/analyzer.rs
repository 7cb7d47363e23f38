//! How Text fields are split into words, at index time and at query time alike.
//!
//! tantivy's `default` analyzer drops every word of 40 bytes or more. A dropped query word
//! constrains nothing, so a search for a long word (a tracking code, a base64 token) matched
//! every message. Here no word is dropped: a word longer than [`MAX_WORD_BYTES`] is indexed as
//! consecutive pieces of at most that many bytes (as Lucene's standard tokenizer does at 255),
//! and a query word is split the same way, so it matches exactly the documents holding all of
//! its pieces. (tantivy's own hard limit, `MAX_TOKEN_LEN`, is far above a piece.)
//!
//! The analyzer is registered under the name `default`, the tokenizer the Text fields of
//! existing indexes already name, so they open unchanged; words of 40 bytes or more written
//! before this analyzer are missing from them until the view is rebuilt (README).

use tantivy::tokenizer::{LowerCaser, SimpleTokenizer, TextAnalyzer, Token, TokenFilter, TokenStream, Tokenizer};

/// The longest piece a word is indexed as, in bytes (Lucene's and Elasticsearch's
/// `max_token_length`).
pub(crate) const MAX_WORD_BYTES: usize = 255;

/// Splits on anything but letters and digits, lowercases, and splits long words into pieces.
pub(crate) fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default()).filter(LowerCaser).filter(SplitLongWords(MAX_WORD_BYTES)).build()
}

/// A filter that replaces each token longer than `.0` bytes by its consecutive pieces of at most
/// `.0` bytes, cut at character boundaries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SplitLongWords(pub(crate) usize);

impl TokenFilter for SplitLongWords {
    type Tokenizer<T: Tokenizer> = SplitLongWordsTokenizer<T>;

    fn transform<T: Tokenizer>(self, inner: T) -> SplitLongWordsTokenizer<T> {
        SplitLongWordsTokenizer { max: self.0.max(4), inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SplitLongWordsTokenizer<T> {
    max: usize,
    inner: T,
}

impl<T: Tokenizer> Tokenizer for SplitLongWordsTokenizer<T> {
    type TokenStream<'a> = SplitLongWordsStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        SplitLongWordsStream { max: self.max, tail: self.inner.token_stream(text), word: None, piece: Token::default() }
    }
}

pub(crate) struct SplitLongWordsStream<S> {
    max: usize,
    tail: S,
    /// While a long word is being split: the word and how many of its bytes are emitted.
    word: Option<(Token, usize)>,
    piece: Token,
}

impl<S: TokenStream> TokenStream for SplitLongWordsStream<S> {
    fn advance(&mut self) -> bool {
        if let Some((word, done)) = &mut self.word {
            if *done < word.text.len() {
                let mut end = (*done + self.max).min(word.text.len());
                while !word.text.is_char_boundary(end) {
                    end -= 1;
                }
                self.piece.text.clear();
                self.piece.text.push_str(&word.text[*done..end]);
                self.piece.position = word.position;
                self.piece.offset_from = word.offset_from;
                self.piece.offset_to = word.offset_to;
                *done = end;
                return true;
            }
            self.word = None;
        }
        if !self.tail.advance() {
            return false;
        }
        if self.tail.token().text.len() <= self.max {
            return true;
        }
        self.word = Some((self.tail.token().clone(), 0));
        self.advance()
    }

    fn token(&self) -> &Token {
        if self.word.is_some() {
            &self.piece
        } else {
            self.tail.token()
        }
    }

    fn token_mut(&mut self) -> &mut Token {
        if self.word.is_some() {
            &mut self.piece
        } else {
            self.tail.token_mut()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut analyzer = text_analyzer();
        let mut out = Vec::new();
        analyzer.token_stream(text).process(&mut |t| out.push(t.text.clone()));
        out
    }

    #[test]
    fn short_words_pass_and_long_ones_are_split_into_pieces_never_dropped() {
        assert_eq!(words("Hello, World"), ["hello", "world"]);
        let long = "A".repeat(600);
        let got = words(&format!("x {long} y"));
        assert_eq!(got.len(), 5, "x, three pieces of 255+255+90 bytes, y");
        assert_eq!(got[1..4].concat(), long.to_lowercase());
        assert!(got.iter().all(|w| w.len() <= MAX_WORD_BYTES));
        // Multi-byte characters are never cut.
        let wide = "é".repeat(200); // 400 bytes
        let got = words(&wide);
        assert_eq!(got.concat(), wide);
        assert_eq!(got[0].len(), 254);
    }
}
