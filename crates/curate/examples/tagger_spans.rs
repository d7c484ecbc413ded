//! Diagnostics: the tagger's raw spans with their margins, one JSON line per input line
//! (`{"text": ...}` in, `{"spans": [{"tag", "start", "end", "margin"}]}` out).

use downshift_curate::tagger::Tagger;
use std::io::{BufRead, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "crates/curate/data/tagger.bin".to_string());
    let tagger = Tagger::from_bytes(&std::fs::read(path)?)?;
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
