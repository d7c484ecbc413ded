//! Native all-MiniLM-L6-v2 embeddings against sentence-transformers' (fixture written by
//! `bench/discover/make_embedding_fixture.py`): identical token ids, cosine ≥ 0.999.
//! The model must be present (`scripts/fetch.sh minilm`); a missing model fails, never skips.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use downshift_discover::embed::{EmbedError, Embedder};
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir() -> PathBuf {
    repo_root().join("models/all-minilm-l6-v2")
}

fn load() -> Embedder {
    let dir = model_dir();
    match Embedder::load(&dir) {
        Ok(e) => e,
        Err(e) => panic!(
            "all-MiniLM-L6-v2 is required for this test (run `scripts/fetch.sh minilm` first): {e}"
        ),
    }
}

fn fixture() -> Vec<(String, Vec<u32>, Vec<f32>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let ids = s["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let vec = s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            (s["text"].as_str().unwrap().to_string(), ids, vec)
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn token_ids_match_reference_tokenizer() {
    let embedder = load();
    let mut mismatches = Vec::new();
    for (text, ids, _) in fixture() {
        let got = embedder.token_ids(&text);
        if got != ids {
            mismatches.push(format!(
                "{text:?}\n  reference {ids:?}\n  native    {got:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "token ids differ:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn embeddings_match_sentence_transformers() {
    let embedder = load();
    assert_eq!(embedder.dim(), 384);
    assert_eq!(embedder.max_seq_length(), 256);
    let items = fixture();
    let texts: Vec<&str> = items.iter().map(|(t, _, _)| t.as_str()).collect();
    let got = embedder.embed(&texts).unwrap();
    assert_eq!(got.len(), texts.len());
    let mut min = f32::INFINITY;
    for ((text, _, reference), vector) in items.iter().zip(&got) {
        assert_eq!(vector.len(), 384);
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{text:?}: norm {norm}");
        let c = cosine(vector, reference);
        min = min.min(c);
        assert!(c >= 0.999, "{text:?}: cosine {c} < 0.999");
    }
    eprintln!(
        "min cosine vs sentence-transformers over {} sentences: {min:.6}",
        items.len()
    );

    // Batching must not change a vector: one at a time gives the same answers.
    for (i, text) in texts.iter().enumerate().step_by(7) {
        let single = embedder.embed(&[text]).unwrap();
        assert!(
            cosine(&single[0], &got[i]) > 0.99999,
            "{text:?} differs alone vs batched"
        );
    }
    assert!(embedder.embed(&[]).unwrap().is_empty());
}

/// Throughput on short texts (`cargo test --release -- --ignored --nocapture embed_throughput`).
#[test]
#[ignore]
fn embed_throughput() {
    let embedder = load();
    let words = [
        "weather", "order", "refund", "invoice", "city", "tomorrow", "json", "extract", "call",
        "intent",
    ];
    let count: usize = std::env::var("EMBED_BENCH_TEXTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let texts: Vec<String> = (0..count)
        .map(|i| {
            let n = 4 + i % 16;
            (0..n)
                .map(|j| words[(i * 7 + j * 3) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
                + &format!(" #{i}")
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let start = Instant::now();
    let out = embedder.embed(&refs).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(out.len(), texts.len());
    let tokens: usize = refs.iter().map(|t| embedder.token_ids(t).len()).sum();
    eprintln!(
        "{} texts ({} tokens) in {secs:.2} s: {:.0} texts/s",
        texts.len(),
        tokens,
        texts.len() as f64 / secs
    );
}

#[test]
fn missing_directory_is_a_clear_error() {
    let err = Embedder::load(Path::new("/nonexistent/all-minilm-l6-v2")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EmbedError::Missing { .. }), "{msg}");
    assert!(msg.contains("scripts/fetch.sh minilm"), "{msg}");
}

fn copy_model_to(dir: &Path) {
    for name in ["config.json", "tokenizer.json", "sentence_bert_config.json"] {
        std::fs::copy(model_dir().join(name), dir.join(name))
            .unwrap_or_else(|e| panic!("copy {name} (run `scripts/fetch.sh minilm`): {e}"));
    }
}

#[test]
fn missing_weights_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    copy_model_to(tmp.path());
    let msg = Embedder::load(tmp.path()).unwrap_err().to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("scripts/fetch.sh minilm"),
        "{msg}"
    );
}

#[test]
fn truncated_safetensors_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    copy_model_to(tmp.path());
    let bytes = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    for len in [0, 7, 100, bytes.len() / 2] {
        std::fs::write(tmp.path().join("model.safetensors"), &bytes[..len]).unwrap();
        let err = Embedder::load(tmp.path()).unwrap_err();
        assert!(
            matches!(err, EmbedError::Weights { .. }),
            "len {len}: {err}"
        );
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }
}

#[test]
fn other_architecture_config_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    copy_model_to(tmp.path());
    std::fs::write(
        tmp.path().join("config.json"),
        r#"{"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "num_hidden_layers": 32,
            "num_attention_heads": 32, "intermediate_size": 11008, "max_position_embeddings": 4096}"#,
    )
    .unwrap();
    let err = Embedder::load(tmp.path()).unwrap_err();
    assert!(matches!(err, EmbedError::Config { .. }), "{err}");
    assert!(err.to_string().contains("llama"), "{err}");
    std::fs::write(tmp.path().join("config.json"), "{not json").unwrap();
    assert!(matches!(
        Embedder::load(tmp.path()).unwrap_err(),
        EmbedError::Config { .. }
    ));
}
