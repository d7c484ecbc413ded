//! SentencePiece's BPE-by-score segmentation as llama.cpp runs it for GGUF tokenizer model
//! `"llama"` (Llama 1/2, Gemma): spaces become U+2581, the text starts as one symbol per
//! character, and the adjacent pair whose concatenation is the highest-scoring vocabulary entry
//! merges first (ties: the leftmost pair) until no pair is in the vocabulary; a symbol that is
//! not a token is written as its bytes' `<0xXX>` tokens.
//!
//! There are no merge rules to hand a merge-rank BPE (the GGUF stores vocabulary and scores
//! only), and a Unigram model segments by Viterbi, not by greedy merges, so the `tokenizers`
//! crate's models would not give llama.cpp's ids; this is the greedy merge, in ~100 lines.

use std::collections::{BinaryHeap, HashMap};

use crate::error::{Error, Result};

/// SentencePiece's whitespace marker (`▁`).
pub(crate) const SPACE: char = '\u{2581}';

/// The scores and byte-fallback tokens of a SentencePiece vocabulary.
#[derive(Clone, Debug)]
pub(crate) struct Spm {
    scores: Vec<f32>,
    /// `<0xXX>` (or, failing that, the one-byte string) for every byte value.
    byte_tokens: [Option<u32>; 256],
    /// Whether a space is put before the text (and after each special token).
    pub(crate) add_space_prefix: bool,
}

/// A candidate merge: ordered by score, then by leftmost position.
#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the merged text (to tell stale entries from live ones).
    len: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

const NONE: usize = usize::MAX;

struct Sym {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

impl Spm {
    pub(crate) fn new(
        scores: Vec<f32>,
        vocab_size: usize,
        token_to_id: &HashMap<String, u32>,
        add_space_prefix: bool,
    ) -> Result<Self> {
        if scores.len() != vocab_size {
            return Err(Error::Tokenizer(format!(
                "{} token scores for a vocabulary of {vocab_size} tokens",
                scores.len()
            )));
        }
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = token_to_id
                .get(&format!("<0x{b:02X}>"))
                .copied()
                .or_else(|| {
                    char::from_u32(b as u32)
                        .filter(|_| b < 0x80)
                        .and_then(|c| token_to_id.get(&c.to_string()).copied())
                });
        }
        Ok(Self {
            scores,
            byte_tokens,
            add_space_prefix,
        })
    }

    /// The byte a `<0xXX>` token text stands for.
    pub(crate) fn byte_of(text: &str) -> Option<u8> {
        let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
        if hex.len() != 2 {
            return None;
        }
        u8::from_str_radix(hex, 16).ok()
    }

    /// Appends the ids of `text` (a fragment between special tokens, spaces not yet escaped).
    pub(crate) fn encode(
        &self,
        text: &str,
        space_prefix: bool,
        token_to_id: &HashMap<String, u32>,
        out: &mut Vec<u32>,
    ) {
        let mut s = String::with_capacity(text.len() + 3);
        if space_prefix {
            s.push(SPACE);
        }
        for c in text.chars() {
            s.push(if c == ' ' { SPACE } else { c });
        }
        if s.is_empty() {
            return;
        }
        let mut syms: Vec<Sym> = s
            .char_indices()
            .enumerate()
            .map(|(i, (start, c))| Sym {
                start,
                len: c.len_utf8(),
                prev: if i == 0 { NONE } else { i - 1 },
                next: i + 1,
            })
            .collect();
        if let Some(last) = syms.last_mut() {
            last.next = NONE;
        }
        let mut queue = BinaryHeap::new();
        let try_add = |queue: &mut BinaryHeap<Bigram>, syms: &[Sym], left: usize, right: usize| {
            if left == NONE || right == NONE {
                return;
            }
            let (a, b) = (&syms[left], &syms[right]);
            let len = a.len + b.len;
            if let Some(&id) = token_to_id.get(&s[a.start..a.start + len])
                && let Some(&score) = self.scores.get(id as usize)
            {
                queue.push(Bigram {
                    score,
                    left,
                    right,
                    len,
                });
            }
        };
        for i in 1..syms.len() {
            try_add(&mut queue, &syms, i - 1, i);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (&syms[b.left], &syms[b.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
                continue;
            }
            let next = r.next;
            syms[b.left].len = b.len;
            syms[b.left].next = next;
            syms[b.right].len = 0;
            if next != NONE {
                syms[next].prev = b.left;
            }
            try_add(&mut queue, &syms, syms[b.left].prev, b.left);
            try_add(&mut queue, &syms, b.left, next);
        }
        let mut i = if syms.is_empty() { NONE } else { 0 };
        while i != NONE {
            let sym = &syms[i];
            let piece = &s[sym.start..sym.start + sym.len];
            match token_to_id.get(piece) {
                Some(&id) => out.push(id),
                None => out.extend(piece.bytes().filter_map(|b| self.byte_tokens[b as usize])),
            }
            i = sym.next;
        }
    }
}
