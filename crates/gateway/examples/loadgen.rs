//! A small HTTP/1.1 load generator for the gateway benchmark (`bench/gateway/run.sh`).
//!
//! Two modes, both over kept-alive connections with TCP_NODELAY:
//! * closed loop (`--connections C`): C connections each send the next request as soon as the
//!   previous answer arrived — the saturation throughput;
//! * open loop (`--rate R`): requests start on a fixed schedule of R per second whatever the
//!   answers do; latency is measured per request.
//!
//! Prints one JSON object: requests, errors, elapsed, rps, and latency percentiles in µs.
//! With `--ids FILE`, also writes the `x-downshift-call-id` of every successful answer to FILE
//! (one a line): the fault suite checks each of them is in the log after a `kill -9`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

struct Args {
    url: String,
    body: Bytes,
    headers: Vec<(String, String)>,
    connections: usize,
    rate: Option<u64>,
    duration: Duration,
    warmup: Duration,
    ids: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        body: Bytes::new(),
        headers: vec![],
        connections: 16,
        rate: None,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        ids: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val()?,
            "--body" => {
                let path = val()?;
                a.body = std::fs::read(&path)
                    .map_err(|e| format!("{path}: {e}"))?
                    .into();
            }
            "--header" => {
                let h = val()?;
                let (k, v) = h.split_once(':').ok_or("--header K:V")?;
                a.headers.push((k.trim().into(), v.trim().into()));
            }
            "--connections" => a.connections = val()?.parse().map_err(|e| format!("{e}"))?,
            "--rate" => a.rate = Some(val()?.parse().map_err(|e| format!("{e}"))?),
            "--duration" => {
                a.duration = Duration::from_secs_f64(val()?.parse().map_err(|e| format!("{e}"))?)
            }
            "--warmup" => {
                a.warmup = Duration::from_secs_f64(val()?.parse().map_err(|e| format!("{e}"))?)
            }
            "--ids" => a.ids = Some(val()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.url.is_empty() {
        return Err("--url is required".into());
    }
    Ok(a)
}

type C = Client<HttpConnector, Full<Bytes>>;

async fn one(client: &C, a: &Args) -> Result<Option<String>, String> {
    let mut req = hyper::Request::post(&a.url).header("content-type", "application/json");
    for (k, v) in &a.headers {
        req = req.header(k, v);
    }
    let req = req
        .body(Full::new(a.body.clone()))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let id = resp
        .headers()
        .get("x-downshift-call-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(id)
    } else {
        Err(format!("status {status}"))
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[derive(Default)]
struct Tally {
    latencies: Vec<u64>,
    ids: Vec<String>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn add(&mut self, r: Result<(u64, Option<String>), String>) {
        match r {
            Ok((l, id)) => {
                self.latencies.push(l);
                self.ids.extend(id);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.ids.extend(other.ids);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

async fn timed(client: &C, a: &Args) -> Result<(u64, Option<String>), String> {
    let t = Instant::now();
    one(client, a)
        .await
        .map(|id| (t.elapsed().as_micros() as u64, id))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    // One thread: the load generator shares the machine with what it measures.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2)
        }
    };
    rt.block_on(async move {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client: C = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build(http);
        // Warm-up: open connections, fill caches.
        let warm_end = Instant::now() + args.warmup;
        while Instant::now() < warm_end {
            let _ = one(&client, &args).await;
        }
        let mut tally = Tally::default();
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        match args.rate {
            None => {
                for _ in 0..args.connections {
                    let client = client.clone();
                    let args = args.clone();
                    set.spawn(async move {
                        let mut t = Tally::default();
                        let end = start + args.duration;
                        while Instant::now() < end {
                            t.add(timed(&client, &args).await);
                        }
                        t
                    });
                }
            }
            Some(rate) => {
                let total = (rate as f64 * args.duration.as_secs_f64()) as u64;
                let interval = Duration::from_secs_f64(1.0 / rate as f64);
                for i in 0..total {
                    tokio::time::sleep_until((start + interval * i as u32).into()).await;
                    let client = client.clone();
                    let args = args.clone();
                    set.spawn(async move {
                        let mut t = Tally::default();
                        t.add(timed(&client, &args).await);
                        t
                    });
                    while let Some(done) = set.try_join_next() {
                        tally.merge(done.unwrap_or_default());
                    }
                }
            }
        }
        while let Some(done) = set.join_next().await {
            tally.merge(done.unwrap_or_default());
        }
        let elapsed = start.elapsed().as_secs_f64();
        if let Some(path) = &args.ids {
            let text: String = tally.ids.iter().map(|id| format!("{id}\n")).collect();
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("loadgen: {path}: {e}");
            }
        }
        let mut l = tally.latencies;
        l.sort_unstable();
        let out = serde_json::json!({
            "requests": l.len(),
            "errors": tally.errors,
            "first_error": tally.first_error,
            "elapsed_s": elapsed,
            "rps": l.len() as f64 / elapsed,
            "p50_us": percentile(&l, 0.50),
            "p90_us": percentile(&l, 0.90),
            "p99_us": percentile(&l, 0.99),
            "p999_us": percentile(&l, 0.999),
            "max_us": l.last().copied().unwrap_or(0),
        });
        println!("{out}");
    });
}
