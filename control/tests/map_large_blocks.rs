//! `heap_trim::map_large_blocks` keeps large blocks out of the heap for good: after a large
//! mapped block was freed (which makes glibc raise its limit), a block of 256 KiB is still
//! mapped on its own, so freeing it returns its pages. glibc only (mallinfo2).

#![cfg(all(target_os = "linux", target_env = "gnu"))]
#![allow(clippy::unwrap_used)]

/// Bytes in blocks that have a mapping of their own.
fn mapped_bytes() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    unsafe { libc::mallinfo2().hblkhd }
}

#[test]
fn a_large_block_is_mapped_even_after_a_larger_one_was_freed() {
    hometun_control::heap_trim::map_large_blocks();
    let large = vec![1u8; 4 << 20];
    drop(std::hint::black_box(large));
    let before = mapped_bytes();
    let block = std::hint::black_box(vec![2u8; 256 << 10]);
    let during = mapped_bytes();
    assert!(
        during >= before + (256 << 10),
        "a 256 KiB block came from the heap: {before} mapped bytes before, {during} with it"
    );
    drop(block);
}
