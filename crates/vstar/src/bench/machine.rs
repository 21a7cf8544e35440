//! What the machine can do and what a measurement used: the GEMM peak that FLOP/s figures are
//! a percentage of, and the peak heap a measurement used.

use anyhow::Result;
use candle_core::{Device, Tensor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The system allocator, counting live heap bytes and their high-water mark, so a benchmark
/// can say how much memory one measurement needed. (Resident-set figures cannot: malloc keeps
/// freed buffers in the process on purpose, see `vstar_nn::alloc`.)
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let q = System.realloc(p, l, new_size);
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
            grew(new_size);
        }
        q
    }
}

/// Starts a new high-water mark at the current live heap.
pub fn reset_peak_memory() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Peak live heap in MiB since the last reset (weights and inputs included).
pub fn peak_memory_mib() -> f64 {
    PEAK.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
}
