//! What the classifier reads from a request: its structural [`RequestKey`] and its newest
//! turns (the user and tool messages after the last assistant message — what the request asks
//! now). Two inputs give the same result: the raw body bytes (one light parse that builds no JSON
//! tree: tool definitions are hashed while they are scanned, message contents are kept as
//! borrowed raw slices and only the system messages and the newest turns are decoded) and an
//! already parsed [`Value`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::RouteError;
use crate::hash::{CanonHash, IdMap, combine, hash_bytes, value_hash};
use crate::template::TemplateHasher;

/// The request-only structural key of a chat completion request.
///
/// Discovery's task signature also covers the *response* (tools called, output kind) and a
/// template mined over the whole dataset, so it cannot be recomputed from a request alone; the
/// router keys on this instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestKey {
    /// The set of offered tools (`tools`, or the legacy `functions`): each whole definition —
    /// name, description, parameters — hashed canonically (key order and whitespace do not
    /// matter), the hashes sorted and deduplicated, so tool order does not matter either. 0: no
    /// tools.
    pub tools: u64,
    /// The system and developer messages reduced to a template
    /// ([`template_text`](crate::template_text)). 0: no such message.
    pub template: u64,
    /// The canonical hash of `response_format`. 0: none.
    pub format: u64,
}

impl RequestKey {
    /// The three parts in one number: the classifier's lookup key.
    pub fn hash(&self) -> u64 {
        combine(
            combine(combine(0x6B_6579, self.tools), self.template),
            self.format,
        )
    }
}

/// Roles the classifier tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    System,
    User,
    Assistant,
    /// A tool (or legacy function) result.
    Tool,
    Other,
}

impl Role {
    fn of(s: &str) -> Role {
        match s {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" | "function" => Role::Tool,
            _ => Role::Other,
        }
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Role;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a role string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Role, E> {
                Ok(Role::of(s))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Deserialize)]
struct LightMessage<'a> {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct LightRequest<'a> {
    #[serde(default, borrow)]
    messages: Option<Vec<LightMessage<'a>>>,
    #[serde(default, borrow)]
    tools: Option<&'a RawValue>,
    #[serde(default, borrow)]
    functions: Option<&'a RawValue>,
    #[serde(default)]
    response_format: Option<CanonHash>,
}

/// A JSON string, borrowed from the input when it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
}

/// A message's content, not yet decoded.
#[derive(Clone, Copy)]
pub(crate) enum Content<'a> {
    Raw(&'a RawValue),
    Value(&'a Value),
}

impl Content<'_> {
    /// Appends the text (a string content, or the text parts) as lines of `out`.
    fn push_text(&self, out: &mut String) {
        match self {
            Content::Raw(raw) => raw_texts(raw, |t| push_line(out, t)),
            Content::Value(v) => value_texts(v, |t| push_line(out, t)),
        }
    }
}

/// The newest turns of a conversation, collected message by message: the user and tool
/// messages after the last assistant message, or else the newest user message.
#[derive(Default)]
pub(crate) struct Turns<'a> {
    since_assistant: Vec<Content<'a>>,
    last_user: Option<Content<'a>>,
}

impl<'a> Turns<'a> {
    fn see(&mut self, role: Option<Role>, content: Option<Content<'a>>) {
        match (role, content) {
            (Some(Role::Assistant), _) => self.since_assistant.clear(),
            (Some(Role::User), Some(c)) => {
                self.last_user = Some(c);
                self.since_assistant.push(c);
            }
            (Some(Role::Tool), Some(c)) => self.since_assistant.push(c),
            _ => {}
        }
    }

    /// The newest turns' text, one line per text part (as discovery reads them): the user and
    /// tool messages after the last assistant message, or else the newest user message.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.since_assistant {
            let mut t = String::new();
            c.push_text(&mut t);
            if !t.trim().is_empty() {
                push_line(&mut out, &t);
            }
        }
        if out.is_empty()
            && let Some(c) = self.last_user
        {
            c.push_text(&mut out);
        }
        out
    }
}

fn push_line(out: &mut String, t: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(t);
}

/// Calls `f` with each text of a raw message content (a string, or an array of parts with
/// `text` or bare strings); other shapes have no text.
fn raw_texts(raw: &RawValue, mut f: impl FnMut(&str)) {
    let s = raw.get();
    match s.as_bytes().first() {
        Some(b'"') => {
            if let Ok(Text(t)) = serde_json::from_str::<Text<'_>>(s) {
                f(&t);
            }
        }
        Some(b'[') => {
            let Ok(parts) = serde_json::from_str::<Vec<&RawValue>>(s) else {
                return;
            };
            for part in parts {
                let p = part.get();
                if p.starts_with('"') {
                    if let Ok(Text(t)) = serde_json::from_str::<Text<'_>>(p) {
                        f(&t);
                    }
                } else if let Ok(Part {
                    text: Some(Text(t)),
                }) = serde_json::from_str::<Part<'_>>(p)
                {
                    f(&t);
                }
            }
        }
        _ => {}
    }
}

/// [`raw_texts`] over a parsed content.
fn value_texts(v: &Value, mut f: impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(parts) => {
            for part in parts {
                match part {
                    Value::String(s) => f(s),
                    other => {
                        if let Some(t) = other.get("text").and_then(Value::as_str) {
                            f(t);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// A request as the classifier reads it.
pub(crate) struct Parsed<'a> {
    pub(crate) key: RequestKey,
    pub(crate) turns: Turns<'a>,
    /// Words of the system messages (see [`is_generic_prompt`]).
    pub(crate) system_words: usize,
    /// (hash of the raw bytes of the tool list used, its canonical [`RequestKey::tools`]):
    /// what a [`ToolAliases`] map learns.
    pub(crate) raw_tools: Option<(u64, u64)>,
    /// The canonical hash of each offered tool, ascending, each once; `None` when the tool list
    /// was known by its raw bytes ([`ToolAliases`]) and not walked.
    pub(crate) tool_hashes: Option<Vec<u64>>,
}

/// Raw bytes of a tool list → its canonical tool-set hash, for the lists seen in training.
///
/// An agent sends the same tool list byte for byte on every call, so the hash of the raw bytes
/// (eight bytes per step) finds the canonical hash without walking the definitions again; a
/// list never seen (or re-serialised) is hashed canonically, which gives the same key.
pub(crate) type ToolAliases = IdMap<u64>;

const RAW_TOOLS_SEED: u64 = 0x7A_11A5;

/// A raw tool list read: (raw bytes hash, canonical tool-set hash), and each tool's canonical
/// hash when the list was walked (see [`Parsed::tool_hashes`]).
type RawTools = ((u64, u64), Option<Vec<u64>>);

/// The canonical tool-set hash of a raw tool list, through the alias map when it knows the
/// bytes. `None` when the list is absent or empty.
fn raw_tools_hash(
    raw: Option<&RawValue>,
    aliases: &ToolAliases,
) -> Result<Option<RawTools>, RouteError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = raw.get();
    let raw_hash = hash_bytes(RAW_TOOLS_SEED, text.as_bytes());
    let (canonical, each) = match aliases.get(&raw_hash) {
        Some(h) => (*h, None),
        None => {
            let hashes: Option<Vec<CanonHash>> = serde_json::from_str(text)
                .map_err(|e| RouteError::Request(format!("'tools': {e}")))?;
            let (set, each) = tools_hash(
                hashes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|h| h.0)
                    .collect(),
            );
            (set, Some(each))
        }
    };
    Ok((canonical != 0).then_some(((raw_hash, canonical), each)))
}

/// The tool-set hash of the tools' canonical hashes (0: no tools), and those hashes ascending,
/// each once.
fn tools_hash(mut hashes: Vec<u64>) -> (u64, Vec<u64>) {
    if hashes.is_empty() {
        return (0, hashes);
    }
    hashes.sort_unstable();
    hashes.dedup();
    let set = hashes.iter().fold(0x700_15E7, |acc, h| combine(acc, *h)) | 1;
    (set, hashes)
}

fn format_hash(h: Option<u64>) -> u64 {
    h.map_or(0, |h| h | 1)
}

/// Reads a raw request body; `aliases` short-cuts tool lists seen before.
pub(crate) fn parse_bytes<'a>(
    body: &'a [u8],
    aliases: &ToolAliases,
) -> Result<Parsed<'a>, RouteError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(RouteError::Request("the body is not a JSON object".into()));
    }
    let req: LightRequest<'_> =
        serde_json::from_slice(body).map_err(|e| RouteError::Request(e.to_string()))?;
    let read = match raw_tools_hash(req.tools, aliases)? {
        Some(t) => Some(t),
        None => raw_tools_hash(req.functions, aliases)?,
    };
    let (raw_tools, tool_hashes) = read.map_or((None, None), |(raw, each)| (Some(raw), each));
    let mut template = TemplateHasher::new();
    let mut turns = Turns::default();
    let mut system_words = 0;
    for m in req.messages.iter().flatten() {
        let content = m.content.filter(|c| c.get() != "null");
        match (m.role, content) {
            (Some(Role::System), Some(c)) => raw_texts(c, |t| {
                system_words += prompt_words(t);
                template.add(t);
            }),
            (role, c) => turns.see(role, c.map(Content::Raw)),
        }
    }
    Ok(Parsed {
        key: RequestKey {
            tools: raw_tools.map_or(0, |t| t.1),
            template: template.finish(),
            format: format_hash(req.response_format.map(|h| h.0)),
        },
        turns,
        system_words,
        raw_tools,
        tool_hashes,
    })
}

/// Reads a parsed request; the same result as [`parse_bytes`] over its text.
pub(crate) fn parse_value(request: &Value) -> Result<Parsed<'_>, RouteError> {
    let Value::Object(map) = request else {
        return Err(RouteError::Request("the body is not a JSON object".into()));
    };
    let list = |field: &str| -> Result<Option<&Vec<Value>>, RouteError> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(RouteError::Request(format!("'{field}' is not an array"))),
        }
    };
    let tools = list("tools")?.filter(|t| !t.is_empty());
    let functions = list("functions")?;
    let tools = tools.or(functions);
    let mut template = TemplateHasher::new();
    let mut turns = Turns::default();
    let mut system_words = 0;
    for m in list("messages")?.into_iter().flatten() {
        let Value::Object(m) = m else {
            return Err(RouteError::Request("a message is not an object".into()));
        };
        let role = match m.get("role") {
            None | Some(Value::Null) => None,
            Some(Value::String(r)) => Some(Role::of(r)),
            Some(_) => return Err(RouteError::Request("a role is not a string".into())),
        };
        match (role, m.get("content").filter(|c| !c.is_null())) {
            (Some(Role::System), Some(c)) => value_texts(c, |t| {
                system_words += prompt_words(t);
                template.add(t);
            }),
            (role, c) => turns.see(role, c.map(Content::Value)),
        }
    }
    let format = match map.get("response_format") {
        None | Some(Value::Null) => None,
        Some(v) => Some(value_hash(v)),
    };
    let (tools, tool_hashes) = tools_hash(tools.into_iter().flatten().map(value_hash).collect());
    Ok(Parsed {
        key: RequestKey {
            tools,
            template: template.finish(),
            format: format_hash(format),
        },
        turns,
        system_words,
        raw_tools: None,
        tool_hashes: Some(tool_hashes),
    })
}

/// A system prompt of at most this many words is generic ("You are a helpful assistant."): the
/// job is then said by the user turn's instruction, not by the prompt.
pub const GENERIC_PROMPT_WORDS: usize = 10;

/// Words of a prompt that can carry an instruction: alphabetic and without digits (dates, ids
/// and amounts change per call).
pub fn prompt_words(text: &str) -> usize {
    text.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphabetic) && !w.chars().any(|c| c.is_ascii_digit()))
        .count()
}

/// Whether a system prompt of `words` [`prompt_words`] is generic (see [`GENERIC_PROMPT_WORDS`]).
pub fn is_generic_prompt(words: usize) -> bool {
    words <= GENERIC_PROMPT_WORDS
}

/// Longest instruction head kept, in bytes.
const MAX_INSTRUCTION_CHARS: usize = 160;

/// The imperative head of a user turn: up to the first newline, clause-ending colon (one
/// followed by a space or the end, so "10:30" is not one) or sentence end, at most 160 bytes.
/// Under a generic system prompt this head says the job ("Translate into French:") and the rest
/// is the material it works on.
pub fn instruction_head(text: &str) -> &str {
    let t = text.trim_start();
    let mut end = t.len();
    let mut chars = t.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|(_, n)| *n);
        let boundary = match c {
            '\n' => true,
            ':' | '：' => next.is_none_or(char::is_whitespace),
            '.' | '?' | '!' => next.is_none_or(char::is_whitespace) && i > 0,
            _ => false,
        };
        if boundary {
            end = i + c.len_utf8();
            break;
        }
    }
    let mut cut = end.min(MAX_INSTRUCTION_CHARS);
    while !t.is_char_boundary(cut) {
        cut -= 1;
    }
    t[..cut].trim_end()
}

impl Parsed<'_> {
    /// What the centroid layer reads: the newest turns, or under a generic system prompt their
    /// instruction head — masked as discovery reads them ([`crate::mask::Masker::mask_entities`]:
    /// names, places and e-mails by their type), so that the values in a request never
    /// sway its task.
    pub(crate) fn routing_text(&self) -> String {
        let text = self.turns.text();
        let text = if is_generic_prompt(self.system_words) {
            instruction_head(&text)
        } else {
            &text
        };
        match crate::mask::shared() {
            Some(m) => m.mask_entities(text),
            None => text.to_owned(),
        }
    }
}

/// The text the router's centroid layer reads of a request (see [`instruction_head`]): its
/// newest turns, or under a generic system prompt their instruction head, masked.
///
/// # Errors
/// As [`request_key_of_value`].
pub fn routing_text_of_value(request: &Value) -> Result<String, RouteError> {
    parse_value(request).map(|p| p.routing_text())
}

/// The structural key of a raw request body.
///
/// # Errors
/// [`RouteError::Request`] when the body is not a JSON object with array `messages`/`tools`.
pub fn request_key(body: &[u8]) -> Result<RequestKey, RouteError> {
    parse_bytes(body, &ToolAliases::default()).map(|p| p.key)
}

/// The structural key of a parsed request (the same as [`request_key`] over its text).
///
/// # Errors
/// As [`request_key`].
pub fn request_key_of_value(request: &Value) -> Result<RequestKey, RouteError> {
    parse_value(request).map(|p| p.key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn both(v: &Value) -> (RequestKey, String) {
        let text = v.to_string();
        let a = parse_bytes(text.as_bytes(), &ToolAliases::default()).unwrap();
        let b = parse_value(v).unwrap();
        assert_eq!(a.key, b.key, "{text}");
        assert_eq!(a.turns.text(), b.turns.text());
        assert_eq!(a.routing_text(), b.routing_text());
        (a.key, a.turns.text())
    }

    fn tool(name: &str) -> Value {
        json!({"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}})
    }

    #[test]
    fn key_ignores_tool_order_formatting_and_variables() {
        let a = json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "You serve ACME. Today is 2026-01-02."},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "second"}, "third"]}
            ],
            "tools": [tool("a"), tool("b")]
        });
        let (ka, user) = both(&a);
        assert_eq!(user, "second\nthird");
        let b = json!({
            "tools": [tool("b"), tool("a"), tool("b")],
            "messages": [
                {"content": [{"text": "You serve ACME. Today is Friday, May 8.", "type": "text"}], "role": "system"},
                {"role": "user", "content": "something else"}
            ],
            "model": "other",
            "temperature": 0.3
        });
        assert_eq!(both(&b).0, ka);
        // Pretty-printed bytes with another key order: same key.
        let pretty = serde_json::to_string_pretty(&b).unwrap();
        assert_eq!(request_key(pretty.as_bytes()).unwrap(), ka);

        // A changed tool definition, another constant word, a response format: other keys.
        let mut c = a.clone();
        c["tools"][1]["function"]["parameters"]["properties"]["x"]["type"] = json!("integer");
        assert_ne!(both(&c).0.tools, ka.tools);
        let mut d = a.clone();
        d["messages"][0]["content"] = json!("You serve Initech. Today is 2026-01-02.");
        assert_ne!(both(&d).0.template, ka.template);
        let mut e = a.clone();
        e["response_format"] = json!({"type": "json_object"});
        let ke = both(&e).0;
        assert_ne!(ke.hash(), ka.hash());
        assert_eq!((ke.tools, ke.template), (ka.tools, ka.template));
    }

    #[test]
    fn tool_aliases_short_cut_known_lists_only() {
        let body = json!({"messages": [], "tools": [tool("a"), tool("b")]}).to_string();
        let plain = parse_bytes(body.as_bytes(), &ToolAliases::default()).unwrap();
        let (raw, canonical) = plain.raw_tools.unwrap();
        assert_eq!(canonical, plain.key.tools);
        let mut aliases = ToolAliases::default();
        aliases.insert(raw, 42);
        // The alias is taken for the very same bytes (42 proves it was used) ...
        assert_eq!(
            parse_bytes(body.as_bytes(), &aliases).unwrap().key.tools,
            42
        );
        // ... and other bytes of the same list are hashed canonically.
        let spaced = body.replace(',', ", ");
        assert_eq!(
            parse_bytes(spaced.as_bytes(), &aliases).unwrap().key.tools,
            canonical
        );
    }

    #[test]
    fn absent_parts_and_legacy_functions() {
        let (k, user) =
            both(&json!({"model": "m", "messages": [{"role": "user", "content": null}]}));
        assert_eq!((k.tools, k.template, k.format), (0, 0, 0));
        assert_eq!(user, "");
        let legacy = json!({"messages": [], "functions": [{"name": "f"}], "tools": []});
        let modern = json!({"messages": [], "tools": [{"name": "f"}]});
        assert_eq!(both(&legacy).0, both(&modern).0);
        // Escaped strings decode.
        let (_, user) =
            both(&json!({"messages": [{"role": "user", "content": "a \"b\"\n\u{e9}"}]}));
        assert_eq!(user, "a \"b\"\n\u{e9}");
    }

    #[test]
    fn the_router_reads_the_newest_turns() {
        // After a tool answered, the newest turns are its results (the opening message is the
        // same for every step of the conversation).
        let step = json!({"messages": [
            {"role": "system", "content": "You are the airline's agent. Follow the policy below and use the tools to help the customer with their reservation."},
            {"role": "user", "content": "Hi, I am user mia_li_3668 and I want to cancel."},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "get_user_details", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "1", "content": "{\"reservations\": [\"NO6JO3\"]}"}
        ]});
        let (_, turns) = both(&step);
        assert_eq!(turns, "{\"reservations\": [\"NO6JO3\"]}");
        // A user turn after the assistant: that turn, not older ones.
        let mut next = step.clone();
        next["messages"].as_array_mut().unwrap().push(
            json!({"role": "user", "content": [{"type": "text", "text": "and the other one"}]}),
        );
        assert_eq!(
            both(&next).1,
            "{\"reservations\": [\"NO6JO3\"]}\nand the other one"
        );
        // Nothing after the last assistant message: the newest user message.
        let mut done = step.clone();
        done["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": "assistant", "content": "Done."}));
        assert_eq!(
            both(&done).1,
            "Hi, I am user mia_li_3668 and I want to cancel."
        );

        // Under a specific system prompt the whole turn is read; under a generic one (or none)
        // its instruction head.
        let turn = "Translate into French: the museum opens at 10:30.\nThanks";
        let specific =
            json!({"messages": [step["messages"][0].clone(), {"role": "user", "content": turn}]});
        let parsed = parse_value(&specific).unwrap();
        assert_eq!(parsed.routing_text(), turn);
        for system in [json!("You are a helpful assistant."), Value::Null] {
            let generic = json!({"messages": [{"role": "system", "content": system}, {"role": "user", "content": turn}]});
            assert_eq!(both(&generic).1, turn);
            let parsed = parse_value(&generic).unwrap();
            assert_eq!(parsed.routing_text(), "Translate into French:");
            assert_eq!(
                routing_text_of_value(&generic).unwrap(),
                "Translate into French:"
            );
        }
    }

    #[test]
    fn instruction_heads() {
        assert_eq!(
            instruction_head("Translate into French: the museum opens"),
            "Translate into French:"
        );
        assert_eq!(
            instruction_head("Please translate this to German:\nHallo"),
            "Please translate this to German:"
        );
        assert_eq!(instruction_head("  TL;DR please:\ntext"), "TL;DR please:");
        assert_eq!(instruction_head("at 10:30 the bus"), "at 10:30 the bus");
        assert_eq!(instruction_head("Fix it. Now"), "Fix it.");
        let long = "é".repeat(200);
        assert!(instruction_head(&long).len() <= MAX_INSTRUCTION_CHARS);
        assert!(is_generic_prompt(prompt_words(
            "You are a helpful assistant. Today is 2026-01-02."
        )));
        assert!(!is_generic_prompt(prompt_words(
            "You are the support agent of ACME; classify each message into one of the labels below and answer with the label only."
        )));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for bad in [
            &b"[1]"[..],
            b"not json",
            b"{\"messages\": 3}",
            b"{\"tools\": {}}",
            b"{\"messages\": [1]}",
            b"{\"messages\": [",
        ] {
            assert!(
                request_key(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(request_key_of_value(&json!({"messages": [1]})).is_err());
        assert!(request_key_of_value(&json!({"tools": "x"})).is_err());
    }
}
