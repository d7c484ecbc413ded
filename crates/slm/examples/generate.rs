//! Generates text with a local model (stand-in for `downshift generate` until the CLI is wired).
//!
//! cargo run --release -p downshift-slm --example generate -- \
//!     --model models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
//!     --messages msgs.json --max-tokens 64 --json

use std::io::Write;

use clap::Parser;
use downshift_slm::{GenerateOptions, LocalModel, Message};

#[derive(Parser)]
struct Args {
    /// GGUF file (or a folder holding one).
    #[arg(long)]
    model: std::path::PathBuf,
    /// Raw prompt text (no chat template).
    #[arg(long, conflicts_with = "messages")]
    prompt: Option<String>,
    /// JSON file with OpenAI-style messages (chat template applied).
    #[arg(long)]
    messages: Option<std::path::PathBuf>,
    /// JSON file with OpenAI tool definitions.
    #[arg(long)]
    tools: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop strings.
    #[arg(long)]
    stop: Vec<String>,
    /// Compute threads (default: DOWNSHIFT_THREADS or all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    if let Some(n) = a.threads {
        downshift_slm::threads::set_num_threads(n);
    }
    let m = LocalModel::load(&a.model)?;
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repetition_penalty: a.repetition_penalty,
        seed: a.seed,
        stop: a.stop.clone(),
        ..Default::default()
    };
    let prompt = match (&a.prompt, &a.messages) {
        (Some(p), None) => p.clone(),
        (None, Some(f)) => {
            let msgs = std::fs::read_to_string(f)?;
            let tools = a.tools.as_ref().map(std::fs::read_to_string).transpose()?;
            m.template.render_json(&msgs, tools.as_deref(), true)?
        }
        _ => {
            // a default conversation so the example runs without arguments
            m.render_chat(
                &[Message::new("user", "What is the capital of France?")],
                None,
            )?
        }
    };
    let ids = m.tokenize(&prompt);
    let mut stdout = std::io::stdout();
    let mut print = |s: &str| {
        let _ = stdout.write_all(s.as_bytes());
        let _ = stdout.flush();
        true
    };
    let cb: Option<&mut dyn FnMut(&str) -> bool> = if a.json { None } else { Some(&mut print) };
    let g = m.generate_ids(&ids, &opts, cb)?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "text": g.text,
                "token_ids": g.token_ids,
                "prompt_tokens": g.prompt_tokens,
                "completion_tokens": g.completion_tokens,
                "prefill_tokens_per_s": g.prefill_tokens_per_s,
                "decode_tokens_per_s": g.decode_tokens_per_s,
                "time_to_first_token_s": g.time_to_first_token_s,
                "finish_reason": g.finish_reason,
            })
        );
    } else {
        eprintln!(
            "\n[{} prompt + {} completion tokens; prefill {:.1} tok/s, decode {:.1} tok/s, first token {:.0} ms]",
            g.prompt_tokens,
            g.completion_tokens,
            g.prefill_tokens_per_s,
            g.decode_tokens_per_s,
            g.time_to_first_token_s * 1000.0
        );
    }
    Ok(())
}
