//! Reads lines on stdin and prints one JSON array of token ids per line (stand-in for
//! `downshift tokenize`). A line that is a JSON string is decoded first, so any text can be
//! passed.
//!
//! echo '"a\nb"' | cargo run --release -p downshift-slm --example tokenize -- --model M.gguf

use std::io::{BufRead, Write};

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model: std::path::PathBuf,
    /// Do not add BOS/EOS even where the model asks for them.
    #[arg(long)]
    no_special: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let m = downshift_slm::LocalModel::load(&a.model)?;
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for line in stdin.lock().lines() {
        let line = line?;
        let text = if line.starts_with('"') {
            serde_json::from_str::<String>(&line).unwrap_or(line)
        } else {
            line
        };
        let ids = m.tokenizer.encode(&text, !a.no_special, true);
        writeln!(out, "{}", serde_json::to_string(&ids)?)?;
    }
    Ok(())
}
