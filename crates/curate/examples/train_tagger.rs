//! Train the person/address tagger: `train_tagger OUT.bin EPOCHS FILE.jsonl...`, where each
//! line is `{"text": ..., "spans": [{"type": "PERSON" | "STREET_ADDRESS" | ..., "start", "end"}]}`
//! (UTF-8 byte offsets; other types are ignored). `bench/pii/train_tagger.sh` runs it.

use downshift_curate::tagger::{Labelled, Tag, train};
use std::io::BufRead;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: train_tagger OUT.bin EPOCHS FILE.jsonl...".into());
    }
    let epochs: usize = args[1].parse()?;
    let mut data = Vec::new();
    for path in &args[2..] {
        let f = std::io::BufReader::new(std::fs::File::open(path)?);
        for line in f.lines() {
            let v: serde_json::Value = serde_json::from_str(&line?)?;
            let text = v["text"].as_str().unwrap_or_default().to_string();
            let mut spans = Vec::new();
            for s in v["spans"].as_array().into_iter().flatten() {
                let tag = match s["type"].as_str() {
                    Some("PERSON") => Tag::Person,
                    Some("STREET_ADDRESS") => Tag::Address,
                    _ => continue,
                };
                let (Some(a), Some(b)) = (s["start"].as_u64(), s["end"].as_u64()) else {
                    continue;
                };
                spans.push((tag, a as usize, b as usize));
            }
            data.push(Labelled { text, spans });
        }
    }
    let t0 = std::time::Instant::now();
    let (model, history) = train(&data, epochs, 20260507);
    for (i, acc) in history.iter().enumerate() {
        eprintln!("epoch {}: {:.4} of scored tokens right", i + 1, acc);
    }
    let bytes = model.to_bytes();
    std::fs::write(&args[0], &bytes)?;
    eprintln!(
        "{} texts, {:.1} s, wrote {} ({} bytes)",
        data.len(),
        t0.elapsed().as_secs_f64(),
        args[0],
        bytes.len()
    );
    Ok(())
}
