//! Matrix multiplication with bf16 operands on Intel AMX tiles (Sapphire Rapids and later).
//!
//! Prefill and training multiply many activation rows by the same frozen base weight. On a CPU
//! with AMX, the weight is dequantized to bf16 once per call, the activations are rounded to
//! bf16, and `TDPBF16PS` multiplies 16 × 32 by 32 × 16 tiles with f32 accumulation: QLoRA's
//! compute type, with an order of magnitude more throughput per core than AVX-512 FMA. Where
//! AMX is missing (or `DOWNSHIFT_AMX=0`, or [`set_enabled`]`(false)`), callers keep their
//! f32 / int8 kernels.
//!
//! The tile instructions are written as inline assembly (the AMX target features are not stable
//! in Rust); they run only after [`available`] has checked the CPU and obtained the kernel's
//! permission for the tile state.

use std::arch::asm;
use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::quant::PackedMatrix;
use crate::threads::{SyncPtr, par_chunks, par_for};
use std::thread::LocalKey;

static OFF: AtomicBool = AtomicBool::new(false);
static SUPPORTED: OnceLock<bool> = OnceLock::new();

/// Rows of a tile, and bf16 values per tile row (64 bytes).
const TR: usize = 16;
const TK: usize = 32;
/// Each kernel step computes a 32 × 32 block of the output (2 × 2 tiles).
const BLOCK: usize = 2 * TR;
/// u32 (bf16 pairs) per tile.
const TILE_U32: usize = TR * TR;

/// Turns the AMX path on or off for this process (it is on where the CPU has it).
pub fn set_enabled(on: bool) {
    OFF.store(!on, Ordering::SeqCst);
}

/// Whether the AMX kernels run here: the CPU has AMX-TILE and AMX-BF16, the OS saves the tile
/// state, the kernel granted this process the tile data permission, and it is not switched off.
pub fn available() -> bool {
    !OFF.load(Ordering::Relaxed) && *SUPPORTED.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    use std::arch::x86_64::__cpuid_count;
    if matches!(
        std::env::var("DOWNSHIFT_AMX").as_deref(),
        Ok("0" | "off" | "false" | "no")
    ) {
        return false;
    }
    // cpuid exists on every x86_64 CPU; leaves above the maximum are not read.
    let (max, l1) = (__cpuid_count(0, 0).eax, __cpuid_count(1, 0));
    const OSXSAVE: u32 = 1 << 27;
    if max < 7 || l1.ecx & OSXSAVE == 0 {
        return false;
    }
    let l7 = __cpuid_count(7, 0);
    const AMX_BF16: u32 = 1 << 22;
    const AMX_TILE: u32 = 1 << 24;
    if l7.edx & (AMX_BF16 | AMX_TILE) != AMX_BF16 | AMX_TILE {
        return false;
    }
    let (lo, _hi): (u32, u32);
    // SAFETY: xgetbv with ecx = 0 reads XCR0; OSXSAVE (checked) means the OS enabled it.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _hi, options(nostack, nomem));
    }
    const XTILE: u32 = (1 << 17) | (1 << 18);
    if lo & XTILE != XTILE {
        return false;
    }
    // Linux (5.16+) hands out the tile data state on request: arch_prctl(ARCH_REQ_XCOMP_PERM,
    // XFEATURE_XTILEDATA). Without it the first tile instruction faults.
    const SYS_ARCH_PRCTL: usize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: a plain system call; it only changes this process's permitted xsave features.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// f32 → bf16, rounding to nearest even (NaN stays NaN). Branch-free, so loops over it
/// vectorise.
#[inline(always)]
pub fn bf16(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16;
    let quiet_nan = (b >> 16) | 0x40;
    let nan = (b & 0x7FFF_FFFF) > 0x7F80_0000;
    (if nan { quiet_nan } else { rounded }) as u16
}

/// bf16 → f32.
#[inline(always)]
pub fn f32_of(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// The left operand: `m` rows of `k` values as bf16, zero-padded to a multiple of 32 rows and
/// of 32 columns (row stride `kp`).
struct Lhs {
    data: Vec<u16>,
    mp: usize,
    kp: usize,
}

impl Lhs {
    /// Fills `data` (this thread's spare buffer; every element is written) from `x: [m, k]`.
    fn new(x: &[f32], m: usize, k: usize) -> Self {
        let (mp, kp) = (round_up(m.max(1), BLOCK), round_up(k.max(1), TK));
        let mut data = spare(&SPARE_A, mp * kp);
        for (i, dst) in data[..mp * kp].chunks_mut(kp).enumerate() {
            let (head, pad) = dst.split_at_mut(k.min(kp));
            match x.get(i * k..(i + 1) * k).filter(|_| i < m) {
                Some(src) => head.iter_mut().zip(src).for_each(|(d, &s)| *d = bf16(s)),
                None => head.fill(0),
            }
            pad.fill(0);
        }
        Lhs { data, mp, kp }
    }
}

impl Drop for Lhs {
    fn drop(&mut self) {
        give_back(&SPARE_A, std::mem::take(&mut self.data));
    }
}

thread_local! {
    /// Operand buffers kept per thread between products (they are rewritten whole each time),
    /// so that the large ones do not come back from the allocator as freshly faulted pages.
    static SPARE_A: Cell<Vec<u16>> = const { Cell::new(Vec::new()) };
    static SPARE_B: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
}

/// This thread's spare buffer, at least `len` elements long (stale contents: callers use the
/// first `len` and write every one of them). It only grows, so that switching between weights
/// of different sizes does not clear it again.
fn spare<T: Copy + Default>(key: &'static LocalKey<Cell<Vec<T>>>, len: usize) -> Vec<T> {
    let mut v = key.with(Cell::take);
    if v.len() < len {
        v.resize(len, T::default());
    }
    v
}

fn give_back<T>(key: &'static LocalKey<Cell<Vec<T>>>, v: Vec<T>) {
    key.with(|c| c.set(v));
}

/// Keep each packed weight's tiles after their first product (see [`set_keep_tiles`]).
static KEEP_TILES: AtomicBool = AtomicBool::new(false);

/// Keeps the bf16 tiles of every packed weight once built (2 bytes per weight), instead of
/// dequantizing again on every product: for training, which multiplies the frozen base every
/// step. Off by default (serving keeps only the quantized weights).
pub fn set_keep_tiles(on: bool) {
    KEEP_TILES.store(on, Ordering::SeqCst);
}

/// The right operand `B` (`n × k`, used transposed) in tile order: for each block of 16 rows
/// of `B`, its `k` in 16 × 16 tiles of bf16 pairs — `tile[p][j] = (B[j][2p], B[j][2p + 1])`,
/// the layout `TDPBF16PS` reads. Rows are padded to a multiple of 32, columns to `kp`.
struct Rhs {
    /// At least `nb · kb` tiles (a spare buffer may be longer).
    data: Vec<u32>,
    nb: usize,
    kb: usize,
}

/// A view of [`Rhs`] tiles (built now, or kept with the weight).
#[derive(Clone, Copy)]
struct Tiles<'a> {
    data: &'a [u32],
    nb: usize,
    kb: usize,
}

impl Rhs {
    /// Room for `n` rows of `kp` columns in `data` (stale contents: the builders write every
    /// tile).
    fn with_buffer(n: usize, kp: usize, mut data: Vec<u32>) -> Self {
        let (nb, kb) = Self::blocks(n, kp);
        if data.len() < nb * kb * TILE_U32 {
            data.resize(nb * kb * TILE_U32, 0);
        }
        Rhs { data, nb, kb }
    }

    /// Blocks of 16 rows (`n` padded to a multiple of 32) and of 32 columns.
    fn blocks(n: usize, kp: usize) -> (usize, usize) {
        (round_up(n.max(1), BLOCK) / TR, kp / TK)
    }

    fn len(&self) -> usize {
        self.nb * self.kb * TILE_U32
    }

    fn view(&self) -> Tiles<'_> {
        Tiles {
            data: &self.data[..self.len()],
            nb: self.nb,
            kb: self.kb,
        }
    }

    #[inline(always)]
    fn index(&self, row: usize, pair: usize) -> usize {
        ((row / TR) * self.kb + pair / TR) * TILE_U32 + (pair % TR) * TR + row % TR
    }

    /// `B = W` for the packed `W: [rows, cols]` (the forward product `x · Wᵀ`). Each task
    /// dequantizes 16 rows and writes their tiles in order (16 pairs of one column at a time).
    fn from_packed(w: &PackedMatrix, kp: usize, buf: Vec<u32>) -> Self {
        let (rows, cols) = (w.rows(), w.cols());
        let mut rhs = Rhs::with_buffer(rows, kp, buf);
        let per_block = rhs.kb * TILE_U32;
        let len = rhs.len();
        par_chunks(&mut rhs.data[..len], per_block, |b, dst| {
            let mut block = vec![0f32; TR * kp];
            for j in 0..TR.min(rows.saturating_sub(b * TR)) {
                w.dequantize_row(b * TR + j, &mut block[j * kp..j * kp + cols]);
            }
            for (p, pairs) in dst.chunks_exact_mut(TR).enumerate() {
                // pair p of tile column p / 16 sits at row p % 16 of that tile: exactly the
                // order of `dst` when p runs over (tile, row)
                for (j, d) in pairs.iter_mut().enumerate() {
                    let at = j * kp + 2 * p;
                    *d = u32::from(bf16(block[at])) | (u32::from(bf16(block[at + 1])) << 16);
                }
            }
        });
        rhs
    }

    /// `B = Wᵀ` for the packed `W: [rows, cols]` (the backward product `g · W`): row `c` of `B`
    /// is column `c` of `W`, and its pairs run along `W`'s rows. Each task dequantizes 32 rows
    /// of `W` (one tile column of `B`) and writes that column's tiles whole.
    fn from_packed_transposed(w: &PackedMatrix, kp: usize, buf: Vec<u32>) -> Self {
        let (rows, cols) = (w.rows(), w.cols());
        let mut rhs = Rhs::with_buffer(cols, kp, buf);
        let ptr = SyncPtr(rhs.data.as_mut_ptr());
        let (nb, kb) = (rhs.nb, rhs.kb);
        par_for(kb, |t| {
            let mut block = vec![0f32; TK * nb * TR];
            let stride = nb * TR;
            for r in 0..TK.min(rows.saturating_sub(t * TK)) {
                w.dequantize_row(t * TK + r, &mut block[r * stride..r * stride + cols]);
            }
            let mut tile = [0u32; TILE_U32];
            for b in 0..nb {
                for (p, row) in tile.chunks_exact_mut(TR).enumerate() {
                    let (lo, hi) = (2 * p * stride + b * TR, (2 * p + 1) * stride + b * TR);
                    for (j, d) in row.iter_mut().enumerate() {
                        *d =
                            u32::from(bf16(block[lo + j])) | (u32::from(bf16(block[hi + j])) << 16);
                    }
                }
                // SAFETY: tile (b, t) belongs to this task alone and lies inside `data`, which
                // outlives the loop (par_for returns when every task is done).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        tile.as_ptr(),
                        ptr.get().add((b * kb + t) * TILE_U32),
                        TILE_U32,
                    )
                };
            }
        });
        rhs
    }
}

#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// Loads the configuration every kernel uses: tiles 0–7 of 16 rows × 64 bytes.
///
/// # Safety
/// AMX must be [`available`].
unsafe fn configure() {
    let mut cfg = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb: [0; 16],
        rows: [0; 16],
    };
    for t in 0..8 {
        cfg.colsb[t] = 64;
        cfg.rows[t] = TR as u8;
    }
    // SAFETY: a valid palette-1 configuration (caller checked AMX).
    unsafe { asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly)) };
}

/// `out[m, n] = lhs[m, k] · rhs[n, k]ᵀ`, the work split over blocks of 32 columns of `out`.
fn product(lhs: &Lhs, rhs: Tiles<'_>, m: usize, n: usize, out: &mut [f32]) {
    debug_assert_eq!(lhs.kp / TK, rhs.kb);
    debug_assert!(out.len() >= m * n);
    let col_blocks = rhs.nb / 2;
    let threads = crate::threads::num_threads().max(1);
    let per_task = col_blocks.div_ceil(threads * 4).max(1);
    let tasks = col_blocks.div_ceil(per_task);
    let optr = SyncPtr(out.as_mut_ptr());
    let lda = (lhs.kp * 2) as isize;
    par_for(tasks, |t| {
        let mut c = [[0f32; TR * TR]; 4];
        // SAFETY: AMX is available (callers check); every tile load reads inside `lhs.data`
        // (rows < mp, columns < kp) or inside one 1 KiB tile of `rhs.data`; the stores go to
        // `out` directly only for blocks wholly inside it (rows < m, columns < n, row stride
        // n), else to the local `c`, copied to rows < m and columns < n; each task writes its
        // own column blocks only.
        unsafe {
            configure();
            for cb in t * per_task..((t + 1) * per_task).min(col_blocks) {
                for mb in 0..lhs.mp / BLOCK {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack, nomem)
                    );
                    let a0 = lhs.data.as_ptr().add(mb * BLOCK * lhs.kp);
                    let a1 = a0.add(TR * lhs.kp);
                    for kb in 0..rhs.kb {
                        let b0 = rhs.data[(2 * cb * rhs.kb + kb) * TILE_U32..].as_ptr();
                        let b1 = rhs.data[((2 * cb + 1) * rhs.kb + kb) * TILE_U32..].as_ptr();
                        asm!(
                            "tileloadd tmm4, [{a0} + {lda}*1]",
                            "tileloadd tmm5, [{a1} + {lda}*1]",
                            "tileloadd tmm6, [{b0} + {ldb}*1]",
                            "tileloadd tmm7, [{b1} + {ldb}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            a0 = in(reg) a0.add(kb * TK),
                            a1 = in(reg) a1.add(kb * TK),
                            b0 = in(reg) b0,
                            b1 = in(reg) b1,
                            lda = in(reg) lda,
                            ldb = in(reg) 64isize,
                            options(nostack, readonly)
                        );
                    }
                    let (r0, c0) = (mb * BLOCK, cb * BLOCK);
                    if r0 + BLOCK <= m && c0 + BLOCK <= n {
                        // the whole 32 × 32 block lies inside `out`: store the tiles there
                        let o = optr.get().add(r0 * n + c0);
                        asm!(
                            "tilestored [{c0} + {ldc}*1], tmm0",
                            "tilestored [{c1} + {ldc}*1], tmm1",
                            "tilestored [{c2} + {ldc}*1], tmm2",
                            "tilestored [{c3} + {ldc}*1], tmm3",
                            c0 = in(reg) o,
                            c1 = in(reg) o.add(TR),
                            c2 = in(reg) o.add(TR * n),
                            c3 = in(reg) o.add(TR * n + TR),
                            ldc = in(reg) (n * 4) as isize,
                            options(nostack)
                        );
                        continue;
                    }
                    asm!(
                        "tilestored [{c0} + {ldc}*1], tmm0",
                        "tilestored [{c1} + {ldc}*1], tmm1",
                        "tilestored [{c2} + {ldc}*1], tmm2",
                        "tilestored [{c3} + {ldc}*1], tmm3",
                        c0 = in(reg) c[0].as_mut_ptr(),
                        c1 = in(reg) c[1].as_mut_ptr(),
                        c2 = in(reg) c[2].as_mut_ptr(),
                        c3 = in(reg) c[3].as_mut_ptr(),
                        ldc = in(reg) 64isize,
                        options(nostack)
                    );
                    for (q, tile) in c.iter().enumerate() {
                        let (r0, c0) = (r0 + (q / 2) * TR, c0 + (q % 2) * TR);
                        if r0 >= m || c0 >= n {
                            continue;
                        }
                        let width = TR.min(n - c0);
                        for i in 0..TR.min(m - r0) {
                            std::ptr::copy_nonoverlapping(
                                tile[i * TR..].as_ptr(),
                                optr.get().add((r0 + i) * n + c0),
                                width,
                            );
                        }
                    }
                }
            }
            asm!("tilerelease", options(nostack, nomem));
        }
    });
}

/// Fewest activation rows worth the AMX path when the weight's tiles are kept (below it the
/// int8 kernels win).
pub const MIN_ROWS: usize = 16;

/// Fewest rows worth it when the tiles are built for this product alone: dequantizing the
/// whole weight then costs about as much as the int8 kernels take for ~80 rows (SmolLM2-135M
/// prefill: 20 tokens 123 vs 60 ms, 80 tokens even, 400 tokens 555 vs 1,088 ms).
pub const MIN_ROWS_UNKEPT: usize = 96;

/// Whether a forward product of `n` rows goes to the tiles: enough rows for what building the
/// tiles costs (nothing once they are kept).
pub fn worth_it(n: usize) -> bool {
    n >= if KEEP_TILES.load(Ordering::Relaxed) {
        MIN_ROWS
    } else {
        MIN_ROWS_UNKEPT
    }
}

/// `out[i, r] = Σ_k x[i, k] · W[r, k]` for `x: [n, cols]` (the forward product). Returns
/// false (and leaves `out` alone) when AMX is not available.
pub fn packed_matmul(w: &PackedMatrix, x: &[f32], n: usize, out: &mut [f32]) -> bool {
    if !available() {
        return false;
    }
    let lhs = Lhs::new(x, n, w.cols());
    if KEEP_TILES.load(Ordering::Relaxed) {
        let data = w.tiles.get_or_init(|| {
            let mut rhs = Rhs::from_packed(w, lhs.kp, Vec::new());
            rhs.data.truncate(rhs.len());
            rhs.data
        });
        let (nb, kb) = Rhs::blocks(w.rows(), lhs.kp);
        let tiles = Tiles { data, nb, kb };
        product(&lhs, tiles, n, w.rows(), out);
    } else {
        let rhs = Rhs::from_packed(w, lhs.kp, SPARE_B.with(Cell::take));
        product(&lhs, rhs.view(), n, w.rows(), out);
        give_back(&SPARE_B, rhs.data);
    }
    true
}

/// `dx[i, c] = Σ_r g[i, r] · W[r, c]` for `g: [n, rows]` (the backward product). Returns false
/// (and leaves `dx` alone) when AMX is not available.
pub fn packed_matmul_grad(w: &PackedMatrix, g: &[f32], n: usize, dx: &mut [f32]) -> bool {
    if !available() {
        return false;
    }
    let lhs = Lhs::new(g, n, w.rows());
    let rhs = Rhs::from_packed_transposed(w, lhs.kp, SPARE_B.with(Cell::take));
    product(&lhs, rhs.view(), n, w.cols(), dx);
    give_back(&SPARE_B, rhs.data);
    true
}

/// `out[m, n] = x[m, k] · Bᵀ` for a `B` already in tile order (`data`: `n` rows padded to a
/// multiple of 32, `kp` = `k` padded to a multiple of 32 columns), as [`crate::bf16`] stores
/// its weights. Returns false (and leaves `out` alone) when AMX is not available.
pub(crate) fn blocks_matmul(
    data: &[u32],
    n: usize,
    kp: usize,
    x: &[f32],
    m: usize,
    k: usize,
    out: &mut [f32],
) -> bool {
    if !available() {
        return false;
    }
    let lhs = Lhs::new(x, m, k);
    if lhs.kp != kp {
        return false;
    }
    let (nb, kb) = Rhs::blocks(n, kp);
    product(&lhs, Tiles { data, nb, kb }, m, n, out);
    true
}

/// `out = x · yᵀ` for dense f32 `x: [m, k]`, `y: [n, k]` through bf16 tiles (tests and
/// benchmarks). Returns false when AMX is not available.
pub fn matmul_bt(x: &[f32], y: &[f32], m: usize, n: usize, k: usize, out: &mut [f32]) -> bool {
    if !available() {
        return false;
    }
    let lhs = Lhs::new(x, m, k);
    let mut rhs = Rhs::with_buffer(n, lhs.kp, Vec::new());
    for (r, row) in y.chunks(k).enumerate().take(n) {
        for p in 0..k.div_ceil(2) {
            let lo = bf16(row[2 * p]);
            let hi = row.get(2 * p + 1).map_or(0, |&v| bf16(v));
            let at = rhs.index(r, p);
            rhs.data[at] = u32::from(lo) | (u32::from(hi) << 16);
        }
    }
    product(&lhs, rhs.view(), m, n, out);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgmlType;

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        crate::testing::portable_values(&format!("amx-{seed}"), n, 0.5, 0.0)
    }

    /// `x · yᵀ` in f64 over the bf16-rounded inputs: what the tiles must reproduce up to f32
    /// accumulation order.
    fn reference(x: &[f32], y: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let r = |v: f32| f64::from(f32_of(bf16(v)));
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|t| r(x[i * k + t]) * r(y[j * k + t])).sum();
                out[i * n + j] = s as f32;
            }
        }
        out
    }

    fn max_rel(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter()
            .zip(b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale))
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16(1.0), 0x3F80);
        assert_eq!(f32_of(bf16(1.0)), 1.0);
        // 1 + 2^-8 is half-way between two bf16 values: ties go to the even one (1.0)
        assert_eq!(f32_of(bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(f32_of(bf16(1.0 + 3.0 / 512.0)), 1.0 + 1.0 / 128.0);
        assert!(f32_of(bf16(f32::NAN)).is_nan());
        assert_eq!(f32_of(bf16(-2.5)), -2.5);
    }

    #[test]
    fn tiles_match_the_reference_on_ragged_shapes() {
        if !available() {
            eprintln!("AMX not available here: skipped");
            return;
        }
        for &(m, n, k) in &[
            (1, 1, 1),
            (17, 33, 40),
            (32, 32, 32),
            (70, 50, 576),
            (5, 200, 96),
        ] {
            let x = rand(m * k, 1 + m as u64);
            let y = rand(n * k, 2 + n as u64);
            let mut out = vec![f32::NAN; m * n];
            assert!(matmul_bt(&x, &y, m, n, k, &mut out));
            let want = reference(&x, &y, m, n, k);
            let err = max_rel(&out, &want);
            assert!(err < 1e-5, "{m}x{n}x{k}: relative error {err}");
        }
    }

    #[test]
    fn packed_products_match_the_dequantized_weight() {
        if !available() {
            eprintln!("AMX not available here: skipped");
            return;
        }
        let (rows, cols, n) = (96, 160, 37);
        let w = rand(rows * cols, 7);
        let packed = PackedMatrix::quantize_q8_0(&w, rows, cols).unwrap();
        assert_eq!(packed.src_type(), GgmlType::Q8_0);
        let dense = packed.dequantize();
        let x = rand(n * cols, 8);
        let mut out = vec![0f32; n * rows];
        assert!(packed_matmul(&packed, &x, n, &mut out));
        let want = reference(&x, &dense, n, rows, cols);
        assert!(max_rel(&out, &want) < 1e-5);
        // backward: g · W = g · (Wᵀ)ᵀ
        let g = rand(n * rows, 9);
        let mut dx = vec![0f32; n * cols];
        assert!(packed_matmul_grad(&packed, &g, n, &mut dx));
        let mut wt = vec![0f32; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                wt[c * rows + r] = dense[r * cols + c];
            }
        }
        let want = reference(&g, &wt, n, cols, rows);
        assert!(max_rel(&dx, &want) < 1e-5);
    }
}
