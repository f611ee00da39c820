//! `heap_trim::trim` gives free heap pages back to the system: after most of many small
//! blocks were freed (a burst's transient allocations between long-lived ones), the resident
//! size drops only when it is called. glibc only.

#![cfg(all(target_os = "linux", target_env = "gnu"))]
#![allow(clippy::unwrap_used)]

/// VmRSS of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn trimming_returns_the_free_pages_a_burst_left_behind() {
    let start = rss_kib();
    // 64 MiB in 1 KiB blocks (below the mmap threshold: they come from the heap), each one
    // written, so its page is resident.
    let blocks: Vec<Vec<u8>> = (0..65_536).map(|i| vec![i as u8; 1024]).collect();
    // Keep one block in 64: the heap cannot shrink from its top, and most pages are free.
    let kept: Vec<Vec<u8>> = blocks.into_iter().skip(63).step_by(64).collect();
    let freed = rss_kib();
    assert!(
        freed > start + 48 * 1024,
        "freeing alone gave the pages back: {start} KiB at the start, {freed} KiB after"
    );
    hometun_control::heap_trim::trim();
    let trimmed = rss_kib();
    assert!(
        trimmed + 32 * 1024 < freed,
        "the trim returned less than 32 MiB: {freed} KiB -> {trimmed} KiB"
    );
    assert_eq!(kept.len(), 1024);
}
