//! One system prompt used for two jobs is split by the MiniLM embeddings; the same prompt used
//! for one job is not. The model must be present (`scripts/fetch.sh minilm`).
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use std::path::Path;

use downshift_discover::embed::Embedder;
use downshift_discover::{CallInput, DiscoverParams, discover};
use serde_json::json;

fn call(id: usize, user: &str, answer: &str) -> CallInput {
    CallInput {
        id: format!("c{id:03}"),
        model: "gpt-4o".into(),
        request: json!({"messages": [
            {"role": "system", "content": "You are a helpful assistant for ACME Corp."},
            {"role": "user", "content": user}]}),
        response: json!({"choices": [{"message": {"role": "assistant", "content": answer}}]}),
        prompt_tokens: None,
        completion_tokens: None,
    }
}

const TRANSLATE: &[&str] = &[
    "Translate into German: where is the train station?",
    "Translate to German please: I would like a cup of coffee.",
    "German translation of: the meeting starts at ten.",
    "Translate into German: my suitcase has not arrived.",
    "How do you say 'thank you for your help' in German?",
    "Translate to German: we need two rooms for tonight.",
    "Please translate into German: the invoice is attached.",
    "Translate this sentence to German: the shop closes early today.",
    "Translate into German: can you call me back tomorrow?",
    "German please: the package was delivered to the wrong address.",
    "Translate to German: I am allergic to peanuts.",
    "Translate into German: the printer on the second floor is broken.",
];

const SENTIMENT: &[&str] = &[
    "Is this review positive or negative? The food was cold and the waiter rude.",
    "Sentiment of this review: absolutely loved the hotel, spotless rooms!",
    "Classify the sentiment: the delivery was late again, very disappointed.",
    "Positive or negative? Great battery life, I would buy it again.",
    "What is the sentiment of: terrible support, nobody answered my emails.",
    "Classify this customer review: fantastic value for the price.",
    "Review sentiment please: the app keeps crashing, waste of money.",
    "Is the following feedback positive or negative: friendly staff, quick check-in.",
    "Sentiment: the shoes fell apart after a week.",
    "Classify the sentiment of this comment: best pizza in town, hands down.",
    "Positive or negative review? Noisy room and the heating did not work.",
    "What's the sentiment here: smooth purchase and fast shipping, thanks!",
];

fn embedder() -> Embedder {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-minilm-l6-v2");
    Embedder::load(&dir).unwrap_or_else(|e| {
        panic!("all-MiniLM-L6-v2 is required (run `scripts/fetch.sh minilm` first): {e}")
    })
}

#[test]
fn a_prompt_used_for_two_jobs_is_split_and_one_job_is_not() {
    let e = embedder();
    let mut calls = Vec::new();
    for (t, s) in TRANSLATE.iter().zip(SENTIMENT) {
        calls.push(call(calls.len(), t, "Wo ist der Bahnhof?"));
        calls.push(call(calls.len(), s, "negative"));
    }
    let params = DiscoverParams {
        min_cluster_size: 5,
        ..DiscoverParams::default()
    };
    let d = discover(&calls, &params, &e, &[], 0).unwrap();
    assert_eq!(d.stats.groups_split, 1, "{:#?}", d.stats);
    assert_eq!(d.tasks.len(), 2);
    let translate = d.assignments[0].expect("translation calls form a task");
    let sentiment = d.assignments[1].expect("sentiment calls form a task");
    assert_ne!(translate, sentiment);
    let agree = (0..calls.len())
        .filter(|&i| d.assignments[i] == Some(if i % 2 == 0 { translate } else { sentiment }))
        .count();
    assert!(
        agree >= 22,
        "{agree} of 24 calls in their job's task: {:?}",
        d.assignments
    );
    assert!(
        d.tasks[translate].label.contains("german"),
        "{}",
        d.tasks[translate].label
    );

    // The translation calls alone: one job, one task, nothing split.
    let one: Vec<CallInput> = calls.iter().step_by(2).cloned().collect();
    let d = discover(&one, &params, &e, &[], 0).unwrap();
    assert_eq!(d.stats.groups_split, 0);
    assert_eq!(d.tasks.len(), 1);
    assert_eq!(d.stats.noise, 0);
}
