//! What the machine can do and what a measurement used: the GEMM peak that FLOP/s figures are
//! a percentage of, and the peak heap a measurement used.

use anyhow::Result;
use candle_core::{Device, Tensor};
use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::Instant;

/// Sides of the square products the peak is taken over (the reference script uses the same).
pub const GEMM_SIDES: [usize; 3] = [512, 1024, 2048];

/// The best f32 GEMM rate in GFLOP/s over square products of a few sizes (candle's matmul,
/// all threads): the practical peak of this machine for the kernels the models use.
pub fn gemm_peak_gflops() -> Result<(f64, usize)> {
    let dev = Device::Cpu;
    let mut best = (0.0, 0);
    for n in GEMM_SIDES {
        let a = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
        a.matmul(&b)?;
        for _ in 0..3 {
            let t = Instant::now();
            a.matmul(&b)?;
            let g = 2.0 * (n as f64).powi(3) / t.elapsed().as_secs_f64() / 1e9;
            if g > best.0 {
                best = (g, n);
            }
        }
    }
    Ok(best)
}

/// vstar's allocator: mimalloc, counting live heap bytes and their high-water mark once
/// `bench` turns counting on, so a benchmark can say how much memory one measurement needed.
/// (Resident-set figures cannot: allocators keep freed buffers in the process on purpose, see
/// `vstar_nn::alloc`.) Every candle op allocates its output, and mimalloc serves that faster
/// than glibc's malloc: best of 4 alternating 2-thread `vstar bench --only toyland` runs, forward
/// 16-32% faster, LoRA step 4-10%, sampling 8%. Counting off costs one relaxed load per call:
/// the two atomic updates per allocation had been paid by every command, 3% of a Toyland LoRA
/// step (perf, 1 thread).
pub struct CountingAlloc;

/// Turns off mimalloc's return of freed memory to the OS (after 1 s by default), unless the user
/// set MIMALLOC_PURGE_DELAY: each large buffer freed that way is faulted back in as fresh
/// zeroed pages by the next op that needs one (the kernel's page clearing was 5% of an
/// SD-1.5-level LoRA step in `perf`), as glibc's were (see `vstar_nn::alloc`). Call once, at
/// start.
pub fn keep_freed_pages() {
    // mi_option_purge_delay in mimalloc.h (v2 and v3); libmimalloc-sys does not name it.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one allocator option; called before any thread is started.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
    }
}

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes allocated minus bytes freed since counting started (signed: blocks from before are
/// freed too).
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grew(n: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        let now = LIVE.fetch_add(n as isize, Ordering::Relaxed) + n as isize;
        if now > PEAK.load(Ordering::Relaxed) {
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
    }
}

fn shrank(n: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_sub(n as isize, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to mimalloc unchanged; only counters are updated.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = MiMalloc.alloc(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = MiMalloc.alloc_zeroed(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        MiMalloc.dealloc(p, l);
        shrank(l.size());
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let q = MiMalloc.realloc(p, l, new_size);
        if !q.is_null() {
            shrank(l.size());
            grew(new_size);
        }
        q
    }
}

/// Turns counting on (before the benchmark loads anything, so its weights are counted).
pub fn start_counting() {
    COUNTING.store(true, Ordering::Relaxed);
}

/// Starts a new high-water mark at the current live heap.
pub fn reset_peak_memory() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Peak live heap in MiB since the last reset (weights and inputs included).
pub fn peak_memory_mib() -> f64 {
    PEAK.load(Ordering::Relaxed).max(0) as f64 / (1 << 20) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Once counting is on, a live 8 MiB buffer raises the high-water mark by at least its size
    /// (other tests' allocations can only add to it), and freeing it lowers the live count.
    #[test]
    fn counts_live_heap_once_started() {
        start_counting();
        reset_peak_memory();
        let before = peak_memory_mib();
        let buf = vec![1u8; 8 << 20];
        assert!(peak_memory_mib() - before >= 8.0, "peak {} -> {}", before, peak_memory_mib());
        let live = LIVE.load(Ordering::Relaxed);
        drop(std::hint::black_box(buf));
        assert!(LIVE.load(Ordering::Relaxed) <= live - (8 << 20) + (1 << 20));
    }
}
