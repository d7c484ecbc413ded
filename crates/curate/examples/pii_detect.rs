//! `downshift pii detect` before the CLI wiring exists: JSON Lines `{"text": ...}` on stdin,
//! `{"entities": [...], "redacted": "..."}` per line on stdout.

use downshift_curate::weights::checkout_weights;
use downshift_curate::{Detector, PiiConfig, detect_jsonl};
use std::io::{self, BufReader};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let detector = Detector::with_tagger(&PiiConfig::default(), Some(checkout_weights()?))?;
    let stdin = io::stdin();
    let stdout = io::stdout();
    let stats = detect_jsonl(
        &detector,
        BufReader::with_capacity(1 << 16, stdin.lock()),
        stdout.lock(),
    )?;
    eprintln!(
        "lines={} errors={} entities={}",
        stats.lines, stats.errors, stats.entities
    );
    Ok(())
}
