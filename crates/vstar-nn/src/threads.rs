//! Where the CPU work runs. Two costs of candle's threading on a small model, both measured
//! with `perf` on the Toyland benchmark:
//! - candle asks for its thread count on every matmul, and unless RAYON_NUM_THREADS is set it
//!   counts the physical cores by parsing /proc/cpuinfo each time (7% of the run);
//! - every parallel loop started from a thread outside the rayon pool (the main thread) is
//!   queued to the pool and the caller sleeps until a worker has run it: a futex wake and a
//!   sleep per op, for ops that take microseconds.

/// Runs `f` on a worker of a rayon pool of candle's thread count, so parallel loops start
/// in place; fixes RAYON_NUM_THREADS first (a user's value is kept). Call once, at start.
pub fn run_in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let n = candle_core::utils::get_num_threads();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    // candle's backward walks the graph recursively: give the workers more stack than the main
    // thread's 8 MiB (rayon's default is 2 MiB), reserved, not touched, unless needed.
    match rayon::ThreadPoolBuilder::new().num_threads(n).stack_size(64 << 20).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}
