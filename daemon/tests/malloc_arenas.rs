//! The daemon runs on one malloc arena (`malloc_arenas::use_one_arena`): threads that allocate
//! after the call share it, so what worker threads allocate for an IKE SA does not spread a
//! server's memory over one arena per thread. glibc only (malloc_info).

#![cfg(all(target_os = "linux", target_env = "gnu"))]
#![allow(clippy::unwrap_used)]

use std::io::Read;

/// The number of arenas glibc reports (`<heap nr="...">` elements of malloc_info's XML).
fn arenas() -> usize {
    let mut file = tempfile::tempfile().unwrap();
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a duplicate of the temporary file's descriptor, opened for writing, closed
        // by fclose below; malloc_info only writes to it.
        unsafe {
            let fd = libc::dup(file.as_raw_fd());
            let stream = libc::fdopen(fd, c"w".as_ptr());
            assert!(!stream.is_null());
            assert_eq!(libc::malloc_info(0, stream), 0);
            libc::fclose(stream);
        }
    }
    use std::io::Seek;
    file.rewind().unwrap();
    let mut xml = String::new();
    file.read_to_string(&mut xml).unwrap();
    xml.matches("<heap nr=").count()
}

#[test]
fn threads_started_after_the_call_make_no_arena_of_their_own() {
    hometun_daemon::malloc_arenas::use_one_arena();
    let before = arenas();
    // Four threads allocate and stay alive until the count: without the limit each would get
    // an arena of its own (glibc allows 8 per core).
    let allocated = std::sync::Arc::new(std::sync::Barrier::new(5));
    let counted = std::sync::Arc::new(std::sync::Barrier::new(5));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (allocated, counted) = (allocated.clone(), counted.clone());
            std::thread::spawn(move || {
                let kept: Vec<Vec<u8>> = (0..2000).map(|i| vec![i as u8; 512]).collect();
                allocated.wait();
                counted.wait();
                drop(kept);
            })
        })
        .collect();
    allocated.wait();
    let during = arenas();
    counted.wait();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        during, before,
        "arenas before the threads: {before}, with them: {during}"
    );
}
