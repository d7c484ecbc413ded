//! The curation pipeline (S2): logged calls in, training examples out. Quality filters first,
//! then PII scrubbing with pseudonyms consistent across each agent episode, then exact and
//! near-duplicate removal (the most recent survives), with a report of what each step did.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use downshift_api::canonical_json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::dedup::{DedupConfig, DedupItem, MinHasher, dedup};
use crate::filters::{FilterConfig, FilterInput, FilterReason, SHADOW_TAG};
use crate::{Action, CurateError, Detector, Episode, PiiConfig, Scrubber};

/// The `[curate]` section of `downshift.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CurateConfig {
    /// `[curate.pii]`: what counts as PII/PHI and what happens to it.
    pub pii: PiiConfig,
    /// `[curate.dedup]`: exact and near-duplicate removal.
    pub dedup: DedupConfig,
    /// `[curate.filters]`: which calls are left out.
    pub filters: FilterConfig,
}

/// A logged call, decrypted and parsed.
#[derive(Debug, Clone)]
pub struct CallInput {
    /// The call's id in the store.
    pub call_id: String,
    /// When the call was logged, ms since the Unix epoch; the newest of duplicates is kept.
    pub ts_ms: i64,
    /// The API endpoint (`chat/completions`, `responses`, `embeddings`, …); only chat calls, and
    /// Responses-API calls restated as chat, become examples.
    pub endpoint: String,
    /// The call status as logged (`ok`, `interrupted`, …).
    pub status: String,
    /// The model the request named.
    pub model: String,
    /// Pseudonym of the agent episode: calls that share it share one pseudonym mapping.
    pub episode: Option<String>,
    /// The call's tags; shadow and specialist-routed traffic is recognised by them and left out.
    pub tags: BTreeMap<String, String>,
    /// `None` when the logged request was not JSON.
    pub request: Option<Value>,
    /// `None` when no response was logged or it was not JSON.
    pub response: Option<Value>,
}

/// A training example in chat format: `{"messages": [...], "tools": [...]}` with the
/// assistant's answer as the last message, scrubbed.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The call the example was made from.
    pub call_id: String,
    /// That call's timestamp, ms since the Unix epoch.
    pub ts_ms: i64,
    /// The scrubbed record: `messages` ending with the assistant's answer, and `tools` when the
    /// request offered any.
    pub record: Value,
}

/// What curation did, step by step.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CurationReport {
    /// Calls fed in.
    pub calls_in: u64,
    /// Calls left out by each quality filter.
    pub filtered: BTreeMap<&'static str, u64>,
    /// Entities found and replaced, per type.
    pub pii_entities: BTreeMap<String, u64>,
    /// Calls in which at least one entity was found.
    pub calls_with_pii: u64,
    /// Calls dropped because an entity's action is `drop_call`.
    pub pii_dropped_calls: u64,
    /// Examples dropped as exact copies of a newer one.
    pub exact_duplicates: u64,
    /// Examples dropped as near duplicates of a newer one.
    pub near_duplicates: u64,
    /// Examples that came out.
    pub examples_out: u64,
}

/// Builds the unscrubbed chat-format record of a call that passed the filters, taking the
/// parsed request apart instead of copying it.
fn chat_record(request: Value, response: &Value) -> Value {
    let mut request = match request {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut messages: Vec<Value> = match request.remove("messages") {
        Some(Value::Array(m)) => m,
        _ => Vec::new(),
    };
    let answer = response.pointer("/choices/0/message");
    let field = |k: &str| answer.and_then(|a| a.get(k));
    let mut assistant = Map::new();
    assistant.insert("role".into(), json!("assistant"));
    assistant.insert(
        "content".into(),
        field("content").cloned().unwrap_or(Value::Null),
    );
    if let Some(calls) = field("tool_calls")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    {
        let calls: Vec<Value> = calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": c.pointer("/function/name").cloned().unwrap_or(Value::Null),
                        "arguments": c.pointer("/function/arguments").cloned().unwrap_or(json!("{}")),
                    },
                })
            })
            .collect();
        assistant.insert("tool_calls".into(), Value::Array(calls));
    }
    messages.push(Value::Object(assistant));
    let mut record = Map::new();
    record.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = request.remove("tools").filter(|t| !t.is_null()) {
        record.insert("tools".into(), tools);
    }
    Value::Object(record)
}

/// Scrubs the parts of a record that carry user data: message contents (text, text parts, or
/// JSON inside a string) and tool-call arguments (kept valid JSON with the same keys). Roles,
/// tool names, ids and the tool schemas are left as they are.
fn scrub_record(ep: &mut Episode, record: &mut Value) {
    let Some(messages) = record.get_mut("messages").and_then(Value::as_array_mut) else {
        return;
    };
    for m in messages {
        match m.get_mut("content") {
            Some(c @ Value::String(_)) => *c = ep.scrub_json(c),
            Some(Value::Array(parts)) => {
                for p in parts {
                    if let Some(t @ Value::String(_)) = p.get_mut("text") {
                        *t = ep.scrub_json(t);
                    }
                }
            }
            _ => {}
        }
        if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
            for c in calls {
                if let Some(args) = c.pointer_mut("/function/arguments") {
                    let scrubbed = match args.as_str().map(serde_json::from_str::<Value>) {
                        Some(Ok(parsed)) => Value::String(ep.scrub_json(&parsed).to_string()),
                        _ => ep.scrub_json(args),
                    };
                    *args = scrubbed;
                }
            }
        }
    }
}

/// The variable part of an example, for near-duplicate detection: everything but system
/// messages and tool schemas (which repeat across every call of a task by design), as the
/// prompt's text and the answer's (the last message when the assistant wrote it).
fn variable_text(record: &Value) -> (String, String) {
    let messages: &[Value] = record
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let (prompt, answer) = match messages.split_last() {
        Some((last, rest)) if last.get("role").and_then(Value::as_str) == Some("assistant") => {
            (rest, std::slice::from_ref(last))
        }
        _ => (messages, &[][..]),
    };
    (message_text(prompt), message_text(answer))
}

fn message_text(messages: &[Value]) -> String {
    let mut out = String::new();
    for m in messages {
        if m.get("role").and_then(Value::as_str) == Some("system") {
            continue;
        }
        match m.get("content") {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Array(parts)) => {
                for p in parts {
                    if let Some(t) = p.get("text").and_then(Value::as_str) {
                        out.push_str(t);
                    }
                }
            }
            _ => {}
        }
        out.push('\n');
        for c in m
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(f) = c.get("function") {
                out.push_str(&f.to_string());
            }
        }
    }
    out
}

struct Scrubbed {
    index: usize,
    record: Value,
    entities: BTreeMap<String, u64>,
    dropped: bool,
}

/// Scrubs one episode's calls in time order with one pseudonym mapping.
fn scrub_episode(
    scrubber: &Scrubber,
    config: &PiiConfig,
    items: Vec<(usize, Value)>,
) -> Vec<Scrubbed> {
    let mut ep = scrubber.episode();
    let mut out = Vec::with_capacity(items.len());
    for (index, mut record) in items {
        let before = ep.report().entities.clone();
        scrub_record(&mut ep, &mut record);
        let mut entities = BTreeMap::new();
        let mut dropped = false;
        for (kind, n) in &ep.report().entities {
            let added = n - before.get(kind).copied().unwrap_or(0);
            if added > 0 {
                entities.insert(kind.as_str().to_owned(), added);
                dropped |= config.action(*kind) == Action::DropCall;
            }
        }
        out.push(Scrubbed {
            index,
            record,
            entities,
            dropped,
        });
    }
    out
}

/// A tool list shared by every call that offers the same tools (agent tool schemas are large
/// and repeat on every call of a task): kept once, with its content hash.
#[derive(Debug)]
struct Tools {
    value: Value,
    hash: [u8; 32],
}

/// What later steps need of a call that passed the filters.
struct Info {
    call_id: String,
    ts_ms: i64,
    episode: Option<String>,
    tools: Option<Arc<Tools>>,
}

/// The pipeline, fed one call at a time so a large log never has to be in memory at once:
/// `add` filters a call and keeps only its messages (tool lists are shared), `finish` scrubs,
/// deduplicates and returns the examples, oldest first.
pub struct Curator<'a> {
    config: &'a CurateConfig,
    scrubber: Scrubber,
    report: CurationReport,
    info: Vec<Info>,
    /// (index into `info`, `{"messages": [...]}`)
    passed: Vec<(usize, Value)>,
    tools: HashMap<[u8; 32], Arc<Tools>>,
}

impl<'a> Curator<'a> {
    /// `secret` keys the pseudonyms (derive it from the key file).
    pub fn new(config: &'a CurateConfig, secret: &[u8]) -> Result<Curator<'a>, CurateError> {
        Ok(Curator {
            config,
            scrubber: Scrubber::new(Detector::new(&config.pii)?, secret)?,
            report: CurationReport::default(),
            info: Vec::new(),
            passed: Vec::new(),
            tools: HashMap::new(),
        })
    }

    fn intern_tools(&mut self, tools: Value) -> Arc<Tools> {
        let hash: [u8; 32] = Sha256::digest(canonical_json(&tools).as_bytes()).into();
        self.tools
            .entry(hash)
            .or_insert_with(|| Arc::new(Tools { value: tools, hash }))
            .clone()
    }

    /// Applies the quality filters to one call and keeps what the later steps need.
    pub fn add(&mut self, mut c: CallInput) {
        self.report.calls_in += 1;
        // A Responses-API call is curated as the chat completion it restates.
        if c.endpoint == "responses"
            && let Some((request, response)) = c
                .request
                .as_ref()
                .and_then(|r| downshift_api::responses_as_chat(r, c.response.as_ref()))
        {
            c.endpoint = "chat/completions".into();
            c.request = Some(request);
            c.response = Some(response).filter(|r| !r.is_null());
        }
        let verdict = match &c.request {
            None => Err(FilterReason::Unparseable),
            Some(request) => self.config.filters.check(&FilterInput {
                endpoint: &c.endpoint,
                status: &c.status,
                // Router-generated traffic and the specialists' own answers are not teacher
                // data.
                shadow: c.tags.get(SHADOW_TAG).is_some_and(|v| v == "true")
                    || c.tags
                        .get(downshift_store::ROUTE_TAG)
                        .is_some_and(|v| v == "specialist"),
                request,
                response: c.response.as_ref(),
            }),
        };
        let request = match (verdict, c.request) {
            (Ok(()), Some(request)) => request,
            (Err(reason), _) => {
                *self.report.filtered.entry(reason.as_str()).or_default() += 1;
                return;
            }
            (Ok(()), None) => {
                *self
                    .report
                    .filtered
                    .entry(FilterReason::Unparseable.as_str())
                    .or_default() += 1;
                return;
            }
        };
        let mut record = chat_record(request, c.response.as_ref().unwrap_or(&Value::Null));
        let tools = record
            .as_object_mut()
            .and_then(|r| r.remove("tools"))
            .map(|t| self.intern_tools(t));
        self.passed.push((self.info.len(), record));
        self.info.push(Info {
            call_id: c.call_id,
            ts_ms: c.ts_ms,
            episode: c.episode,
            tools,
        });
    }

    /// Scrubs (episodes spread over `threads`), deduplicates, and returns the examples.
    pub fn finish(self, threads: usize) -> (Vec<Example>, CurationReport) {
        let Curator {
            config,
            scrubber,
            mut report,
            info,
            passed,
            ..
        } = self;

        // Scrub, one pseudonym mapping per episode, in time order within it.
        let mut episodes: BTreeMap<String, Vec<(usize, Value)>> = BTreeMap::new();
        let mut singles: Vec<Vec<(usize, Value)>> = Vec::new();
        for (i, record) in passed {
            match &info[i].episode {
                Some(e) => episodes.entry(e.clone()).or_default().push((i, record)),
                None => singles.push(vec![(i, record)]),
            }
        }
        let mut groups: Vec<Vec<(usize, Value)>> = episodes.into_values().chain(singles).collect();
        for g in &mut groups {
            g.sort_by_key(|(i, _)| (info[*i].ts_ms, *i));
        }
        let threads = threads.max(1);
        let mut lanes: Vec<Vec<Vec<(usize, Value)>>> = (0..threads).map(|_| Vec::new()).collect();
        for (n, g) in groups.into_iter().enumerate() {
            lanes[n % threads].push(g);
        }
        let pii = &config.pii;
        let scrubbed: Vec<Scrubbed> = std::thread::scope(|s| {
            let handles: Vec<_> = lanes
                .into_iter()
                .map(|lane| {
                    let scrubber = scrubber.clone();
                    s.spawn(move || {
                        lane.into_iter()
                            .flat_map(|g| scrub_episode(&scrubber, pii, g))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut kept: Vec<Scrubbed> = Vec::with_capacity(scrubbed.len());
        for s in scrubbed {
            if !s.entities.is_empty() {
                report.calls_with_pii += 1;
            }
            for (k, n) in &s.entities {
                *report.pii_entities.entry(k.clone()).or_default() += n;
            }
            if s.dropped {
                report.pii_dropped_calls += 1;
            } else {
                kept.push(s);
            }
        }

        // Dedup on the scrubbed examples: the exact key covers messages and tools.
        let hasher = MinHasher::new(config.dedup.shingle_chars);
        let items: Vec<DedupItem> = kept
            .iter()
            .map(|s| {
                let mut h = Sha256::new();
                h.update(canonical_json(&s.record).as_bytes());
                if let Some(t) = &info[s.index].tools {
                    h.update(t.hash);
                }
                let (signature, answer) = if config.dedup.near {
                    let (prompt, answer) = variable_text(&s.record);
                    (hasher.signature(&prompt), hasher.signature(&answer))
                } else {
                    (
                        [0; crate::dedup::PERMUTATIONS],
                        [0; crate::dedup::PERMUTATIONS],
                    )
                };
                DedupItem {
                    exact: h.finalize().into(),
                    signature,
                    answer,
                    ts_ms: info[s.index].ts_ms,
                }
            })
            .collect();
        let outcome = dedup(&items, &config.dedup);
        report.exact_duplicates = outcome.exact_duplicates;
        report.near_duplicates = outcome.near_duplicates;
        let mut examples: Vec<Example> = kept
            .into_iter()
            .zip(outcome.keep)
            .filter(|(_, keep)| *keep)
            .map(|(s, _)| {
                let i = &info[s.index];
                let mut record = s.record;
                if let (Some(t), Value::Object(r)) = (&i.tools, &mut record) {
                    r.insert("tools".into(), t.value.clone());
                }
                Example {
                    call_id: i.call_id.clone(),
                    ts_ms: i.ts_ms,
                    record,
                }
            })
            .collect();
        examples.sort_by(|a, b| (a.ts_ms, &a.call_id).cmp(&(b.ts_ms, &b.call_id)));
        report.examples_out = examples.len() as u64;
        (examples, report)
    }
}

/// Runs the whole pipeline over calls in memory (see [`Curator`] to feed them one by one).
pub fn curate(
    calls: Vec<CallInput>,
    config: &CurateConfig,
    secret: &[u8],
    threads: usize,
) -> Result<(Vec<Example>, CurationReport), CurateError> {
    let mut curator = Curator::new(config, secret)?;
    for c in calls {
        curator.add(c);
    }
    Ok(curator.finish(threads))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, ts: i64, episode: Option<&str>, user: &str, answer: Value) -> CallInput {
        CallInput {
            call_id: id.into(),
            ts_ms: ts,
            endpoint: "chat/completions".into(),
            status: "ok".into(),
            model: "m".into(),
            episode: episode.map(str::to_owned),
            tags: BTreeMap::new(),
            request: Some(json!({
                "model": "m",
                "messages": [{"role": "system", "content": "You are a support agent."}, {"role": "user", "content": user}],
                "tools": [{"type": "function", "function": {"name": "lookup_customer", "parameters": {"type": "object"}}}],
            })),
            response: Some(
                json!({"choices": [{"index": 0, "message": answer, "finish_reason": "stop"}]}),
            ),
        }
    }

    fn tool_answer(args: &str) -> Value {
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup_customer", "arguments": args}}]})
    }

    #[test]
    fn a_responses_api_call_is_curated_like_the_chat_call_it_restates() {
        let chat = call(
            "a",
            1,
            None,
            "Customer jane.doe@example.com wants her order.",
            tool_answer(r#"{"email":"jane.doe@example.com"}"#),
        );
        let responses = CallInput {
            call_id: "b".into(),
            ts_ms: 2,
            endpoint: "responses".into(),
            request: Some(json!({
                "model": "m",
                "instructions": "You are a support agent.",
                "input": [{"role": "user", "content": [{"type": "input_text", "text": "Customer jane.doe@example.com wants her invoice."}]}],
                "tools": [{"type": "function", "name": "lookup_customer", "parameters": {"type": "object"}}],
            })),
            response: Some(
                json!({"status": "completed", "output": [{"type": "function_call",
                "call_id": "c9", "name": "lookup_customer", "arguments": "{\"email\":\"jane.doe@example.com\"}"}]}),
            ),
            ..chat.clone()
        };
        let failed = CallInput {
            call_id: "c".into(),
            response: Some(json!({"status": "failed", "error": {"code": "server_error"}})),
            ..responses.clone()
        };
        let (examples, report) = curate(
            vec![chat, responses, failed],
            &CurateConfig::default(),
            b"s",
            1,
        )
        .unwrap();
        assert_eq!(examples.len(), 2, "{report:?}");
        assert_eq!(report.filtered.get("upstream_error"), Some(&1));
        let r = &examples[1].record;
        assert_eq!(examples[1].call_id, "b");
        assert_eq!(r["messages"][0]["content"], "You are a support agent.");
        assert_eq!(r["tools"][0]["function"]["name"], "lookup_customer");
        let last = r["messages"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["tool_calls"][0]["function"]["name"], "lookup_customer");
        assert!(!r.to_string().contains("jane.doe@example.com"), "{r}");
    }

    #[test]
    fn scrubs_consistently_within_an_episode_and_keeps_tool_json_valid() {
        let calls = vec![
            call(
                "a",
                1,
                Some("ep1"),
                "Hi, my email is jane.doe@example.com, please look me up.",
                tool_answer(r#"{"email":"jane.doe@example.com","full_name":"Jane Doe"}"#),
            ),
            call(
                "b",
                2,
                Some("ep1"),
                "Also send the receipt to jane.doe@example.com.",
                json!({"role": "assistant", "content": "Sent to jane.doe@example.com."}),
            ),
        ];
        let (examples, report) = curate(calls, &CurateConfig::default(), b"secret", 2).unwrap();
        assert_eq!(examples.len(), 2);
        let first = examples[0].record.to_string();
        let second = examples[1].record.to_string();
        assert!(
            !first.contains("jane.doe@example.com") && !second.contains("jane.doe@example.com")
        );
        assert!(
            first.contains("<EMAIL_1>") && second.contains("<EMAIL_1>"),
            "{first}\n{second}"
        );
        let args = examples[0].record["messages"][2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        let parsed: Value = serde_json::from_str(args).unwrap();
        assert_eq!(
            parsed.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["email", "full_name"]
        );
        assert_eq!(
            examples[0].record["messages"][0]["content"],
            "You are a support agent."
        );
        assert_eq!(
            examples[0].record["tools"][0]["function"]["name"],
            "lookup_customer"
        );
        assert!(report.pii_entities["EMAIL"] >= 3);
        assert_eq!(report.calls_with_pii, 2);
    }

    #[test]
    fn filters_dedups_and_reports() {
        let mut calls = vec![
            call(
                "old",
                1,
                None,
                "Convert 5 miles to km",
                json!({"role": "assistant", "content": "8.05 km"}),
            ),
            call(
                "new",
                5,
                None,
                "Convert 5 miles to km",
                json!({"role": "assistant", "content": "8.05 km"}),
            ),
            call(
                "other",
                3,
                None,
                "What is the capital of Peru?",
                json!({"role": "assistant", "content": "Lima."}),
            ),
            call(
                "refused",
                4,
                None,
                "Do something bad",
                json!({"role": "assistant", "content": "I'm sorry, but I can't help with that."}),
            ),
        ];
        let mut broken = call("broken", 6, None, "x", json!({"content": "y"}));
        broken.status = "interrupted".into();
        calls.push(broken);
        let (examples, report) = curate(calls, &CurateConfig::default(), b"secret", 1).unwrap();
        let ids: Vec<&str> = examples.iter().map(|e| e.call_id.as_str()).collect();
        assert_eq!(
            ids,
            ["other", "new"],
            "oldest first, the newer duplicate kept"
        );
        assert_eq!(report.calls_in, 5);
        assert_eq!(report.filtered["refusal"], 1);
        assert_eq!(report.filtered["interrupted"], 1);
        assert_eq!(report.exact_duplicates, 1);
        assert_eq!(report.examples_out, 2);
    }

    #[test]
    fn drop_call_policy_removes_the_call() {
        let mut cfg = CurateConfig::default();
        cfg.pii
            .actions
            .insert(crate::EntityType::CreditCard, Action::DropCall);
        let calls = vec![
            call(
                "card",
                1,
                None,
                "Charge my card 4111 1111 1111 1111 please",
                json!({"role": "assistant", "content": "Done."}),
            ),
            call(
                "clean",
                2,
                None,
                "What time is it in Lima?",
                json!({"role": "assistant", "content": "Noon."}),
            ),
        ];
        let (examples, report) = curate(calls, &cfg, b"secret", 1).unwrap();
        assert_eq!(examples.len(), 1);
        assert_eq!(examples[0].call_id, "clean");
        assert_eq!(report.pii_dropped_calls, 1);
    }
}
