//! Chat templates: the model's own Jinja template (as Hugging Face renders it: `trim_blocks`,
//! `lstrip_blocks`, Python string methods, `tojson` as `json.dumps`), and a canonical ChatML
//! template with tool calling for specialists.

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// ChatML with Qwen2.5-style tool calling: the template downshift uses for specialists whose
/// base model has none.
pub const CANONICAL_TEMPLATE: &str = r##"{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}{{ messages[0].content + '\n\n' }}{% endif %}
{{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
{%- for tool in tools %}{{ "\n" }}{{ tool | tojson }}{% endfor %}
{{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'assistant' and message.tool_calls %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{ '\n' + message.content }}{% endif %}
{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}{% set tool_call = tool_call.function %}{% endif %}
{{- '\n<tool_call>\n{"name": "' + tool_call.name + '", "arguments": ' }}
{%- if tool_call.arguments is string %}{{ tool_call.arguments }}{% else %}{{ tool_call.arguments | tojson }}{% endif %}
{{- '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{ '<|im_start|>user' }}{% endif %}
{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{ '<|im_end|>\n' }}{% endif %}
{%- else %}
{{- '<|im_start|>' + message.role + '\n' + (message.content or '') + '<|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"##;

/// Gemma's turn markup (`<start_of_turn>user\n…<end_of_turn>\n`, the assistant's role named
/// `model`, a system message folded into the first user turn, contents trimmed) as Gemma 3's own
/// template renders it, for a Gemma GGUF that carries no template. Tools, which Gemma's template
/// has no place for, follow the canonical template's convention (a tool list before the first
/// user text, `<tool_call>` JSON in model turns, `<tool_response>` in user turns), so a Gemma
/// specialist trains and serves in its base's own markup.
pub const GEMMA_TEMPLATE: &str = r##"{%- if messages[0].role == 'system' %}
{%- set first_user_prefix = messages[0].content + '\n\n' %}
{%- set loop_messages = messages[1:] %}
{%- else %}
{%- set first_user_prefix = '' %}
{%- set loop_messages = messages %}
{%- endif %}
{%- if tools %}
{%- set ns = namespace(text=first_user_prefix + "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>") %}
{%- for tool in tools %}{% set ns.text = ns.text + "\n" + (tool | tojson) %}{% endfor %}
{%- set first_user_prefix = ns.text + "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>\n\n" %}
{%- endif %}
{%- for message in loop_messages %}
{%- if message.role == 'tool' %}
{%- if loop.first or loop_messages[loop.index0 - 1].role != 'tool' %}{{ '<start_of_turn>user' }}{% if loop.first and first_user_prefix %}{{ '\n' + first_user_prefix | trim }}{% endif %}{% endif %}
{{- '\n<tool_response>\n' + (message.content or '') + '\n</tool_response>' }}
{%- if loop.last or loop_messages[loop.index0 + 1].role != 'tool' %}{{ '<end_of_turn>\n' }}{% endif %}
{%- else %}
{{- '<start_of_turn>' + ('model' if message.role == 'assistant' else 'user') + '\n' + (first_user_prefix if loop.first else '') }}
{{- (message.content or '') | trim }}
{%- for tool_call in message.tool_calls or [] %}
{%- if tool_call.function is defined %}{% set tool_call = tool_call.function %}{% endif %}
{%- if not loop.first or message.content %}{{ '\n' }}{% endif %}
{{- '<tool_call>\n{"name": "' + tool_call.name + '", "arguments": ' }}
{%- if tool_call.arguments is string %}{{ tool_call.arguments }}{% else %}{{ tool_call.arguments | tojson }}{% endif %}
{{- '}\n</tool_call>' }}
{%- endfor %}
{{- '<end_of_turn>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"##;

/// A chat message in OpenAI's shape (extra fields such as `tool_calls` are kept).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Its text; `None` e.g. for an assistant turn that only calls tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Every other field (`tool_calls`, `tool_call_id`, `name`, …), kept as it came.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Message {
    /// A message with text content and nothing else.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: Some(content.into()),
            extra: Default::default(),
        }
    }
}

/// A compiled chat template.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("supports_tools", &self.supports_tools())
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token`/`eos_token` are exposed to it like transformers does.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| Error::Template(format!("cannot compile: {e:#}")))?;
        Ok(Self {
            env,
            source: source.to_string(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        })
    }

    /// The canonical ChatML template with tool calling.
    pub fn canonical() -> Result<Self> {
        Self::new(CANONICAL_TEMPLATE, "", "<|im_end|>")
    }

    /// Gemma's template ([`GEMMA_TEMPLATE`]).
    pub fn gemma() -> Result<Self> {
        Self::new(GEMMA_TEMPLATE, "<bos>", "<eos>")
    }

    /// The template a model without one of its own gets: Gemma's for the `gemma*`
    /// architectures, else the canonical ChatML.
    pub fn default_for(architecture: &str) -> Result<Self> {
        if architecture.starts_with("gemma") {
            Self::gemma()
        } else {
            Self::canonical()
        }
    }

    /// The text that closes an assistant turn: Gemma's `<end_of_turn>` when the template
    /// writes it, else ChatML's `<|im_end|>`.
    pub fn end_of_turn(&self) -> &'static str {
        if self.source.contains("<end_of_turn>") {
            "<end_of_turn>"
        } else {
            "<|im_end|>"
        }
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template renders a `tools` list.
    pub fn supports_tools(&self) -> bool {
        self.source.contains("tools")
    }

    /// Renders typed messages; `tools` are OpenAI tool definitions. (`serde_json::Value`
    /// objects sort their keys; use [`ChatTemplate::render_json`] to keep the order as sent.)
    pub fn render(
        &self,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let m = serde_json::to_string(messages)?;
        let t = tools.map(serde_json::to_string).transpose()?;
        self.render_json(&m, t.as_deref(), add_generation_prompt)
    }

    /// Renders messages and tools given as JSON text (object key order is kept, so tool
    /// schemas render exactly as sent).
    pub fn render_json(
        &self,
        messages_json: &str,
        tools_json: Option<&str>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let messages: Value = serde_json::from_str(messages_json)?;
        if messages.len().unwrap_or(0) == 0 {
            return Err(Error::Template("no messages".into()));
        }
        let tools: Value = match tools_json {
            Some(t) => serde_json::from_str(t)?,
            None => Value::from(()),
        };
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Template(format!("{e:#}")))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
        })
        .map_err(|e| Error::Template(format!("render failed: {e:#}")))
    }
}

fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

fn strftime_now(format: String) -> String {
    // UTC date without a time-zone database; covers the formats chat templates use.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month = MONTHS[(m - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y % 100)),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=indent)`
/// (Python separators, key order kept, no HTML escaping).
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    py_dumps(&value, indent, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

fn py_dumps(
    v: &Value,
    indent: Option<usize>,
    level: usize,
    out: &mut String,
) -> std::result::Result<(), minijinja::Error> {
    use minijinja::value::ValueKind;
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            let s = v.to_string();
            out.push_str(&s);
        }
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default();
            out.push_str(
                &serde_json::to_string(s).map_err(|e| {
                    minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string())
                })?,
            );
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    if indent.is_none() {
                        out.push(' ');
                    }
                }
                newline(out, level + 1);
                py_dumps(item, indent, level + 1, out)?;
            }
            newline(out, level);
            out.push(']');
        }
        ValueKind::Map => {
            let keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    if indent.is_none() {
                        out.push(' ');
                    }
                }
                newline(out, level + 1);
                let ks = k
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| k.to_string());
                out.push_str(&serde_json::to_string(&ks).unwrap_or_default());
                out.push_str(": ");
                py_dumps(&v.get_item(k)?, indent, level + 1, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        _ => {
            let s = v.to_string();
            out.push_str(&serde_json::to_string(&s).unwrap_or_default());
        }
    }
    Ok(())
}

/// A tool call found in generated text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The function called.
    pub name: String,
    /// Arguments as JSON text (OpenAI's `function.arguments`).
    pub arguments: String,
}

/// Generated text as an OpenAI assistant message: tool calls parsed out of it
/// ([`parse_tool_calls`]) as `tool_calls` with ids `call_0`, `call_1`, …; `content` is null
/// when only tool calls remain.
pub fn assistant_message(text: &str) -> serde_json::Value {
    let (content, calls) = parse_tool_calls(text);
    if calls.is_empty() {
        return serde_json::json!({"role": "assistant", "content": content});
    }
    let calls: Vec<serde_json::Value> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({"id": format!("call_{i}"), "type": "function",
                   "function": {"name": c.name, "arguments": c.arguments}})
        })
        .collect();
    let content = (!content.trim().is_empty()).then_some(content);
    serde_json::json!({"role": "assistant", "content": content, "tool_calls": calls})
}

/// Splits generated text into plain content and tool calls: `<tool_call>{...}</tool_call>`
/// blocks (Qwen/Hermes/canonical template), or a whole reply that is one
/// `{"name": ..., "arguments": ...}` object or a list of them. A whole reply counts as a call
/// only when it has the call's shape (`arguments` or `parameters`, or a `function` object):
/// a JSON answer that merely has a `name` field (`{"name": "Ada", "email": …}`) stays content.
pub fn parse_tool_calls(text: &str) -> (String, Vec<ToolCall>) {
    let mut calls = Vec::new();
    let mut content = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<tool_call>") {
        content.push_str(&rest[..start]);
        let after = &rest[start + "<tool_call>".len()..];
        let (body, next) = match after.find("</tool_call>") {
            Some(end) => (&after[..end], &after[end + "</tool_call>".len()..]),
            None => (after, ""),
        };
        match call_from_json(body.trim()) {
            Some(c) => calls.push(c),
            None => content.push_str(&rest[start..rest.len() - next.len()]),
        }
        rest = next;
    }
    content.push_str(rest);
    if calls.is_empty() {
        let t = text.trim();
        let t = t
            .strip_prefix("```json")
            .or_else(|| t.strip_prefix("```"))
            .and_then(|s| s.strip_suffix("```"))
            .map(str::trim)
            .unwrap_or(t);
        match serde_json::from_str::<serde_json::Value>(t) {
            Ok(serde_json::Value::Array(items)) => {
                let parsed: Option<Vec<ToolCall>> = items
                    .iter()
                    .filter(|i| call_shaped(i))
                    .map(|i| call_from_value(i.clone()))
                    .collect();
                if let Some(p) = parsed.filter(|p| !p.is_empty() && p.len() == items.len()) {
                    return (String::new(), p);
                }
            }
            Ok(v) if call_shaped(&v) => {
                if let Some(c) = call_from_value(v) {
                    return (String::new(), vec![c]);
                }
            }
            _ => {}
        }
    }
    (content.trim().to_string(), calls)
}

/// The function object of an OpenAI tool definition or tool call: the OpenAI shape
/// (`{"type": "function", "function": {"name", …}}`) holds it under `function`; a bare
/// `{"name", …}` (BFCL's tool lists, legacy calls) is it.
pub fn function_of(v: &serde_json::Value) -> &serde_json::Value {
    v.get("function").unwrap_or(v)
}

/// Whether a bare JSON value looks like a tool call rather than a JSON answer.
fn call_shaped(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|o| {
        o.get("function").is_some_and(|f| f.is_object())
            || (o.contains_key("name")
                && (o.contains_key("arguments") || o.contains_key("parameters")))
    })
}

fn call_from_json(s: &str) -> Option<ToolCall> {
    call_from_value(serde_json::from_str(s).ok()?)
}

fn call_from_value(v: serde_json::Value) -> Option<ToolCall> {
    let obj = v.as_object()?;
    let obj = obj
        .get("function")
        .and_then(|f| f.as_object())
        .unwrap_or(obj);
    let name = obj.get("name")?.as_str()?.to_string();
    let args = obj
        .get("arguments")
        .or_else(|| obj.get("parameters"))
        .cloned()
        .unwrap_or(serde_json::Value::Object(Default::default()));
    let arguments = match args {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    Some(ToolCall { name, arguments })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_renders_tools_and_calls() {
        let t = ChatTemplate::canonical().expect("template");
        let tools = vec![
            serde_json::json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}),
        ];
        let mut call = Message::new("assistant", "");
        call.content = None;
        call.extra.insert(
            "tool_calls".into(),
            serde_json::json!([{"id": "1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]),
        );
        let msgs = vec![
            Message::new("system", "Be brief."),
            Message::new("user", "Weather in Paris?"),
            call,
            Message::new("tool", "{\"temp\": 21}"),
        ];
        let s = t.render(&msgs, Some(&tools), true).expect("render");
        assert!(
            s.starts_with("<|im_start|>system\nBe brief.\n\n# Tools"),
            "{s}"
        );
        assert!(
            s.contains("\"name\": \"get_weather\", \"parameters\""),
            "{s}"
        );
        assert!(s.contains("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>"), "{s}");
        assert!(
            s.contains(
                "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>"
            ),
            "{s}"
        );
        assert!(s.ends_with("<|im_start|>assistant\n"));
    }

    #[test]
    fn python_string_methods_and_errors() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{{ m.content.strip().upper() }}{% if m.role not in ['user'] %}{{ raise_exception('bad role') }}{% endif %}{% endfor %}",
            "",
            "",
        )
        .expect("compile");
        assert_eq!(
            t.render(&[Message::new("user", "  hi ")], None, false)
                .expect("render"),
            "HI"
        );
        let e = t
            .render(&[Message::new("robot", "x")], None, false)
            .expect_err("must fail");
        assert!(e.to_string().contains("bad role"), "{e}");
        assert!(ChatTemplate::new("{% if %}", "", "").is_err());
    }

    #[test]
    fn tojson_is_python_json_dumps() {
        let t = ChatTemplate::new(
            "{{ tools | tojson }}|{{ tools[0] | tojson(indent=2) }}",
            "",
            "",
        )
        .expect("compile");
        let s = t
            .render_json(
                r#"[{"role":"user","content":"x"}]"#,
                Some(r#"[{"z": 1, "a": [true, null, "é<"]}]"#),
                false,
            )
            .expect("render");
        assert_eq!(
            s,
            "[{\"z\": 1, \"a\": [true, null, \"é<\"]}]|{\n  \"z\": 1,\n  \"a\": [\n    true,\n    null,\n    \"é<\"\n  ]\n}"
        );
    }

    #[test]
    fn parses_tool_calls() {
        let (c, calls) = parse_tool_calls(
            "Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>",
        );
        assert_eq!(c, "Sure.");
        assert_eq!(
            calls,
            vec![ToolCall {
                name: "f".into(),
                arguments: "{\"x\":1}".into()
            }]
        );
        let (_, calls) = parse_tool_calls("{\"name\": \"g\", \"arguments\": {}}");
        assert_eq!(calls[0].name, "g");
        let (c, calls) = parse_tool_calls("no calls here");
        assert!(calls.is_empty());
        assert_eq!(c, "no calls here");
        let (_, calls) = parse_tool_calls("[{\"name\": \"a\", \"parameters\": {}}]");
        assert_eq!(calls[0].name, "a");
    }

    #[test]
    fn a_json_answer_with_a_name_field_is_content_not_a_call() {
        for answer in [
            r##"{"name":"Ada Rossi","email":"ada@example.com","order_id":"#12","city":"Oslo"}"##,
            r#"[{"name":"Ada"},{"name":"Bob"}]"#,
            r#"{"name":"only a name"}"#,
        ] {
            let (c, calls) = parse_tool_calls(answer);
            assert!(calls.is_empty(), "{answer}");
            assert_eq!(c, answer);
            assert_eq!(assistant_message(answer)["content"], answer);
        }
    }
}
