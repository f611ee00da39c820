//! TCP MSS clamping (hometun_forwarder::mss) on arbitrary packets, as the forwarder applies it
//! to every packet crossing the tunnel: nothing may panic; a packet that changes is an IPv6 TCP
//! SYN whose MSS is now the limit, nothing before the TCP header changed, its length did not,
//! and clamping it again changes nothing.
#![no_main]

use hometun_forwarder::mss::clamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((limit, packet)) = data.split_at_checked(2) else {
        return;
    };
    let limit = u16::from_be_bytes([limit[0], limit[1]]);
    let mut clamped = packet.to_vec();
    if clamp(&mut clamped, limit) {
        assert_eq!(clamped.len(), packet.len());
        assert_eq!(clamped[..40], packet[..40]);
        assert_eq!(clamped[6], 6);
        assert!(clamped[53] & 0x02 != 0);
        let mut again = clamped.clone();
        assert!(!clamp(&mut again, limit));
        assert_eq!(again, clamped);
    } else {
        assert_eq!(clamped, packet);
    }
});
