//! Constrained decoding with llguidance: plain JSON, a JSON Schema, "one of these tools with
//! valid arguments", a regex or a Lark grammar. (Feature `constrained`.)

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde::{Deserialize, Serialize};
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenizerEnv};

use crate::error::{Error, Result};
use crate::generate::TokenFilter;
use crate::tokenizer::{TokenType, Tokenizer};

/// What the output must match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum Constraint {
    /// Any JSON object.
    Json,
    /// JSON valid against this schema.
    JsonSchema(serde_json::Value),
    /// `{"name": <tool>, "arguments": {...}}` for one of these OpenAI tool definitions, with
    /// arguments valid against that tool's `parameters` schema.
    ToolCall(Vec<serde_json::Value>),
    /// Text matching this regular expression.
    Regex(String),
    /// Text in this Lark grammar (llguidance's dialect).
    Lark(String),
}

impl Constraint {
    /// The JSON Schema a tool-call constraint enforces.
    pub fn tool_call_schema(tools: &[serde_json::Value]) -> Result<serde_json::Value> {
        let mut options = Vec::new();
        for t in tools {
            let f = crate::function_of(t);
            let name = f
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| Error::Request(format!("tool without a name: {t}")))?;
            let params = f
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object"}));
            options.push(serde_json::json!({
                "type": "object",
                "properties": {"name": {"const": name}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": false
            }));
        }
        if options.is_empty() {
            return Err(Error::Request("tool-call constraint without tools".into()));
        }
        Ok(if options.len() == 1 {
            options.remove(0)
        } else {
            serde_json::json!({"anyOf": options})
        })
    }

    fn grammar(&self) -> Result<TopLevelGrammar> {
        Ok(match self {
            Constraint::Json => {
                TopLevelGrammar::from_json_schema(compact(serde_json::json!({"type": "object"})))
            }
            Constraint::JsonSchema(s) => {
                if !s.is_object() {
                    return Err(Error::Request(format!(
                        "JSON schema must be an object, got {s}"
                    )));
                }
                TopLevelGrammar::from_json_schema(compact(s.clone()))
            }
            Constraint::ToolCall(tools) => {
                TopLevelGrammar::from_json_schema(compact(Self::tool_call_schema(tools)?))
            }
            Constraint::Regex(r) => TopLevelGrammar::from_regex(r),
            Constraint::Lark(l) => TopLevelGrammar::from_lark(l.clone()),
        })
    }
}

/// JSON laid out like Python's `json.dumps` (what chat models saw in training), without
/// free-form whitespace a sampler could loop on — unless the schema says otherwise.
fn compact(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(o) = schema.as_object_mut() {
        o.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
        });
    }
    schema
}

struct Env {
    trie: TokTrie,
    tok: Arc<Tokenizer>,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<toktrie::TokenId> {
        match std::str::from_utf8(s) {
            Ok(text) => self.tok.encode(text, false, false),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// Grammar engine for one tokenizer (build once per model; cheap to clone).
#[derive(Clone)]
pub struct Guidance {
    factory: Arc<ParserFactory>,
}

impl std::fmt::Debug for Guidance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guidance")
    }
}

impl Guidance {
    /// Builds the engine over `tok`'s vocabulary.
    pub fn new(tok: Arc<Tokenizer>) -> Result<Self> {
        let n = tok.vocab_size();
        let words: Vec<Vec<u8>> = (0..n as u32)
            .map(|i| match tok.token_type(i) {
                Some(TokenType::Control) | Some(TokenType::Unknown) | Some(TokenType::Unused) => {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(tok.token_text(i).unwrap_or_default().as_bytes());
                    w
                }
                _ => tok.token_bytes(i, false),
            })
            .collect();
        let eos = tok
            .eos
            .or_else(|| tok.eog_ids().first().copied())
            .unwrap_or(0);
        let trie = TokTrie::from(&TokRxInfo::new(n as u32, eos), &words);
        let env: TokEnv = Arc::new(Env { trie, tok });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| Error::Request(format!("grammar engine: {e}")))?;
        factory.quiet();
        Ok(Self {
            factory: Arc::new(factory),
        })
    }

    /// A fresh token filter for one generation; an invalid schema or grammar is an error here.
    pub fn filter(&self, c: &Constraint) -> Result<GrammarFilter> {
        let parser = self
            .factory
            .create_parser(c.grammar()?)
            .map_err(|e| Error::Request(format!("invalid constraint: {e}")))?;
        let m = Matcher::new(Ok(parser));
        if let Some(e) = m.get_error() {
            return Err(Error::Request(format!("invalid constraint: {e}")));
        }
        Ok(GrammarFilter { m })
    }
}

/// Masks logits to the tokens a grammar allows.
pub struct GrammarFilter {
    m: Matcher,
}

impl TokenFilter for GrammarFilter {
    fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self
            .m
            .compute_mask_or_eos()
            .map_err(|e| Error::Request(format!("grammar: {e}")))?;
        for (i, l) in logits.iter_mut().enumerate() {
            if !mask.is_allowed(i as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    fn accept(&mut self, token: u32) -> Result<bool> {
        if self.m.is_stopped() {
            return Ok(true);
        }
        self.m
            .consume_token(token)
            .map_err(|e| Error::Request(format!("grammar: {e}")))?;
        Ok(self.m.is_stopped())
    }

    fn may_end(&mut self) -> bool {
        self.m.is_stopped() || self.m.is_accepting().unwrap_or(false)
    }
}
