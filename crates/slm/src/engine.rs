//! A loaded local model: weights, tokenizer and chat template together — what the CLI's
//! `generate`/`tokenize` and the gateway's `local/<name>` models use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::chat::{ChatTemplate, Message};
use crate::error::{Error, Result};
use crate::generate::{
    GenerateOptions, Generation, Prefix, TokenFilter, generate, generate_from, prefill,
};
use crate::gguf::Gguf;
use crate::llama::{KvDtype, Llama};
use crate::nn::AdapterSel;
use crate::specialist::{PromptRecipe, Specialist};
use crate::tokenizer::Tokenizer;

/// A model ready to generate.
pub struct LocalModel {
    /// The GGUF's `general.name`, else the file name without its extension.
    pub name: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// The network.
    pub model: Llama,
    /// Its tokenizer (shared with grammar engines).
    pub tokenizer: Arc<Tokenizer>,
    /// The model's own template, or the canonical ChatML one when it has none.
    pub template: ChatTemplate,
    /// Precision of the KV cache (f16 by default, like llama.cpp).
    pub kv_dtype: KvDtype,
    /// How the prompts of each attached specialist are made, by adapter id.
    recipes: HashMap<usize, PromptRecipe>,
    #[cfg(feature = "constrained")]
    guidance: std::sync::OnceLock<crate::constrain::Guidance>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("architecture", &self.model.config.architecture)
            .finish()
    }
}

impl LocalModel {
    /// Loads a GGUF file (tokenizer and chat template from its metadata).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            let ggufs: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .collect();
            if path.join("config.json").exists() {
                return Self::load_hf_dir(path);
            }
            return match ggufs.as_slice() {
                [one] => Self::load(one),
                [] => Err(Error::Config(format!(
                    "{} holds neither a .gguf file nor a Hugging Face model (config.json)",
                    path.display()
                ))),
                _ => Err(Error::Config(format!(
                    "{} holds several .gguf files; name one",
                    path.display()
                ))),
            };
        }
        let g = Gguf::open(path)?;
        let model = Llama::from_gguf(&g)?;
        let tokenizer = Tokenizer::from_gguf(&g)?;
        let text = |id: Option<u32>| {
            id.and_then(|i| tokenizer.token_text(i))
                .unwrap_or_default()
                .to_string()
        };
        let template = match g.get_str("tokenizer.chat_template") {
            Ok(src) => ChatTemplate::new(src, &text(tokenizer.bos), &text(tokenizer.eos))?,
            Err(_) => ChatTemplate::default_for(&model.config.architecture)?,
        };
        let name = g
            .get_str("general.name")
            .map(String::from)
            .unwrap_or_else(|_| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        Ok(Self {
            name,
            path: path.to_path_buf(),
            model,
            tokenizer: Arc::new(tokenizer),
            template,
            kv_dtype: KvDtype::F16,
            recipes: HashMap::new(),
            #[cfg(feature = "constrained")]
            guidance: Default::default(),
        })
    }

    /// Loads a Hugging Face model folder: `config.json`, `model.safetensors` (or shards listed
    /// in `model.safetensors.index.json`), `tokenizer.json` and `tokenizer_config.json` (or
    /// `chat_template.jinja`). Weights are kept as dense f32.
    pub fn load_hf_dir(dir: &Path) -> Result<Self> {
        let read = |name: &str| -> Result<String> {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))
        };
        let model = Llama::from_hf_dir(dir)?;
        let tok_cfg = read("tokenizer_config.json").ok();
        let tokenizer = Tokenizer::from_hf_json(&read("tokenizer.json")?, tok_cfg.as_deref())?;
        let tc: serde_json::Value = match &tok_cfg {
            Some(t) => serde_json::from_str(t)?,
            None => serde_json::Value::Null,
        };
        let text = |id: Option<u32>| {
            id.and_then(|i| tokenizer.token_text(i))
                .unwrap_or_default()
                .to_string()
        };
        let src = tc["chat_template"]
            .as_str()
            .map(String::from)
            .or_else(|| read("chat_template.jinja").ok());
        let template = match src {
            Some(src) => ChatTemplate::new(&src, &text(tokenizer.bos), &text(tokenizer.eos))?,
            None => ChatTemplate::default_for(&model.config.architecture)?,
        };
        Ok(Self {
            name: dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: dir.to_path_buf(),
            model,
            tokenizer: Arc::new(tokenizer),
            template,
            kv_dtype: KvDtype::F16,
            recipes: HashMap::new(),
            #[cfg(feature = "constrained")]
            guidance: Default::default(),
        })
    }

    /// Opens the adapter folder `dir` ([`Specialist::open`]) and attaches it
    /// ([`LocalModel::attach_specialist`]); generate with it by setting
    /// `GenerateOptions::adapter = AdapterSel::One(id)` and render its prompts with
    /// [`LocalModel::render_prompt_for`]. Several can be attached at once.
    pub fn load_adapter(&mut self, dir: impl AsRef<Path>) -> Result<usize> {
        let s = Specialist::open(dir)?;
        self.attach_specialist(&s)
    }

    /// Attaches an opened specialist (unmerged) after checking it was trained on this base,
    /// and keeps its [`PromptRecipe`] (transform and template) for its prompts. Returns its
    /// adapter id.
    pub fn attach_specialist(&mut self, s: &Specialist) -> Result<usize> {
        let recipe = s.recipe(&self.template)?;
        let id = s.attach_to(&mut self.model)?;
        if let Some(r) = recipe {
            self.recipes.insert(id, r);
        }
        Ok(id)
    }

    /// How the prompts of the attached specialist `id` are made; `None` for a plain PEFT
    /// adapter, which renders like the base.
    pub fn prompt_recipe(&self, id: usize) -> Option<&PromptRecipe> {
        self.recipes.get(&id)
    }

    /// Merges the adapter folder `dir` ([`Specialist::open`], refused for another base) into
    /// the base weights.
    pub fn merge_adapter(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        let s = Specialist::open(dir)?;
        s.check_base(&self.model)?;
        self.model.merge_adapter(s.adapter())
    }

    /// Token ids of raw text (BOS added as the model asks; special-token texts parsed).
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, true, true)
    }

    /// The prompt text for a conversation.
    pub fn render_chat(
        &self,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
    ) -> Result<String> {
        self.template.render(messages, tools, true)
    }

    /// Generates after token ids.
    pub fn generate_ids(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_text: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Result<Generation> {
        generate(
            &self.model,
            &self.tokenizer,
            prompt,
            opts,
            self.kv_dtype,
            on_text,
        )
    }

    /// Runs a prompt once so that several continuations can be sampled from clones of it.
    pub fn prefill(&self, prompt: &[u32], opts: &GenerateOptions) -> Result<Prefix> {
        prefill(
            &self.model,
            prompt,
            opts.max_tokens,
            opts.adapter,
            self.kv_dtype,
        )
    }

    /// Generates after a [`Prefix`], optionally through a [`TokenFilter`] (a grammar).
    pub fn generate_from(
        &self,
        prefix: Prefix,
        opts: &GenerateOptions,
        filter: Option<&mut dyn TokenFilter>,
        on_text: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Result<Generation> {
        generate_from(
            &self.model,
            &self.tokenizer,
            prefix,
            opts,
            filter,
            on_text,
            Instant::now(),
        )
    }

    /// The grammar engine for this model's vocabulary (built on first use).
    #[cfg(feature = "constrained")]
    pub fn guidance(&self) -> Result<&crate::constrain::Guidance> {
        if let Some(g) = self.guidance.get() {
            return Ok(g);
        }
        let g = crate::constrain::Guidance::new(self.tokenizer.clone())?;
        let _ = self.guidance.set(g);
        self.guidance
            .get()
            .ok_or_else(|| Error::Request("grammar engine unavailable".into()))
    }

    /// Generates output that matches `constraint` (JSON, a JSON Schema, a tool call, ...).
    #[cfg(feature = "constrained")]
    pub fn generate_constrained(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
        constraint: &crate::constrain::Constraint,
        on_text: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Result<Generation> {
        let t0 = Instant::now();
        let mut filter = self.guidance()?.filter(constraint)?;
        let p = self.prefill(prompt, opts)?;
        generate_from(
            &self.model,
            &self.tokenizer,
            p,
            opts,
            Some(&mut filter),
            on_text,
            t0,
        )
    }

    /// Generates continuations of several prompts in one batch (one option set per prompt).
    pub fn generate_batch(
        &self,
        prompts: &[Vec<u32>],
        opts: &[GenerateOptions],
    ) -> Result<Vec<Generation>> {
        crate::generate::generate_batch(&self.model, &self.tokenizer, prompts, opts, self.kv_dtype)
    }

    /// Generates after raw text (no chat template).
    pub fn generate(
        &self,
        prompt: &str,
        opts: &GenerateOptions,
        on_text: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Result<Generation> {
        self.generate_ids(&self.tokenize(prompt), opts, on_text)
    }

    /// Generates the assistant's reply to a conversation (chat template applied).
    pub fn chat(
        &self,
        messages: &[Message],
        tools: Option<&[serde_json::Value]>,
        opts: &GenerateOptions,
        on_text: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Result<Generation> {
        let prompt = self.render_chat(messages, tools)?;
        self.generate(&prompt, opts, on_text)
    }

    /// Like [`LocalModel::chat`] with messages and tools as JSON text (key order kept).
    pub fn chat_json(
        &self,
        messages_json: &str,
        tools_json: Option<&str>,
        opts: &GenerateOptions,
        on_text: Option<&mut dyn FnMut(&str) -> bool>,
    ) -> Result<Generation> {
        let prompt = self.render_prompt(messages_json, tools_json)?;
        self.generate(&prompt, opts, on_text)
    }

    /// The prompt for messages and tools given as JSON text. A template that has no place for
    /// tools (SmolLM2's, Llama 2's) gets them described in the system message instead, with
    /// the reply format [`crate::parse_tool_calls`] reads — as llama.cpp's server does for
    /// such models — rather than silently dropping them.
    pub fn render_prompt(&self, messages_json: &str, tools_json: Option<&str>) -> Result<String> {
        render_with(&self.template, messages_json, tools_json)
    }

    /// The prompt for a request answered with `adapter`: a specialist's own
    /// [`PromptRecipe`] when `adapter` is one with a recipe, else the base's
    /// [`LocalModel::render_prompt`].
    pub fn render_prompt_for(
        &self,
        adapter: AdapterSel,
        messages_json: &str,
        tools_json: Option<&str>,
    ) -> Result<String> {
        let recipe = match adapter {
            AdapterSel::One(id) => self.recipes.get(&id),
            AdapterSel::None | AdapterSel::All => None,
        };
        match recipe {
            Some(r) => r.render_json(messages_json, tools_json),
            None => self.render_prompt(messages_json, tools_json),
        }
    }
}

/// The prompt `template` renders for messages and tools given as JSON text (an empty tool
/// list counts as none); tools described in the system message when the template has no place
/// for them.
pub(crate) fn render_with(
    template: &ChatTemplate,
    messages_json: &str,
    tools_json: Option<&str>,
) -> Result<String> {
    let tools_json = tools_json.filter(|t| {
        serde_json::from_str::<serde_json::Value>(t)
            .ok()
            .and_then(|v| v.as_array().map(|a| !a.is_empty()))
            .unwrap_or(false)
    });
    if template.supports_tools() {
        return template.render_json(messages_json, tools_json, true);
    }
    let mut messages: Vec<serde_json::Value> = serde_json::from_str(messages_json)?;
    calls_as_text(&mut messages);
    if let Some(tools) = tools_json {
        describe_tools(&mut messages, tools)?;
    }
    template.render_json(&serde_json::to_string(&messages)?, None, true)
}

/// The tools described in the system message (added when there is none), with the reply
/// format [`crate::parse_tool_calls`] reads.
fn describe_tools(messages: &mut Vec<serde_json::Value>, tools: &str) -> Result<()> {
    let list: Vec<serde_json::Value> = serde_json::from_str(tools)?;
    let mut note = String::from("You can call these tools (JSON function definitions):\n");
    for t in &list {
        note.push_str(&crate::function_of(t).to_string());
        note.push('\n');
    }
    note.push_str(
        "To call a tool, reply with only a JSON object: {\"name\": <tool name>, \"arguments\": <arguments object>}.",
    );
    match messages.first_mut() {
        Some(first) if first.get("role").and_then(|r| r.as_str()) == Some("system") => {
            let content = first
                .get("content")
                .and_then(|c| c.as_str())
                .unwrap_or_default()
                .to_string();
            first["content"] = serde_json::Value::String(if content.is_empty() {
                note
            } else {
                format!("{content}\n\n{note}")
            });
        }
        _ => messages.insert(0, serde_json::json!({"role": "system", "content": note})),
    }
    Ok(())
}

/// For a template that knows no tool calls: an agent's history — assistant turns that only
/// call tools (`content: null`), tool results — becomes text the template can render, each
/// call written as the JSON object the tool note asks for.
fn calls_as_text(messages: &mut [serde_json::Value]) {
    for m in messages.iter_mut() {
        let Some(o) = m.as_object_mut() else { continue };
        let mut text = match o.get("content") {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => continue, // content parts: the template's own business
        };
        for c in o
            .remove("tool_calls")
            .and_then(|c| c.as_array().cloned())
            .unwrap_or_default()
        {
            let f = crate::function_of(&c);
            let args = match f.get("arguments") {
                Some(serde_json::Value::String(s)) => {
                    serde_json::from_str(s).unwrap_or(serde_json::Value::String(s.clone()))
                }
                Some(v) => v.clone(),
                None => serde_json::json!({}),
            };
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(
                &serde_json::json!({"name": f.get("name"), "arguments": args}).to_string(),
            );
        }
        o.insert("content".into(), serde_json::Value::String(text));
    }
}
