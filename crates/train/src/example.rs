//! Training examples: a chat record (OpenAI messages [+ tools] and the assistant's answer)
//! rendered with a chat template into token ids and a loss mask that is 1 only on the
//! assistant answer (text or tool-call JSON, end-of-turn token included).
//!
//! The [`PromptTransform`] (in `downshift-slm`, part of the specialist contract) prunes the
//! static prompt parts a specialist internalises; [`infer_transform`] picks it for a task.

use downshift_slm::{ChatTemplate, PromptTransform, Tokenizer};
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

/// The system message each record starts with (`None` for a record without one).
pub fn system_texts(records: &[ChatRecord]) -> Vec<Option<&str>> {
    records
        .iter()
        .map(|r| {
            r.messages
                .first()
                .filter(|m| m["role"].as_str() == Some("system"))
                .and_then(|m| m["content"].as_str())
        })
        .collect()
}

/// The pruning for a task's records ([`PromptTransform::infer`] over their system messages):
/// tool schemas dropped, and the system prompt's constant text when it is long enough.
pub fn infer_transform(records: &[ChatRecord]) -> PromptTransform {
    PromptTransform::infer(&system_texts(records))
}

/// How many user turns a task's specialist must read: the fewest, from `least` up, whose kept
/// prompt (`transform` with that many turns) shows the answers' argument values as often as
/// the whole conversation does, within two points. A task whose answers copy an id from an earlier tool result or turn (a flight number
/// from a fetched booking) then reads back as far as that; one whose answers need nothing
/// earlier (a label, the id in the last message) keeps `least`. Only the training split is
/// looked at; at most as many turns as its longest conversation has.
pub fn turns_needed(records: &[ChatRecord], transform: &PromptTransform, least: usize) -> usize {
    let split = SplitConfig::default();
    let train: Vec<&ChatRecord> = records
        .iter()
        .filter(|r| split.split_of_record(r) == Split::Train)
        .collect();
    let most = train
        .iter()
        .map(|r| r.messages.iter().filter(|m| m["role"] == "user").count())
        .max()
        .unwrap_or(0);
    let least = least.max(1);
    if train.is_empty() || most <= least {
        return least;
    }
    let shown = |keep: Option<usize>| -> f64 {
        let t = transform.clone().with_keep_turns(keep);
        let hits = train
            .iter()
            .filter(|r| {
                let values = answer_values(&r.answer);
                let Ok((messages, _)) = t.apply(&r.messages, None) else {
                    return false;
                };
                let text: String = messages.iter().map(message_text).collect();
                values.iter().all(|v| text.contains(v.as_str()))
            })
            .count();
        hits as f64 / train.len() as f64
    };
    let whole = shown(None);
    // keeping as many turns as the longest conversation has shows everything
    (least..=most)
        .find(|&k| shown(Some(k)) + 0.02 >= whole)
        .unwrap_or(most)
}

/// The string values (three characters or more) among the arguments of an answer's tool
/// calls: what a specialist must find in its prompt to copy.
fn answer_values(answer: &Value) -> Vec<String> {
    fn leaves(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.chars().count() >= 3 => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
            Value::Object(o) => o.values().for_each(|x| leaves(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for call in answer["tool_calls"].as_array().into_iter().flatten() {
        let args = &call["function"]["arguments"];
        match args.as_str().map(serde_json::from_str::<Value>) {
            Some(Ok(v)) => leaves(&v, &mut out),
            Some(Err(_)) => {}
            None => leaves(args, &mut out),
        }
    }
    out
}

/// A message's text as the prompt shows it: its content and the arguments of its tool calls.
fn message_text(m: &Value) -> String {
    let mut text = match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    for call in m["tool_calls"].as_array().into_iter().flatten() {
        text.push('\n');
        match &call["function"]["arguments"] {
            Value::String(s) => text.push_str(s),
            other => text.push_str(&other.to_string()),
        }
    }
    text.push('\n');
    text
}

/// A tokenized example: `mask[i] == 1` when token `i` is a target (assistant answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// The id of the record it was built from.
    pub id: String,
    /// Token ids: the rendered prompt, then the answer through its end of turn.
    pub ids: Vec<u32>,
    /// One entry per token: 1 on answer tokens, 0 on the prompt.
    pub mask: Vec<u8>,
}

impl Example {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it has no tokens.
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
    /// The base model's chat template.
    pub template: &'a ChatTemplate,
    /// The base model's tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// The text that ends an assistant turn in this template (`<|im_end|>` for ChatML).
    pub end_of_turn: String,
    /// The pruning applied to every request before it is rendered.
    pub transform: PromptTransform,
    /// Longer examples are refused (`None`: no limit).
    pub max_len: Option<usize>,
}

impl<'a> ExampleBuilder<'a> {
    /// The template's end of turn ([`ChatTemplate::end_of_turn`]), no length limit, no pruning.
    pub fn new(template: &'a ChatTemplate, tokenizer: &'a Tokenizer) -> Self {
        Self {
            template,
            tokenizer,
            end_of_turn: template.end_of_turn().into(),
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
    /// Trained on.
    Train,
    /// Scored during training for early stopping and the best weights.
    Validation,
    /// Held out for evaluation and selection; never tokenized by training.
    Test,
}

/// Fractions of the validation and test splits (the rest trains).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    /// Share of calls in the validation split, in `[0, 1]` (default 0.1).
    pub validation: f64,
    /// Share of calls in the test split, in `[0, 1]` (default 0.1).
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
    /// Training examples, in record order.
    pub train: Vec<Example>,
    /// Validation examples, in record order.
    pub validation: Vec<Example>,
    /// Ids of the records in the test split.
    pub test_ids: Vec<String>,
    /// Records left out, with the reason (e.g. longer than the maximum length).
    pub skipped: Vec<(String, String)>,
    /// Training examples folded into a longer one of the same conversation
    /// ([`Dataset::fold_prefixes`]).
    pub folded: usize,
}

impl Dataset {
    /// Splits `records` by request ([`SplitConfig::split_of_record`]) and builds the train and
    /// validation examples. Refuses a task whose usable records would give fewer than
    /// `min_train` training examples; the message counts usable records and how many are
    /// needed at the configured fractions.
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

    /// A two-turn conversation: the user asks for a booking by code, the agent fetches it
    /// (the result names a flight), the user asks about "the return flight"; the answer is
    /// `tool(arg)`.
    fn lookup(i: usize, second_turn: bool) -> ChatRecord {
        let code = format!("RES{i:03}");
        let flight = format!("HAT{:03}", 100 + i);
        let mut messages = vec![
            json!({"role": "system", "content": "You are an airline agent."}),
            json!({"role": "user", "content": format!("Please check booking {code}.")}),
        ];
        let (tool, arg) = if second_turn {
            messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_booking",
                 "arguments": format!("{{\"code\": \"{code}\"}}")}}]}));
            messages.push(json!({"role": "tool", "tool_call_id": "c1",
                "content": format!("{{\"flights\": [\"{flight}\"]}}")}));
            messages.push(json!({"role": "user", "content": "Is the return flight on time?"}));
            ("flight_status", json!({"flight": flight}))
        } else {
            ("get_booking", json!({"code": code}))
        };
        ChatRecord {
            id: format!("{i}-{second_turn}"),
            messages,
            tools: None,
            answer: json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c2", "type": "function",
                 "function": {"name": tool, "arguments": arg.to_string()}}]}),
        }
    }

    #[test]
    fn a_task_reads_back_as_far_as_its_answers_copy_from() {
        let t = PromptTransform::identity();
        // The flight number is only in the tool result before the last user turn: 1 turn
        // hides it, 2 show it.
        let follow_ups: Vec<ChatRecord> = (0..60).map(|i| lookup(i, true)).collect();
        assert_eq!(turns_needed(&follow_ups, &t, 1), 2);
        // Every code is in the last user message: one turn is enough.
        let first_steps: Vec<ChatRecord> = (0..60).map(|i| lookup(i, false)).collect();
        assert_eq!(turns_needed(&first_steps, &t, 1), 1);
        // Answers with nothing to copy (labels, text) keep the least.
        let labels: Vec<ChatRecord> = (0..20).map(|i| rec(&format!("system {i}"))).collect();
        assert_eq!(turns_needed(&labels, &t, 1), 1);
        // A mix where most answers need the earlier turn reads it too.
        let mixed: Vec<ChatRecord> = (0..60).map(|i| lookup(i, i % 3 != 0)).collect();
        assert_eq!(turns_needed(&mixed, &t, 1), 2);
        assert_eq!(turns_needed(&[], &t, 1), 1);
    }

    #[test]
    fn the_inferred_transform_prunes_the_shared_system_text() {
        let base = "You are a travel agent. Follow the booking policy carefully.";
        let r = [
            rec(&format!("{base} The user is Alice.")),
            rec(&format!("{base} The user is Albert.")),
        ];
        let t = infer_transform(&r);
        assert!(t.drop_tools);
        assert_eq!(
            t.drop_system_text.as_deref(),
            Some(format!("{base} The user is").as_str())
        );
        let (m, _) = t.apply(&r[0].messages, None).unwrap();
        assert_eq!(m[0]["content"], "Alice.");
        // a record without a system message: nothing shared
        let mut no_system = rec(base);
        no_system.messages.remove(0);
        assert_eq!(system_texts(&[rec(base), no_system.clone()])[1], None);
        assert_eq!(
            infer_transform(&[rec(base), no_system]).drop_system_text,
            None
        );
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
