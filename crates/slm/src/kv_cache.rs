//! The key/value cache of one sequence: per layer, keys and values position-major in f16 (like
//! llama.cpp's default) or f32.

use half::f16;

use crate::config::LlamaConfig;

/// Precision of the key/value cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvDtype {
    /// Half the memory; rounds like llama.cpp's default f16 cache.
    #[default]
    F16,
    /// Exact (used for parity checks against f32 references).
    F32,
}

#[derive(Clone, Debug)]
pub(crate) enum KvData {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

impl KvData {
    pub(crate) fn new(dtype: KvDtype) -> Self {
        match dtype {
            KvDtype::F16 => KvData::F16(Vec::new()),
            KvDtype::F32 => KvData::F32(Vec::new()),
        }
    }

    pub(crate) fn push(&mut self, xs: &[f32]) {
        match self {
            KvData::F16(v) => v.extend(xs.iter().map(|&x| f16::from_f32(x))),
            KvData::F32(v) => v.extend_from_slice(xs),
        }
    }

    pub(crate) fn truncate(&mut self, n: usize) {
        match self {
            KvData::F16(v) => v.truncate(n),
            KvData::F32(v) => v.truncate(n),
        }
    }

    /// Forgets the first `n` values.
    pub(crate) fn drain_front(&mut self, n: usize) {
        match self {
            KvData::F16(v) => drop(v.drain(..n.min(v.len()))),
            KvData::F32(v) => drop(v.drain(..n.min(v.len()))),
        }
    }
}

/// Keys and values of one layer, position-major: `[pos, kv_head, head_dim]`, from position
/// `dropped` on: a sliding-window layer lets go of the positions no later query can see, so
/// it holds at most about twice its window however long the sequence grows.
#[derive(Clone, Debug)]
pub struct LayerKv {
    pub(crate) k: KvData,
    pub(crate) v: KvData,
    pub(crate) dropped: usize,
    /// The window of the layer that let go of positions (0 until one does).
    pub(crate) window: usize,
}

impl LayerKv {
    /// Lets go of the positions before `keep_from` once at least `window` of them can go (so
    /// the copy is paid once per `window` positions). `row`: values per position.
    pub(crate) fn drop_before(&mut self, keep_from: usize, window: usize, row: usize) {
        self.window = window;
        if keep_from >= self.dropped + window.max(1) {
            let n = (keep_from - self.dropped) * row;
            self.k.drain_front(n);
            self.v.drain_front(n);
            self.dropped = keep_from;
        }
    }
}

/// The key/value cache of one sequence.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) len: usize,
    pub(crate) max_len: usize,
    pub(crate) row: usize,
    pub(crate) dtype: KvDtype,
}

impl KvCache {
    /// An empty cache for `cfg`'s layers with room for `max_len` positions, stored as `dtype`.
    pub fn new(cfg: &LlamaConfig, max_len: usize, dtype: KvDtype) -> Self {
        Self {
            layers: (0..cfg.num_layers)
                .map(|_| LayerKv {
                    k: KvData::new(dtype),
                    v: KvData::new(dtype),
                    dropped: 0,
                    window: 0,
                })
                .collect(),
            len: 0,
            max_len,
            row: cfg.num_kv_heads * cfg.head_dim,
            dtype,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no position.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions this cache accepts.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Precision of the stored keys and values.
    pub fn dtype(&self) -> KvDtype {
        self.dtype
    }

    /// Positions layer `layer` holds (fewer than [`KvCache::len`] on a sliding-window layer
    /// that has let go of old ones).
    pub fn held(&self, layer: usize) -> usize {
        self.layers
            .get(layer)
            .map_or(0, |l| self.len.saturating_sub(l.dropped))
    }

    /// Forgets positions from `n` on (to reuse a shared prompt prefix, or to undo a failed
    /// pass). Positions a sliding-window layer has let go of cannot come back: truncating to
    /// before them empties the cache.
    pub fn truncate(&mut self, n: usize) {
        let mut n = n.min(self.len);
        // a query at position n sees n + 1 - window on
        if self
            .layers
            .iter()
            .any(|l| l.dropped > 0 && l.dropped + l.window > n + 1)
        {
            n = 0;
        }
        for l in &mut self.layers {
            if n == 0 {
                l.dropped = 0;
            }
            l.k.truncate((n - l.dropped) * self.row);
            l.v.truncate((n - l.dropped) * self.row);
        }
        self.len = n;
    }

    /// Forgets every position.
    pub fn clear(&mut self) {
        self.truncate(0);
    }
}
