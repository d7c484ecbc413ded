//! Gemma 3 270M (Q4_K_M GGUF, SentencePiece vocabulary of 262k) against llama.cpp fixtures
//! written by `bench/slm/make_gemma_fixtures.py`: token ids, the chat template's rendering and
//! greedy decoding. Each test skips with a note when the model is not fetched
//! (`scripts/fetch.sh gemma3`).
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod common;

use std::sync::OnceLock;

use downshift_slm::{Gguf, Tokenizer};

fn fixture_lines(name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(common::fixture(name))
        .expect("fixture")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn tokenizer() -> Option<&'static Tokenizer> {
    static T: OnceLock<Option<Tokenizer>> = OnceLock::new();
    T.get_or_init(|| {
        let p = common::gemma3_path()?;
        let g = Gguf::open(&p).expect("open Gemma 3 GGUF");
        Some(Tokenizer::from_gguf(&g).expect("Gemma 3 tokenizer"))
    })
    .as_ref()
}

#[test]
fn tokenizer_matches_llama_cpp_on_every_fixture_string() {
    let Some(tok) = tokenizer() else { return };
    let mut n = 0;
    let mut failures = Vec::new();
    for v in fixture_lines("tokenizer_gemma3.jsonl") {
        let text = v["text"].as_str().expect("text");
        for (key, special) in [("ids", true), ("ids_no_special", false)] {
            let got = tok.encode(text, true, special);
            if got != ids(&v[key]) {
                failures.push(format!(
                    "({key}) {text:?}\n  got  {got:?}\n  want {:?}",
                    ids(&v[key])
                ));
            }
        }
        n += 1;
    }
    assert!(n >= 200, "fixture has only {n} strings");
    assert!(
        failures.is_empty(),
        "{} of {} encodings differ from llama.cpp:\n{}",
        failures.len(),
        2 * n,
        failures.join("\n")
    );
    eprintln!("Gemma 3 tokenizer: {n} strings × 2 modes identical to llama.cpp");
}

#[test]
fn tokenizer_decodes_what_it_encodes() {
    let Some(tok) = tokenizer() else { return };
    for s in [
        "Hello world",
        "  two spaces, a\ttab and\nnewlines\n\n",
        "naïve café 😀 日本語",
        "\x01 control bytes \x7f",
        "{\"a\": [1, 2]}",
    ] {
        let ids = tok.encode(s, false, false);
        assert_eq!(tok.decode(&ids, false), s);
    }
    // U+2581 in the text is SentencePiece's space marker: it decodes as a space (as in llama.cpp)
    let ids = tok.encode("a\u{2581}b c", false, false);
    assert_eq!(tok.decode(&ids, false), "a b c");
    let ids = tok.encode("<start_of_turn>user\nHi<end_of_turn>\n", true, true);
    assert_eq!(ids[0], tok.bos.expect("bos"));
    assert_eq!(
        tok.decode(&ids, true),
        "<bos><start_of_turn>user\nHi<end_of_turn>\n"
    );
    assert_eq!(tok.decode(&ids, false), "user\nHi\n");
    let eot = tok.token_id("<end_of_turn>").expect("<end_of_turn>");
    assert!(tok.is_eog(eot) && tok.is_eog(tok.eos.expect("eos")));
}
