//! `generate` and `tokenize`: run a small model natively (step S5).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use downshift_slm::{AdapterSel, Constraint, GenerateOptions, LocalModel, parse_tool_calls};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// A GGUF file, a folder holding one, a Hugging Face folder (config.json + safetensors +
    /// tokenizer.json), or a hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`) found under
    /// `./models` or in the Hugging Face cache.
    #[arg(long, value_name = "PATH|ID")]
    pub model: String,
    /// Compute threads (default: DOWNSHIFT_THREADS, else every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors).
    #[arg(long, value_name = "DIR")]
    adapter: Option<PathBuf>,
    /// Raw prompt text (no chat template).
    #[arg(
        long,
        value_name = "TEXT",
        conflicts_with = "messages",
        required_unless_present = "messages"
    )]
    prompt: Option<String>,
    /// A JSON file with the conversation: an array of OpenAI messages, or an object with
    /// `messages` (and optionally `tools`). The model's chat template is applied.
    #[arg(long, value_name = "FILE")]
    messages: Option<PathBuf>,
    /// A JSON file with OpenAI tool definitions offered to the model.
    #[arg(long, value_name = "FILE", requires = "messages")]
    tools: Option<PathBuf>,
    /// With --tools: `auto` lets the model answer in text or call a tool; `required` forces
    /// one tool call whose arguments are valid against the tool's schema.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = ["auto", "required"])]
    tool_choice: String,
    /// A JSON Schema file; the output is forced to be JSON valid against it.
    #[arg(long, value_name = "FILE", conflicts_with = "tool_choice")]
    schema: Option<PathBuf>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Keep only the k most likely tokens (0: off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling mass (1: off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Penalty on recently generated tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop before this text (repeatable).
    #[arg(long, value_name = "TEXT")]
    stop: Vec<String>,
    /// Print one JSON object instead of streaming the text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct TokenizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// No BOS/EOS added and special-token texts taken literally.
    #[arg(long)]
    raw: bool,
}

/// Loads the model the arguments name, with their thread count.
pub fn load_model(args: &ModelArgs) -> Result<LocalModel> {
    downshift_lifecycle::model::load_model(&args.model, args.threads)
}

fn read_json(path: &Path, what: &str) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{what} file {} is not valid JSON", path.display()))
}

pub fn generate(a: GenerateArgs) -> Result<()> {
    let mut m = load_model(&a.model)?;
    let mut opts = GenerateOptions {
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repetition_penalty: a.repetition_penalty,
        seed: a.seed,
        stop: a.stop.clone(),
        ..Default::default()
    };
    if let Some(dir) = &a.adapter {
        let id = m
            .load_adapter(dir)
            .with_context(|| format!("cannot load adapter {}", dir.display()))?;
        opts.adapter = AdapterSel::One(id);
    }
    let mut tools: Option<Vec<Value>> = None;
    let prompt = match (&a.prompt, &a.messages) {
        (Some(p), _) => p.clone(),
        (None, Some(file)) => {
            let v = read_json(file, "messages")?;
            let (messages, inline_tools) = match v {
                Value::Array(_) => (v, None),
                Value::Object(mut o) => match o.remove("messages") {
                    Some(msgs @ Value::Array(_)) => (msgs, o.remove("tools")),
                    _ => bail!(
                        "messages file {} must be an array of messages or an object with a \"messages\" array",
                        file.display()
                    ),
                },
                _ => bail!(
                    "messages file {} must be an array of messages or an object with a \"messages\" array",
                    file.display()
                ),
            };
            let t = match &a.tools {
                Some(f) => Some(read_json(f, "tools")?),
                None => inline_tools,
            };
            if let Some(t) = &t {
                match t {
                    Value::Array(list) => tools = Some(list.clone()),
                    _ => bail!("tools must be a JSON array of OpenAI tool definitions"),
                }
            }
            let tools_json = t.as_ref().map(Value::to_string);
            // With an adapter, its own recipe (transform and template), as every path that
            // serves it renders.
            m.render_prompt_for(opts.adapter, &messages.to_string(), tools_json.as_deref())
                .context("cannot apply the chat template")?
        }
        (None, None) => bail!("pass --prompt TEXT or --messages FILE"),
    };
    let constraint = if let Some(f) = &a.schema {
        Some(Constraint::JsonSchema(read_json(f, "schema")?))
    } else if a.tool_choice == "required" {
        match &tools {
            Some(t) if !t.is_empty() => Some(Constraint::ToolCall(t.clone())),
            _ => bail!(
                "--tool-choice required needs tools (--tools FILE or \"tools\" in the messages file)"
            ),
        }
    } else {
        None
    };
    let ids = m.tokenize(&prompt);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut stream = |piece: &str| -> bool {
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
        true
    };
    let on_text: Option<&mut dyn FnMut(&str) -> bool> =
        if a.json { None } else { Some(&mut stream) };
    let g = match &constraint {
        Some(c) => m.generate_constrained(&ids, &opts, c, on_text),
        None => m.generate_ids(&ids, &opts, on_text),
    }
    .context("generation failed")?;
    if a.json {
        let mut o = json!({
            "prompt": prompt,
            "text": g.text,
            "token_ids": g.token_ids,
            "prompt_tokens": g.prompt_tokens,
            "completion_tokens": g.completion_tokens,
            "finish_reason": g.finish_reason,
            "time_to_first_token_s": g.time_to_first_token_s,
            "prefill_tokens_per_s": g.prefill_tokens_per_s,
            "decode_tokens_per_s": g.decode_tokens_per_s,
        });
        if tools.is_some() {
            let (content, calls) = parse_tool_calls(&g.text);
            o["content"] = json!(content);
            o["tool_calls"] = json!(calls);
        }
        writeln!(out, "{o}")?;
    } else {
        writeln!(out)?;
        eprintln!(
            "{} prompt + {} generated tokens ({:?}); prefill {:.0} tok/s, decode {:.0} tok/s",
            g.prompt_tokens,
            g.completion_tokens,
            g.finish_reason,
            g.prefill_tokens_per_s,
            g.decode_tokens_per_s
        );
    }
    Ok(())
}

pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    let m = load_model(&a.model)?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line.context("cannot read stdin")?;
        let text = if line.starts_with('"') {
            serde_json::from_str::<String>(&line).with_context(|| {
                format!("line {}: starts with '\"' but is not a JSON string", n + 1)
            })?
        } else {
            line
        };
        let ids = if a.raw {
            m.tokenizer.encode(&text, false, false)
        } else {
            m.tokenize(&text)
        };
        serde_json::to_writer(&mut out, &ids)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
