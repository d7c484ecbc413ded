//! Specialists: the small models a task policy routes to. A policy's `specialist` names either
//! a configured remote endpoint (`[[specialists]]`: vLLM with LoRA modules, a llama.cpp
//! server, Ollama …) or an adapter folder written by `downshift train`, served by the built-in
//! engine on its own copy of the base. Either way the request goes through the specialist's
//! versioned prompt transform (the one it was trained with) — on the built-in engine as part of
//! the specialist's prompt recipe (`downshift_slm::Specialist`, the one contract every path
//! that serves an adapter folder shares) — and the answer comes back as an OpenAI
//! `chat.completion` with tool calls parsed.

use crate::SetupError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use downshift_route::FallbackReason;
use downshift_slm::{AdapterSel, LocalModel, PromptTransform};
use http::{HeaderValue, Method, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use crate::config::{RouteConfig, SpecialistEndpointConfig, UpstreamConfig};
use crate::local::{LocalSlot, complete};
use crate::upstream::Upstream;

/// How a specialist is reached.
enum Engine {
    BuiltIn {
        slot: Arc<LocalSlot>,
        adapter: AdapterSel,
    },
    Remote {
        upstream: Arc<Upstream>,
        model: String,
    },
}

/// One loaded specialist.
pub struct Specialist {
    /// What the policy names it by.
    pub id: String,
    engine: Engine,
    transform: PromptTransform,
}

/// A specialist's answer to one request.
pub struct SpecialistAnswer {
    /// The `chat.completion` object.
    pub body: Value,
    /// `choices[0].message`.
    pub message: Value,
    pub mean_logprob: Option<f64>,
    pub usage: Option<downshift_api::Usage>,
}

type Slot = Arc<OnceCell<(Instant, Result<Arc<Specialist>, SetupError>)>>;

/// How long a specialist that failed to load is left alone before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The specialists named by policies, loaded on first use (or when a policy names them) and
/// kept. A specialist that cannot be loaded is remembered as such: every request routed to it
/// falls back to the LLM with the load error as the reason.
pub struct Specialists {
    endpoints: HashMap<String, SpecialistEndpointConfig>,
    loaded: Mutex<HashMap<String, Slot>>,
    cfg: RouteConfig,
}

impl Specialists {
    pub fn new(
        endpoints: &[SpecialistEndpointConfig],
        cfg: RouteConfig,
    ) -> Result<Specialists, SetupError> {
        let mut map = HashMap::new();
        for e in endpoints {
            if e.name.is_empty() || e.model.is_empty() || e.base_url.is_empty() {
                return Err(SetupError::Config(format!(
                    "specialist endpoint '{}': name, base_url and model are all required",
                    e.name
                )));
            }
            if map.insert(e.name.clone(), e.clone()).is_some() {
                return Err(SetupError::Config(format!(
                    "specialist endpoint '{}' is defined twice",
                    e.name
                )));
            }
            // Check the URL and key now, not on the first routed request.
            remote(e, &cfg)?;
        }
        Ok(Specialists {
            endpoints: map,
            loaded: Mutex::new(HashMap::new()),
            cfg,
        })
    }

    /// The specialist `id`, loading it on first use.
    pub async fn get(&self, id: &str) -> Result<Arc<Specialist>, SetupError> {
        let cell = {
            let mut m = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(id.to_owned()).or_default().clone()
        };
        cell.get_or_init(|| async {
            let id = id.to_owned();
            let endpoint = self.endpoints.get(&id).cloned();
            let cfg = self.cfg.clone();
            let r = tokio::task::spawn_blocking(move || match endpoint {
                Some(e) => remote(&e, &cfg),
                None => built_in(&id, &cfg),
            })
            .await
            .map_err(|e| SetupError::Runtime(format!("loading the specialist failed: {e}")))
            .and_then(|r| r);
            match &r {
                Ok(s) => tracing::info!(specialist = %s.id, "specialist ready"),
                Err(e) => tracing::warn!(error = %e, "specialist cannot be loaded"),
            }
            (Instant::now(), r.map(Arc::new))
        })
        .await
        .1
        .clone()
    }

    /// Forgets every specialist not in `keep` (a policy moved to another one), and every
    /// one that failed to load a while ago, so it is tried again (a fixed adapter folder).
    pub fn retain(&self, keep: &[&str]) {
        let mut m = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|k, cell| {
            let stale_error =
                matches!(cell.get(), Some((at, Err(_))) if at.elapsed() > RETRY_AFTER);
            keep.contains(&k.as_str()) && !stale_error
        });
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.specialist_timeout_ms.max(1))
    }
}

/// Opens an adapter folder written by `downshift train` (its metadata required).
fn open(dir: &Path) -> Result<downshift_slm::Specialist, SetupError> {
    let s = downshift_slm::Specialist::open(dir).map_err(|e| {
        SetupError::Load(format!(
            "cannot read the specialist in {}: {e}",
            dir.display()
        ))
    })?;
    s.trained_meta()
        .map_err(|e| SetupError::Load(e.to_string()))?;
    Ok(s)
}

fn remote(e: &SpecialistEndpointConfig, cfg: &RouteConfig) -> Result<Specialist, SetupError> {
    let upstream = Upstream::from_config(&UpstreamConfig {
        name: format!("specialist:{}", e.name),
        base_url: e.base_url.clone(),
        api_key_env: e.api_key_env.clone(),
        timeout_ms: cfg.specialist_timeout_ms,
        connect_timeout_ms: e.connect_timeout_ms,
        ..Default::default()
    })?;
    let transform = match &e.adapter {
        Some(dir) => open(dir)?.transform(),
        None => PromptTransform::identity(),
    };
    Ok(Specialist {
        id: e.name.clone(),
        engine: Engine::Remote {
            upstream: Arc::new(upstream),
            model: e.model.clone(),
        },
        transform,
    })
}

fn built_in(id: &str, cfg: &RouteConfig) -> Result<Specialist, SetupError> {
    let dir = PathBuf::from(id);
    if !dir.is_dir() {
        return Err(SetupError::Load(format!(
            "specialist '{id}' is neither a configured [[specialists]] endpoint nor an adapter folder"
        )));
    }
    let folder = open(&dir)?;
    let meta = folder
        .trained_meta()
        .map_err(|e| SetupError::Load(e.to_string()))?
        .clone();
    let mut lm = LocalModel::load(&meta.base_model).map_err(|e| {
        SetupError::Load(format!(
            "specialist {id}: cannot load its base {}: {e}",
            meta.base_model
        ))
    })?;
    // The model keeps the specialist's prompt recipe (transform and template) for its adapter.
    let adapter = lm
        .attach_specialist(&folder)
        .map_err(|e| SetupError::Load(format!("specialist {id}: cannot load the adapter: {e}")))?;
    // Named for what it learned: its task, else its dataset (a specialist shared by several
    // tasks), else its folder.
    let name = format!(
        "specialist:{}",
        meta.task
            .clone()
            .or_else(|| meta.dataset.clone())
            .unwrap_or_else(|| id.to_owned())
    );
    let (slot, adapter) =
        LocalSlot::specialist(name, lm, adapter, cfg.max_concurrent, cfg.max_tokens);
    Ok(Specialist {
        id: id.to_owned(),
        engine: Engine::BuiltIn { slot, adapter },
        transform: meta.transform,
    })
}

/// Whether the request offers tools.
fn offers_tools(request: &Value) -> bool {
    ["tools", "functions"].iter().any(|f| {
        request
            .get(*f)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    })
}

impl Specialist {
    /// The request the specialist is sent: for a remote endpoint, the transform applied to the
    /// messages and tools; for the built-in engine, the messages and tools as sent (its prompt
    /// recipe applies the same transform when it renders). Either way `tool_choice` only when
    /// the transform keeps the tools; the answer-shaping fields kept; decoding greedy and
    /// unstreamed.
    fn request(&self, request: &Value) -> Result<Value, FallbackReason> {
        let messages = request
            .get("messages")
            .and_then(Value::as_array)
            .ok_or_else(|| FallbackReason::Error("the request has no messages".into()))?;
        let tools = request.get("tools").and_then(Value::as_array);
        let (seen_messages, seen_tools) = self
            .transform
            .apply(messages, tools.map(Vec::as_slice))
            .map_err(|e| FallbackReason::Error(e.to_string()))?;
        let keeps_tools = seen_tools.is_some();
        let (messages, tools) = match &self.engine {
            Engine::BuiltIn { .. } => (messages.clone(), tools.cloned()),
            Engine::Remote { .. } => (seen_messages, seen_tools),
        };
        let mut out = Map::new();
        out.insert("messages".into(), Value::Array(messages));
        if let Some(t) = tools {
            out.insert("tools".into(), Value::Array(t));
        }
        if keeps_tools && let Some(c) = request.get("tool_choice") {
            out.insert("tool_choice".into(), c.clone());
        }
        for f in [
            "response_format",
            "max_tokens",
            "max_completion_tokens",
            "stop",
        ] {
            if let Some(v) = request.get(f).filter(|v| !v.is_null()) {
                out.insert(f.into(), v.clone());
            }
        }
        out.insert("temperature".into(), json!(0.0));
        out.insert("stream".into(), json!(false));
        Ok(Value::Object(out))
    }

    /// Runs the specialist on `request` within `timeout`. Any failure is the fallback reason.
    pub async fn answer(
        &self,
        request: &Value,
        call_id: &str,
        model_id: &str,
        timeout: Duration,
        want_logprobs: bool,
    ) -> Result<SpecialistAnswer, FallbackReason> {
        let deadline = Instant::now() + timeout;
        let mut req = self.request(request)?;
        let tools_offered = offers_tools(request);
        match &self.engine {
            Engine::BuiltIn { slot, adapter } => {
                let bytes =
                    serde_json::to_vec(&req).map_err(|e| FallbackReason::Error(e.to_string()))?;
                let mut plan = slot
                    .plan(&bytes, *adapter)
                    .map_err(|e| FallbackReason::Error(e.to_string()))?;
                if tools_offered {
                    plan.parse_tool_calls();
                }
                let c = match complete(slot.clone(), plan, call_id, model_id, deadline).await {
                    Ok(c) => c,
                    Err(crate::GatewayError::Timeout { .. }) => {
                        return Err(FallbackReason::Timeout);
                    }
                    Err(e) => return Err(FallbackReason::Error(e.to_string())),
                };
                let message = c.body["choices"][0]["message"].clone();
                Ok(SpecialistAnswer {
                    body: c.body,
                    message,
                    mean_logprob: c.mean_logprob,
                    usage: Some(c.usage),
                })
            }
            Engine::Remote { upstream, model } => {
                req["model"] = json!(model);
                if want_logprobs {
                    req["logprobs"] = json!(true);
                }
                let r = tokio::time::timeout(timeout, post(upstream, &req)).await;
                let mut body = match r {
                    Err(_) => return Err(FallbackReason::Timeout),
                    Ok(Err(e)) => return Err(FallbackReason::Error(e)),
                    Ok(Ok(b)) => b,
                };
                let choice = &body["choices"][0];
                let mut message = choice
                    .get("message")
                    .filter(|m| m.is_object())
                    .cloned()
                    .ok_or_else(|| {
                        FallbackReason::Error(format!(
                            "{} answered without choices[0].message",
                            upstream.name
                        ))
                    })?;
                let lps: Vec<f64> = choice["logprobs"]["content"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.get("logprob").and_then(Value::as_f64))
                            .collect()
                    })
                    .unwrap_or_default();
                let mean_logprob =
                    (!lps.is_empty()).then(|| lps.iter().sum::<f64>() / lps.len() as f64);
                // A server without a tool parser for the specialist's format returns its
                // `<tool_call>` text as content.
                if tools_offered && message.get("tool_calls").is_none_or(Value::is_null) {
                    let text = message["content"].as_str().unwrap_or_default().to_owned();
                    let parsed = downshift_slm::assistant_message(&text);
                    if parsed.get("tool_calls").is_some() {
                        message = parsed;
                        body["choices"][0]["message"] = message.clone();
                        body["choices"][0]["finish_reason"] = json!("tool_calls");
                    }
                }
                let usage = downshift_api::usage_of(&body);
                body["model"] = json!(model_id);
                Ok(SpecialistAnswer {
                    body,
                    message,
                    mean_logprob,
                    usage,
                })
            }
        }
    }
}

/// POSTs a chat completion to a remote endpoint and reads the JSON answer.
async fn post(upstream: &Upstream, req: &Value) -> Result<Value, String> {
    let uri = upstream
        .url("chat/completions")
        .map_err(|e| format!("bad URL: {e}"))?;
    let mut r = http::Request::new(Full::new(Bytes::from(req.to_string())));
    *r.method_mut() = Method::POST;
    *r.uri_mut() = uri;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(a) = &upstream.authorization {
        r.headers_mut().insert(header::AUTHORIZATION, a.clone());
    }
    let resp = upstream
        .client
        .request(r)
        .await
        .map_err(|e| format!("{} is unreachable: {e}", upstream.name))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{}: {e}", upstream.name))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{} answered {status}: {}",
            upstream.name,
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} answered with invalid JSON: {e}", upstream.name))
}

/// A finished `chat.completion` as the SSE stream a streaming client expects: the role, the
/// content, the tool calls, the finish reason, the usage when asked, `[DONE]`.
pub fn completion_sse(body: &Value, include_usage: bool) -> String {
    let id = body
        .get("id")
        .cloned()
        .unwrap_or(json!("chatcmpl-downshift"));
    let created = body.get("created").cloned().unwrap_or(json!(0));
    let model = body.get("model").cloned().unwrap_or(Value::Null);
    let choice = &body["choices"][0];
    let message = &choice["message"];
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let mut out = String::new();
    let mut push = |v: &Value| {
        out.push_str("data: ");
        out.push_str(&v.to_string());
        out.push_str("\n\n");
    };
    push(&chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    if let Some(c) = message["content"].as_str().filter(|c| !c.is_empty()) {
        push(&chunk(json!({"content": c}), Value::Null));
    }
    if let Some(calls) = message["tool_calls"].as_array().filter(|c| !c.is_empty()) {
        let indexed: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut c = c.clone();
                c["index"] = json!(i);
                c
            })
            .collect();
        push(&chunk(json!({"tool_calls": indexed}), Value::Null));
    }
    let finish = choice
        .get("finish_reason")
        .cloned()
        .unwrap_or(json!("stop"));
    push(&chunk(json!({}), finish));
    if include_usage && let Some(u) = body.get("usage").filter(|u| !u.is_null()) {
        push(
            &json!({"id": id, "object": "chat.completion.chunk", "created": created,
                     "model": model, "choices": [], "usage": u}),
        );
    }
    out.push_str("data: [DONE]\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use downshift_api::StreamAssembler;

    #[test]
    fn a_completion_streams_back_to_the_same_completion() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_0", "type": "function",
                    "function": {"name": "get", "arguments": "{\"a\":1}"}}]},
                "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        });
        let sse = completion_sse(&body, true);
        assert!(sse.ends_with("data: [DONE]\n\n"));
        let mut asm = StreamAssembler::new();
        asm.feed(sse.as_bytes());
        assert!(asm.is_complete());
        let back = asm.finish();
        let m = &back["choices"][0]["message"];
        assert_eq!(m["tool_calls"][0]["function"]["name"], "get");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(back["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(back["usage"]["completion_tokens"], 4);
    }

    /// The routed path of a built-in specialist (the request it is sent, then the slot's
    /// plan) runs on exactly the prompt its recipe renders for the original request — the
    /// one `local/…`, `generate --adapter` and `eval` render for the same folder.
    #[test]
    fn a_built_in_specialist_runs_on_its_recipe_prompt() {
        let model = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            model.exists(),
            "{} missing: run scripts/fetch.sh",
            model.display()
        );
        let lm = LocalModel::load(&model).unwrap();
        let system = "You are the trading bot of the desk, answering with tools only.";
        let transform = PromptTransform::pruning(Some(system.into())).with_tool_names(true);
        let dir = tempfile::tempdir().unwrap();
        downshift_slm::testing::write_specialist(
            dir.path(),
            model.to_str().unwrap(),
            &lm.model,
            transform,
            downshift_slm::SpecialistTemplate::for_base(&lm.template),
        )
        .unwrap();
        let id = dir.path().to_str().unwrap();
        let s = built_in(id, &RouteConfig::default()).unwrap();
        let messages = vec![
            json!({"role": "system", "content": format!("{system} Today is Monday.")}),
            json!({"role": "user", "content": "buy 10 NVDA"}),
        ];
        let tools = vec![json!({"type": "function", "function": {"name": "buy",
            "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}})];
        let req = json!({"model": "gpt", "messages": messages, "tools": tools,
            "tool_choice": "auto", "max_tokens": 4});
        let sent = s.request(&req).unwrap();
        // the schemas are dropped, so tool_choice is not sent
        assert!(sent.get("tool_choice").is_none(), "{sent}");
        let Engine::BuiltIn { slot, adapter } = &s.engine else {
            panic!("not built in")
        };
        let plan = slot
            .plan(&serde_json::to_vec(&sent).unwrap(), *adapter)
            .unwrap();
        let recipe = downshift_slm::Specialist::open(dir.path())
            .unwrap()
            .recipe(&lm.template)
            .unwrap()
            .unwrap();
        let prompt = recipe.render(&messages, Some(&tools)).unwrap();
        assert!(prompt.contains("Tools: buy") && prompt.contains("Today is Monday."));
        assert!(!prompt.contains(system), "{prompt}");
        assert_eq!(plan.prompt_ids(), lm.tokenize(&prompt).as_slice());
    }

    #[test]
    fn the_transform_prunes_and_decoding_is_greedy() {
        let s = Specialist {
            id: "x".into(),
            engine: Engine::Remote {
                upstream: Arc::new(
                    Upstream::from_config(&UpstreamConfig {
                        base_url: "http://127.0.0.1:9".into(),
                        ..Default::default()
                    })
                    .unwrap(),
                ),
                model: "m".into(),
            },
            transform: PromptTransform::pruning(Some("You are the trading bot.".into())),
        };
        let req = json!({
            "model": "gpt", "temperature": 0.9, "stream": true, "max_tokens": 20,
            "messages": [{"role": "system", "content": "You are the trading bot. Today is Monday."},
                         {"role": "user", "content": "buy"}],
            "tools": [{"type": "function", "function": {"name": "buy"}}],
            "tool_choice": "required",
        });
        let out = s.request(&req).unwrap();
        assert_eq!(out["messages"][0]["content"], "Today is Monday.");
        assert!(out.get("tools").is_none() && out.get("tool_choice").is_none());
        assert_eq!(out["temperature"], 0.0);
        assert_eq!(out["stream"], false);
        assert_eq!(out["max_tokens"], 20);
        let bad = json!({"model": "gpt"});
        assert!(matches!(s.request(&bad), Err(FallbackReason::Error(_))));
    }
}
