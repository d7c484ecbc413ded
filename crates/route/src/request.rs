//! What the classifier reads from a request: its structural [`RequestKey`] and the newest user
//! message. Two inputs give the same result: the raw body bytes (one light parse that builds no
//! JSON tree: tool definitions are hashed while they are scanned, message contents are kept as
//! borrowed raw slices and only the system and newest user ones are decoded) and an already
//! parsed [`Value`].

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
    Other,
}

impl Role {
    fn of(s: &str) -> Role {
        match s {
            "system" | "developer" => Role::System,
            "user" => Role::User,
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

/// The newest user message's content, not yet decoded.
pub(crate) enum UserContent<'a> {
    None,
    Raw(&'a RawValue),
    Value(&'a Value),
}

impl UserContent<'_> {
    /// The text: a string content, or the text parts joined by newlines.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        match self {
            UserContent::None => {}
            UserContent::Raw(raw) => raw_texts(raw, |t| push_line(&mut out, t)),
            UserContent::Value(v) => value_texts(v, |t| push_line(&mut out, t)),
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
    pub(crate) user: UserContent<'a>,
    /// (hash of the raw bytes of the tool list used, its canonical [`RequestKey::tools`]):
    /// what a [`ToolAliases`] map learns.
    pub(crate) raw_tools: Option<(u64, u64)>,
}

/// Raw bytes of a tool list → its canonical tool-set hash, for the lists seen in training.
///
/// An agent sends the same tool list byte for byte on every call, so the hash of the raw bytes
/// (eight bytes per step) finds the canonical hash without walking the definitions again; a
/// list never seen (or re-serialised) is hashed canonically, which gives the same key.
pub(crate) type ToolAliases = IdMap<u64>;

const RAW_TOOLS_SEED: u64 = 0x7A_11A5;

/// The canonical tool-set hash of a raw tool list, through the alias map when it knows the
/// bytes. `None` when the list is absent or empty.
fn raw_tools_hash(
    raw: Option<&RawValue>,
    aliases: &ToolAliases,
) -> Result<Option<(u64, u64)>, RouteError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = raw.get();
    let raw_hash = hash_bytes(RAW_TOOLS_SEED, text.as_bytes());
    let canonical = match aliases.get(&raw_hash) {
        Some(h) => *h,
        None => {
            let hashes: Option<Vec<CanonHash>> = serde_json::from_str(text)
                .map_err(|e| RouteError::Request(format!("'tools': {e}")))?;
            tools_hash(
                hashes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|h| h.0)
                    .collect(),
            )
        }
    };
    Ok((canonical != 0).then_some((raw_hash, canonical)))
}

fn tools_hash(mut hashes: Vec<u64>) -> u64 {
    if hashes.is_empty() {
        return 0;
    }
    hashes.sort_unstable();
    hashes.dedup();
    hashes.iter().fold(0x700_15E7, |acc, h| combine(acc, *h)) | 1
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
    let raw_tools = match raw_tools_hash(req.tools, aliases)? {
        Some(t) => Some(t),
        None => raw_tools_hash(req.functions, aliases)?,
    };
    let mut template = TemplateHasher::new();
    let mut user = UserContent::None;
    for m in req.messages.iter().flatten() {
        match (m.role, m.content) {
            (Some(Role::System), Some(c)) => raw_texts(c, |t| template.add(t)),
            (Some(Role::User), Some(c)) => user = UserContent::Raw(c),
            _ => {}
        }
    }
    Ok(Parsed {
        key: RequestKey {
            tools: raw_tools.map_or(0, |t| t.1),
            template: template.finish(),
            format: format_hash(req.response_format.map(|h| h.0)),
        },
        user,
        raw_tools,
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
    let mut user = UserContent::None;
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
            (Some(Role::System), Some(c)) => value_texts(c, |t| template.add(t)),
            (Some(Role::User), Some(c)) => user = UserContent::Value(c),
            _ => {}
        }
    }
    let format = match map.get("response_format") {
        None | Some(Value::Null) => None,
        Some(v) => Some(value_hash(v)),
    };
    Ok(Parsed {
        key: RequestKey {
            tools: tools_hash(tools.into_iter().flatten().map(value_hash).collect()),
            template: template.finish(),
            format: format_hash(format),
        },
        user,
        raw_tools: None,
    })
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
        assert_eq!(a.user.text(), b.user.text());
        (a.key, a.user.text())
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
