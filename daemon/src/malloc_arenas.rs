//! One malloc arena for the whole daemon. glibc gives each thread that allocates its own arena,
//! and what the worker threads allocate for an IKE SA (its keys, the peer's verified
//! certificate) lives as long as the SA: spread over the driver's and the workers' arenas, a
//! server held 9.2 KiB per idle home instead of 5.6 (`bench/memory.sh 1000 35`, bench/README.md
//! "memory.sh"). Small allocations still come from each thread's cache without the arena lock.

/// Limits glibc to one arena. Call before the first thread starts; elsewhere (musl) a no-op.
pub fn use_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no thread is allocating yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
