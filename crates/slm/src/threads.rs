//! The compute thread pool. Kernels parallelise with rayon inside this pool; callers enter it
//! once per forward pass ([`run`]) so that the many small parallel loops of a decode step do not
//! each pay the cost of injecting work from outside.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();

/// Sets the number of compute threads. Only effective before the first forward pass; returns
/// whether it took effect. Defaults to `DOWNSHIFT_THREADS`, else the number of available cores.
pub fn set_num_threads(n: usize) -> bool {
    if POOL.get().is_some() {
        return false;
    }
    REQUESTED.store(n.max(1), Ordering::SeqCst);
    true
}

/// The number of threads the pool uses (or will use).
pub fn num_threads() -> usize {
    match POOL.get() {
        Some(Some(p)) => p.current_num_threads(),
        Some(None) => 1,
        None => requested(),
    }
}

fn requested() -> usize {
    let n = REQUESTED.load(Ordering::SeqCst);
    if n > 0 {
        return n;
    }
    if let Some(n) = std::env::var("DOWNSHIFT_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn pool() -> Option<&'static rayon::ThreadPool> {
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(requested())
            .thread_name(|i| format!("slm-compute-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Runs `f` inside the compute pool (or on the current thread when the pool could not start).
pub fn run<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// Calls `f(i)` for `i in 0..n` in parallel (inside [`run`] this uses the compute pool).
pub(crate) fn par_for(n: usize, f: impl Fn(usize) + Sync + Send) {
    use rayon::prelude::*;
    if n <= 1 {
        if n == 1 {
            f(0);
        }
        return;
    }
    if rayon::current_thread_index().is_some() {
        (0..n).into_par_iter().for_each(f);
    } else {
        run(|| (0..n).into_par_iter().for_each(f));
    }
}

/// Calls `f(i, chunk)` for the chunks of `len` elements of `data`, in parallel (inside [`run`]
/// this uses the compute pool, like [`par_for`]).
pub(crate) fn par_chunks<T: Send>(
    data: &mut [T],
    len: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    use rayon::prelude::*;
    let go = |data: &mut [T]| {
        data.par_chunks_mut(len.max(1))
            .enumerate()
            .for_each(|(i, c)| f(i, c))
    };
    if rayon::current_thread_index().is_some() {
        go(data)
    } else {
        run(|| go(data))
    }
}

/// A raw pointer that may be shared between the tasks of a parallel loop that write disjoint
/// elements.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(pub *mut T);
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer (a method, so closures capture the whole `SyncPtr`, which is `Sync`, rather
    /// than its field, which is not).
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }

    /// # Safety
    /// `i` must be in bounds and no other task may access element `i` concurrently.
    #[inline(always)]
    pub(crate) unsafe fn write(self, i: usize, v: T) {
        unsafe { self.0.add(i).write(v) }
    }
}

/// Keeps freed memory in the process for reuse instead of handing it back to the kernel.
///
/// A training step allocates and frees the same few hundred activation buffers every update.
/// glibc's defaults serve the large ones with fresh `mmap`s and trim the heap when they are
/// freed, so every update page-faults its working set in again (the kernel zeroing pages was
/// about a fifth of a training step). With this, buffers up to 32 MiB come from the heap and
/// the heap is never trimmed: peak RSS is unchanged (it is the peak of the live tensors), but
/// RSS no longer falls between updates. Process-wide; the trainer calls it once.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; any value is accepted or refused.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}
