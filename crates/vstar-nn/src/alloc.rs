//! Keep freed memory in the process. Every candle op allocates its output; with glibc's
//! defaults, buffers above the mmap threshold are returned to the kernel on free and the next
//! op page-faults fresh zeroed pages (15% of a Toyland UNet training step in `perf`). Raising
//! the thresholds lets malloc reuse them: the step went from 4.1 s to 2.7 s.

/// Call once at program start (the training examples do; the `vstar` binary allocates with
/// mimalloc, which glibc's settings do not reach). No-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before heavy allocation.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
