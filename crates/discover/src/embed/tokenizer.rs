//! The BERT WordPiece tokenizer (uncased), read from a Hugging Face `tokenizer.json` or a plain
//! `vocab.txt`: text cleanup, CJK splitting, accent stripping and lower-casing (the BERT normalizer),
//! whitespace and punctuation splitting (the BERT pre-tokenizer), greedy longest-match WordPiece with
//! `##` continuations, and `[CLS] … [SEP]` around the pieces.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::EmbedError;
use super::unicode_tables::{DECOMPOSITION, NONSPACING_MARK, OTHER, PUNCTUATION};

/// A BERT WordPiece tokenizer.
#[derive(Debug, Clone)]
pub struct WordPieceTokenizer {
    vocab: HashMap<String, u32>,
    unk_id: u32,
    cls_id: u32,
    sep_id: u32,
    prefix: String,
    max_input_chars_per_word: usize,
    clean_text: bool,
    handle_chinese_chars: bool,
    strip_accents: bool,
    lowercase: bool,
    /// Added (special) tokens matched verbatim in the raw text before normalisation, longest first.
    added: Vec<(String, u32)>,
}

fn bad(file: &Path, reason: impl Into<String>) -> EmbedError {
    EmbedError::Tokenizer {
        path: file.to_path_buf(),
        reason: reason.into(),
    }
}

impl WordPieceTokenizer {
    /// Reads a `tokenizer.json` whose model is `WordPiece` with a `BertNormalizer`.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, EmbedError> {
        let text = std::fs::read_to_string(path).map_err(|source| EmbedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| bad(path, e.to_string()))?;
        let model = doc
            .get("model")
            .ok_or_else(|| bad(path, "no \"model\" section"))?;
        let kind = model.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "WordPiece" {
            return Err(bad(
                path,
                format!("model type is {kind:?}, expected \"WordPiece\" (a BERT tokenizer)"),
            ));
        }
        let vocab_obj = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| bad(path, "model.vocab is not an object"))?;
        let mut vocab = HashMap::with_capacity(vocab_obj.len());
        for (piece, id) in vocab_obj {
            let id = id
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad(path, format!("vocab id of {piece:?} is not an integer")))?;
            vocab.insert(piece.clone(), id);
        }
        let unk = model
            .get("unk_token")
            .and_then(Value::as_str)
            .unwrap_or("[UNK]")
            .to_string();
        let prefix = model
            .get("continuing_subword_prefix")
            .and_then(Value::as_str)
            .unwrap_or("##")
            .to_string();
        let max_input_chars_per_word = model
            .get("max_input_chars_per_word")
            .and_then(Value::as_u64)
            .map_or(100, |v| v as usize);

        let norm = doc.get("normalizer").unwrap_or(&Value::Null);
        let norm_kind = norm.get("type").and_then(Value::as_str).unwrap_or("");
        if !norm.is_null() && norm_kind != "BertNormalizer" {
            return Err(bad(
                path,
                format!("normalizer {norm_kind:?} is not supported (expected \"BertNormalizer\")"),
            ));
        }
        let flag =
            |name: &str, default: bool| norm.get(name).and_then(Value::as_bool).unwrap_or(default);
        let lowercase = flag("lowercase", true);
        let clean_text = flag("clean_text", true);
        let handle_chinese_chars = flag("handle_chinese_chars", true);
        // `strip_accents: null` means "follow lowercase", as in BERT.
        let strip_accents = flag("strip_accents", lowercase);

        let mut added = Vec::new();
        if let Some(list) = doc.get("added_tokens").and_then(Value::as_array) {
            for t in list {
                if let (Some(content), Some(id)) = (
                    t.get("content").and_then(Value::as_str),
                    t.get("id").and_then(Value::as_u64),
                ) && !content.is_empty()
                {
                    let id = u32::try_from(id)
                        .map_err(|_| bad(path, format!("added token id {id} out of range")))?;
                    added.push((content.to_string(), id));
                }
            }
        }
        Self::build(
            vocab,
            &unk,
            prefix,
            max_input_chars_per_word,
            [clean_text, handle_chinese_chars, strip_accents, lowercase],
            added,
        )
        .map_err(|reason| bad(path, reason))
    }

    /// Reads a BERT `vocab.txt` (one piece a line, the line number is the id) with the uncased
    /// BERT defaults.
    pub fn from_vocab_txt(path: &Path) -> Result<Self, EmbedError> {
        let text = std::fs::read_to_string(path).map_err(|source| EmbedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut vocab = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let id = u32::try_from(i).map_err(|_| bad(path, "vocabulary too large"))?;
            vocab.insert(line.trim_end_matches('\r').to_string(), id);
        }
        let added = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .filter_map(|t| vocab.get(*t).map(|&id| (t.to_string(), id)))
            .collect();
        Self::build(vocab, "[UNK]", "##".into(), 100, [true; 4], added).map_err(|r| bad(path, r))
    }

    fn build(
        vocab: HashMap<String, u32>,
        unk: &str,
        prefix: String,
        max_input_chars_per_word: usize,
        [clean_text, handle_chinese_chars, strip_accents, lowercase]: [bool; 4],
        mut added: Vec<(String, u32)>,
    ) -> Result<Self, String> {
        let id = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| format!("the vocabulary has no {t} token"))
        };
        let unk_id = id(unk)?;
        let cls_id = id("[CLS]")?;
        let sep_id = id("[SEP]")?;
        added.sort_by_key(|a| std::cmp::Reverse(a.0.len()));
        Ok(Self {
            vocab,
            unk_id,
            cls_id,
            sep_id,
            prefix,
            max_input_chars_per_word,
            clean_text,
            handle_chinese_chars,
            strip_accents,
            lowercase,
            added,
        })
    }

    /// Token ids of `text`: `[CLS]`, at most `max_len - 2` word pieces, `[SEP]`.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids = vec![self.cls_id];
        let budget = max_len.saturating_sub(2);
        let mut rest = text;
        while !rest.is_empty() && ids.len() - 1 < budget {
            let (plain, special) = self.split_added(rest);
            let mut piece_ids = Vec::new();
            self.encode_plain(plain, &mut piece_ids);
            ids.extend(piece_ids);
            match special {
                Some((len, id)) => {
                    ids.push(id);
                    rest = &rest[plain.len() + len..];
                }
                None => rest = "",
            }
        }
        ids.truncate(budget + 1);
        ids.push(self.sep_id);
        ids
    }

    /// Splits off the text before the first added token; returns it and the token (byte length, id).
    fn split_added<'a>(&self, text: &'a str) -> (&'a str, Option<(usize, u32)>) {
        let mut best: Option<(usize, usize, u32)> = None;
        for (content, id) in &self.added {
            if let Some(pos) = text.find(content.as_str()) {
                // Earliest match wins; on a tie the longest (the list is sorted longest first).
                if best.is_none_or(|(p, _, _)| pos < p) {
                    best = Some((pos, content.len(), *id));
                }
            }
        }
        match best {
            Some((pos, len, id)) => (&text[..pos], Some((len, id))),
            None => (text, None),
        }
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        let normalized = self.normalize(text);
        for word in pre_tokenize(&normalized) {
            self.word_piece(word, out);
        }
    }

    /// The BERT normalizer: cleanup, CJK spacing, accent stripping (NFD, drop Mn), lower-casing.
    pub fn normalize(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if self.clean_text {
                if c == '\0' || c == '\u{fffd}' || is_control(c) {
                    continue;
                }
                if c.is_whitespace() {
                    out.push(' ');
                    continue;
                }
            }
            if self.handle_chinese_chars && is_chinese_char(c) {
                out.push(' ');
                out.push(c);
                out.push(' ');
                continue;
            }
            out.push(c);
        }
        if self.strip_accents {
            let mut stripped = String::with_capacity(out.len());
            for c in out.chars() {
                decompose(c, &mut |d| {
                    if !in_table(NONSPACING_MARK, d) {
                        stripped.push(d);
                    }
                });
            }
            out = stripped;
        }
        if self.lowercase {
            out = out.chars().flat_map(char::to_lowercase).collect();
        }
        out
    }

    /// Greedy longest-match-first WordPiece of one pre-token.
    fn word_piece(&self, word: &str, out: &mut Vec<u32>) {
        let char_count = word.chars().count();
        if char_count > self.max_input_chars_per_word {
            out.push(self.unk_id);
            return;
        }
        // Byte offsets of the character boundaries, end included.
        let bounds: Vec<usize> = word
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(word.len()))
            .collect();
        let start_len = out.len();
        let mut key = String::with_capacity(word.len() + self.prefix.len());
        let mut start = 0;
        while start < char_count {
            let mut end = char_count;
            let mut found = None;
            while end > start {
                key.clear();
                if start > 0 {
                    key.push_str(&self.prefix);
                }
                key.push_str(&word[bounds[start]..bounds[end]]);
                if let Some(&id) = self.vocab.get(key.as_str()) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(start_len);
                    out.push(self.unk_id);
                    return;
                }
            }
        }
    }
}

/// The BERT pre-tokenizer: split on whitespace (dropped) and around every punctuation character.
fn pre_tokenize(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                words.push(&text[s..i]);
            }
        } else if c.is_ascii_punctuation() || in_table(PUNCTUATION, c) {
            if let Some(s) = start.take() {
                words.push(&text[s..i]);
            }
            words.push(&text[i..i + c.len_utf8()]);
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        words.push(&text[s..]);
    }
    words
}

fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && in_table(OTHER, c)
}

fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

fn in_table(table: &[(u32, u32)], c: char) -> bool {
    let cp = c as u32;
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                std::cmp::Ordering::Less
            } else if lo > cp {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Canonical decomposition (NFD) of one character.
fn decompose(c: char, emit: &mut impl FnMut(char)) {
    const S_BASE: u32 = 0xAC00;
    const L_BASE: u32 = 0x1100;
    const V_BASE: u32 = 0x1161;
    const T_BASE: u32 = 0x11A7;
    const T_COUNT: u32 = 28;
    const N_COUNT: u32 = 21 * T_COUNT;
    let cp = c as u32;
    if (S_BASE..S_BASE + 11172).contains(&cp) {
        let s = cp - S_BASE;
        let parts = [
            Some(L_BASE + s / N_COUNT),
            Some(V_BASE + (s % N_COUNT) / T_COUNT),
            (!s.is_multiple_of(T_COUNT)).then_some(T_BASE + s % T_COUNT),
        ];
        for p in parts.into_iter().flatten() {
            if let Some(ch) = char::from_u32(p) {
                emit(ch);
            }
        }
        return;
    }
    match DECOMPOSITION.binary_search_by_key(&cp, |&(k, _)| k) {
        Ok(i) => DECOMPOSITION[i].1.chars().for_each(emit),
        Err(_) => emit(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> WordPieceTokenizer {
        let pieces = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "hello", "cafe",
            ",", "!", "東", "a",
        ];
        let vocab = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), i as u32))
            .collect();
        let added = vec![("[MASK]".to_string(), 4)];
        WordPieceTokenizer::build(vocab, "[UNK]", "##".into(), 100, [true; 4], added)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn word_pieces_accents_cjk_and_punctuation() {
        let t = toy();
        assert_eq!(
            t.encode("Unaffable, HELLO!", 256),
            vec![2, 5, 6, 7, 10, 8, 11, 3]
        );
        assert_eq!(t.encode("Café東a", 256), vec![2, 9, 12, 13, 3]);
        assert_eq!(t.encode("unknown [MASK]hello", 256), vec![2, 1, 4, 8, 3]);
        assert_eq!(t.encode("\u{200b}\u{0}", 256), vec![2, 3]);
        assert_eq!(t.encode("hello hello hello", 4), vec![2, 8, 8, 3]);
    }

    #[test]
    fn hangul_decomposes() {
        let mut out = String::new();
        decompose('한', &mut |c| out.push(c));
        assert_eq!(out, "\u{1112}\u{1161}\u{11AB}");
    }
}
