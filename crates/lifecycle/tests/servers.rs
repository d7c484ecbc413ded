//! The in-process gateway and mock teacher the demo runs: a call sent through the gateway is
//! answered by the mock from its recorded traffic, logged in the data directory, and the
//! gateway's lock on that directory is released when it stops.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use std::time::{Duration, Instant};

use downshift_lifecycle::http::{header, post};
use downshift_lifecycle::servers::{GatewayConfig, start_gateway, start_mock};
use downshift_store::{DataDir, StoreConfig};
use serde_json::{Value, json};

#[test]
fn a_call_through_the_in_process_gateway_is_answered_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let request =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Capital of France?"}]});
    let response = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
        "model": "gpt-4o", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "Paris"}}]});
    let replay = dir.path().join("traffic.jsonl");
    std::fs::write(
        &replay,
        format!("{}\n", json!({"request": request, "response": response})),
    )
    .unwrap();
    let data = DataDir::new(&dir.path().join("data"), &StoreConfig::default());

    let teacher = start_mock(&replay).unwrap();
    let gw = start_gateway(&data, GatewayConfig::open_to(teacher.addr)).unwrap();
    assert_ne!(gw.addr.port(), 0);
    let (status, headers, body) = post(
        &gw.addr,
        "/v1/chat/completions",
        request.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Paris");
    assert!(header(&headers, "content-type").is_some_and(|v| v.contains("json")));
    // The call reaches the log (the writer is asynchronous).
    let deadline = Instant::now() + Duration::from_secs(30);
    while data.open_store().unwrap().count_calls().unwrap() < 1 {
        assert!(Instant::now() < deadline, "the call never reached the log");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A second gateway on the same directory is refused while the first runs…
    assert!(start_gateway(&data, GatewayConfig::open_to(teacher.addr)).is_err());
    // …and starts once it has stopped.
    drop(gw);
    let again = start_gateway(&data, GatewayConfig::open_to(teacher.addr)).unwrap();
    let (status, _, _) = post(
        &again.addr,
        "/v1/chat/completions",
        request.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200);
    drop(again);
    drop(teacher);
    assert_eq!(data.open_store().unwrap().count_calls().unwrap(), 2);
}

#[test]
fn a_missing_replay_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = start_mock(&dir.path().join("none.jsonl"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot read replay file"), "{err}");
}
