//! Gemma 3 270M (Q4_K_M GGUF, SentencePiece vocabulary of 262k) against llama.cpp fixtures
//! written by `bench/slm/make_gemma_fixtures.py`: token ids, the chat template's rendering and
//! greedy decoding. Each test skips with a note when the model is not fetched
//! (`scripts/fetch.sh gemma3`).
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod common;

use std::sync::OnceLock;

use downshift_slm::{AdapterSel, Gguf, KvDtype, LocalModel, Logits, Tokenizer};

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
    for v in common::fixture_lines("tokenizer_gemma3.jsonl") {
        let text = v["text"].as_str().expect("text");
        for (key, special) in [("ids", true), ("ids_no_special", false)] {
            let got = tok.encode(text, true, special);
            if got != common::ids(&v[key]) {
                failures.push(format!(
                    "({key}) {text:?}\n  got  {got:?}\n  want {:?}",
                    common::ids(&v[key])
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

fn model() -> Option<&'static LocalModel> {
    static M: OnceLock<Option<LocalModel>> = OnceLock::new();
    M.get_or_init(|| Some(LocalModel::load(common::gemma3_path()?).expect("load Gemma 3")))
        .as_ref()
}

#[test]
fn chat_template_renders_as_gemma_does() {
    let Some(m) = model() else { return };
    for fx in common::fixture_lines("greedy_gemma3.jsonl") {
        let msgs = serde_json::to_string(&fx["messages"]).expect("json");
        let prompt = m.template.render_json(&msgs, None, true).expect("render");
        assert_eq!(prompt, fx["prompt"].as_str().expect("prompt"));
        assert_eq!(m.tokenize(&prompt), common::ids(&fx["prompt_ids"]));
    }
    // tools: listed before the first user text, calls and results in downshift's tags
    let msgs = r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"Weather in Paris?"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c0","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},
        {"role":"tool","tool_call_id":"c0","content":"18C"}]"#;
    let tools =
        r#"[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]"#;
    let p = m
        .template
        .render_json(msgs, Some(tools), true)
        .expect("render");
    assert!(
        p.starts_with("<start_of_turn>user\nBe brief.\n\n# Tools\n"),
        "{p}"
    );
    assert!(p.contains("\"name\": \"get_weather\""), "{p}");
    assert!(p.contains("Weather in Paris?<end_of_turn>\n<start_of_turn>model\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><end_of_turn>\n"), "{p}");
    assert!(p.ends_with("<start_of_turn>user\n<tool_response>\n18C\n</tool_response><end_of_turn>\n<start_of_turn>model\n"), "{p}");
    assert!(m.template.supports_tools());
    assert_eq!(m.template.end_of_turn(), "<end_of_turn>");
}

/// Logit gap below which two tokens count as tied. Q4_K dot products summed in another order
/// than llama.cpp's move this model's logits by a few tenths, as for SmolLM2.
const NEAR_TIE: f32 = 0.5;

/// The most a top-5 logit, relative to llama.cpp's top one, may differ from llama.cpp's.
const MAX_RELATIVE_DEVIATION: f32 = 1.5;

#[test]
fn greedy_matches_llama_cpp_up_to_near_ties() {
    let Some(m) = model() else { return };
    let mut report = Vec::new();
    let (mut full_matches, mut compared, mut prompts) = (0, 0, 0);
    let mut max_dev = 0f32;
    for (n, fx) in common::fixture_lines("greedy_gemma3.jsonl")
        .iter()
        .enumerate()
    {
        prompts += 1;
        let prompt = common::ids(&fx["prompt_ids"]);
        let want = common::ids(&fx["tokens"]);
        let top = common::top_logits(&fx["top"]);
        let mut cache = m
            .model
            .new_cache(prompt.len() + want.len() + 1, KvDtype::F16);
        let mut logits = m
            .model
            .forward(&prompt, &mut cache, AdapterSel::None, Logits::Last)
            .expect("prefill");
        let mut diverged = false;
        for (i, &w) in want.iter().enumerate() {
            let l: Vec<f32> = logits.flatten_all().expect("flat").to_vec1().expect("vec");
            // logits relative to llama.cpp's top token (what decides greedy; a shift common to
            // every logit changes no probability)
            let (best, best_ref) = (l[top[i][0].0 as usize], top[i][0].1);
            for &(id, ref_logit) in &top[i][1..] {
                let d = ((l[id as usize] - best) - (ref_logit - best_ref)).abs();
                assert!(
                    d < MAX_RELATIVE_DEVIATION,
                    "prompt {n} step {i}: logit of {id} relative to {} is {} vs llama.cpp {}",
                    top[i][0].0,
                    l[id as usize] - best,
                    ref_logit - best_ref
                );
                max_dev = max_dev.max(d);
            }
            let got = l
                .iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |b, (j, &v)| {
                    if v > b.1 { (j, v) } else { b }
                })
                .0 as u32;
            compared += 1;
            if got != w {
                // llama.cpp's gap between its choice and ours; when ours is not in its top 5,
                // at least its top-1 − top-5 spread
                let ref_ours = top[i].iter().find(|e| e.0 == got).map(|e| e.1);
                let spread = top[i][0].1 - top[i][top[i].len() - 1].1;
                let ours = l[got as usize] - l[w as usize];
                let near = match ref_ours {
                    Some(r) => top[i][0].1 - r < NEAR_TIE,
                    None => spread < NEAR_TIE && ours < NEAR_TIE,
                };
                report.push(format!(
                    "prompt {n} token {i}: llama.cpp {w} {:?}, ours {got} {:?}; llama.cpp gap {}, our gap {ours:.3}",
                    m.tokenizer.decode(&[w], true),
                    m.tokenizer.decode(&[got], true),
                    match ref_ours {
                        Some(r) => format!("{:.3}", top[i][0].1 - r),
                        None => format!("> {spread:.3} (not in its top 5)"),
                    },
                ));
                assert!(near, "divergence not at a near-tie:\n{}", report.join("\n"));
                diverged = true;
            }
            // teacher-forced: llama.cpp's token goes on, so every step is compared
            if i + 1 < want.len() {
                logits = m
                    .model
                    .forward(&[w], &mut cache, AdapterSel::None, Logits::Last)
                    .expect("decode");
            }
        }
        if !diverged {
            full_matches += 1;
        }
    }
    assert!(prompts >= 8, "only {prompts} prompts in the fixture");
    eprintln!(
        "Gemma 3 greedy parity: {full_matches}/{prompts} prompts identical to llama.cpp, {compared} tokens compared (teacher-forced), {} near-tie divergences",
        report.len()
    );
    eprintln!("  largest deviation of a top-5 logit relative to the top one: {max_dev:.3}");
    for r in &report {
        eprintln!("  near-tie: {r}");
    }
}
