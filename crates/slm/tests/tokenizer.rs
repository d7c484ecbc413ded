//! Tokenizer parity with llama.cpp on SmolLM2's GGUF vocabulary.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod common;

use downshift_slm::{Gguf, Tokenizer};

fn load() -> Tokenizer {
    let g = Gguf::open(common::smollm2_path()).expect("open model");
    Tokenizer::from_gguf(&g).expect("tokenizer")
}

#[test]
fn matches_llama_cpp_fixture() {
    let tok = load();
    let fx = std::fs::read_to_string(common::fixture("tokenizer_smollm2.jsonl")).expect("fixture");
    let mut n = 0;
    let mut failures = Vec::new();
    for line in fx.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let text = v["text"].as_str().expect("text");
        let ids = |k: &str| -> Vec<u32> {
            v[k].as_array()
                .expect("ids")
                .iter()
                .map(|x| x.as_u64().expect("id") as u32)
                .collect()
        };
        let got = tok.encode(text, true, true);
        if got != ids("ids") {
            failures.push(format!("{text:?}\n  got  {got:?}\n  want {:?}", ids("ids")));
        }
        let got = tok.encode(text, true, false);
        if got != ids("ids_no_special") {
            failures.push(format!(
                "(no special) {text:?}\n  got  {got:?}\n  want {:?}",
                ids("ids_no_special")
            ));
        }
        n += 1;
    }
    assert!(n >= 200, "fixture has only {n} strings");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn decode_round_trips() {
    let tok = load();
    for s in [
        "Hello world",
        "naïve café 😀 日本語",
        "  spaces\n\n\ttabs",
        "{\"a\": [1, 2]}",
    ] {
        let ids = tok.encode(s, false, false);
        assert_eq!(tok.decode(&ids, false), s);
    }
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", false, true);
    assert_eq!(ids[0], 1);
    assert_eq!(tok.decode(&ids, true), "<|im_start|>user\nHi<|im_end|>");
    assert_eq!(tok.decode(&ids, false), "user\nHi");
    assert!(tok.is_eog(2));
}

#[test]
fn stream_decoder_holds_partial_characters() {
    let tok = load();
    let ids = tok.encode("😀 ok", false, false);
    let mut d = downshift_slm::StreamDecoder::new();
    let mut s = String::new();
    for &i in &ids {
        s.push_str(&d.push(&tok, i, false));
    }
    s.push_str(&d.finish());
    assert_eq!(s, "😀 ok");
}
