//! Bundles arrive from the enrollment server or as files: parsing and checking must never
//! panic, and what parses must survive a write/parse round trip.
#![no_main]

use hometun_pki::bundle::Bundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = Bundle::parse(data) {
        let again = Bundle::parse(bundle.to_toml().as_bytes()).expect("a parsed bundle re-parses");
        assert_eq!(again, bundle);
    }
});
