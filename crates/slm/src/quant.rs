//! Quantized weights repacked for fast CPU matrix products against int8-quantized activations.
//!
//! Every 32-element GGUF block format (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) is rewritten at load time
//! into one of two layouts that share a single kernel shape: unsigned quants `q` with a per-block
//! scale `d` and offset `c`, so that a weight is `d * q + c`.
//!
//! * `U4`: 4-bit quants (Q4_0, Q4_1). A group of 64 weights (two blocks) is 32 bytes; the low
//!   nibble of byte `i` is weight `i`, the high nibble weight `32 + i`.
//! * `U8`: 8-bit quants (Q5_0, Q5_1 unpacked; Q8_0 shifted by +128). A group is 64 bytes.
//!
//! Activations are quantized per 32-block to int8 the way llama.cpp does (Q8_0 / Q8_1), so
//! `dot(w, x) = Σ_b d_w[b]·d_x[b]·Σ q_w·q_x + Σ_b c_w[b]·s_x[b]` with `s_x[b] = d_x[b]·Σ q_x`.
//! The integer part maps onto AVX-512 VNNI `vpdpbusd` (u8 × i8).

use std::cell::RefCell;

use half::f16;

use crate::gguf::GgmlType;
use crate::threads::{SyncPtr, par_for};

const BLOCK: usize = 32;
const GROUP: usize = 64;

/// Which of the two packed layouts a matrix uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackKind {
    /// 4-bit codes, two per byte (from Q4_0 and Q4_1).
    U4,
    /// 8-bit codes (every other quantized type).
    U8,
}

/// A weight matrix `[rows, cols]` (row-major, `cols` = input features) in packed form.
pub struct PackedMatrix {
    kind: PackKind,
    src_type: GgmlType,
    rows: usize,
    cols: usize,
    cols_padded: usize,
    /// Activation block sums rounded to f16 like llama.cpp's Q8_1 (else exact).
    q8_1_sums: bool,
    qs: Vec<u8>,
    d: Vec<f16>,
    c: Vec<f16>,
    /// The weight as bf16 AMX tiles, kept after the first product when
    /// [`crate::amx::set_keep_tiles`] is on (training: the frozen base is multiplied every step).
    pub(crate) tiles: std::sync::OnceLock<Vec<u32>>,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("kind", &self.kind)
            .field("src_type", &self.src_type)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish()
    }
}

fn f16_at(b: &[u8], i: usize) -> f16 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// Decodes one GGUF block into unsigned quants and `(d, c)`.
fn decode_block(ty: GgmlType, b: &[u8], q: &mut [u8; BLOCK]) -> (f16, f16) {
    match ty {
        GgmlType::Q4_0 => {
            let d = f16_at(b, 0);
            for j in 0..16 {
                q[j] = b[2 + j] & 0x0F;
                q[j + 16] = b[2 + j] >> 4;
            }
            (d, f16::from_f32(-8.0 * d.to_f32()))
        }
        GgmlType::Q4_1 => {
            for j in 0..16 {
                q[j] = b[4 + j] & 0x0F;
                q[j + 16] = b[4 + j] >> 4;
            }
            (f16_at(b, 0), f16_at(b, 2))
        }
        GgmlType::Q5_0 => {
            let d = f16_at(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            for j in 0..16 {
                q[j] = (b[6 + j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
                q[j + 16] = (b[6 + j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            }
            (d, f16::from_f32(-16.0 * d.to_f32()))
        }
        GgmlType::Q5_1 => {
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            for j in 0..16 {
                q[j] = (b[8 + j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
                q[j + 16] = (b[8 + j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            }
            (f16_at(b, 0), f16_at(b, 2))
        }
        GgmlType::Q8_0 => {
            let d = f16_at(b, 0);
            for j in 0..32 {
                q[j] = (b[2 + j] as i8 as i16 + 128) as u8;
            }
            (d, f16::from_f32(-128.0 * d.to_f32()))
        }
        _ => (f16::ZERO, f16::ZERO),
    }
}

impl PackedMatrix {
    /// Whether [`PackedMatrix::from_ggml`] accepts this type.
    pub fn supports(ty: GgmlType) -> bool {
        matches!(
            ty,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0
        )
    }

    /// Repacks GGUF data of `[rows, cols]`; `None` if the type has no packed form or the data
    /// length does not match.
    pub fn from_ggml(ty: GgmlType, data: &[u8], rows: usize, cols: usize) -> Option<Self> {
        if !Self::supports(ty) || !cols.is_multiple_of(BLOCK) {
            return None;
        }
        let nb = cols / BLOCK;
        let bsize = ty.type_size();
        if data.len() != rows * nb * bsize {
            return None;
        }
        let kind = match ty {
            GgmlType::Q4_0 | GgmlType::Q4_1 => PackKind::U4,
            _ => PackKind::U8,
        };
        let cols_padded = cols.div_ceil(GROUP) * GROUP;
        let nbp = cols_padded / BLOCK;
        let row_bytes = match kind {
            PackKind::U4 => cols_padded / 2,
            PackKind::U8 => cols_padded,
        };
        let mut qs = vec![0u8; rows * row_bytes];
        let mut d = vec![f16::ZERO; rows * nbp];
        let mut c = vec![f16::ZERO; rows * nbp];
        let mut q = [0u8; BLOCK];
        for r in 0..rows {
            let row = &data[r * nb * bsize..(r + 1) * nb * bsize];
            let out = &mut qs[r * row_bytes..(r + 1) * row_bytes];
            for b in 0..nb {
                let (db, cb) = decode_block(ty, &row[b * bsize..(b + 1) * bsize], &mut q);
                d[r * nbp + b] = db;
                c[r * nbp + b] = cb;
                match kind {
                    PackKind::U8 => out[b * BLOCK..(b + 1) * BLOCK].copy_from_slice(&q),
                    PackKind::U4 => {
                        let g = b / 2;
                        let base = &mut out[g * 32..(g + 1) * 32];
                        if b % 2 == 0 {
                            for i in 0..BLOCK {
                                base[i] = (base[i] & 0xF0) | q[i];
                            }
                        } else {
                            for i in 0..BLOCK {
                                base[i] = (base[i] & 0x0F) | (q[i] << 4);
                            }
                        }
                    }
                }
            }
        }
        Some(Self {
            kind,
            src_type: ty,
            rows,
            cols,
            cols_padded,
            q8_1_sums: matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1),
            tiles: std::sync::OnceLock::new(),
            qs,
            d,
            c,
        })
    }

    /// Quantizes f32 weights `[rows, cols]` to Q8_0 and packs them.
    pub fn quantize_q8_0(w: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if w.len() != rows * cols || !cols.is_multiple_of(BLOCK) {
            return None;
        }
        let mut data = Vec::with_capacity(rows * cols / BLOCK * 34);
        for blk in w.chunks_exact(BLOCK) {
            let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            data.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            for v in blk {
                data.push((v * id).round() as i8 as u8);
            }
        }
        Self::from_ggml(GgmlType::Q8_0, &data, rows, cols)
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The GGUF type it was packed from.
    pub fn src_type(&self) -> GgmlType {
        self.src_type
    }

    /// Bytes held by the packed data.
    pub fn size_in_bytes(&self) -> usize {
        self.qs.len() + 2 * (self.d.len() + self.c.len())
    }

    fn row_bytes(&self) -> usize {
        match self.kind {
            PackKind::U4 => self.cols_padded / 2,
            PackKind::U8 => self.cols_padded,
        }
    }

    /// Stacks matrices with the same layout and width along the rows (e.g. q, k and v).
    pub fn concat_rows(parts: &[&PackedMatrix]) -> Option<Self> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.kind != first.kind || p.cols != first.cols || p.q8_1_sums != first.q8_1_sums)
        {
            return None;
        }
        let mut out = Self {
            kind: first.kind,
            src_type: first.src_type,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            cols_padded: first.cols_padded,
            q8_1_sums: first.q8_1_sums,
            tiles: std::sync::OnceLock::new(),
            qs: Vec::new(),
            d: Vec::new(),
            c: Vec::new(),
        };
        for p in parts {
            out.qs.extend_from_slice(&p.qs);
            out.d.extend_from_slice(&p.d);
            out.c.extend_from_slice(&p.c);
        }
        Some(out)
    }

    /// Dequantizes row `r` into `out` (`cols` values), a block of 32 at a time (scale and
    /// offset read once per block, the inner loops vectorise).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let nbp = self.cols_padded / BLOCK;
        let rb = self.row_bytes();
        let qs = &self.qs[r * rb..(r + 1) * rb];
        let d = &self.d[r * nbp..(r + 1) * nbp];
        let c = &self.c[r * nbp..(r + 1) * nbp];
        let out = &mut out[..self.cols];
        for (b, o) in out.chunks_mut(BLOCK).enumerate() {
            let (db, cb) = (d[b].to_f32(), c[b].to_f32());
            match self.kind {
                PackKind::U8 => {
                    let q = &qs[b * BLOCK..b * BLOCK + o.len()];
                    for (o, &q) in o.iter_mut().zip(q) {
                        *o = db * f32::from(q) + cb;
                    }
                }
                PackKind::U4 => {
                    // A group of 64 values is 32 bytes: the low nibbles hold its first block,
                    // the high nibbles its second.
                    let g = b / 2;
                    let q = &qs[g * 32..g * 32 + o.len()];
                    if b % 2 == 0 {
                        for (o, &q) in o.iter_mut().zip(q) {
                            *o = db * f32::from(q & 0x0F) + cb;
                        }
                    } else {
                        for (o, &q) in o.iter_mut().zip(q) {
                            *o = db * f32::from(q >> 4) + cb;
                        }
                    }
                }
            }
        }
    }

    /// Dequantizes the whole matrix (row-major `[rows, cols]`).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for r in 0..self.rows {
            self.dequantize_row(r, &mut out[r * self.cols..(r + 1) * self.cols]);
        }
        out
    }

    /// `out[i, r] = Σ_k x[i, k] · W[r, k]` for `x` of `[n, cols]`, `out` of `[n, rows]`.
    pub fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), n * self.cols);
        debug_assert_eq!(out.len(), n * self.rows);
        if crate::amx::worth_it(n) && crate::amx::packed_matmul(self, x, n, out) {
            return;
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut acts) => self.matmul_with(&mut acts, x, n, out),
            Err(_) => self.matmul_with(&mut QActs::default(), x, n, out),
        })
    }

    fn matmul_with(&self, acts: &mut QActs, x: &[f32], n: usize, out: &mut [f32]) {
        acts.quantize(x, n, self.cols, self.cols_padded);
        let acts = &*acts;
        let rows = self.rows;
        let threads = crate::threads::num_threads().max(1);
        let rows_per_task = if n == 1 {
            (rows / (threads * 8)).clamp(8, 256)
        } else {
            (rows / (threads * 4)).clamp(4, 64)
        };
        let tasks = rows.div_ceil(rows_per_task);
        let optr = SyncPtr(out.as_mut_ptr());
        par_for(tasks, |t| {
            let r0 = t * rows_per_task;
            let r1 = (r0 + rows_per_task).min(rows);
            let mut i = 0;
            while i < n {
                let m = (n - i).min(4);
                match m {
                    4 => self.dot_tile::<4>(r0..r1, acts, i, optr),
                    3 => self.dot_tile::<3>(r0..r1, acts, i, optr),
                    2 => self.dot_tile::<2>(r0..r1, acts, i, optr),
                    _ => self.dot_tile::<1>(r0..r1, acts, i, optr),
                }
                i += m;
            }
        });
    }

    #[inline(always)]
    fn dot_tile<const R: usize>(
        &self,
        rows: std::ops::Range<usize>,
        acts: &QActs,
        i0: usize,
        out: SyncPtr<f32>,
    ) {
        let a: [ARow<'_>; R] = std::array::from_fn(|k| acts.row(i0 + k, self.q8_1_sums));
        for r in rows {
            self.dot_rows::<R>(r, &a, i0, out);
        }
    }

    #[inline(always)]
    fn dot_rows<const R: usize>(&self, r: usize, a: &[ARow<'_>; R], i0: usize, out: SyncPtr<f32>) {
        let nbp = self.cols_padded / BLOCK;
        let ngroups = self.cols_padded / GROUP;
        let rb = self.row_bytes();
        let w = WRow {
            qs: &self.qs[r * rb..(r + 1) * rb],
            d: &self.d[r * nbp..(r + 1) * nbp],
            c: &self.c[r * nbp..(r + 1) * nbp],
        };
        let res = match self.kind {
            PackKind::U4 => kernel::dot::<R, true>(&w, a, ngroups, nbp),
            PackKind::U8 => kernel::dot::<R, false>(&w, a, ngroups, nbp),
        };
        for (k, v) in res.into_iter().enumerate() {
            // SAFETY: each (row i0 + k, column r) pair is written by exactly one task.
            unsafe { out.write((i0 + k) * self.rows + r, v) };
        }
    }
}

struct WRow<'a> {
    qs: &'a [u8],
    d: &'a [f16],
    c: &'a [f16],
}

struct ARow<'a> {
    qs: &'a [i8],
    /// Per group of 64: 16 floats, `d` of the first block in lanes 0..8, of the second in 8..16.
    da16: &'a [f32],
    /// Per block: `d`.
    d: &'a [f32],
    /// Per block: `d · Σ q`.
    s: &'a [f32],
}

thread_local! {
    static SCRATCH: RefCell<QActs> = RefCell::new(QActs::default());
}

/// Activations quantized to int8 per 32-block.
#[derive(Default)]
struct QActs {
    cols_padded: usize,
    qs: Vec<i8>,
    da16: Vec<f32>,
    d: Vec<f32>,
    s_exact: Vec<f32>,
    s_q81: Vec<f32>,
}

impl QActs {
    fn quantize(&mut self, x: &[f32], n: usize, cols: usize, cols_padded: usize) {
        let nbp = cols_padded / BLOCK;
        let ng = cols_padded / GROUP;
        self.cols_padded = cols_padded;
        self.qs.clear();
        self.qs.resize(n * cols_padded, 0);
        self.da16.clear();
        self.da16.resize(n * ng * 16, 0.0);
        self.d.clear();
        self.d.resize(n * nbp, 0.0);
        self.s_exact.clear();
        self.s_exact.resize(n * nbp, 0.0);
        self.s_q81.clear();
        self.s_q81.resize(n * nbp, 0.0);
        for i in 0..n {
            let row = &x[i * cols..(i + 1) * cols];
            for b in 0..cols / BLOCK {
                let xs = &row[b * BLOCK..(b + 1) * BLOCK];
                let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
                // as llama.cpp's SIMD quantizers: id = 127 / amax, round half to even
                let d = amax / 127.0;
                let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                let qs =
                    &mut self.qs[i * cols_padded + b * BLOCK..i * cols_padded + (b + 1) * BLOCK];
                let mut sum = 0i32;
                for (q, v) in qs.iter_mut().zip(xs) {
                    let qi = (v * id).round_ties_even() as i32;
                    *q = qi as i8;
                    sum += qi;
                }
                let dh = f16::from_f32(d).to_f32();
                let g = b / 2;
                let lane0 = (i * ng + g) * 16 + (b % 2) * 8;
                self.da16[lane0..lane0 + 8].fill(dh);
                self.d[i * nbp + b] = dh;
                self.s_exact[i * nbp + b] = dh * sum as f32;
                self.s_q81[i * nbp + b] = f16::from_f32(d * sum as f32).to_f32();
            }
        }
    }

    fn row(&self, i: usize, q8_1: bool) -> ARow<'_> {
        let nbp = self.cols_padded / BLOCK;
        let ng = self.cols_padded / GROUP;
        let s = if q8_1 { &self.s_q81 } else { &self.s_exact };
        ARow {
            qs: &self.qs[i * self.cols_padded..(i + 1) * self.cols_padded],
            da16: &self.da16[i * ng * 16..(i + 1) * ng * 16],
            d: &self.d[i * nbp..(i + 1) * nbp],
            s: &s[i * nbp..(i + 1) * nbp],
        }
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512vl",
    target_feature = "avx512vnni",
    target_feature = "f16c"
))]
mod kernel {
    use super::{ARow, WRow};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn load_w<const U4: bool>(qs: *const u8, g: usize) -> __m512i {
        unsafe {
            if U4 {
                let v = _mm256_loadu_si256(qs.add(g * 32) as *const __m256i);
                let hi = _mm256_srli_epi16::<4>(v);
                let both = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(v), hi);
                _mm512_and_si512(both, _mm512_set1_epi8(0x0F))
            } else {
                _mm512_loadu_si512(qs.add(g * 64) as *const __m512i)
            }
        }
    }

    #[inline(always)]
    unsafe fn load_d(d: *const half::f16, g: usize, idx: __m512i) -> __m512 {
        unsafe {
            let pair = (d.add(2 * g) as *const i32).read_unaligned();
            let f = _mm_cvtph_ps(_mm_cvtsi32_si128(pair));
            _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f))
        }
    }

    #[inline(always)]
    pub(super) fn dot<const R: usize, const U4: bool>(
        w: &WRow<'_>,
        a: &[ARow<'_>; R],
        ngroups: usize,
        nbp: usize,
    ) -> [f32; R] {
        // SAFETY: all pointers stay inside the row slices: `qs` holds `ngroups` groups, `d`/`c`
        // and `s` hold `nbp = 2 * ngroups` blocks, `da16` holds 16 floats per group; the tail
        // of the offset term uses masked loads.
        unsafe {
            let idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
            let zero = _mm512_setzero_si512();
            let mut acc = [_mm512_setzero_ps(); R];
            let mut acc2 = [_mm512_setzero_ps(); R];
            let wq = w.qs.as_ptr();
            let wd = w.d.as_ptr();
            let mut g = 0;
            // Eight groups (16 blocks) at a time: integer block sums are reduced together by a
            // transpose, so scales are applied once per 16 blocks instead of once per group.
            // The reduction leaves blocks in the order [0,2,4,6, 1,3,5,7, 8,10,12,14, 9,...].
            let perm = _mm512_set_epi32(15, 13, 11, 9, 14, 12, 10, 8, 7, 5, 3, 1, 6, 4, 2, 0);
            while g + 8 <= ngroups {
                let wv: [__m512i; 8] = std::array::from_fn(|i| load_w::<U4>(wq, g + i));
                let dw = _mm512_permutexvar_ps(
                    perm,
                    _mm512_cvtph_ps(_mm256_loadu_si256(wd.add(2 * g) as *const __m256i)),
                );
                for r in 0..R {
                    let aq = a[r].qs.as_ptr().add(g * 64);
                    let v: [__m512i; 8] = std::array::from_fn(|i| {
                        _mm512_dpbusd_epi32(
                            zero,
                            wv[i],
                            _mm512_loadu_si512(aq.add(64 * i) as *const __m512i),
                        )
                    });
                    let t: [__m512i; 4] = std::array::from_fn(|i| {
                        _mm512_add_epi32(
                            _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                            _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]),
                        )
                    });
                    let u: [__m512i; 2] = std::array::from_fn(|i| {
                        _mm512_add_epi32(
                            _mm512_unpacklo_epi64(t[2 * i], t[2 * i + 1]),
                            _mm512_unpackhi_epi64(t[2 * i], t[2 * i + 1]),
                        )
                    });
                    let sums = _mm512_add_epi32(
                        _mm512_shuffle_i32x4::<0b10_00_10_00>(u[0], u[1]),
                        _mm512_shuffle_i32x4::<0b11_01_11_01>(u[0], u[1]),
                    );
                    let dx =
                        _mm512_permutexvar_ps(perm, _mm512_loadu_ps(a[r].d.as_ptr().add(2 * g)));
                    acc[r] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(dw, dx), acc[r]);
                }
                g += 8;
            }
            while g + 2 <= ngroups {
                let w0 = load_w::<U4>(wq, g);
                let w1 = load_w::<U4>(wq, g + 1);
                let d0 = load_d(wd, g, idx);
                let d1 = load_d(wd, g + 1, idx);
                for r in 0..R {
                    let aq = a[r].qs.as_ptr().add(g * 64);
                    let ad = a[r].da16.as_ptr().add(g * 16);
                    let p0 =
                        _mm512_dpbusd_epi32(zero, w0, _mm512_loadu_si512(aq as *const __m512i));
                    let p1 = _mm512_dpbusd_epi32(
                        zero,
                        w1,
                        _mm512_loadu_si512(aq.add(64) as *const __m512i),
                    );
                    let s0 = _mm512_mul_ps(d0, _mm512_loadu_ps(ad));
                    let s1 = _mm512_mul_ps(d1, _mm512_loadu_ps(ad.add(16)));
                    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), s0, acc[r]);
                    acc2[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), s1, acc2[r]);
                }
                g += 2;
            }
            if g < ngroups {
                let w0 = load_w::<U4>(wq, g);
                let d0 = load_d(wd, g, idx);
                for r in 0..R {
                    let aq = a[r].qs.as_ptr().add(g * 64);
                    let ad = a[r].da16.as_ptr().add(g * 16);
                    let p0 =
                        _mm512_dpbusd_epi32(zero, w0, _mm512_loadu_si512(aq as *const __m512i));
                    let s0 = _mm512_mul_ps(d0, _mm512_loadu_ps(ad));
                    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), s0, acc[r]);
                }
            }
            let wc = w.c.as_ptr();
            let mut b = 0;
            while b < nbp {
                let left = nbp - b;
                let m: u16 = if left >= 16 {
                    0xFFFF
                } else {
                    ((1u32 << left) - 1) as u16
                };
                let c = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, wc.add(b) as *const i16));
                for r in 0..R {
                    let s = _mm512_maskz_loadu_ps(m, a[r].s.as_ptr().add(b));
                    acc2[r] = _mm512_fmadd_ps(c, s, acc2[r]);
                }
                b += 16;
            }
            std::array::from_fn(|r| _mm512_reduce_add_ps(_mm512_add_ps(acc[r], acc2[r])))
        }
    }
}

#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512bw",
    target_feature = "avx512vl",
    target_feature = "avx512vnni",
    target_feature = "f16c"
)))]
use scalar as kernel;

/// Portable kernel (any CPU), also the reference the SIMD kernel is tested against.
#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512vl",
        target_feature = "avx512vnni",
        target_feature = "f16c"
    ),
    allow(dead_code)
)]
mod scalar {
    use super::{ARow, WRow};

    #[inline(always)]
    pub(super) fn dot<const R: usize, const U4: bool>(
        w: &WRow<'_>,
        a: &[ARow<'_>; R],
        ngroups: usize,
        nbp: usize,
    ) -> [f32; R] {
        let mut out = [0f32; R];
        for (r, a) in a.iter().enumerate() {
            let mut acc = 0f32;
            for g in 0..ngroups {
                for half in 0..2 {
                    let mut isum = 0i32;
                    for i in 0..32 {
                        let e = half * 32 + i;
                        let q = if U4 {
                            let byte = w.qs[g * 32 + i];
                            if half == 0 { byte & 0x0F } else { byte >> 4 }
                        } else {
                            w.qs[g * 64 + e]
                        };
                        isum += q as i32 * a.qs[g * 64 + e] as i32;
                    }
                    let b = 2 * g + half;
                    acc += w.d[b].to_f32() * a.da16[g * 16 + half * 8] * isum as f32;
                }
            }
            for b in 0..nbp {
                acc += w.c[b].to_f32() * a.s[b];
            }
            out[r] = acc;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_f32(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Quantizes with the reference GGUF encoders (simple versions).
    fn encode(ty: GgmlType, w: &[f32], rows: usize, cols: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for r in 0..rows {
            for b in 0..cols / 32 {
                let xs = &w[r * cols + b * 32..r * cols + b * 32 + 32];
                let min = xs.iter().cloned().fold(f32::INFINITY, f32::min);
                let max = xs.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
                let smax = xs
                    .iter()
                    .cloned()
                    .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
                match ty {
                    GgmlType::Q8_0 => {
                        let d = amax / 127.0;
                        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                        for v in xs {
                            out.push((v / d).round() as i8 as u8);
                        }
                    }
                    GgmlType::Q4_1 => {
                        let d = (max - min) / 15.0;
                        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                        out.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
                        for j in 0..16 {
                            let q0 = (((xs[j] - min) / d).round() as u8).min(15);
                            let q1 = (((xs[j + 16] - min) / d).round() as u8).min(15);
                            out.push(q0 | (q1 << 4));
                        }
                    }
                    GgmlType::Q4_0 => {
                        let d = smax / -8.0;
                        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                        for j in 0..16 {
                            let q0 = ((xs[j] / d + 8.5) as u8).min(15);
                            let q1 = ((xs[j + 16] / d + 8.5) as u8).min(15);
                            out.push(q0 | (q1 << 4));
                        }
                    }
                    GgmlType::Q5_1 => {
                        let d = (max - min) / 31.0;
                        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                        out.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
                        let q: Vec<u32> = xs
                            .iter()
                            .map(|v| (((v - min) / d).round() as u32).min(31))
                            .collect();
                        let mut qh = 0u32;
                        for (j, qv) in q.iter().enumerate() {
                            qh |= ((qv >> 4) & 1) << j;
                        }
                        out.extend_from_slice(&qh.to_le_bytes());
                        for j in 0..16 {
                            out.push(((q[j] & 15) | ((q[j + 16] & 15) << 4)) as u8);
                        }
                    }
                    GgmlType::Q5_0 => {
                        let d = smax / -16.0;
                        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                        let q: Vec<u32> =
                            xs.iter().map(|v| ((v / d + 16.5) as u32).min(31)).collect();
                        let mut qh = 0u32;
                        for (j, qv) in q.iter().enumerate() {
                            qh |= ((qv >> 4) & 1) << j;
                        }
                        out.extend_from_slice(&qh.to_le_bytes());
                        for j in 0..16 {
                            out.push(((q[j] & 15) | ((q[j + 16] & 15) << 4)) as u8);
                        }
                    }
                    _ => unreachable!(),
                }
            }
        }
        out
    }

    #[test]
    fn packed_matmul_matches_dequantized_reference() {
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q8_0,
        ] {
            for (rows, cols, n) in [(7, 96, 1), (33, 576, 5), (16, 64, 4), (5, 32, 3)] {
                let w = rand_f32(rows * cols, 1);
                let x = rand_f32(n * cols, 2);
                let data = encode(ty, &w, rows, cols);
                let m = PackedMatrix::from_ggml(ty, &data, rows, cols).expect("pack");
                let wd = m.dequantize();
                // the dequantized weights stay close to the originals
                let max_err = w
                    .iter()
                    .zip(&wd)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(max_err < 0.13, "{ty:?} dequant error {max_err}");
                let mut out = vec![0f32; n * rows];
                m.matmul(&x, n, &mut out);
                for i in 0..n {
                    for r in 0..rows {
                        let exact: f32 =
                            (0..cols).map(|k| x[i * cols + k] * wd[r * cols + k]).sum();
                        let got = out[i * rows + r];
                        let tol = 0.02 * (cols as f32).sqrt();
                        assert!(
                            (exact - got).abs() < tol,
                            "{ty:?} {rows}x{cols} n={n} [{i},{r}]: {got} vs {exact}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn simd_kernel_matches_scalar_kernel() {
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q5_0] {
            let (rows, cols, n) = (3, 32 * 37, 4);
            let w = rand_f32(rows * cols, 5);
            let x = rand_f32(n * cols, 6);
            let m =
                PackedMatrix::from_ggml(ty, &encode(ty, &w, rows, cols), rows, cols).expect("pack");
            let mut acts = QActs::default();
            acts.quantize(&x, n, cols, m.cols_padded);
            let nbp = m.cols_padded / BLOCK;
            let ng = m.cols_padded / GROUP;
            let rb = m.row_bytes();
            for r in 0..rows {
                let wr = WRow {
                    qs: &m.qs[r * rb..(r + 1) * rb],
                    d: &m.d[r * nbp..(r + 1) * nbp],
                    c: &m.c[r * nbp..(r + 1) * nbp],
                };
                let a: [ARow<'_>; 4] = std::array::from_fn(|k| acts.row(k, m.q8_1_sums));
                let (fast, slow) = if m.kind == PackKind::U4 {
                    (
                        kernel::dot::<4, true>(&wr, &a, ng, nbp),
                        scalar::dot::<4, true>(&wr, &a, ng, nbp),
                    )
                } else {
                    (
                        kernel::dot::<4, false>(&wr, &a, ng, nbp),
                        scalar::dot::<4, false>(&wr, &a, ng, nbp),
                    )
                };
                for (f, s) in fast.iter().zip(&slow) {
                    assert!(
                        (f - s).abs() <= 1e-4 * s.abs().max(1.0),
                        "{ty:?}: {f} vs {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn concat_rows_stacks() {
        let a = rand_f32(4 * 64, 3);
        let b = rand_f32(2 * 64, 4);
        let pa = PackedMatrix::from_ggml(GgmlType::Q4_1, &encode(GgmlType::Q4_1, &a, 4, 64), 4, 64)
            .expect("a");
        let pb = PackedMatrix::from_ggml(GgmlType::Q4_1, &encode(GgmlType::Q4_1, &b, 2, 64), 2, 64)
            .expect("b");
        let cat = PackedMatrix::concat_rows(&[&pa, &pb]).expect("cat");
        assert_eq!(cat.rows(), 6);
        let mut r = vec![0f32; 64];
        let mut e = vec![0f32; 64];
        cat.dequantize_row(5, &mut r);
        pb.dequantize_row(1, &mut e);
        assert_eq!(r, e);
    }
}
