//! Property tests over every parser a stranger's bytes reach through the gateway: the request
//! view, the SSE parser, the stream assembler, the import line parser and the `[server]` /
//! `[store]` configuration. Inputs are random bytes, random JSON, and random mutations of valid
//! inputs (seeded: a failure reproduces). Properties: no panic; the SSE parser and the stream
//! assembler give the same result however the bytes are split into chunks.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use downshift_api::{ImportFormat, RequestView, SseParser, StreamAssembler, parse_import_line};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const CASES: usize = 5_000;

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    let pick = if depth == 0 {
        rng.gen_range(0..4)
    } else {
        rng.gen_range(0..6)
    };
    match pick {
        0 => Value::Null,
        1 => json!(rng.r#gen::<bool>()),
        2 => match rng.gen_range(0..3) {
            0 => json!(rng.r#gen::<i64>()),
            1 => json!(rng.r#gen::<f64>() * 1e12),
            _ => json!(rng.r#gen::<u64>()),
        },
        3 => {
            let words = [
                "model", "messages", "role", "user", "", "é", "\u{0}", "stream", "{",
            ];
            json!(words[rng.gen_range(0..words.len())])
        }
        4 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "model",
                "messages",
                "stream",
                "stream_options",
                "include_usage",
                "request",
                "response",
                "choices",
                "metadata",
                "timestamp",
                "workload_id",
                "client_id",
                "role",
                "content",
                "tool_calls",
                "delta",
                "index",
                "usage",
            ];
            let mut m = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..5) {
                let k = keys[rng.gen_range(0..keys.len())];
                m.insert(k.to_owned(), random_json(rng, depth - 1));
            }
            Value::Object(m)
        }
    }
}

/// A random edit of `seed`: flipped bytes, a cut, an insertion of a structural character.
fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        if v.is_empty() {
            v.push(rng.r#gen());
            continue;
        }
        let i = rng.gen_range(0..v.len());
        match rng.gen_range(0..4) {
            0 => v[i] = rng.r#gen(),
            1 => v.truncate(i),
            2 => {
                let specials = b"{}[]\":,\\\n\r\xff\x00";
                v.insert(i, specials[rng.gen_range(0..specials.len())]);
            }
            _ => {
                let j = rng.gen_range(i..v.len());
                v.drain(i..j);
            }
        }
    }
    v
}

fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    (0..rng.gen_range(0..200)).map(|_| rng.r#gen()).collect()
}

/// Random inputs for one parser: raw bytes, random JSON, and mutations of the seeds.
fn inputs(rng: &mut StdRng, seeds: &[&[u8]]) -> Vec<u8> {
    match rng.gen_range(0..3) {
        0 => random_bytes(rng),
        1 => serde_json::to_vec(&random_json(rng, 4)).unwrap_or_default(),
        _ => {
            let seed = seeds[rng.gen_range(0..seeds.len())];
            mutate(rng, seed)
        }
    }
}

#[test]
fn the_request_view_never_panics() {
    let mut rng = StdRng::seed_from_u64(1);
    let seeds: [&[u8]; 2] = [
        br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#,
        br#"{"model":"local/x:y","stream":false}"#,
    ];
    let mut ok = 0;
    for _ in 0..CASES {
        let body = inputs(&mut rng, &seeds);
        if let Ok(v) = RequestView::parse(&body) {
            assert!(!v.model.is_empty());
            ok += 1;
        }
    }
    assert!(
        ok > 0,
        "no input parsed: the generator is too far from real requests"
    );
}

#[test]
fn the_import_line_parser_never_panics() {
    let mut rng = StdRng::seed_from_u64(2);
    let seeds: [&[u8]; 2] = [
        br#"{"request":{"model":"m","messages":[{"role":"user","content":"a"}]},"response":{"choices":[{"message":{"role":"assistant","content":"b"}}]},"metadata":{"k":"v"},"timestamp":"2025-01-01T00:00:00Z"}"#,
        br#"{"timestamp":1735689600,"workload_id":"w","client_id":"c","request":{"messages":[{"role":"user","content":"x"}]},"response":{"model":"m","choices":[]}}"#,
    ];
    for _ in 0..CASES {
        let bytes = inputs(&mut rng, &seeds);
        let line = String::from_utf8_lossy(&bytes);
        for format in [
            ImportFormat::Auto,
            ImportFormat::OpenAi,
            ImportFormat::Flywheel,
        ] {
            if let Ok(r) = parse_import_line(&line, format) {
                // Whatever was accepted has the promised shape.
                assert!(r.request["messages"].is_array(), "{line}");
            }
        }
    }
}

fn sse_events(body: &[u8], cuts: &[usize]) -> (Vec<String>, bool) {
    let mut p = SseParser::new();
    let mut events = Vec::new();
    let mut at = 0;
    for &c in cuts {
        events.extend(p.feed(&body[at..c]));
        at = c;
    }
    events.extend(p.feed(&body[at..]));
    (events, p.has_partial())
}

fn random_cuts(rng: &mut StdRng, len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..rng.gen_range(0..6))
        .map(|_| rng.gen_range(0..=len))
        .collect();
    cuts.sort_unstable();
    cuts
}

#[test]
fn the_sse_parser_gives_the_same_events_however_the_bytes_are_split() {
    let mut rng = StdRng::seed_from_u64(3);
    let seeds: [&[u8]; 2] = [
        b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n: comment\r\ndata: x\r\n\r\ndata: [DONE]\n\n",
        b"event: e\nid: 1\ndata: one\ndata: two\n\nretry: 5\n\n",
    ];
    for _ in 0..CASES {
        let body = inputs(&mut rng, &seeds);
        let whole = sse_events(&body, &[]);
        let cuts = random_cuts(&mut rng, body.len());
        assert_eq!(
            sse_events(&body, &cuts),
            whole,
            "{:?} split at {cuts:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn the_stream_assembler_gives_the_same_answer_however_the_bytes_are_split() {
    let mut rng = StdRng::seed_from_u64(4);
    let seeds: [&[u8]; 2] = [
        b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"t\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
        b"data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: {\"error\":{\"message\":\"m\"}}\n\n",
    ];
    for _ in 0..CASES {
        let body = inputs(&mut rng, &seeds);
        // Events built from random JSON reach the assembler's field handling too.
        let mut events = body.clone();
        if rng.gen_bool(0.5) {
            events = format!("data: {}\n\n", random_json(&mut rng, 4)).into_bytes();
        }
        let assemble = |cuts: &[usize]| {
            let mut a = StreamAssembler::new();
            let mut at = 0;
            for &c in cuts {
                a.feed(&events[at..c]);
                at = c;
            }
            a.feed(&events[at..]);
            (a.finish(), a.is_complete(), a.has_output(), a.counts())
        };
        let whole = assemble(&[]);
        let cuts = random_cuts(&mut rng, events.len());
        assert_eq!(assemble(&cuts), whole, "split at {cuts:?}");
    }
}

#[test]
fn server_and_store_configuration_never_panics() {
    let mut rng = StdRng::seed_from_u64(5);
    let keys = [
        "listen",
        "max_body_bytes",
        "require_auth",
        "header_read_timeout_ms",
        "body_read_timeout_ms",
        "idle_timeout_ms",
        "max_connections",
        "worker_threads",
        "queue_capacity",
        "batch_max",
        "journal",
        "journal_sync_ms",
        "request_busy_timeout_ms",
        "bogus",
    ];
    let mut accepted = 0;
    for _ in 0..CASES {
        let mut m = serde_json::Map::new();
        for _ in 0..rng.gen_range(0..4) {
            let k = keys[rng.gen_range(0..keys.len())];
            m.insert(k.to_owned(), random_json(&mut rng, 1));
        }
        let v = Value::Object(m);
        if serde_json::from_value::<downshift_gateway::ServerConfig>(v.clone()).is_ok() {
            accepted += 1;
        }
        let _ = serde_json::from_value::<downshift_store::StoreConfig>(v);
    }
    assert!(accepted > 0);
}
