//! Process-wide glibc `malloc` settings for training.
//!
//! A training step allocates and frees the same set of large activation and gradient buffers
//! every step. With glibc's defaults, buffers of several MiB are `mmap`ed and `munmap`ed each time
//! and the freed top of the heap is trimmed, so every step page-faults its working set back in: the
//! kernel's page-fault and zeroing paths were over a quarter of a libtorch step's samples here
//! (docs/performance.md). [`keep_freed_memory`] makes freed memory stay in the process for reuse:
//! the mmap threshold at glibc's maximum (32 MiB; larger values are ignored), no trimming below
//! 2 GiB of free heap, and the heap grown 512 MiB at a time. The live buffers are the same, but the
//! resident size no longer falls between steps and its peak can grow by up to the top pad and the
//! freed buffers kept for reuse (≈0.5 GiB on a ResNet-18 step on libtorch, docs/performance.md).
//!
//! Both Rust allocations (flex) and libtorch's CPU allocator go through this `malloc`.

/// The `mallopt` settings, as (parameter, value, the environment variable that overrides it).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const SETTINGS: [(libc::c_int, libc::c_int, &str); 3] = [
    (libc::M_MMAP_THRESHOLD, 32 << 20, "MALLOC_MMAP_THRESHOLD_"),
    (libc::M_TRIM_THRESHOLD, i32::MAX, "MALLOC_TRIM_THRESHOLD_"),
    (libc::M_TOP_PAD, 512 << 20, "MALLOC_TOP_PAD_"),
];

/// Applies the settings above, each unless its glibc environment variable is set (the user's
/// choice wins; `MALLOC_TRIM_THRESHOLD_=131072` restores glibc's trimming, for example). Returns
/// the number of settings applied; 0 where the C library is not glibc.
pub fn keep_freed_memory() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        SETTINGS
            .iter()
            .filter(|(_, _, env)| std::env::var_os(env).is_none())
            // SAFETY: `mallopt` takes plain integers and only changes allocator parameters
            // (under glibc's own arena locks).
            .filter(|(param, value, _)| unsafe { libc::mallopt(*param, *value) } == 1)
            .count()
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0
}
