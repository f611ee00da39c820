//! Seeds for the PKI targets from what `hometun pki` itself makes: a CA directory initialised
//! like `hometun pki init`, a home's CSR signed like `hometun pki sign`, its bundle
//! (`pki_bundle`), its certificate and the CA's (`pki_cert_prefixes`, and `pki_ike_cert` as
//! raw certificates, mode 0), and `pki_ike_cert`'s template modes with a few edits.
//!
//! Usage: `cargo run --example pki_seeds -- DIR` (from fuzz/), then `cargo fuzz cmin`.

use std::path::PathBuf;

use hometun_pki::ca::KeyType;
use hometun_pki::server_dir::{InitOptions, ServerDir};
use time::OffsetDateTime;

fn write(dir: &std::path::Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed written");
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let now = OffsetDateTime::now_utc();
    let scratch = std::env::temp_dir().join(format!("hometun-pki-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    for (tag, key) in [("ed25519", KeyType::Ed25519), ("p256", KeyType::P256)] {
        let dir = ServerDir::new(&scratch.join(tag));
        dir.init(
            &InitOptions {
                server_ipv4: "192.0.2.1".parse().expect("literal"),
                server_name: "vps.example".into(),
                pool: "2001:db8:100::/48".parse().expect("literal"),
                prefix_len: 64,
                key,
                grace_days: 30,
                enroll_port: 8443,
            },
            now,
        )
        .expect("pki init");
        let home = key.generate().expect("key");
        let csr = hometun_pki::csr::make_csr(&home, "home.example").expect("CSR");
        let issued = dir.sign(csr.as_bytes(), 730, now).expect("pki sign");
        let bundle = issued.bundle.to_toml();
        write(
            &out,
            "pki_bundle",
            &format!("issued-{tag}"),
            bundle.as_bytes(),
        );
        let cert = issued
            .bundle
            .certificate_der()
            .expect("certificate")
            .to_vec();
        write(&out, "pki_cert_prefixes", &format!("home-{tag}"), &cert);
        let mut raw = vec![0u8];
        raw.extend_from_slice(&cert);
        write(&out, "pki_ike_cert", &format!("raw-home-{tag}"), &raw);
        let ca_pem = std::fs::read(dir.dir().join("ca.pem")).expect("ca.pem");
        let ca = hometun_ike::crypto::credentials::certificates_from_pem(&ca_pem)
            .expect("CA PEM")
            .remove(0);
        write(&out, "pki_cert_prefixes", &format!("ca-{tag}"), &ca);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    // pki_ike_cert's template modes (see its header): each template unchanged (mode 1 edits
    // nothing; modes 2 and 3 re-sign), each identity, with and without CRL, and a few edits.
    for mode in [1u8, 2, 5, 6, 0x12, 0x22, 0x32, 0x42, 0x82, 0x0e] {
        write(&out, "pki_ike_cert", &format!("mode-{mode:02x}"), &[mode]);
    }
    // Edits: a byte of the validity, of the extensions, an insert.
    write(
        &out,
        "pki_ike_cert",
        "edit-validity",
        &[0x02, 0x00, 0x60, 0x01, 0x39],
    );
    write(
        &out,
        "pki_ike_cert",
        "edit-insert",
        &[0x02, 0x00, 0xa0, 0x84, 1, 2, 3, 4],
    );
    println!("PKI seeds in {}", out.display());
}
