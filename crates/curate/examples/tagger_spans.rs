//! Diagnostics: the tagger's raw spans with their margins, one JSON line per input line
//! (`{"text": ...}` in, `{"spans": [{"tag", "start", "end", "margin"}]}` out).

use downshift_curate::weights::{TaggerWeights, checkout_weights};
use std::io::{BufRead, Write};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The weights named on the command line, else where `scripts/fetch.sh tagger` puts them.
    let weights = match std::env::args().nth(1) {
        Some(p) => TaggerWeights::load(Path::new(&p))?,
        None => checkout_weights()?,
    };
    let tagger = weights.tagger();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        let text = v["text"].as_str().unwrap_or_default();
        let spans: Vec<serde_json::Value> = tagger
            .spans(text)
            .iter()
            .map(|s| {
                serde_json::json!({"tag": format!("{:?}", s.tag), "start": s.start, "end": s.end, "margin": s.margin})
            })
            .collect();
        writeln!(out, "{}", serde_json::json!({ "spans": spans }))?;
    }
    Ok(())
}
