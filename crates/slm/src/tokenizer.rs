//! Byte-level BPE tokenizer, read from GGUF metadata or a Hugging Face `tokenizer.json`, with
//! llama.cpp's pre-tokenizer regexes per model family and its special-token handling; and
//! SentencePiece (GGUF tokenizer model `"llama"`: Llama 2, Gemma) through [`crate::spm`]. A
//! SentencePiece-style `tokenizer.json` (a `▁` normaliser or Metaspace, byte fallback: Gemma,
//! Llama 2, Mistral) segments with the `tokenizers` crate, which runs Hugging Face's own
//! pipeline.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::spm::{self, Spm};

/// Token attributes as GGUF stores them (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// An ordinary vocabulary token.
    Normal,
    /// The unknown-token placeholder.
    Unknown,
    /// A control token (BOS, EOS, chat markers), rendered only on request.
    Control,
    /// A user-defined token, matched verbatim even when special tokens are not parsed.
    UserDefined,
    /// A reserved slot no text maps to.
    Unused,
    /// A raw byte (`<0x41>`).
    Byte,
}

impl TokenType {
    fn from_i64(v: i64) -> Self {
        match v {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

/// GPT-2's pre-tokenizer regex (also `smollm`'s second stage).
pub const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's (`llama-bpe`).
pub const LLAMA3_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's.
pub const QWEN2_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The regexes llama.cpp applies, in sequence, for a `tokenizer.ggml.pre` name.
pub fn pre_tokenizer_patterns(pre: &str) -> Option<Vec<&'static str>> {
    Some(match pre {
        "gpt2" | "default" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "mpt" | "olmo"
        | "jais" => {
            vec![GPT2_PATTERN]
        }
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            vec![r"\p{N}", GPT2_PATTERN]
        }
        "llama-bpe" | "llama3" | "llama-v3" | "dbrx" | "smaug-bpe" | "falcon3" | "pixtral" => {
            vec![LLAMA3_PATTERN]
        }
        "qwen2" | "deepseek-r1-qwen" | "megrez" => vec![QWEN2_PATTERN],
        _ => return None,
    })
}

/// A byte-level BPE or SentencePiece tokenizer.
pub struct Tokenizer {
    tokens: Vec<String>,
    types: Vec<TokenType>,
    token_to_id: HashMap<String, u32>,
    /// `(left, right) -> (rank, merged)`; ids at or above `tokens.len()` name strings that are
    /// produced by merges but are not tokens themselves.
    merges: HashMap<(u32, u32), (u32, u32)>,
    virtual_tokens: Vec<String>,
    pre: Vec<fancy_regex::Regex>,
    /// Tokens matched verbatim in text, longest first: `(text, id, always)`; `always` for
    /// user-defined tokens, which match even when special tokens are not parsed.
    specials: Vec<(String, u32, bool)>,
    byte_encoder: [char; 256],
    byte_decoder: HashMap<char, u8>,
    ignore_merges: bool,
    /// SentencePiece's scores and byte fallback, when the model is SentencePiece.
    spm: Option<Spm>,
    /// A SentencePiece-style `tokenizer.json`'s own pipeline (normaliser, pre-tokenizer, model
    /// with byte fallback), without its added tokens and post-processor: segments the text
    /// between special tokens.
    hf: Option<Box<tokenizers::Tokenizer>>,
    /// Beginning-of-sequence token, if the model has one.
    pub bos: Option<u32>,
    /// End-of-sequence token, if the model has one.
    pub eos: Option<u32>,
    /// [`Tokenizer::encode`] with `add_special` prepends `bos`.
    pub add_bos: bool,
    /// [`Tokenizer::encode`] with `add_special` appends `eos`.
    pub add_eos: bool,
    eog: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.tokens.len())
            .field("merges", &self.merges.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        table[b as usize] = char::from_u32(c).unwrap_or('\0');
    }
    table
}

/// Token texts llama.cpp treats as end of generation besides EOS.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
    "<｜end▁of▁sentence｜>",
    "</s>",
];

struct Parts<'a> {
    tokens: Vec<String>,
    types: Vec<TokenType>,
    merges: Vec<(String, String)>,
    patterns: Vec<String>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    ignore_merges: bool,
    extra_eog: Vec<u32>,
    /// SentencePiece: the token scores and whether a space goes before the text.
    spm: Option<(Vec<f32>, bool)>,
    _p: std::marker::PhantomData<&'a ()>,
}

impl Tokenizer {
    /// Reads the tokenizer stored in a GGUF file (`tokenizer.ggml.*`).
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" && model != "llama" {
            return Err(Error::Tokenizer(format!(
                "tokenizer model {model:?} is not supported (byte-level BPE \"gpt2\" and SentencePiece \"llama\" are)"
            )));
        }
        let sentencepiece = model == "llama";
        let tokens: Vec<String> = g
            .get_str_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(String::from)
            .collect();
        let types = match g.get_i64_array("tokenizer.ggml.token_type") {
            Ok(t) if t.len() == tokens.len() => t.into_iter().map(TokenType::from_i64).collect(),
            Ok(t) => {
                return Err(Error::Tokenizer(format!(
                    "{} token types for {} tokens",
                    t.len(),
                    tokens.len()
                )));
            }
            Err(_) => vec![TokenType::Normal; tokens.len()],
        };
        let merges = if sentencepiece {
            Vec::new()
        } else {
            g.get_str_array("tokenizer.ggml.merges")?
        };
        let merges = merges
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| Error::Tokenizer(format!("malformed merge {m:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let pre = g.get_str("tokenizer.ggml.pre").unwrap_or("default");
        let patterns = if sentencepiece {
            Vec::new()
        } else {
            pre_tokenizer_patterns(pre)
                .ok_or_else(|| Error::Tokenizer(format!("unknown pre-tokenizer {pre:?}")))?
                .into_iter()
                .map(String::from)
                .collect()
        };
        let spm = if sentencepiece {
            let scores = g.get_f32_array("tokenizer.ggml.scores")?;
            // llama.cpp's default for SentencePiece is to add the space
            let prefix = g
                .get_bool("tokenizer.ggml.add_space_prefix")
                .unwrap_or(true);
            Some((scores, prefix))
        } else {
            None
        };
        let id = |k: &str| g.get_usize(k).ok().map(|v| v as u32);
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let mut extra_eog: Vec<u32> = Vec::new();
        for k in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            if let Some(i) = id(k) {
                extra_eog.push(i);
            }
        }
        let add_bos = g
            .get_bool("tokenizer.ggml.add_bos_token")
            .unwrap_or(sentencepiece || matches!(pre, "llama-bpe" | "llama3" | "llama-v3"));
        let add_eos = g.get_bool("tokenizer.ggml.add_eos_token").unwrap_or(false);
        Self::build(Parts {
            tokens,
            types,
            merges,
            patterns,
            bos,
            eos,
            add_bos,
            add_eos,
            ignore_merges: matches!(pre, "llama-bpe" | "llama3" | "llama-v3"),
            extra_eog,
            spm,
            _p: std::marker::PhantomData,
        })
    }

    /// Reads a Hugging Face `tokenizer.json`: byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM),
    /// or SentencePiece-style BPE or Unigram (`▁` for spaces, `<0xXX>` byte fallback: Gemma,
    /// Llama 2, Mistral). `config` is the optional `tokenizer_config.json` (for
    /// `add_bos_token`, `eos_token`).
    pub fn from_hf_json(json: &str, config: Option<&str>) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(json)?;
        let model = &v["model"];
        let sentencepiece = is_sentencepiece_json(&v);
        let model_type = model["type"].as_str().unwrap_or("BPE");
        if model_type != "BPE" && !(sentencepiece && model_type == "Unigram") {
            return Err(Error::Tokenizer(format!(
                "tokenizer.json model type {model_type} is not supported (BPE, and \
                 SentencePiece-style Unigram)"
            )));
        }
        // (token, id): BPE keeps an object of ids, Unigram an array of [piece, score]
        let vocab: Vec<(String, u64)> = match &model["vocab"] {
            serde_json::Value::Object(m) => m
                .iter()
                .map(|(t, i)| {
                    i.as_u64()
                        .map(|i| (t.clone(), i))
                        .ok_or_else(|| Error::Tokenizer(format!("bad id for {t:?}")))
                })
                .collect::<Result<_>>()?,
            serde_json::Value::Array(pieces) => pieces
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    p[0].as_str()
                        .map(|t| (t.to_string(), i as u64))
                        .ok_or_else(|| Error::Tokenizer(format!("bad Unigram piece {p}")))
                })
                .collect::<Result<_>>()?,
            _ => return Err(Error::Tokenizer("tokenizer.json has no model.vocab".into())),
        };
        let mut size = vocab.len();
        let added = v["added_tokens"].as_array().cloned().unwrap_or_default();
        for a in &added {
            if let Some(i) = a["id"].as_u64() {
                size = size.max(i as usize + 1);
            }
        }
        for (_, i) in &vocab {
            size = size.max(*i as usize + 1);
        }
        let mut tokens = vec![String::new(); size];
        let mut types = vec![TokenType::Unused; size];
        for (t, i) in vocab {
            let i = i as usize;
            types[i] = if sentencepiece && Spm::byte_of(&t).is_some() {
                TokenType::Byte
            } else {
                TokenType::Normal
            };
            tokens[i] = t;
        }
        for a in &added {
            let (Some(i), Some(content)) = (a["id"].as_u64(), a["content"].as_str()) else {
                continue;
            };
            tokens[i as usize] = content.to_string();
            types[i as usize] = if a["special"].as_bool().unwrap_or(false) {
                TokenType::Control
            } else {
                TokenType::UserDefined
            };
        }
        let merges = model["merges"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| match m {
                        serde_json::Value::String(s) => s
                            .split_once(' ')
                            .map(|(a, b)| (a.to_string(), b.to_string())),
                        serde_json::Value::Array(p) if p.len() == 2 => {
                            Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string()))
                        }
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut patterns = Vec::new();
        let hf = if sentencepiece {
            Some(Box::new(sentencepiece_pipeline(&v)?))
        } else {
            collect_patterns(&v["pre_tokenizer"], &mut patterns)?;
            if patterns.is_empty() {
                patterns.push(GPT2_PATTERN.to_string());
            }
            None
        };
        let cfg: serde_json::Value = match config {
            Some(c) => serde_json::from_str(c)?,
            None => serde_json::Value::Null,
        };
        let find = |t: &serde_json::Value| -> Option<u32> {
            let s = t.as_str().or_else(|| t["content"].as_str())?;
            tokens.iter().position(|x| x == s).map(|i| i as u32)
        };
        let bos = find(&cfg["bos_token"]);
        let eos = find(&cfg["eos_token"]);
        // add BOS when the post-processor inserts it
        let post = v["post_processor"].to_string();
        let add_bos = cfg["add_bos_token"].as_bool().unwrap_or_else(|| {
            bos.map(|b| post.contains(&format!("\"id\":{b}")) || post.contains(&tokens[b as usize]))
                .unwrap_or(false)
                && !post.is_empty()
                && post != "null"
        });
        let mut tok = Self::build(Parts {
            tokens,
            types,
            // the pipeline merges by itself
            merges: if hf.is_some() { Vec::new() } else { merges },
            patterns,
            bos,
            eos,
            add_bos,
            add_eos: cfg["add_eos_token"].as_bool().unwrap_or(false),
            ignore_merges: model["ignore_merges"].as_bool().unwrap_or(false),
            extra_eog: Vec::new(),
            spm: None,
            _p: std::marker::PhantomData,
        })?;
        tok.hf = hf;
        Ok(tok)
    }

    /// Whether tokens spell spaces as `▁` and raw bytes as `<0xXX>` (SentencePiece).
    fn sentencepiece(&self) -> bool {
        self.spm.is_some() || self.hf.is_some()
    }

    fn build(mut p: Parts<'_>) -> Result<Self> {
        let mut token_to_id = HashMap::with_capacity(p.tokens.len());
        for (i, t) in p.tokens.iter().enumerate() {
            token_to_id.entry(t.clone()).or_insert(i as u32);
        }
        let n = p.tokens.len() as u32;
        let mut virtual_tokens: Vec<String> = Vec::new();
        let mut virtual_ids: HashMap<String, u32> = HashMap::new();
        let mut id_of = |s: &str, virtual_tokens: &mut Vec<String>| -> u32 {
            if let Some(&i) = token_to_id.get(s) {
                return i;
            }
            if let Some(&i) = virtual_ids.get(s) {
                return i;
            }
            let i = n + virtual_tokens.len() as u32;
            virtual_tokens.push(s.to_string());
            virtual_ids.insert(s.to_string(), i);
            i
        };
        let mut merges = HashMap::with_capacity(p.merges.len());
        for (rank, (a, b)) in p.merges.iter().enumerate() {
            let l = id_of(a, &mut virtual_tokens);
            let r = id_of(b, &mut virtual_tokens);
            let m = id_of(&format!("{a}{b}"), &mut virtual_tokens);
            merges.entry((l, r)).or_insert((rank as u32, m));
        }
        let pre = p
            .patterns
            .iter()
            .map(|pat| {
                fancy_regex::Regex::new(pat)
                    .map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex {pat:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        // llama.cpp makes every end-of-generation token a control token (Gemma's `</s>` is
        // user-defined in the GGUF): parsed only with special-token parsing, rendered only on request
        let mut eog: Vec<u32> = p
            .eos
            .into_iter()
            .chain(p.extra_eog.iter().copied())
            .collect();
        for t in EOG_TEXTS {
            if let Some(&i) = token_to_id.get(*t)
                && matches!(
                    p.types[i as usize],
                    TokenType::Control | TokenType::UserDefined
                )
            {
                p.types[i as usize] = TokenType::Control;
                eog.push(i);
            }
        }
        eog.sort_unstable();
        eog.dedup();
        let mut specials: Vec<(String, u32, bool)> = p
            .tokens
            .iter()
            .zip(&p.types)
            .enumerate()
            .filter(|(_, (t, ty))| {
                !t.is_empty()
                    && matches!(
                        ty,
                        TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                    )
            })
            .map(|(i, (t, ty))| (t.clone(), i as u32, *ty == TokenType::UserDefined))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let byte_encoder = bytes_to_unicode();
        let byte_decoder = byte_encoder
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let spm = p
            .spm
            .map(|(scores, prefix)| Spm::new(scores, p.tokens.len(), &token_to_id, prefix))
            .transpose()?;
        if let Some(b) = p.bos.filter(|&b| b >= n) {
            return Err(Error::Tokenizer(format!(
                "BOS id {b} outside the vocabulary"
            )));
        }
        if let Some(e) = p.eos.filter(|&e| e >= n) {
            return Err(Error::Tokenizer(format!(
                "EOS id {e} outside the vocabulary"
            )));
        }
        Ok(Self {
            tokens: p.tokens,
            types: p.types,
            token_to_id,
            merges,
            virtual_tokens,
            pre,
            specials,
            byte_encoder,
            byte_decoder,
            ignore_merges: p.ignore_merges,
            spm,
            hf: None,
            bos: p.bos,
            eos: p.eos,
            add_bos: p.add_bos,
            add_eos: p.add_eos,
            eog,
        })
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The stored text of a token (byte-level encoded for ordinary tokens).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// A token's type (`None` past the vocabulary).
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The id of the token whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// Tokens that end a generation (EOS, end-of-turn, ...).
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Whether a token ends a generation (one of [`Tokenizer::eog_ids`]).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// Whether a token is a control token (rendered only on request).
    pub fn is_control(&self, id: u32) -> bool {
        matches!(self.token_type(id), Some(TokenType::Control))
    }

    /// Tokenizes `text`. `add_special` adds BOS/EOS as the model asks; `parse_special` turns
    /// special-token texts such as `<|im_start|>` into their ids.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_special
            && self.add_bos
            && let Some(b) = self.bos
        {
            out.push(b);
        }
        // SentencePiece: a space before the text and after each special token, when asked
        let mut after_special = true;
        for frag in self.partition(text, parse_special) {
            match frag {
                Frag::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Frag::Text(t) => {
                    match (&self.spm, &self.hf) {
                        (Some(spm), _) => spm.encode(
                            t,
                            spm.add_space_prefix && after_special,
                            &self.token_to_id,
                            &mut out,
                        ),
                        (None, Some(hf)) => self.encode_hf(hf, t, &mut out),
                        (None, None) => self.encode_text(t, &mut out),
                    }
                    after_special = false;
                }
            }
        }
        if add_special
            && self.add_eos
            && let Some(e) = self.eos
        {
            out.push(e);
        }
        out
    }

    /// Segments `text` with a `tokenizer.json`'s own pipeline. Should the pipeline fail (it
    /// has byte fallback, so no text is out of its vocabulary), the text's bytes go in as
    /// `<0xXX>` tokens: the same bytes, never a dropped character.
    fn encode_hf(&self, hf: &tokenizers::Tokenizer, text: &str, out: &mut Vec<u32>) {
        match hf.encode_fast(text, false) {
            Ok(enc) => out.extend_from_slice(enc.get_ids()),
            Err(_) => out.extend(
                text.bytes()
                    .filter_map(|b| self.token_id(&format!("<0x{b:02X}>"))),
            ),
        }
    }

    fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Frag<'t>> {
        let mut frags = vec![Frag::Text(text)];
        for (s, id, always) in &self.specials {
            if !parse_special && !always {
                continue;
            }
            if !text.contains(s.as_str()) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Frag::Text(t) if t.contains(s.as_str()) => {
                        let mut rest = t;
                        while let Some(pos) = rest.find(s.as_str()) {
                            if pos > 0 {
                                next.push(Frag::Text(&rest[..pos]));
                            }
                            next.push(Frag::Token(*id));
                            rest = &rest[pos + s.len()..];
                        }
                        if !rest.is_empty() {
                            next.push(Frag::Text(rest));
                        }
                    }
                    f => next.push(f),
                }
            }
            frags = next;
        }
        frags
    }

    fn encode_text(&self, text: &str, out: &mut Vec<u32>) {
        let mut pieces: Vec<&str> = vec![text];
        for re in &self.pre {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for p in pieces {
                let mut last = 0;
                for m in re.find_iter(p) {
                    let Ok(m) = m else {
                        // backtracking limit: keep the rest as one piece
                        break;
                    };
                    if m.start() > last {
                        next.push(&p[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < p.len() {
                    next.push(&p[last..]);
                }
            }
            pieces = next;
        }
        let mut mapped = String::new();
        for p in pieces {
            mapped.clear();
            for b in p.bytes() {
                mapped.push(self.byte_encoder[b as usize]);
            }
            self.bpe(&mapped, out);
        }
    }

    fn bpe(&self, word: &str, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges
            && let Some(&id) = self.token_to_id.get(word)
        {
            out.push(id);
            return;
        }
        struct Sym {
            id: u32,
            start: usize,
            end: usize,
            prev: usize,
            next: usize,
            alive: bool,
        }
        const NONE: usize = usize::MAX;
        let mut syms: Vec<Sym> = Vec::with_capacity(word.len());
        let mut buf = [0u8; 4];
        for (i, (start, c)) in word.char_indices().enumerate() {
            let s = c.encode_utf8(&mut buf);
            let id = self.token_to_id.get(&*s).copied().unwrap_or(u32::MAX);
            syms.push(Sym {
                id,
                start,
                end: start + c.len_utf8(),
                prev: if i == 0 { NONE } else { i - 1 },
                next: i + 1,
                alive: true,
            });
        }
        if let Some(last) = syms.last_mut() {
            last.next = NONE;
        }
        let mut heap: BinaryHeap<Reverse<(u32, usize, u32, u32)>> = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<_>, syms: &[Sym], l: usize| {
            if l == NONE {
                return;
            }
            let r = syms[l].next;
            if r == NONE {
                return;
            }
            if let Some(&(rank, _)) = self.merges.get(&(syms[l].id, syms[r].id)) {
                heap.push(Reverse((rank, l, syms[l].id, syms[r].id)));
            }
        };
        for i in 0..syms.len() {
            push(&mut heap, &syms, i);
        }
        while let Some(Reverse((_, l, lid, rid))) = heap.pop() {
            let r = syms[l].next;
            if !syms[l].alive || r == NONE || syms[l].id != lid || syms[r].id != rid {
                continue;
            }
            let Some(&(_, merged)) = self.merges.get(&(lid, rid)) else {
                continue;
            };
            syms[l].id = merged;
            syms[l].end = syms[r].end;
            syms[l].next = syms[r].next;
            syms[r].alive = false;
            let nn = syms[l].next;
            if nn != NONE {
                syms[nn].prev = l;
            }
            let p = syms[l].prev;
            push(&mut heap, &syms, p);
            push(&mut heap, &syms, l);
        }
        let n = self.tokens.len() as u32;
        let mut i = 0;
        while i != NONE && i < syms.len() {
            let s = &syms[i];
            if s.id < n {
                out.push(s.id);
            } else {
                // not a token: fall back to one token per (byte-level) character
                for c in word[s.start..s.end].chars() {
                    let t = c.encode_utf8(&mut buf);
                    if let Some(&id) = self.token_to_id.get(&*t) {
                        out.push(id);
                    }
                }
            }
            i = s.next;
        }
    }

    /// The bytes a token stands for. Control tokens give their text only with `special`.
    pub fn token_bytes(&self, id: u32, special: bool) -> Vec<u8> {
        let Some(text) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        match self.types[id as usize] {
            TokenType::Control | TokenType::Unknown | TokenType::Unused => {
                if special {
                    text.as_bytes().to_vec()
                } else {
                    Vec::new()
                }
            }
            TokenType::UserDefined => text.as_bytes().to_vec(),
            TokenType::Byte if self.sentencepiece() => {
                Spm::byte_of(text).map(|b| vec![b]).unwrap_or_default()
            }
            TokenType::Normal if self.sentencepiece() => text.replace(spm::SPACE, " ").into_bytes(),
            TokenType::Normal | TokenType::Byte => {
                let mut out = Vec::with_capacity(text.len());
                for c in text.chars() {
                    match self.byte_decoder.get(&c) {
                        Some(&b) => out.push(b),
                        None => {
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
                out
            }
        }
    }

    /// Detokenizes; invalid UTF-8 (a split multi-byte character) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id, special));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Number of merge-produced strings that are not tokens (diagnostics).
    pub fn virtual_token_count(&self) -> usize {
        self.virtual_tokens.len()
    }
}

enum Frag<'t> {
    Text(&'t str),
    Token(u32),
}

/// Whether a `tokenizer.json` is SentencePiece-style: spaces become `▁` (a Metaspace
/// pre-tokenizer, or a normaliser that writes `▁`), or the model falls back to byte tokens, or
/// it is a Unigram model. Byte-level BPE (a ByteLevel pre-tokenizer) is not.
fn is_sentencepiece_json(v: &serde_json::Value) -> bool {
    let pre = v["pre_tokenizer"].to_string();
    if pre.contains("\"ByteLevel\"") {
        return false;
    }
    let model = &v["model"];
    model["byte_fallback"].as_bool().unwrap_or(false)
        || model["type"].as_str() == Some("Unigram")
        || pre.contains("\"Metaspace\"")
        || v["normalizer"].to_string().contains(spm::SPACE)
}

/// The `tokenizers` crate's pipeline for a SentencePiece-style `tokenizer.json`, without its
/// added tokens (this tokenizer splits special tokens itself) and post-processor (it adds BOS
/// and EOS itself).
fn sentencepiece_pipeline(v: &serde_json::Value) -> Result<tokenizers::Tokenizer> {
    let mut v = v.clone();
    v["added_tokens"] = serde_json::Value::Array(Vec::new());
    v["post_processor"] = serde_json::Value::Null;
    v["truncation"] = serde_json::Value::Null;
    v["padding"] = serde_json::Value::Null;
    let text = serde_json::to_string(&v)?;
    text.parse::<tokenizers::Tokenizer>()
        .map_err(|e| Error::Tokenizer(format!("SentencePiece-style tokenizer.json: {e}")))
}

/// Turns a `tokenizer.json` pre-tokenizer into the regexes it applies.
fn collect_patterns(v: &serde_json::Value, out: &mut Vec<String>) -> Result<()> {
    match v["type"].as_str() {
        None => Ok(()),
        Some("Sequence") => {
            for p in v["pretokenizers"].as_array().into_iter().flatten() {
                collect_patterns(p, out)?;
            }
            Ok(())
        }
        Some("Split") => {
            let pat = v["pattern"]["Regex"]
                .as_str()
                .map(String::from)
                .or_else(|| {
                    v["pattern"]["String"]
                        .as_str()
                        .map(fancy_regex::escape)
                        .map(|s| s.into_owned())
                })
                .ok_or_else(|| Error::Tokenizer("Split pre-tokenizer without a pattern".into()))?;
            out.push(pat);
            Ok(())
        }
        Some("Digits") => {
            out.push(if v["individual_digits"].as_bool().unwrap_or(false) {
                r"\p{N}".into()
            } else {
                r"\p{N}+".into()
            });
            Ok(())
        }
        Some("ByteLevel") => {
            if v["use_regex"].as_bool().unwrap_or(true) {
                out.push(GPT2_PATTERN.into());
            }
            Ok(())
        }
        Some(other) => Err(Error::Tokenizer(format!(
            "pre-tokenizer {other} is not supported"
        ))),
    }
}

/// Turns a stream of token ids into text pieces, holding back bytes of incomplete UTF-8
/// characters until they are complete.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// A decoder with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token; returns the text that became complete.
    pub fn push(&mut self, tok: &Tokenizer, id: u32, special: bool) -> String {
        self.pending.extend(tok.token_bytes(id, special));
        self.take_valid()
    }

    fn take_valid(&mut self) -> String {
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let s = s.to_string();
                self.pending.clear();
                s
            }
            Err(e) => {
                let valid = e.valid_up_to();
                if e.error_len().is_some() {
                    // an invalid sequence, not a truncated one: emit it lossily
                    let s = String::from_utf8_lossy(&self.pending).into_owned();
                    self.pending.clear();
                    return s;
                }
                let s = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
                self.pending.drain(..valid);
                s
            }
        }
    }

    /// Whatever is left (lossily).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Gemma-style `tokenizer.json` made for these tests: spaces normalised to `▁`, BPE merges,
    /// byte fallback, `<pad>`/`<eos>`/`<bos>`/`<start_of_turn>` as added special tokens.
    fn gemma_style() -> String {
        include_str!("../tests/fixtures/tokenizer/gemma_style.json").to_string()
    }

    #[test]
    fn a_sentencepiece_style_tokenizer_json_gives_huggingface_ids() {
        let config = r#"{"bos_token": "<bos>", "eos_token": "<eos>", "add_bos_token": true}"#;
        let tok = Tokenizer::from_hf_json(&gemma_style(), Some(config)).unwrap();
        let id = |t: &str| tok.token_id(t).unwrap();
        // merges by rank over characters; the space is `▁` and no prefix space is added
        assert_eq!(
            tok.encode("hello world", false, false),
            vec![id("hello"), id("▁world")]
        );
        // BOS from tokenizer_config.json; the post-processor does not add a second one
        assert_eq!(
            tok.encode("hello", true, false),
            vec![id("<bos>"), id("hello")]
        );
        // characters outside the vocabulary fall back to their UTF-8 bytes
        assert_eq!(
            tok.encode("hé!", false, false),
            vec![id("h"), id("<0xC3>"), id("<0xA9>"), id("<0x21>")]
        );
        // special tokens split only when asked; the text after one is segmented on its own
        let marked = "<start_of_turn> hello";
        assert_eq!(
            tok.encode(marked, false, true),
            vec![id("<start_of_turn>"), id("▁hello")]
        );
        assert!(
            !tok.encode(marked, false, false)
                .contains(&id("<start_of_turn>"))
        );
        // decoding gives the text back: spaces from `▁`, bytes from `<0xXX>`
        for text in ["hello world", "hé! world", "  hello", "日本 hello"] {
            assert_eq!(tok.decode(&tok.encode(text, false, false), false), text);
        }
        assert_eq!(tok.token_type(id("<0xC3>")), Some(TokenType::Byte));
        assert_eq!(tok.decode(&[id("<bos>"), id("hello")], false), "hello");
    }

    #[test]
    fn byte_level_tokenizer_json_keeps_its_own_reading() {
        // a ByteLevel pre-tokenizer stays byte-level BPE even with `▁` somewhere in the vocab
        let json = serde_json::json!({
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "Ġ": 2, "ab": 3, "▁": 4},
                      "merges": ["a b"]},
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
        })
        .to_string();
        let tok = Tokenizer::from_hf_json(&json, None).unwrap();
        assert!(!tok.sentencepiece());
        assert_eq!(tok.encode("ab b", false, false), vec![3, 2, 1]);
        // a model type nothing here reads is refused by name
        let wordpiece = json.replace("\"BPE\"", "\"WordPiece\"");
        let err = Tokenizer::from_hf_json(&wordpiece, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("WordPiece"), "{err}");
    }
}
