//! The allocator settings of `simclr::malloc` are all accepted by glibc.

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_accepts_every_setting() {
    // mallopt rejects out-of-range values (e.g. an mmap threshold above 32 MiB) by returning 0,
    // which `keep_freed_memory` does not count. No MALLOC_*_ variable is set in the test run.
    for var in ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"] {
        assert!(std::env::var_os(var).is_none(), "unset {var} to run this test");
    }
    assert_eq!(simclr::malloc::keep_freed_memory(), 3);
}
