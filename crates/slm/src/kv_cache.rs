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
}

/// Keys and values of one layer, position-major: `[pos, kv_head, head_dim]`.
#[derive(Clone, Debug)]
pub struct LayerKv {
    pub(crate) k: KvData,
    pub(crate) v: KvData,
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

    /// Forgets positions from `n` on (to reuse a shared prompt prefix).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len);
        for l in &mut self.layers {
            l.k.truncate(n * self.row);
            l.v.truncate(n * self.row);
        }
        self.len = n;
    }

    /// Forgets every position.
    pub fn clear(&mut self) {
        self.truncate(0);
    }
}
