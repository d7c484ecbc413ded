//! The call log at scale on each backend: seals `N` calls of the gateway benchmark's size,
//! inserts them in batches of 512 (the log writer's batch), then lists the newest 100, counts,
//! and scans every call (metadata and sealed payload) in pages of 10,000 as export and curate do.
//! Prints one Markdown row per backend and step.
//!
//! ```sh
//! cargo run --release -p downshift-store --example store_scale -- N [postgres://…/db]
//! ```
//! With a URL the PostgreSQL database is filled too (it must be empty, or hold only this run's
//! calls: ids are deterministic).

use std::time::Instant;

use downshift_store::{
    CallFilter, CallMeta, CallPayload, CallRecord, Keyring, PgStore, SealedCall, Source,
    SqliteStore, Store,
};

const REQUEST: &[u8] = include_bytes!("../../../bench/gateway/request.json");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let url = args.next();
    let dir = tempfile::tempdir()?;
    let (ring, _) = Keyring::load_or_create(&dir.path().join("keys.json"))?;
    let t0 = Instant::now();
    let calls: Vec<SealedCall> = (0..n)
        .map(|i| {
            let mut meta = CallMeta::new(
                format!("{:08x}-0000-7000-8000-{i:012x}", i / 1000),
                1_700_000_000_000 + i as i64,
                if i % 3 == 0 { "gpt-4o" } else { "gpt-4o-mini" },
                Source::Gateway,
            );
            meta.upstream = Some("default".into());
            meta.latency_us = Some(150);
            meta.prompt_tokens = Some(120);
            meta.completion_tokens = Some(20);
            ring.seal(&CallRecord {
                meta,
                payload: CallPayload {
                    request: REQUEST.to_vec(),
                    response: br#"{"choices":[{"message":{"role":"assistant","content":"ok"}}]}"#
                        .to_vec(),
                },
            })
        })
        .collect::<Result<_, _>>()?;
    eprintln!("sealed {n} calls in {:.1} s", t0.elapsed().as_secs_f64());
    println!("| backend | step | calls | seconds | calls/s |\n|---|---|---|---|---|");
    let sqlite = SqliteStore::open(&dir.path().join("db.sqlite"))?;
    run("sqlite", &sqlite, &calls)?;
    if let Some(url) = url {
        run("postgres", &PgStore::connect(&url)?, &calls)?;
    }
    Ok(())
}

fn run(
    name: &str,
    store: &dyn Store,
    calls: &[SealedCall],
) -> Result<(), Box<dyn std::error::Error>> {
    let row = |step: &str, n: usize, t: Instant| {
        let s = t.elapsed().as_secs_f64();
        println!("| {name} | {step} | {n} | {s:.2} | {:.0} |", n as f64 / s);
    };
    let t = Instant::now();
    let mut inserted = 0;
    for batch in calls.chunks(512) {
        inserted += store.insert_calls(batch)?;
    }
    row("insert (batches of 512, one transaction each)", inserted, t);
    let t = Instant::now();
    let page = store.list_calls(&CallFilter {
        limit: Some(100),
        ..Default::default()
    })?;
    row("list newest 100 (`calls list`)", page.len(), t);
    let t = Instant::now();
    let count = store.count_calls()?;
    row("count", count as usize, t);
    let t = Instant::now();
    let all = store.list_calls(&CallFilter::default())?;
    row(
        "list every call's metadata (`calls list --limit N`)",
        all.len(),
        t,
    );
    drop(all);
    let t = Instant::now();
    let mut scanned = 0;
    let mut filter = CallFilter {
        limit: Some(10_000),
        ..Default::default()
    };
    loop {
        let page = store.scan_calls(&filter)?;
        let Some(last) = page.last() else { break };
        scanned += page.len();
        filter.after = Some((last.meta.ts_ms, last.meta.id.clone()));
    }
    row(
        "scan every sealed call, pages of 10,000 (export, curate)",
        scanned,
        t,
    );
    Ok(())
}
