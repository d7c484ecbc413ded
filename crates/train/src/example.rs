//! Training examples: a chat record (OpenAI messages [+ tools] and the assistant's answer)
//! rendered with a chat template into token ids and a loss mask that is 1 only on the
//! assistant answer (text or tool-call JSON, end-of-turn token included).
//!
//! The [`PromptTransform`] prunes the static prompt parts a specialist internalises; it is
//! versioned and serialisable because the router must apply the identical function at
//! serving time (it is stored with the adapter).

use downshift_slm::{ChatTemplate, Tokenizer, function_of};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Result, TrainError};

/// One curated call in chat form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatRecord {
    /// The call id; the split is a function of it.
    pub id: String,
    /// The request's messages (OpenAI format), without the answer.
    pub messages: Vec<Value>,
    /// The request's tool definitions (OpenAI format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// The assistant message the model must learn to produce (`content` and/or `tool_calls`).
    pub answer: Value,
}

impl ChatRecord {
    /// What decides the call's split: a SHA-256 of its request (messages and tools, as stored),
    /// so the same call falls in the same split whatever id an import or the gateway gave it —
    /// runs on the same traffic compare on the same test calls.
    pub fn split_key(&self) -> String {
        let mut h = Sha256::new();
        h.update(
            serde_json::to_string(&self.messages)
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update([0u8]);
        if let Some(t) = &self.tools {
            h.update(serde_json::to_string(t).unwrap_or_default().as_bytes());
        }
        h.finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Reads the import format `{"request": {messages, tools, ..}, "response": {choices:
    /// [{message}]}, "metadata": {..}}`. The id is `metadata.id`, else `response.id`, else a
    /// hash of the request.
    pub fn from_import(v: &Value) -> Result<Self> {
        let req = &v["request"];
        let id = v["metadata"]["id"]
            .as_str()
            .or_else(|| v["response"]["id"].as_str())
            .map(String::from)
            .unwrap_or_else(|| {
                let h = Sha256::digest(req.to_string().as_bytes());
                h.iter().take(16).map(|b| format!("{b:02x}")).collect()
            });
        let bad = |msg: &str| TrainError::Record {
            id: id.clone(),
            msg: msg.into(),
        };
        let messages = req["messages"]
            .as_array()
            .filter(|m| !m.is_empty())
            .cloned()
            .ok_or_else(|| bad("request.messages is missing or empty"))?;
        let tools = req["tools"].as_array().cloned();
        let answer = v["response"]["choices"][0]["message"].clone();
        if !answer.is_object() {
            return Err(bad("response.choices[0].message is missing"));
        }
        let has_text = answer["content"].as_str().is_some_and(|s| !s.is_empty());
        let has_calls = answer["tool_calls"]
            .as_array()
            .is_some_and(|c| !c.is_empty());
        if !has_text && !has_calls {
            return Err(bad("the answer has neither content nor tool_calls"));
        }
        Ok(Self {
            id,
            messages,
            tools,
            answer,
        })
    }
}

/// The versioned transformation of a request's prompt before it reaches the specialist.
/// Version 1: optionally drop the tool schemas, optionally remove a constant system-prompt
/// text (a system message left empty is dropped). Version 2 adds `keep_turns`, version 3
/// `tool_names`; a transform is written with the lowest version that holds what it uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTransform {
    pub version: u32,
    /// Drop the `tools` list (the specialist has internalised the schemas).
    #[serde(default)]
    pub drop_tools: bool,
    /// Constant text removed from the system message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_system_text: Option<String>,
    /// Keep only the last N user turns of the conversation and what follows them (the
    /// assistant's tool calls and the tools' results); system messages stay. Version 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_turns: Option<usize>,
    /// With `drop_tools`: still name the offered tools, in one system line (`Tools: a, b, c`)
    /// — a few tokens instead of the schemas, so the specialist sees which APIs this request
    /// offers and can copy a name from its prompt. Version 3.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tool_names: bool,
}

impl PromptTransform {
    /// The newest version this build applies. Version 2 adds `keep_turns`, version 3
    /// `tool_names`; a transform without them is written as version 1, so older builds still
    /// serve such specialists, and refuse (rather than misapply) the ones that need more.
    pub const VERSION: u32 = 3;

    /// The lowest version that holds every option this transform uses.
    fn needed_version(&self) -> u32 {
        if self.tool_names {
            3
        } else if self.keep_turns.is_some() {
            2
        } else {
            1
        }
    }

    /// Version 1, changing nothing.
    pub fn identity() -> Self {
        Self {
            version: 1,
            drop_tools: false,
            drop_system_text: None,
            keep_turns: None,
            tool_names: false,
        }
    }

    /// The same transform, also keeping only the last `n` user turns (`None`: all of them).
    pub fn with_keep_turns(mut self, n: Option<usize>) -> Self {
        self.keep_turns = n.filter(|&n| n > 0);
        self.version = self.needed_version();
        self
    }

    /// The same transform, naming the offered tools in a system line when their schemas are
    /// dropped (a transform that keeps the schemas is left as it is: they name the tools).
    pub fn with_tool_names(mut self, on: bool) -> Self {
        self.tool_names = on && self.drop_tools;
        self.version = self.needed_version();
        self
    }

    /// The pruning the issue asks for by default: tool schemas dropped, and `system_text`
    /// (the system-prompt template's constant text) when given.
    pub fn pruning(system_text: Option<String>) -> Self {
        Self {
            version: 1,
            drop_tools: true,
            drop_system_text: system_text.filter(|s| !s.is_empty()),
            keep_turns: None,
            tool_names: false,
        }
    }

    /// The pruning for a task's records: tool schemas dropped, and the system prompt's
    /// constant text — the longest prefix every record's system message shares, cut at a
    /// word boundary — removed when it is at least 32 characters long.
    pub fn infer(records: &[ChatRecord]) -> Self {
        Self::pruning(common_system_text(records))
    }

    /// Applies the transform to a request's messages and tools.
    pub fn apply(
        &self,
        messages: &[Value],
        tools: Option<&[Value]>,
    ) -> Result<(Vec<Value>, Option<Vec<Value>>)> {
        if !(1..=Self::VERSION).contains(&self.version) || self.version < self.needed_version() {
            return Err(TrainError::TransformVersion(self.version));
        }
        // the first message of the last `keep_turns` user turns
        let from = self.keep_turns.map_or(0, |n| {
            let users: Vec<usize> = messages
                .iter()
                .enumerate()
                .filter(|(_, m)| m["role"].as_str() == Some("user"))
                .map(|(i, _)| i)
                .collect();
            users.len().checked_sub(n).map_or(0, |k| users[k])
        });
        let mut out = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            if i < from && m["role"].as_str() != Some("system") {
                continue;
            }
            let is_system = m["role"].as_str() == Some("system");
            match (&self.drop_system_text, is_system, m["content"].as_str()) {
                (Some(text), true, Some(content)) => {
                    let left = content.replacen(text.as_str(), "", 1);
                    if left.trim().is_empty() {
                        continue;
                    }
                    let mut m = m.clone();
                    m["content"] = Value::String(left.trim().to_string());
                    out.push(m);
                }
                _ => out.push(m.clone()),
            }
        }
        let names = if self.tool_names {
            tool_names(tools.unwrap_or_default())
        } else {
            Vec::new()
        };
        if !names.is_empty() {
            let line = format!("Tools: {}", names.join(", "));
            // After the system prompt that is left, else as the first message.
            let at = out
                .iter()
                .take_while(|m| m["role"].as_str() == Some("system"))
                .count();
            match at.checked_sub(1).map(|i| &mut out[i]) {
                Some(m) if m["content"].is_string() => {
                    let text = format!("{}\n{line}", m["content"].as_str().unwrap_or_default());
                    m["content"] = Value::String(text);
                }
                _ => out.insert(at, serde_json::json!({"role": "system", "content": line})),
            }
        }
        let tools = if self.drop_tools {
            None
        } else {
            tools.map(|t| t.to_vec())
        };
        Ok((out, tools))
    }
}

/// The names of tool definitions in either shape, in their order.
fn tool_names(tools: &[Value]) -> Vec<&str> {
    tools
        .iter()
        .filter_map(|t| function_of(t)["name"].as_str())
        .collect()
}

/// The longest prefix that the system messages of all `records` share (each must start with
/// a system message), ending at a word boundary; `None` when shorter than 32 characters.
pub fn common_system_text(records: &[ChatRecord]) -> Option<String> {
    let mut texts = records.iter().map(|r| {
        r.messages
            .first()
            .filter(|m| m["role"].as_str() == Some("system"))
            .and_then(|m| m["content"].as_str())
    });
    let first = texts.next()??;
    let mut len = first.len();
    for t in texts {
        let t = t?;
        len = first
            .char_indices()
            .zip(t.chars())
            .take_while(|((i, a), b)| *i < len && a == b)
            .map(|((i, a), _)| i + a.len_utf8())
            .last()
            .unwrap_or(0);
    }
    let prefix = &first[..len];
    // A prefix that stops inside a word would cut the variable part in two.
    let whole = records.iter().all(|r| {
        r.messages[0]["content"]
            .as_str()
            .is_some_and(|c| c.len() == len || c[len..].starts_with(char::is_whitespace))
    });
    let prefix = if whole {
        prefix
    } else {
        match prefix.rfind(char::is_whitespace) {
            Some(i) => &prefix[..i],
            None => "",
        }
    };
    let prefix = prefix.trim_end();
    (prefix.chars().count() >= 32).then(|| prefix.to_string())
}

/// A tokenized example: `mask[i] == 1` when token `i` is a target (assistant answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub id: String,
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
}

impl Example {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Tokens the loss is computed on.
    pub fn target_tokens(&self) -> usize {
        self.mask.iter().skip(1).filter(|&&m| m == 1).count()
    }

    /// The prompt part (everything before the first target token).
    pub fn prompt(&self) -> &[u32] {
        let n = self
            .mask
            .iter()
            .position(|&m| m == 1)
            .unwrap_or(self.ids.len());
        &self.ids[..n]
    }

    /// The answer tokens (targets).
    pub fn answer(&self) -> Vec<u32> {
        self.ids
            .iter()
            .zip(&self.mask)
            .filter(|(_, m)| **m == 1)
            .map(|(i, _)| *i)
            .collect()
    }
}

/// Renders records into examples with one template, tokenizer and transform.
pub struct ExampleBuilder<'a> {
    pub template: &'a ChatTemplate,
    pub tokenizer: &'a Tokenizer,
    /// The text that ends an assistant turn in this template (`<|im_end|>` for ChatML).
    pub end_of_turn: String,
    pub transform: PromptTransform,
    /// Longer examples are refused (`None`: no limit).
    pub max_len: Option<usize>,
}

impl<'a> ExampleBuilder<'a> {
    /// ChatML's end of turn, no length limit, no pruning.
    pub fn new(template: &'a ChatTemplate, tokenizer: &'a Tokenizer) -> Self {
        Self {
            template,
            tokenizer,
            end_of_turn: "<|im_end|>".into(),
            transform: PromptTransform::identity(),
            max_len: None,
        }
    }

    /// The prompt text the specialist sees for a request (what the router renders).
    pub fn render_prompt(&self, messages: &[Value], tools: Option<&[Value]>) -> Result<String> {
        let (messages, tools) = self.transform.apply(messages, tools)?;
        let m = serde_json::to_string(&messages)?;
        let t = tools.map(|t| serde_json::to_string(&t)).transpose()?;
        Ok(self.template.render_json(&m, t.as_deref(), true)?)
    }

    /// Token ids and assistant-only mask of one record.
    pub fn build(&self, r: &ChatRecord) -> Result<Example> {
        let bad = |msg: String| TrainError::Record {
            id: r.id.clone(),
            msg,
        };
        let (messages, tools) = self.transform.apply(&r.messages, r.tools.as_deref())?;
        let m = serde_json::to_string(&messages)?;
        let t = tools.map(|t| serde_json::to_string(&t)).transpose()?;
        let prompt = self.template.render_json(&m, t.as_deref(), true)?;
        let mut answer = r.answer.clone();
        answer["role"] = Value::String("assistant".into());
        let mut all = messages;
        all.push(answer);
        let full = self
            .template
            .render_json(&serde_json::to_string(&all)?, t.as_deref(), false)?;
        let Some(rest) = full.strip_prefix(&prompt) else {
            return Err(bad(
                "the template renders the answer turn in a way that does not extend the prompt"
                    .into(),
            ));
        };
        let end = rest
            .find(&self.end_of_turn)
            .map(|i| i + self.end_of_turn.len())
            .ok_or_else(|| {
                bad(format!(
                    "the rendered answer has no end-of-turn text {:?}",
                    self.end_of_turn
                ))
            })?;
        let answer_text = &rest[..end];
        let mut ids = self.tokenizer.encode(&prompt, true, true);
        let prompt_len = ids.len();
        ids.extend(self.tokenizer.encode(answer_text, false, true));
        if ids.len() == prompt_len {
            return Err(bad("the answer renders to no tokens".into()));
        }
        if let Some(max) = self.max_len
            && ids.len() > max
        {
            return Err(bad(format!(
                "{} tokens, more than the maximum sequence length {max}",
                ids.len()
            )));
        }
        let mut mask = vec![0u8; ids.len()];
        mask[prompt_len..].fill(1);
        Ok(Example {
            id: r.id.clone(),
            ids,
            mask,
        })
    }
}

/// Which part of the data a call belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Test,
}

/// Fractions of the validation and test splits (the rest trains).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    pub validation: f64,
    pub test: f64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            validation: 0.1,
            test: 0.1,
        }
    }
}

impl SplitConfig {
    /// The split of a logged call, keyed by its request's content
    /// ([`ChatRecord::split_key`]): the same request lands in the same split whatever id an
    /// import or the gateway gave it. Every consumer of a split (training, evaluation,
    /// selection's bake-off) goes through this, so none can key it differently.
    pub fn split_of_record(&self, record: &ChatRecord) -> Split {
        self.split_of(&record.split_key())
    }

    /// The split of a key: a SHA-256 of it mapped to `[0, 1)`, so the assignment never
    /// changes when calls are added or removed.
    pub fn split_of(&self, id: &str) -> Split {
        let h = Sha256::digest(id.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[..8]);
        let u = (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
        if u < self.test {
            Split::Test
        } else if u < self.test + self.validation {
            Split::Validation
        } else {
            Split::Train
        }
    }

    /// Splits `items` by id into (train, validation, test), keeping their order.
    pub fn split<T>(&self, items: Vec<T>, id: impl Fn(&T) -> &str) -> (Vec<T>, Vec<T>, Vec<T>) {
        let (mut tr, mut va, mut te) = (Vec::new(), Vec::new(), Vec::new());
        for it in items {
            match self.split_of(id(&it)) {
                Split::Train => tr.push(it),
                Split::Validation => va.push(it),
                Split::Test => te.push(it),
            }
        }
        (tr, va, te)
    }
}

/// A task's data, ready to train: train and validation examples; the test split's ids only
/// (never tokenized here, so training and selection cannot see it).
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test_ids: Vec<String>,
    /// Records left out, with the reason (e.g. longer than the maximum length).
    pub skipped: Vec<(String, String)>,
    /// Training examples folded into a longer one of the same conversation
    /// ([`Dataset::fold_prefixes`]).
    pub folded: usize,
}

impl Dataset {
    /// Splits `records` by request ([`SplitConfig::split_of_record`]) and builds the train and validation examples. Refuses a
    /// task whose usable records would give fewer than `min_train` training examples; the
    /// message counts usable records and how many are needed at the configured fractions.
    pub fn build(
        records: &[ChatRecord],
        builder: &ExampleBuilder<'_>,
        split: &SplitConfig,
        min_train: usize,
    ) -> Result<Self> {
        let mut d = Dataset::default();
        for r in records {
            let part = split.split_of_record(r);
            if part == Split::Test {
                d.test_ids.push(r.id.clone());
                continue;
            }
            match builder.build(r) {
                Ok(e) if part == Split::Train => d.train.push(e),
                Ok(e) => d.validation.push(e),
                Err(TrainError::Record { id, msg }) => d.skipped.push((id, msg)),
                Err(e) => return Err(e),
            }
        }
        if d.train.len() < min_train {
            let usable = d.train.len() + d.validation.len() + d.test_ids.len();
            let frac = (1.0 - split.validation - split.test).max(1e-9);
            let needed = ((min_train as f64 / frac).ceil() as usize).max(usable + 1);
            return Err(TrainError::TooFewExamples {
                given: usable,
                needed,
            });
        }
        Ok(d)
    }

    /// Folds every training example whose tokens (prompt and answer) begin another training
    /// example into that one: the longer example's loss then also covers the shorter one's
    /// answer. An agent's consecutive steps are such chains — step k+1's prompt is step k's
    /// conversation plus step k's call and its result — so one causal pass over the last step
    /// scores every answer exactly as the separate examples would (each answer sees the same
    /// tokens before it), at the cost of one sequence instead of one per step. Returns how
    /// many examples were folded; they stay counted in `folded`.
    pub fn fold_prefixes(&mut self) -> usize {
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        // In lexicographic order a sequence that begins others sits right before them, so a
        // fold into the next one suffices (chains fold step by step).
        order.sort_by(|&a, &b| self.train[a].ids.cmp(&self.train[b].ids));
        let mut gone = vec![false; self.train.len()];
        for w in order.windows(2) {
            let (a, b) = (w[0], w[1]);
            let n = self.train[a].len();
            if self.train[b].ids.len() >= n && self.train[b].ids[..n] == self.train[a].ids[..] {
                let mask = std::mem::take(&mut self.train[a].mask);
                for (m, x) in self.train[b].mask.iter_mut().zip(mask) {
                    *m |= x;
                }
                gone[a] = true;
            }
        }
        let mut i = 0;
        self.train.retain(|_| {
            i += 1;
            !gone[i - 1]
        });
        let folded = gone.iter().filter(|g| **g).count();
        self.folded += folded;
        folded
    }
}

/// Refuses a data set smaller than `needed`.
pub fn check_enough(given: usize, needed: usize) -> Result<()> {
    if given < needed {
        return Err(TrainError::TooFewExamples { given, needed });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(system: &str) -> ChatRecord {
        ChatRecord {
            id: system.into(),
            messages: vec![
                json!({"role": "system", "content": system}),
                json!({"role": "user", "content": "hi"}),
            ],
            tools: None,
            answer: json!({"role": "assistant", "content": "ok"}),
        }
    }

    #[test]
    fn common_system_text_is_the_shared_prefix_at_a_word_boundary() {
        let base = "You are a travel agent. Follow the booking policy carefully.";
        let r = [
            rec(&format!("{base} The user is Alice.")),
            rec(&format!("{base} The user is Albert.")),
        ];
        assert_eq!(
            common_system_text(&r).as_deref(),
            Some(format!("{base} The user is").as_str())
        );
        let t = PromptTransform::infer(&r);
        assert!(t.drop_tools);
        let (m, _) = t.apply(&r[0].messages, None).unwrap();
        assert_eq!(m[0]["content"], "Alice.");
        // identical prompts are removed whole; short or missing ones are not pruned
        assert_eq!(
            common_system_text(&[rec(base), rec(base)]).as_deref(),
            Some(base)
        );
        assert_eq!(
            common_system_text(&[rec("Be brief. A"), rec("Be brief. B")]),
            None
        );
        let mut no_system = rec(base);
        no_system.messages.remove(0);
        assert_eq!(common_system_text(&[rec(base), no_system]), None);
    }

    #[test]
    fn transform_drops_tools_and_constant_system_text() {
        let t = PromptTransform::pruning(Some("You are a helpful bot.".into()));
        let msgs = vec![
            json!({"role": "system", "content": "You are a helpful bot. Today is Monday."}),
            json!({"role": "user", "content": "hi"}),
        ];
        let tools = vec![json!({"type": "function"})];
        let (m, tl) = t.apply(&msgs, Some(&tools)).unwrap();
        assert_eq!(m[0]["content"], "Today is Monday.");
        assert!(tl.is_none());
        // a system message that was only the constant disappears
        let msgs = vec![
            json!({"role": "system", "content": "You are a helpful bot."}),
            json!({"role": "user", "content": "hi"}),
        ];
        let (m, _) = t.apply(&msgs, None).unwrap();
        assert_eq!(m.len(), 1);
        // round trip through JSON, and unknown versions refused
        let s = serde_json::to_string(&t).unwrap();
        let back: PromptTransform = serde_json::from_str(&s).unwrap();
        assert_eq!(back, t);
        let v4 = PromptTransform {
            version: 4,
            ..t.clone()
        };
        assert!(matches!(
            v4.apply(&msgs, None),
            Err(TrainError::TransformVersion(4))
        ));
        // cutting the conversation needs version 2: a version-1 transform claiming it is refused
        let bad = PromptTransform {
            keep_turns: Some(1),
            ..t
        };
        assert!(matches!(
            bad.apply(&msgs, None),
            Err(TrainError::TransformVersion(1))
        ));
    }

    #[test]
    fn transform_keeps_the_last_user_turns() {
        let call = |id: &str| {
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]})
        };
        let result = |id: &str| json!({"role": "tool", "tool_call_id": id, "content": "ok"});
        let msgs = vec![
            json!({"role": "system", "content": "sys"}),
            json!({"role": "user", "content": "one"}),
            call("a"),
            result("a"),
            json!({"role": "user", "content": "two"}),
            call("b"),
            result("b"),
            json!({"role": "user", "content": "three"}),
            call("c"),
            result("c"),
        ];
        let t = PromptTransform::identity().with_keep_turns(Some(2));
        assert_eq!(t.version, 2);
        let (m, _) = t.apply(&msgs, None).unwrap();
        let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(
            roles,
            [
                "system",
                "user",
                "assistant",
                "tool",
                "user",
                "assistant",
                "tool"
            ]
        );
        assert_eq!(m[1]["content"], "two");
        // fewer turns than kept: all of them
        let t = PromptTransform::identity().with_keep_turns(Some(5));
        assert_eq!(t.apply(&msgs, None).unwrap().0.len(), msgs.len());
        // none kept = no cut, written as version 1
        let t = PromptTransform::identity().with_keep_turns(Some(0));
        assert_eq!((t.version, t.keep_turns), (1, None));
        // round trip
        let t = PromptTransform::pruning(None).with_keep_turns(Some(1));
        let back: PromptTransform =
            serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.apply(&msgs, None).unwrap().0.len(), 4);
    }

    #[test]
    fn transform_names_the_offered_tools_in_place_of_their_schemas() {
        let tools = vec![
            json!({"type": "function", "function": {"name": "ls", "parameters": {}}}),
            json!({"type": "function", "function": {"name": "cd", "parameters": {}}}),
        ];
        let user = json!({"role": "user", "content": "list"});
        let t = PromptTransform::pruning(None).with_tool_names(true);
        assert_eq!((t.version, t.tool_names), (3, true));
        // no system message: one is added in front
        let (m, tl) = t.apply(std::slice::from_ref(&user), Some(&tools)).unwrap();
        assert!(tl.is_none());
        assert_eq!(m[0], json!({"role": "system", "content": "Tools: ls, cd"}));
        assert_eq!(m[1], user);
        // a system prompt left after pruning: the line follows it
        let t = PromptTransform::pruning(Some("You are the file system agent of the team.".into()))
            .with_tool_names(true);
        let sys = json!({"role": "system", "content": "You are the file system agent of the team. Be brief."});
        let (m, _) = t.apply(&[sys, user.clone()], Some(&tools)).unwrap();
        assert_eq!(m[0]["content"], "Be brief.\nTools: ls, cd");
        assert_eq!(m.len(), 2);
        // no tools offered: nothing added
        assert_eq!(
            t.apply(std::slice::from_ref(&user), None).unwrap().0.len(),
            1
        );
        // schemas kept: they name the tools already
        let t = PromptTransform::identity().with_tool_names(true);
        assert_eq!((t.version, t.tool_names), (1, false));
        // round trip; a version-2 transform claiming tool names is refused
        let t = PromptTransform::pruning(None)
            .with_keep_turns(Some(1))
            .with_tool_names(true);
        let back: PromptTransform =
            serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        let old = PromptTransform { version: 2, ..t };
        assert!(matches!(
            old.apply(std::slice::from_ref(&user), Some(&tools)),
            Err(TrainError::TransformVersion(2))
        ));
    }

    #[test]
    fn split_is_deterministic_and_near_the_fractions() {
        let c = SplitConfig::default();
        let ids: Vec<String> = (0..10_000).map(|i| format!("call-{i}")).collect();
        let (tr, va, te) = c.split(ids.clone(), |s| s.as_str());
        assert_eq!(tr.len() + va.len() + te.len(), 10_000);
        assert!((va.len() as i64 - 1000).abs() < 150, "{}", va.len());
        assert!((te.len() as i64 - 1000).abs() < 150, "{}", te.len());
        let (tr2, _, te2) = c.split(ids, |s| s.as_str());
        assert_eq!(tr, tr2);
        assert_eq!(te, te2);
        // the split of one call does not depend on the others
        assert_eq!(c.split_of("call-7"), c.split_of("call-7"));
    }

    #[test]
    fn a_call_keeps_its_split_whatever_its_id() {
        let rec = |id: &str, text: &str, tools: Option<Vec<Value>>| ChatRecord {
            id: id.into(),
            messages: vec![json!({"role": "user", "content": text})],
            tools,
            answer: json!({"role": "assistant", "content": "ok"}),
        };
        let a = rec("call-1", "lock the doors", None);
        let b = rec("0190f2c4-other-id", "lock the doors", None);
        assert_eq!(a.split_key(), b.split_key());
        assert_ne!(
            a.split_key(),
            rec("call-1", "unlock the doors", None).split_key()
        );
        let tool = json!({"type": "function", "function": {"name": "lockDoors"}});
        assert_ne!(
            a.split_key(),
            rec("call-1", "lock the doors", Some(vec![tool])).split_key()
        );
        // Over many calls the content key spreads like the id did.
        let c = SplitConfig::default();
        let test = (0..2000)
            .filter(|i| c.split_of_record(&rec("x", &format!("q{i}"), None)) == Split::Test)
            .count();
        assert!((test as i64 - 200).abs() < 60, "{test}");
    }

    #[test]
    fn too_few_examples_says_how_many() {
        let e = check_enough(3, 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "too few examples: 3 given, at least 10 needed"
        );
    }

    #[test]
    fn import_record() {
        let v = json!({
            "request": {"messages": [{"role": "user", "content": "x"}], "tools": []},
            "response": {"id": "r1", "choices": [{"message": {"role": "assistant", "content": null,
                "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]},
            "metadata": {}
        });
        let r = ChatRecord::from_import(&v).unwrap();
        assert_eq!(r.id, "r1");
        let mut bad = v.clone();
        bad["response"]["choices"][0]["message"] = json!({"role": "assistant", "content": ""});
        assert!(ChatRecord::from_import(&bad).is_err());
    }
}
