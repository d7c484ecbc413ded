//! The overview's numbers: every logged call's metadata, reduced to what the charts need and
//! kept in memory between requests. A request reads only the calls logged since the last one
//! (calls are never changed or deleted once stored); when the count says it missed some (an
//! import with older timestamps), everything is read again in the background.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use downshift_store::{CallFilter, CallMeta, FALLBACK_TAG, ROUTE_TAG, Store};

use crate::PriceTable;

/// Who answered a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    /// The LLM (no routing, `off`/`shadow`, or a canary request left to the LLM).
    Llm,
    /// The specialist answered (`downshift_route=specialist`).
    Specialist,
    /// The specialist's answer was refused and the LLM answered (`downshift_fallback`).
    Fallback,
}

impl Route {
    pub fn of(m: &CallMeta) -> Route {
        if m.tags.get(ROUTE_TAG).is_some_and(|r| r == "specialist") {
            Route::Specialist
        } else if m.tags.contains_key(FALLBACK_TAG) {
            Route::Fallback
        } else {
            Route::Llm
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Llm => "llm",
            Route::Specialist => "specialist",
            Route::Fallback => "fallback",
        }
    }
}

/// One call, reduced.
#[derive(Debug, Clone, Copy)]
struct Row {
    ts_ms: i64,
    route: Route,
    latency_us: Option<u64>,
    /// Prompt plus completion tokens (0 without usage).
    tokens: u64,
    /// What the LLM charges for it at the configured prices.
    llm_usd: f64,
}

/// The reduced calls at one moment.
#[derive(Default)]
pub struct Loaded {
    rows: Vec<Row>,
    /// The newest (timestamp, id) loaded.
    last: Option<(i64, String)>,
}

/// The reduced call log, shared by the requests of the overview.
#[derive(Default)]
pub struct CallCache {
    inner: Mutex<Arc<Loaded>>,
    /// A full reload runs in the background.
    reloading: AtomicBool,
}

fn row(m: &CallMeta, prices: &PriceTable) -> Row {
    let (p, c) = (
        m.prompt_tokens.unwrap_or(0),
        m.completion_tokens.unwrap_or(0),
    );
    Row {
        ts_ms: m.ts_ms,
        route: Route::of(m),
        latency_us: m.latency_us,
        tokens: p + c,
        llm_usd: prices.cost(&m.model, p, c),
    }
}

fn newer(m: &CallMeta, last: &(i64, String)) -> bool {
    (m.ts_ms, m.id.as_str()) > (last.0, last.1.as_str())
}

/// Every call, reduced.
fn load_all(store: &dyn Store, prices: &PriceTable) -> downshift_store::Result<Loaded> {
    let all = store.list_calls(&CallFilter::default())?;
    Ok(Loaded {
        last: all.first().map(|m| (m.ts_ms, m.id.clone())),
        rows: all.iter().rev().map(|m| row(m, prices)).collect(),
    })
}

impl CallCache {
    /// The calls as stored now, and how many calls of the log it does not hold yet (blocking:
    /// database reads). The first call reads the whole log; later ones read only the calls
    /// newer than the newest held. When the count says others were added (an import of older
    /// calls), the whole log is read again on a thread of its own and, until it is, the summary
    /// held so far is returned with the number of calls it lacks.
    pub fn refresh(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        prices: &PriceTable,
    ) -> downshift_store::Result<(Arc<Loaded>, u64)> {
        let mut cached = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(last) = cached.last.clone() else {
            let loaded = Arc::new(load_all(store.as_ref(), prices)?);
            *cached = loaded.clone();
            return Ok((loaded, 0));
        };
        let fresh = store.list_calls(&CallFilter {
            since_ms: Some(last.0),
            ..CallFilter::default()
        })?;
        let fresh: Vec<&CallMeta> = fresh.iter().filter(|m| newer(m, &last)).collect();
        // Counted after the read: any call it did not see (older than the newest loaded, or
        // logged since) makes the count larger than what is held.
        let count = store.count_calls()?;
        if !fresh.is_empty() {
            let mut next = Loaded {
                rows: Vec::with_capacity(cached.rows.len() + fresh.len()),
                last: fresh.first().map(|m| (m.ts_ms, m.id.clone())),
            };
            next.rows.extend_from_slice(&cached.rows);
            next.rows.extend(fresh.iter().rev().map(|m| row(m, prices)));
            *cached = Arc::new(next);
        }
        let missing = count.saturating_sub(cached.rows.len() as u64);
        if missing > 0 && !self.reloading.swap(true, Ordering::SeqCst) {
            let (cache, store, prices) = (self.clone(), store.clone(), prices.clone());
            std::thread::spawn(move || {
                match load_all(store.as_ref(), &prices) {
                    Ok(l) => *cache.inner.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "web UI: reloading the call summary failed")
                    }
                }
                cache.reloading.store(false, Ordering::SeqCst);
            });
        }
        Ok((cached.clone(), missing))
    }
}

/// The overview of the calls in `[since_ms, until_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    pub calls: u64,
    pub by_route: BTreeMap<Route, u64>,
    /// Share answered by specialists.
    pub specialist_share: f64,
    /// Every call at the LLM's prices.
    pub usd_without: f64,
    /// LLM calls at the LLM's prices, specialist calls at the specialist's.
    pub usd_with: f64,
    /// Nearest-rank percentiles of the calls' latency (those that have one), ms.
    pub latency_ms: Option<[f64; 3]>,
    /// Bucket start (ms) → calls by route.
    pub buckets: Vec<(i64, [u64; 3])>,
    /// Each bucket's p50 and p95 latency, ms (`None`: no call with a latency).
    pub bucket_latency: Vec<Option<[f64; 2]>>,
}

/// The nearest-rank `p` percentile of sorted `v`: the ⌈p·n⌉-th smallest.
pub fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// Sums the calls in `[since_ms, until_ms)`, and into buckets of `bucket_ms`.
pub fn overview(
    loaded: &Loaded,
    specialist_usd_per_mtok: f64,
    since_ms: i64,
    until_ms: i64,
    bucket_ms: i64,
) -> Overview {
    let bucket_ms = bucket_ms.max(1);
    let first = since_ms.div_euclid(bucket_ms) * bucket_ms;
    let n_buckets = ((until_ms - first + bucket_ms - 1) / bucket_ms).max(0) as usize;
    let mut buckets: Vec<(i64, [u64; 3])> = (0..n_buckets)
        .map(|i| (first + i as i64 * bucket_ms, [0; 3]))
        .collect();
    let mut o = Overview {
        calls: 0,
        by_route: BTreeMap::new(),
        specialist_share: 0.0,
        usd_without: 0.0,
        usd_with: 0.0,
        latency_ms: None,
        buckets: Vec::new(),
        bucket_latency: Vec::new(),
    };
    let mut latencies = Vec::new();
    let mut per_bucket: Vec<Vec<f64>> = vec![Vec::new(); n_buckets];
    // Rows are oldest first: skip to the window.
    let start = loaded.rows.partition_point(|r| r.ts_ms < since_ms);
    for r in loaded.rows[start..]
        .iter()
        .take_while(|r| r.ts_ms < until_ms)
    {
        o.calls += 1;
        *o.by_route.entry(r.route).or_default() += 1;
        o.usd_without += r.llm_usd;
        o.usd_with += match r.route {
            Route::Specialist => r.tokens as f64 * specialist_usd_per_mtok / 1e6,
            _ => r.llm_usd,
        };
        let b = ((r.ts_ms - first) / bucket_ms) as usize;
        if let Some((_, counts)) = buckets.get_mut(b) {
            counts[r.route as usize] += 1;
        }
        if let Some(l) = r.latency_us {
            latencies.push(l as f64 / 1000.0);
            if let Some(v) = per_bucket.get_mut(b) {
                v.push(l as f64 / 1000.0);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    o.latency_ms = match (
        nearest_rank(&latencies, 0.5),
        nearest_rank(&latencies, 0.95),
        nearest_rank(&latencies, 0.99),
    ) {
        (Some(a), Some(b), Some(c)) => Some([a, b, c]),
        _ => None,
    };
    o.specialist_share =
        o.by_route.get(&Route::Specialist).copied().unwrap_or(0) as f64 / o.calls.max(1) as f64;
    o.buckets = buckets;
    o.bucket_latency = per_bucket
        .iter_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            Some([nearest_rank(v, 0.5)?, nearest_rank(v, 0.95)?])
        })
        .collect();
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use downshift_store::{CallPayload, CallRecord, Keyring, Source, SqliteStore};

    fn store_with(
        calls: &[(i64, &str, Option<&str>)],
    ) -> (tempfile::TempDir, SqliteStore, Keyring) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        let (keyring, _) = Keyring::load_or_create(&dir.path().join("key")).unwrap();
        add(&store, &keyring, calls);
        (dir, store, keyring)
    }

    fn add(store: &SqliteStore, keyring: &Keyring, calls: &[(i64, &str, Option<&str>)]) {
        let sealed: Vec<_> = calls
            .iter()
            .map(|(ts, id, route)| {
                let mut meta = CallMeta::new(*id, *ts, "gpt-4o", Source::Import);
                meta.latency_us = Some(*ts as u64 * 1000);
                meta.prompt_tokens = Some(1000);
                meta.completion_tokens = Some(100);
                match route {
                    Some("specialist") => {
                        meta.tags.insert(ROUTE_TAG.into(), "specialist".into());
                    }
                    Some(reason) => {
                        meta.tags.insert(FALLBACK_TAG.into(), (*reason).into());
                    }
                    None => {}
                }
                keyring
                    .seal(&CallRecord {
                        meta,
                        payload: CallPayload::default(),
                    })
                    .unwrap()
            })
            .collect();
        store.insert_calls(&sealed).unwrap();
    }

    #[test]
    fn sums_routes_costs_and_latency_and_follows_new_and_older_calls() {
        let (_d, store, keyring) = store_with(&[
            (1, "a", None),
            (2, "b", Some("specialist")),
            (3, "c", Some("low_confidence")),
            (4, "d", Some("specialist")),
        ]);
        let prices = PriceTable::new([("*".to_owned(), 2.0, 10.0)]);
        // The cache reads through its own handle, as the gateway's admin store.
        let reader: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&_d.path().join("db.sqlite")).unwrap());
        let cache = Arc::new(CallCache::default());
        let view = |since, until, bucket| {
            let (l, missing) = cache.refresh(&reader, &prices).unwrap();
            (overview(&l, 0.1, since, until, bucket), missing)
        };
        let (o, missing) = view(0, 10, 5);
        assert_eq!((o.calls, missing), (4, 0));
        assert_eq!(o.by_route[&Route::Specialist], 2);
        assert_eq!(o.by_route[&Route::Fallback], 1);
        assert_eq!(o.specialist_share, 0.5);
        // 1000 × 2 + 100 × 10 = 3000 µ$ per LLM call.
        assert!((o.usd_without - 4.0 * 0.003).abs() < 1e-12);
        assert!((o.usd_with - (2.0 * 0.003 + 2.0 * 1100.0 * 0.1 / 1e6)).abs() < 1e-12);
        assert_eq!(o.latency_ms, Some([2.0, 4.0, 4.0]));
        assert_eq!(o.buckets, vec![(0, [1, 2, 1]), (5, [0, 0, 0])]);
        assert_eq!(o.bucket_latency, vec![Some([2.0, 4.0]), None]);
        // A newer call is read incrementally…
        add(&store, &keyring, &[(6, "e", None)]);
        let (o, missing) = view(0, 10, 5);
        assert_eq!((o.calls, missing), (5, 0));
        // …an older one (an import) by a reload in the background; until it is done the page
        // is told how many calls the summary lacks.
        add(&store, &keyring, &[(0, "0", None)]);
        let (o, missing) = view(0, 10, 5);
        assert!(
            (o.calls, missing) == (5, 1) || (o.calls, missing) == (6, 0),
            "{missing}"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (o, missing) = view(0, 10, 5);
            if (o.calls, missing) == (6, 0) {
                assert_eq!(o.buckets[0].1, [2, 2, 1]);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the reload never finished"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The window: only calls in [since, until).
        let (o, _) = view(2, 4, 1);
        assert_eq!(o.calls, 2);
        assert_eq!(o.buckets.len(), 2);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(5.0));
        assert_eq!(nearest_rank(&v, 0.95), Some(10.0));
        assert_eq!(nearest_rank(&v, 0.0), Some(1.0));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }
}
