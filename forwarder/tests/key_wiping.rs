//! Old keys do not outlive their pair in the forwarder's memory (docs/ARCHITECTURE.md, "Keys
//! and forward secrecy"). A test allocator scans every heap block the forwarder gives back for
//! the key bytes of a pair: from the Install frame that carries them, through the SAD and the
//! AES-GCM key schedules of every backend (whose first round key is the key itself), to the
//! pair's deletion. Blocks that C code frees (aws-lc's key schedules) are scanned too: this test
//! binary puts its own `free` in front of the C library's. A key left in freed memory is found;
//! nothing may be.

#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use hometun_control::{
    AeadAlg, AeadKey, ChildSa, Envelope, FrameDecoder, InterfaceConfig, Request, Spi, encode_frame,
};
use hometun_forwarder::aead::AeadBackend;
use hometun_forwarder::clock::Now;
use hometun_forwarder::requests::{RecordingPlatform, RequestHandler};
use hometun_forwarder::server::{ControlClient, Server};

/// The tests share the allocator's switch and count: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The keys' first 16 bytes: unlikely anywhere else in memory.
static KEY_IN: [u8; 16] = *b"hometun:wipe:in!";
static KEY_OUT: [u8; 16] = *b"hometun:wipe:out";

static ARMED: AtomicBool = AtomicBool::new(false);
static FOUND: AtomicUsize = AtomicUsize::new(0);
/// Blocks freed by C code (not through the Rust allocator) while armed.
static C_FREES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set while the Rust allocator frees a block (it ends in `free` too).
    static IN_RUST_DEALLOC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The system allocator, which looks into each block it frees while armed.
struct Scanning;

// SAFETY: every call is passed on to the system allocator unchanged; `dealloc` only reads the
// block (which the caller still owns until it returns) before passing it on.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) {
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block
                .windows(16)
                .any(|w| w == KEY_IN.as_slice() || w == KEY_OUT.as_slice())
            {
                FOUND.fetch_add(1, Ordering::Relaxed);
            }
        }
        IN_RUST_DEALLOC.with(|flag| flag.set(true));
        unsafe { System.dealloc(ptr, layout) }
        IN_RUST_DEALLOC.with(|flag| flag.set(false));
    }
}

#[global_allocator]
static ALLOCATOR: Scanning = Scanning;

unsafe extern "C" {
    /// glibc's own `free`, under the name it exports beside `free`.
    fn __libc_free(ptr: *mut std::ffi::c_void);
    fn malloc_usable_size(ptr: *mut std::ffi::c_void) -> usize;
}

/// `free(3)` for the whole test binary (the executable's definition comes before the C
/// library's): scans the block while armed, then hands it to glibc. aws-lc, linked into this
/// binary, frees its AEAD contexts here (`OPENSSL_free`).
///
/// # Safety
///
/// As `free(3)`: `ptr` is null or a live block from `malloc` and friends.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut std::ffi::c_void) {
    if !ptr.is_null() && ARMED.load(Ordering::Relaxed) {
        if !IN_RUST_DEALLOC.with(|flag| flag.get()) {
            C_FREES.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: a live block from malloc: its usable size is readable until it is freed.
        let block =
            unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), malloc_usable_size(ptr)) };
        if block
            .windows(16)
            .any(|w| w == KEY_IN.as_slice() || w == KEY_OUT.as_slice())
        {
            FOUND.fetch_add(1, Ordering::Relaxed);
        }
    }
    // SAFETY: passed on unchanged.
    unsafe { __libc_free(ptr) }
}

/// The scan sees blocks that C code frees: a key left in one is found (else the aws-lc case
/// below could not fail).
#[test]
fn the_scan_sees_what_c_code_frees() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    FOUND.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    // SAFETY: a fresh block of 64 bytes, written within its bounds and freed once.
    unsafe {
        let block = libc::malloc(64).cast::<u8>();
        assert!(!block.is_null());
        std::ptr::copy_nonoverlapping(KEY_IN.as_ptr(), block.add(8), KEY_IN.len());
        libc::free(block.cast());
    }
    ARMED.store(false, Ordering::SeqCst);
    assert_eq!(FOUND.load(Ordering::SeqCst), 1);
}

fn key(alg: AeadAlg, first: &[u8; 16]) -> AeadKey {
    // On the stack (never scanned); AeadKey copies it to the heap and wipes it when dropped.
    let mut keymat = [0x5au8; 36];
    keymat[..16].copy_from_slice(first);
    let key = AeadKey::from_keymat(alg, &keymat[..alg.key_len() + 4]).unwrap();
    zeroize::Zeroize::zeroize(&mut keymat);
    key
}

fn interface() -> InterfaceConfig {
    InterfaceConfig {
        tun_name: "wipe0".into(),
        mtu: 1400,
        addresses: vec!["fe80::1/64".parse().unwrap()],
        bind_ipv4: None,
        udp_port: 4500,
        raw_esp: true,
        manage_routes: false,
        route_metric: 1024,
        route_protocol: 57,
        peer_pool: None,
        clamp_mss: false,
        icmp_source: None,
    }
}

fn child_sa(
    alg: AeadAlg,
    spi_in: u32,
    spi_out: u32,
    key_in: &[u8; 16],
    key_out: &[u8; 16],
) -> ChildSa {
    let mut sa = ChildSa::builder().spis(spi_in, spi_out).build();
    sa.key_in = key(alg, key_in);
    sa.key_out = key(alg, key_out);
    sa
}

/// One side: a handler that gets the pair through the SA channel's framing, as the forwarder
/// process does.
fn side(backend: AeadBackend, sa: ChildSa) -> RequestHandler<RecordingPlatform> {
    let (mut handler, _events) = RequestHandler::new(RecordingPlatform::default(), backend);
    handler.handle(Request::Configure(interface())).unwrap();
    let frame = encode_frame(&Envelope {
        id: 1,
        request: Request::Install(sa),
    })
    .unwrap();
    let mut decoder = FrameDecoder::new();
    // In two pieces, the keys in the first, so that the decoder's buffer grows with them in it.
    let split = frame.len() - 20;
    decoder.push(&frame[..split]);
    decoder.push(&frame[split..]);
    let envelope: Envelope = decoder.next_message().unwrap().unwrap();
    handler.handle(envelope.request).unwrap();
    handler
}

/// An IPv6 packet from inside the pair's remote selector (2001:db8:1::/64), no next header.
fn ipv6_packet(fill: u8) -> Vec<u8> {
    let payload = 160u16;
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&payload.to_be_bytes());
    p.extend_from_slice(&[59, 64]);
    p.extend_from_slice(
        &"2001:db8:1::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    p.extend_from_slice(
        &"2001:db8:2::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    p.extend(std::iter::repeat_n(fill, usize::from(payload)));
    p
}

#[test]
fn a_deleted_pair_leaves_no_key_in_freed_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    FOUND.store(0, Ordering::SeqCst);
    for backend in AeadBackend::ALL {
        for alg in [AeadAlg::AesGcm128, AeadAlg::AesGcm256] {
            C_FREES.store(0, Ordering::SeqCst);
            ARMED.store(true, Ordering::SeqCst);
            // Home and server sides of one pair: what one seals the other opens.
            let mut a = side(backend, child_sa(alg, 0x100, 0x200, &KEY_IN, &KEY_OUT));
            let mut b = side(backend, child_sa(alg, 0x200, 0x100, &KEY_OUT, &KEY_IN));
            for n in 0..8u8 {
                let inner = ipv6_packet(n);
                let mut out = vec![0u8; 400];
                let pair_a = a.sad().load().inbound(Spi(0x100)).unwrap().clone();
                let len = pair_a.seal(&inner, &mut out).unwrap();
                let mut packet = out[..len].to_vec();
                let seq = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
                let pair_b = b.sad().load().inbound(Spi(0x200)).unwrap().clone();
                assert!(
                    pair_b.open(seq, &mut packet, Now::ZERO).is_ok(),
                    "{backend:?} {alg:?}"
                );
            }
            a.handle(Request::Delete { spi_in: Spi(0x100) }).unwrap();
            b.handle(Request::Delete { spi_in: Spi(0x200) }).unwrap();
            drop(a);
            drop(b);
            ARMED.store(false, Ordering::SeqCst);
            assert_eq!(
                FOUND.load(Ordering::SeqCst),
                0,
                "{backend:?} {alg:?}: key bytes in freed memory"
            );
            if backend == AeadBackend::AwsLc {
                // Its four contexts (two per side) were freed where the scan saw them.
                assert!(
                    C_FREES.load(Ordering::SeqCst) >= 4,
                    "{alg:?}: aws-lc's frees did not pass the scan"
                );
            }
        }
    }
}

/// The forwarder process's own path: the Install arrives on a control connection (as from the
/// daemon through `--control-fd`), is read into the connection's buffer, decoded and installed;
/// the pair is deleted and the daemon goes away. Neither the connection's read buffer nor
/// anything else handed back may still hold the keys.
#[test]
fn a_pair_sent_over_a_control_connection_leaves_no_key_in_freed_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    FOUND.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let (handler, events) = RequestHandler::new(RecordingPlatform::default(), AeadBackend::AwsLc);
    let server = Server::new(handler, events);
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    server.adopt(theirs);
    let mut daemon = ControlClient::from_stream(ours);
    daemon
        .request(Request::Configure(interface()))
        .unwrap()
        .0
        .unwrap();
    let sa = child_sa(AeadAlg::AesGcm256, 0x100, 0x200, &KEY_IN, &KEY_OUT);
    daemon.request(Request::Install(sa)).unwrap().0.unwrap();
    // A shorter frame after it: a buffer reused without wiping keeps the Install's tail.
    daemon
        .request(Request::Delete { spi_in: Spi(0x100) })
        .unwrap()
        .0
        .unwrap();
    drop(daemon);
    // The connection ends, and with it the server (the daemon that configured it is gone).
    server.wait();
    drop(server);
    ARMED.store(false, Ordering::SeqCst);
    assert_eq!(
        FOUND.load(Ordering::SeqCst),
        0,
        "key bytes in freed memory after a control connection"
    );
}
