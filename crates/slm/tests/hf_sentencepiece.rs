//! A SentencePiece-style `tokenizer.json` read from a Hugging Face folder gives llama.cpp's ids:
//! Gemma 3 270M's vocabulary written as Hugging Face's converter writes it (a `▁` normaliser,
//! BPE with byte fallback, merges from the vocabulary ordered by the merged piece's score), then
//! every string of the llama.cpp tokenizer fixture. Skips with a note when Gemma 3 is not
//! fetched (`scripts/fetch.sh gemma3`).
#![cfg(test)]

mod common;

use std::collections::HashMap;

use downshift_slm::{Gguf, Tokenizer};
use serde_json::{Value, json};

/// Gemma 3's tokenizer as a `tokenizer.json`, built from the GGUF's tokens, scores and types.
fn tokenizer_json(g: &Gguf) -> String {
    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    let scores = g.get_f32_array("tokenizer.ggml.scores").unwrap();
    let types = g.get_i64_array("tokenizer.ggml.token_type").unwrap();
    let vocab: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    // transformers' SentencePieceExtractor: every split of a normal piece into two pieces,
    // ordered by the merged piece's score (stable, so by the parts' ids within one piece)
    let mut merges: Vec<(f32, &str, &str)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        if types[i] != 1 {
            continue;
        }
        let mut local: Vec<(&str, &str)> = piece
            .char_indices()
            .skip(1)
            .map(|(k, _)| piece.split_at(k))
            .filter(|(l, r)| vocab.contains_key(l) && vocab.contains_key(r))
            .collect();
        local.sort_by_key(|(l, r)| (vocab[l], vocab[r]));
        merges.extend(local.into_iter().map(|(l, r)| (scores[i], l, r)));
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    let added: Vec<Value> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types[*i], 3 | 4))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": types[i] == 3})
        })
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
            "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab,
            "merges": merges.iter().map(|(_, l, r)| [l, r]).collect::<Vec<_>>()}
    })
    .to_string()
}

#[test]
fn gemma3_tokenizer_json_gives_llama_cpp_ids_on_every_fixture_string() {
    let Some(path) = common::gemma3_path() else {
        return;
    };
    let g = Gguf::open(&path).unwrap();
    let config = r#"{"bos_token": "<bos>", "eos_token": "<eos>", "add_bos_token": true}"#;
    let tok = Tokenizer::from_hf_json(&tokenizer_json(&g), Some(config)).unwrap();
    let mut n = 0;
    let mut failures = Vec::new();
    for v in common::fixture_lines("tokenizer_gemma3.jsonl") {
        let text = v["text"].as_str().unwrap();
        for (key, special) in [("ids", true), ("ids_no_special", false)] {
            let want = common::ids(&v[key]);
            let got = tok.encode(text, true, special);
            if got != want {
                failures.push(format!("({key}) {text:?}\n  got  {got:?}\n  want {want:?}"));
            }
            n += 1;
        }
        // and the text comes back (a literal `▁` is SentencePiece's space, and decodes as one)
        if !text.contains('▁') {
            assert_eq!(tok.decode(&tok.encode(text, false, false), false), text);
        }
    }
    assert!(n >= 400, "{n} cases");
    assert!(
        failures.is_empty(),
        "{} of {n} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
