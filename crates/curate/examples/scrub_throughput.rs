//! Engine throughput for curation: scrub N logged calls (OpenAI request + response JSON, tool
//! schemas and tool-call arguments included), each as its own episode.
//!
//! usage: cargo run --release -p downshift-curate --example scrub_throughput -- [CALLS.jsonl] [N]
//! (default: data/bfcl/bfcl.jsonl, N = 100000; records are reused round-robin to reach N)

use downshift_curate::weights::checkout_weights;
use downshift_curate::{Detector, EntityType, PiiConfig, ScrubReport, Scrubber};
use serde_json::Value;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "data/bfcl/bfcl.jsonl".to_string());
    let n: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let records: Vec<Value> = std::fs::read_to_string(&path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    if records.is_empty() {
        return Err(format!("no records in {path}").into());
    }
    let bytes: usize = records.iter().map(|r| r.to_string().len()).sum::<usize>() / records.len();
    let scrubber = Scrubber::new(
        Detector::with_tagger(&PiiConfig::default(), Some(checkout_weights()?))?,
        b"throughput-key",
    )?;
    let start = Instant::now();
    let mut report = ScrubReport::default();
    for i in 0..n {
        let mut ep = scrubber.episode();
        let out = ep.scrub_json(&records[i % records.len()]);
        std::hint::black_box(out);
        report.merge(ep.report());
    }
    let dt = start.elapsed().as_secs_f64();
    println!(
        "{n} calls ({} distinct, avg {bytes} bytes) scrubbed in {dt:.2} s: {:.0} calls/s, {:.1} MB/s",
        records.len(),
        n as f64 / dt,
        (n * bytes) as f64 / dt / 1e6
    );
    for t in EntityType::ALL {
        if let Some(c) = report.entities.get(&t) {
            println!("  {t:<22} {c}");
        }
    }
    Ok(())
}
