//! The versioned prompt transform a specialist is trained with and served with: it prunes
//! the static parts of a request (tool schemas, the constant system prompt, old turns) that
//! the specialist has internalised. It is stored with the adapter
//! ([`crate::SpecialistMeta`]) so that every path that serves the specialist applies the
//! identical function.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::function_of;
use crate::error::{Error, Result};

/// The versioned transformation of a request's prompt before it reaches the specialist.
/// Version 1: optionally drop the tool schemas, optionally remove a constant system-prompt
/// text (a system message left empty is dropped). Version 2 adds `keep_turns`, version 3
/// `tool_names`; a transform is written with the lowest version that holds what it uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTransform {
    /// The format version (1 to [`PromptTransform::VERSION`]); a build refuses versions it
    /// does not know rather than misapply them.
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

    /// The pruning for a task's calls, given the system message each call starts with
    /// (`None`: a call without one): tool schemas dropped, and the system prompt's constant
    /// text — the longest prefix every call's system message shares, cut at a word boundary —
    /// removed when it is at least 32 characters long.
    pub fn infer(system_texts: &[Option<&str>]) -> Self {
        Self::pruning(common_system_text(system_texts))
    }

    /// Applies the transform to a request's messages and tools.
    pub fn apply(
        &self,
        messages: &[Value],
        tools: Option<&[Value]>,
    ) -> Result<(Vec<Value>, Option<Vec<Value>>)> {
        if !(1..=Self::VERSION).contains(&self.version) || self.version < self.needed_version() {
            return Err(Error::TransformVersion(self.version));
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

/// The longest prefix that the calls' system messages share (`None` in `system_texts`: a call
/// that starts without one, so nothing is shared), ending at a word boundary; `None` when
/// shorter than 32 characters.
pub fn common_system_text(system_texts: &[Option<&str>]) -> Option<String> {
    let (first, rest) = system_texts.split_first()?;
    let first = (*first)?;
    let mut len = first.len();
    for t in rest {
        let t = (*t)?;
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
    let whole = system_texts
        .iter()
        .all(|c| c.is_some_and(|c| c.len() == len || c[len..].starts_with(char::is_whitespace)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(system: &str) -> Vec<Value> {
        vec![
            json!({"role": "system", "content": system}),
            json!({"role": "user", "content": "hi"}),
        ]
    }

    #[test]
    fn common_system_text_is_the_shared_prefix_at_a_word_boundary() {
        let base = "You are a travel agent. Follow the booking policy carefully.";
        let (a, b) = (
            format!("{base} The user is Alice."),
            format!("{base} The user is Albert."),
        );
        let r = [Some(a.as_str()), Some(b.as_str())];
        assert_eq!(
            common_system_text(&r).as_deref(),
            Some(format!("{base} The user is").as_str())
        );
        let t = PromptTransform::infer(&r);
        assert!(t.drop_tools);
        let (m, _) = t.apply(&msgs(&a), None).unwrap();
        assert_eq!(m[0]["content"], "Alice.");
        // identical prompts are removed whole; short or missing ones are not pruned
        assert_eq!(
            common_system_text(&[Some(base), Some(base)]).as_deref(),
            Some(base)
        );
        assert_eq!(
            common_system_text(&[Some("Be brief. A"), Some("Be brief. B")]),
            None
        );
        assert_eq!(common_system_text(&[Some(base), None]), None);
        assert_eq!(common_system_text(&[]), None);
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
            Err(Error::TransformVersion(4))
        ));
        // cutting the conversation needs version 2: a version-1 transform claiming it is refused
        let bad = PromptTransform {
            keep_turns: Some(1),
            ..t
        };
        assert!(matches!(
            bad.apply(&msgs, None),
            Err(Error::TransformVersion(1))
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
            Err(Error::TransformVersion(2))
        ));
    }
}
