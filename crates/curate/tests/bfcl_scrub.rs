//! Acceptance 3 of issue 3: after scrubbing, every tool-call `arguments` string in the BFCL
//! development data still parses as JSON with the same keys.
//!
//! The data is not in git: `scripts/fetch.sh bfcl` writes `data/bfcl/bfcl.jsonl` (OpenAI chat
//! completions with tool calls). Without it the test fails and says how to fetch it.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use downshift_curate::{Detector, PiiConfig, Scrubber, SurrogateMode};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{prefix}/{k}");
                out.insert(p.clone());
                key_paths(x, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                key_paths(x, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn arguments(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(a)), true) = (m.get("arguments"), m.contains_key("name")) {
                out.push(a.clone());
            }
            m.values().for_each(|x| arguments(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| arguments(x, out)),
        _ => {}
    }
}

#[test]
fn bfcl_tool_call_arguments_stay_valid_json_with_the_same_keys() {
    // The tagger is part of what is measured: its weights must be there (the error names the
    // command that makes them), so the test never passes on the rules alone.
    let weights = downshift_curate::weights::checkout_weights().unwrap_or_else(|e| panic!("{e}"));
    let path = std::env::var_os("BFCL_JSONL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/bfcl/bfcl.jsonl")
        });
    let data = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} — run scripts/fetch.sh bfcl (CI does)",
            path.display()
        )
    });
    for mode in [SurrogateMode::Placeholder, SurrogateMode::Surrogate] {
        let cfg = PiiConfig {
            surrogate: mode,
            ..PiiConfig::default()
        };
        let scrubber = Scrubber::new(
            Detector::with_tagger(&cfg, Some(weights.clone())).unwrap(),
            b"bfcl-test-key",
        )
        .unwrap();
        let (mut records, mut calls, mut replaced) = (0usize, 0usize, 0u64);
        // Surrogates on every 8th record keep the debug-build test short.
        let step = if mode == SurrogateMode::Surrogate {
            8
        } else {
            1
        };
        for line in data.lines().filter(|l| !l.trim().is_empty()).step_by(step) {
            let record: Value = serde_json::from_str(line).unwrap();
            let mut ep = scrubber.episode();
            let scrubbed = ep.scrub_json(&record);
            replaced += ep.report().total();
            // The whole record keeps its structure.
            let (mut before, mut after) = (BTreeSet::new(), BTreeSet::new());
            key_paths(&record, "", &mut before);
            key_paths(&scrubbed, "", &mut after);
            assert_eq!(before, after, "record keys changed");
            // Every arguments string still parses, with the same keys.
            let (mut a, mut b) = (Vec::new(), Vec::new());
            arguments(&record, &mut a);
            arguments(&scrubbed, &mut b);
            assert_eq!(a.len(), b.len());
            for (orig, new) in a.iter().zip(&b) {
                let Ok(o) = serde_json::from_str::<Value>(orig) else {
                    continue;
                };
                let n: Value = serde_json::from_str(new).unwrap_or_else(|e| panic!("{e}: {new}"));
                let (mut ko, mut kn) = (BTreeSet::new(), BTreeSet::new());
                key_paths(&o, "", &mut ko);
                key_paths(&n, "", &mut kn);
                assert_eq!(ko, kn, "arguments keys changed: {orig} -> {new}");
                calls += 1;
            }
            records += 1;
        }
        assert!(
            records > 100 && calls > 100,
            "records={records} calls={calls}"
        );
        eprintln!(
            "{mode:?}: {records} records, {calls} tool-call arguments checked, {replaced} entities replaced"
        );
    }
}
