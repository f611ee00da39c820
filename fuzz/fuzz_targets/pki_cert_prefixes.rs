//! Certificates from IKE_AUTH: prefix extraction (x509-parser + our RFC 3779 decoder) and the
//! description the IKE daemon reads must never panic on hostile DER. The extension decoder
//! is also driven directly, and what it accepts re-encodes to blocks covering the same space.
#![no_main]

use hometun_certs::addrblock::{
    decode_ip_addr_blocks, encode_ipv6_prefixes, prefixes_from_certificate,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = prefixes_from_certificate(data);
    let _ = hometun_certs::verify::describe(data);
    if let Ok(blocks) = decode_ip_addr_blocks(data)
        && let Some(v6) = blocks.ipv6
        && !v6.is_empty()
    {
        let der = encode_ipv6_prefixes(&v6).expect("non-empty list encodes");
        let again = decode_ip_addr_blocks(&der).expect("our encoding decodes");
        let mut a = ipnet::Ipv6Net::aggregate(&v6);
        let mut b = ipnet::Ipv6Net::aggregate(&again.ipv6.expect("IPv6 family"));
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
});
