//! Where the CPU work runs. Three costs of candle's threading on a small model, all measured
//! with `perf` on the Toyland benchmark:
//! - candle asks for its thread count on every matmul, and unless RAYON_NUM_THREADS is set it
//!   counts the physical cores by parsing /proc/cpuinfo each time (7% of the run);
//! - every parallel loop started from a thread outside the rayon pool (the main thread) is
//!   queued to the pool and the caller sleeps until a worker has run it: a futex wake and a
//!   sleep per op, for ops that take microseconds;
//! - candle runs elementwise ops of 64K+ values on a second pool of its own ("candle-bp"),
//!   whose workers spin 25,000 times after each job before they sleep. Every core already runs
//!   one of our rayon workers, so the spin takes a core from them: the spinning worker held 5%
//!   of a 2-thread bench's samples. Batch-8 forward, best of 4 alternating runs each way:
//!   18.9 -> 18.1 and 25.1 -> 21.4 ms with the spin off.

/// Runs `f` on a worker of a rayon pool of candle's thread count, so parallel loops start
/// in place; fixes RAYON_NUM_THREADS and turns candle's pool spin off first (a user's values
/// are kept). Call once, at start.
pub fn run_in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let n = candle_core::utils::get_num_threads();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
    }
    // candle's backward walks the graph recursively: give the workers more stack than the main
    // thread's 8 MiB (rayon's default is 2 MiB), reserved, not touched, unless needed.
    match rayon::ThreadPoolBuilder::new().num_threads(n).stack_size(64 << 20).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}
