//! Shared helpers of the integration tests.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]
#![allow(dead_code)]

use std::path::PathBuf;

/// The SmolLM2 test model: `DOWNSHIFT_TEST_MODEL` or the path `scripts/fetch.sh` writes.
/// Panics with instructions when it is missing (tests must not skip silently).
pub fn smollm2_path() -> PathBuf {
    if let Ok(p) = std::env::var("DOWNSHIFT_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = root.join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "test model missing: {} — run scripts/fetch.sh (or set DOWNSHIFT_TEST_MODEL)",
        p.display()
    );
    p
}

/// The folder of the architecture-parity fixture `name`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The Hugging Face folder of an architecture-parity fixture, its weights regenerated from
/// `weights.json` (see `downshift_slm::testing`).
#[allow(dead_code)]
pub fn arch(name: &str) -> PathBuf {
    downshift_slm::testing::materialize_fixture(&fixture("arch").join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The Gemma 3 270M test model: `DOWNSHIFT_TEST_GEMMA3` or the path `scripts/fetch.sh gemma3`
/// writes (under `DOWNSHIFT_MODELS_DIR` when set). `None`, with a note on stderr, when it is
/// not fetched: it is not part of `scripts/fetch.sh all` (238 MB), so its tests skip loudly.
pub fn gemma3_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DOWNSHIFT_TEST_GEMMA3") {
        return Some(PathBuf::from(p));
    }
    let dir = match std::env::var("DOWNSHIFT_MODELS_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"),
    };
    let p = dir.join("gemma-3-270m/gemma-3-270m-q4_k_m.gguf");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: Gemma 3 270M is not fetched ({} missing) — run scripts/fetch.sh gemma3",
            p.display()
        );
        None
    }
}

/// The JSON lines of the fixture file `name`.
pub fn fixture_lines(name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(fixture(name))
        .expect("fixture")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// A JSON array of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// A greedy fixture's reference top logits: per step, `[[id, logit], …]` as llama.cpp gave them.
pub fn top_logits(v: &serde_json::Value) -> Vec<Vec<(u32, f32)>> {
    v.as_array()
        .expect("top")
        .iter()
        .map(|step| {
            step.as_array()
                .expect("step")
                .iter()
                .map(|e| {
                    (
                        e[0].as_u64().expect("id") as u32,
                        e[1].as_f64().expect("logit") as f32,
                    )
                })
                .collect()
        })
        .collect()
}
