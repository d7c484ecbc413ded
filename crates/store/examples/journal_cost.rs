//! What journaling a call record costs the thread that serves the call: seals and journals `N`
//! records of the gateway benchmark's size through a [`LogWriter`], writing the journal once
//! every `BATCH` records (as the gateway does once per event-loop turn), and prints the time
//! per record on the calling thread. Run it under `valgrind --tool=callgrind` for instruction
//! counts, which do not depend on what else the machine is doing (build it without
//! `-C target-cpu=native`: valgrind does not know AVX-512).
//!
//! ```sh
//! cargo run --release -p downshift-store --example journal_cost -- [N] [BATCH] [on|off]
//! ```

use std::sync::{Arc, RwLock};
use std::time::Instant;

use downshift_store::{
    CallMeta, CallPayload, CallRecord, Keyring, LogWriter, Source, SqliteStore, WriterConfig,
};

const REQUEST: &[u8] = include_bytes!("../../../bench/gateway/request.json");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let batch: usize = args.next().map_or(Ok(1), |a| a.parse())?;
    let journal = args.next().is_none_or(|a| a != "off");
    let dir = tempfile::tempdir()?;
    let (ring, _) = Keyring::load_or_create(&dir.path().join("keys.json"))?;
    let store = SqliteStore::open(&dir.path().join("db.sqlite"))?;
    let journal_dir = dir.path().join("journal");
    let w = LogWriter::start(
        Box::new(store),
        Arc::new(RwLock::new(ring)),
        WriterConfig::new(&dir.path().join("spill"), journal.then_some(&*journal_dir)),
    );
    // An answer of the mock upstream's size for the benchmark's request.
    let response = format!(
        "{{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":0,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{{\"id\":\"call_1\",\"type\":\"function\",\"function\":{{\"name\":\"get_weather\",\"arguments\":\"{{\\\"city\\\":\\\"Paris\\\"}}\"}}}}]}},\"finish_reason\":\"tool_calls\"}}],\"usage\":{{\"prompt_tokens\":120,\"completion_tokens\":20,\"total_tokens\":140}}}}{}",
        " ".repeat(200)
    );
    let start = Instant::now();
    for i in 0..n {
        let mut meta = CallMeta::new(uuid_like(i), 1_700_000_000_000, "gpt-4o", Source::Gateway);
        meta.upstream = Some("default".into());
        meta.latency_us = Some(150);
        let ticket = w.log(CallRecord {
            meta,
            payload: CallPayload {
                request: REQUEST.to_vec(),
                response: response.as_bytes().to_vec(),
            },
        });
        if (i + 1) % batch.max(1) == 0 {
            w.journal_through(ticket);
        }
    }
    w.journal_through(w.last_ticket());
    let serving = start.elapsed();
    w.shutdown();
    let s = w.stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{n} records, journal {}, batch {batch}: {:.2} µs per record on the calling thread; \
         {} journal writes, {} written to the store, {} spilled, {} lost",
        if journal { "on" } else { "off" },
        serving.as_secs_f64() * 1e6 / n as f64,
        load(&s.journal_writes),
        load(&s.written),
        load(&s.spilled),
        load(&s.lost),
    );
    Ok(())
}

/// A call id of the gateway's shape (a UUID's length), distinct per record.
fn uuid_like(i: usize) -> String {
    format!("0190b2c4-0000-7000-8000-{i:012}")
}
