//! Known-answer tests against a real strongSwan 5.9.8 conversation (docs/ARCHITECTURE.md,
//! "Tests"):
//! nonces, SPIs and messages come from trace.pcap, the expected keys from the charon logs'
//! hex dumps (parsed here, never retyped).

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod crypto_support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, UNIX_EPOCH};

use aes_gcm::aead::{AeadInOut, KeyInit};
use hometun_control::{AeadAlg, AeadKey};
use hometun_ike::crypto::auth::{self, AuthRole};
use hometun_ike::crypto::credentials::certificates_from_pem;
use hometun_ike::crypto::{
    CertificateVerifier, ChildSaKeys, CryptoError, IkeSaKeys, PeerIdentity, PrivateKey,
    SignatureScheme, SkGcm, Skeyseed, natd_hash,
};
use hometun_ike::wire::SkCipher;

use crypto_support::*;
use hometun_lab::trace::*;

const IKE_SA_INIT: u8 = 34;
const IKE_AUTH: u8 = 35;
const CREATE_CHILD_SA: u8 = 36;

const INITIATOR_LOG: &str = "initiator-charon.log";
const RESPONDER_LOG: &str = "responder-charon.log";

/// Ni, Nr, SPIi, SPIr and the two IKE_SA_INIT messages, from the trace.
struct SaInit {
    request: Vec<u8>,
    response: Vec<u8>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    spi_i: u64,
    spi_r: u64,
}

fn sa_init(datagrams: &[Datagram]) -> SaInit {
    let messages: Vec<&[u8]> = datagrams
        .iter()
        .filter_map(Datagram::ike_message)
        .filter(|m| header(m).exchange == IKE_SA_INIT)
        .collect();
    assert_eq!(messages.len(), 2, "one IKE_SA_INIT exchange in the trace");
    let (request, response) = (messages[0], messages[1]);
    assert!(!header(request).is_response() && header(response).is_response());
    let nonce = |m: &[u8]| {
        find(&message_payloads(m), kind::NONCE)
            .expect("Nonce payload")
            .body
            .clone()
    };
    SaInit {
        request: request.to_vec(),
        response: response.to_vec(),
        ni: nonce(request),
        nr: nonce(response),
        spi_i: u64::from_be_bytes(header(response).spi_i),
        spi_r: u64::from_be_bytes(header(response).spi_r),
    }
}

fn ike_keys(init: &SaInit, log: &str) -> IkeSaKeys {
    let dumps = log_dumps(&log_text(log));
    let g_ir = single(&dumps, "shared Diffie Hellman secret");
    IkeSaKeys::initial(
        AeadAlg::AesGcm128,
        &init.ni,
        &init.nr,
        g_ir,
        init.spi_i,
        init.spi_r,
    )
    .unwrap()
}

#[test]
fn skeyseed_and_sk_keys_equal_strongswans() {
    let datagrams = trace_datagrams();
    let init = sa_init(&datagrams);
    assert_eq!(init.ni.len(), 32);
    for log in [INITIATOR_LOG, RESPONDER_LOG] {
        let dumps = log_dumps(&log_text(log));
        let g_ir = single(&dumps, "shared Diffie Hellman secret");

        let skeyseed = Skeyseed::initial(&init.ni, &init.nr, g_ir).unwrap();
        assert_eq!(skeyseed.as_bytes(), single(&dumps, "SKEYSEED"), "{log}");

        let keys = skeyseed
            .derive_ike_keys(
                AeadAlg::AesGcm128,
                &init.ni,
                &init.nr,
                init.spi_i,
                init.spi_r,
            )
            .unwrap();
        assert_eq!(keys.sk_d(), single(&dumps, "Sk_d secret"), "{log}");
        assert_eq!(keys.sk_ei(), single(&dumps, "Sk_ei secret"), "{log}");
        assert_eq!(keys.sk_er(), single(&dumps, "Sk_er secret"), "{log}");
        assert_eq!(keys.sk_pi(), single(&dumps, "Sk_pi secret"), "{log}");
        assert_eq!(keys.sk_pr(), single(&dumps, "Sk_pr secret"), "{log}");
        // strongSwan logs no Sk_ai / Sk_ar for an AEAD, and we derive none.
        assert!(dumps_labelled(&dumps, "Sk_ai secret").is_empty());
        assert!(keys.sk_ai().is_empty() && keys.sk_ar().is_empty());
        println!("{log}: SKEYSEED, SK_d, SK_ei, SK_er, SK_pi, SK_pr equal");
    }
}

/// "CHILD_SA v6{N} ... established with SPIs X_i Y_o" lines: (N, inbound, outbound), first
/// occurrence of each N, in log order.
fn child_sa_spis(log: &str) -> Vec<(u32, u32, u32)> {
    let mut out: Vec<(u32, u32, u32)> = Vec::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once("CHILD_SA v6{") else {
            continue;
        };
        let Some((n, rest)) = rest.split_once('}') else {
            continue;
        };
        let Some((_, spis)) = rest.split_once("established with SPIs ") else {
            continue;
        };
        let mut words = spis.split_whitespace();
        let spi = |w: Option<&str>, suffix: &str| {
            let w = w.expect("SPI").strip_suffix(suffix).expect("SPI suffix");
            u32::from_str_radix(w, 16).expect("hex SPI")
        };
        let n: u32 = n.parse().expect("CHILD_SA number");
        let (inbound, outbound) = (spi(words.next(), "_i"), spi(words.next(), "_o"));
        if !out.iter().any(|(m, _, _)| *m == n) {
            out.push((n, inbound, outbound));
        }
    }
    out
}

fn open_esp(key: &AeadKey, packet: &[u8]) -> Option<Vec<u8>> {
    let (aad, rest) = packet.split_at(8);
    let (iv, rest) = rest.split_at(8);
    let (ct, icv) = rest.split_at(rest.len() - 16);
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&key.salt());
    nonce[4..].copy_from_slice(iv);
    let mut buf = ct.to_vec();
    let icv: [u8; 16] = icv.try_into().ok()?;
    let gcm = aes_gcm::Aes128Gcm::new_from_slice(key.key()).ok()?;
    gcm.decrypt_inout_detached(&nonce.into(), aad, buf.as_mut_slice().into(), &icv.into())
        .ok()?;
    Some(buf)
}

#[test]
fn child_sa_keys_equal_strongswans_for_initial_sa_and_both_rekeys() {
    let datagrams = trace_datagrams();
    let init = sa_init(&datagrams);
    let log = log_text(INITIATOR_LOG);
    let dumps = log_dumps(&log);
    let keys = ike_keys(&init, INITIATOR_LOG);

    // The logs show one Diffie-Hellman exchange only: the rekeys ran without PFS.
    assert_eq!(
        dumps_labelled(&dumps, "shared Diffie Hellman secret").len(),
        1
    );

    // Nonces of each CHILD_SA's exchange: IKE_SA_INIT's for the first (created in IKE_AUTH),
    // then those of each CREATE_CHILD_SA, decrypted from the trace.
    let initiator_cipher = keys.initiator_cipher().unwrap();
    let responder_cipher = keys.responder_cipher().unwrap();
    // (Ni, Nr, exchange started by the IKE SA's initiator?)
    let mut exchanges = vec![(init.ni.clone(), init.nr.clone(), true)];
    let mut pending: Vec<(u32, bool, Vec<u8>)> = Vec::new();
    for d in &datagrams {
        let Some(msg) = d.ike_message() else { continue };
        let h = header(msg);
        if h.exchange != CREATE_CHILD_SA {
            continue;
        }
        let cipher = if h.sent_by_original_initiator() {
            &initiator_cipher
        } else {
            &responder_cipher
        };
        let inner = decrypt_inner(msg, cipher);
        // Without PFS there is no KE payload in either message.
        assert!(find(&inner, kind::KE).is_none(), "frame {}: KE", d.frame);
        let nonce = find(&inner, kind::NONCE).expect("Nonce").body.clone();
        if !h.is_response() {
            pending.push((h.message_id, h.sent_by_original_initiator(), nonce));
        } else {
            // The response comes from the other side, with the request's message ID.
            let at = pending
                .iter()
                .position(|(id, by_i, _)| {
                    *id == h.message_id && *by_i != h.sent_by_original_initiator()
                })
                .expect("request for this response");
            let (_, by_initiator, ni) = pending.remove(at);
            exchanges.push((ni, nonce, by_initiator));
        }
    }

    let spis = child_sa_spis(&log);
    let seeds = dumps_labelled(&dumps, "seed");
    let i_keys = dumps_labelled(&dumps, "encryption initiator key");
    let r_keys = dumps_labelled(&dumps, "encryption responder key");
    assert_eq!(spis.len(), 3, "initial CHILD_SA and two rekeys in the log");
    assert_eq!(exchanges.len(), spis.len());
    assert_eq!(seeds.len(), spis.len());
    assert_eq!(i_keys.len(), spis.len());
    assert_eq!(r_keys.len(), spis.len());

    let esp: Vec<&Datagram> = datagrams
        .iter()
        .filter(|d| d.esp_packet().is_some())
        .collect();
    let mut esp_checked = 0;
    for (i, (n, spi_in, spi_out)) in spis.iter().enumerate() {
        let (ni, nr, by_initiator) = &exchanges[i];
        // strongSwan's seed is Ni | Nr of the exchange, the exchange initiator's nonce first.
        assert_eq!(
            seeds[i].bytes,
            [ni.as_slice(), nr.as_slice()].concat(),
            "seed v6{{{n}}}"
        );

        let child: ChildSaKeys = keys
            .child_sa_keys(AeadAlg::AesGcm128, None, ni, nr)
            .unwrap();
        let bytes = |k: &AeadKey| [k.key(), &k.salt()].concat();
        assert_eq!(
            bytes(&child.initiator_to_responder),
            i_keys[i].bytes,
            "v6{{{n}}} i"
        );
        assert_eq!(
            bytes(&child.responder_to_initiator),
            r_keys[i].bytes,
            "v6{{{n}}} r"
        );

        // And the keys open this CHILD_SA's ESP packets in the trace, each direction with its
        // key. The log is the IKE SA initiator's ("home"): its outbound SPI is on packets it
        // sends, which use the exchange-initiator key when home started the exchange.
        let (home_key, vps_key) = if *by_initiator {
            (&child.initiator_to_responder, &child.responder_to_initiator)
        } else {
            (&child.responder_to_initiator, &child.initiator_to_responder)
        };
        for d in &esp {
            let packet = d.esp_packet().unwrap();
            let spi = u32::from_be_bytes(packet[..4].try_into().unwrap());
            let key = if spi == *spi_out {
                home_key
            } else if spi == *spi_in {
                vps_key
            } else {
                continue;
            };
            let plain = open_esp(key, packet)
                .unwrap_or_else(|| panic!("frame {}: ESP does not open", d.frame));
            // ESP trailer: next header 41 (IPv6), and an IPv6 packet inside.
            assert_eq!(plain.last(), Some(&41), "frame {}", d.frame);
            assert_eq!(plain[0] >> 4, 6, "frame {}", d.frame);
            esp_checked += 1;
        }
        println!(
            "CHILD_SA v6{{{n}}}: ESP keys equal the log's (started by {})",
            if *by_initiator {
                "initiator"
            } else {
                "responder"
            }
        );
    }
    // Every ESP packet of the trace belongs to one of the three CHILD_SAs.
    assert_eq!(esp_checked, esp.len());
    assert_eq!(esp_checked, 16, "ESP frames 5-10, 19-24, 29-32");
    println!("{esp_checked} ESP packets opened with the derived keys");
}

#[test]
fn sk_payloads_of_the_trace_open_with_sk_ei_and_sk_er() {
    let datagrams = trace_datagrams();
    let init = sa_init(&datagrams);
    let keys = ike_keys(&init, INITIATOR_LOG);
    let sk_ei = keys.initiator_cipher().unwrap();
    let sk_er = keys.responder_cipher().unwrap();

    let mut opened = 0;
    for d in &datagrams {
        let Some(msg) = d.ike_message() else { continue };
        let h = header(msg);
        if h.exchange == IKE_SA_INIT {
            continue;
        }
        let cipher: &dyn SkCipher = if h.sent_by_original_initiator() {
            &sk_ei
        } else {
            &sk_er
        };
        assert_eq!((cipher.iv_len(), cipher.icv_len()), (8, 16));
        let parts = sk_parts(msg);
        let mut buf = parts.ciphertext.clone();
        cipher
            .open(&parts.iv, &parts.aad, &mut buf, &parts.icv)
            .unwrap_or_else(|e| panic!("frame {}: {e}", d.frame));
        // Pad length fits, and the inner chain walks to its end.
        let pad = usize::from(*buf.last().unwrap());
        assert!(pad < buf.len());
        let inner = payload_chain(parts.first_inner, &buf[..buf.len() - 1 - pad], 0);
        if h.exchange == IKE_AUTH {
            assert!(find(&inner, kind::AUTH).is_some(), "frame {}", d.frame);
        }

        // The wrong direction's key, a flipped ciphertext bit or a changed header all fail.
        let wrong: &dyn SkCipher = if h.sent_by_original_initiator() {
            &sk_er
        } else {
            &sk_ei
        };
        let mut again = parts.ciphertext.clone();
        assert!(
            wrong
                .open(&parts.iv, &parts.aad, &mut again, &parts.icv)
                .is_err()
        );
        let mut flipped = parts.ciphertext.clone();
        flipped[0] ^= 0x80;
        assert!(
            cipher
                .open(&parts.iv, &parts.aad, &mut flipped, &parts.icv)
                .is_err()
        );
        let mut aad = parts.aad.clone();
        aad[20] ^= 1; // message ID
        let mut again = parts.ciphertext.clone();
        assert!(
            cipher
                .open(&parts.iv, &aad, &mut again, &parts.icv)
                .is_err()
        );

        // Sealing the plaintext again with the same IV gives strongSwan's bytes back.
        let icv = cipher.seal(&parts.iv, &parts.aad, &mut buf).unwrap();
        assert_eq!(buf, parts.ciphertext, "frame {}", d.frame);
        assert_eq!(icv, parts.icv, "frame {}", d.frame);
        opened += 1;
    }
    // IKE_AUTH (2), INFORMATIONALs (MOBIKE, DELETEs: 10), CREATE_CHILD_SA (4), as tshark lists.
    assert_eq!(opened, 16, "every encrypted IKE message of the trace");
    println!("{opened} SK payloads opened and re-sealed byte for byte");
}

/// IKE_AUTH request and response of the trace, decrypted.
fn ike_auth_inner(datagrams: &[Datagram], keys: &IkeSaKeys) -> (Vec<Payload>, Vec<Payload>) {
    let msgs: Vec<&[u8]> = datagrams
        .iter()
        .filter_map(Datagram::ike_message)
        .filter(|m| header(m).exchange == IKE_AUTH)
        .collect();
    assert_eq!(msgs.len(), 2);
    (
        decrypt_inner(msgs[0], &keys.initiator_cipher().unwrap()),
        decrypt_inner(msgs[1], &keys.responder_cipher().unwrap()),
    )
}

fn auth_data(inner: &[Payload]) -> Vec<u8> {
    let body = &find(inner, kind::AUTH).expect("AUTH payload").body;
    assert_eq!(body[0], auth::AUTH_METHOD.0, "method 14, digital signature");
    body[4..].to_vec()
}

fn cert_key(name: &str) -> hometun_ike::crypto::PeerPublicKey {
    let der = certificates_from_pem(&vector_file(name)).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    hometun_ike::crypto::PeerPublicKey::from_spki_der(cert.tbs_certificate.subject_pki.raw)
        .expect("Ed25519 key")
}

#[test]
fn auth_octets_equal_strongswans_and_signatures_verify() {
    let datagrams = trace_datagrams();
    let init = sa_init(&datagrams);
    let keys = ike_keys(&init, INITIATOR_LOG);
    let (request, response) = ike_auth_inner(&datagrams, &keys);
    let idi = &find(&request, kind::IDI).expect("IDi").body;
    let idr = &find(&response, kind::IDR).expect("IDr").body;

    let initiator_octets =
        auth::auth_octets(AuthRole::Initiator, &keys, &init.request, &init.nr, idi);
    let responder_octets =
        auth::auth_octets(AuthRole::Responder, &keys, &init.response, &init.ni, idr);

    for log in [INITIATOR_LOG, RESPONDER_LOG] {
        let dumps = log_dumps(&log_text(log));
        // Both logs hold IDi' then IDr' and the octets in exchange order.
        let ids = dumps_labelled(&dumps, "IDx'");
        assert_eq!(ids.len(), 2, "{log}");
        assert_eq!(&ids[0].bytes, idi, "{log}");
        assert_eq!(&ids[1].bytes, idr, "{log}");
        let octets = dumps_labelled(&dumps, "octets = message + nonce + prf(Sk_px, IDx')");
        assert_eq!(octets.len(), 2, "{log}");
        assert_eq!(octets[0].bytes, initiator_octets, "{log}: initiator octets");
        assert_eq!(octets[1].bytes, responder_octets, "{log}: responder octets");
    }
    println!(
        "AUTH octets ({} and {} bytes) equal both logs",
        initiator_octets.len(),
        responder_octets.len()
    );

    // The AUTH payloads verify with the certificates' keys, and only with the right octets.
    let home = cert_key("initiator-cert.pem");
    let vps = cert_key("responder-cert.pem");
    let i_auth = auth_data(&request);
    let r_auth = auth_data(&response);
    assert_eq!(
        auth::verify(&home, &initiator_octets, &i_auth).unwrap(),
        SignatureScheme::Ed25519
    );
    assert_eq!(
        auth::verify(&vps, &responder_octets, &r_auth).unwrap(),
        SignatureScheme::Ed25519
    );
    assert!(matches!(
        auth::verify(&vps, &initiator_octets, &i_auth),
        Err(CryptoError::BadSignature)
    ));
    let mut tampered = initiator_octets.clone();
    tampered[30] ^= 1;
    assert!(matches!(
        auth::verify(&home, &tampered, &i_auth),
        Err(CryptoError::BadSignature)
    ));
    // strongSwan's AlgorithmIdentifier is the RFC 8420 one, so we emit the same prefix.
    let ours = PrivateKey::ed25519_from_seed(&[0x42; 32]).unwrap();
    let signed = auth::sign(&ours, &initiator_octets);
    assert_eq!(signed[..8], i_auth[..8]);
    assert_eq!(signed.len(), i_auth.len());

    // A signature we make for these octets with a fresh Ed25519 key verifies; a flipped byte
    // anywhere in the signature does not.
    let fresh = ours.public_key();
    assert_eq!(
        auth::verify(&fresh, &initiator_octets, &signed).unwrap(),
        SignatureScheme::Ed25519
    );
    for at in [8, 40, signed.len() - 1] {
        let mut bad = signed.clone();
        bad[at] ^= 0x01;
        assert!(matches!(
            auth::verify(&fresh, &initiator_octets, &bad),
            Err(CryptoError::BadSignature | CryptoError::MalformedAuth(_))
        ));
    }
}

#[test]
fn cert_payloads_of_ike_auth_verify_against_the_ca() {
    let datagrams = trace_datagrams();
    let init = sa_init(&datagrams);
    let keys = ike_keys(&init, INITIATOR_LOG);
    let (request, response) = ike_auth_inner(&datagrams, &keys);
    let verifier = CertificateVerifier::from_ca_pem(&vector_file("ca.pem")).unwrap();
    // A time inside the certificates' validity: notBefore + 1 day, read from each certificate.
    for (inner, id_kind, pem) in [
        (&request, kind::IDI, "initiator-cert.pem"),
        (&response, kind::IDR, "responder-cert.pem"),
    ] {
        let cert = &find(inner, kind::CERT).expect("CERT payload").body;
        assert_eq!(cert[0], 4, "X.509 Certificate - Signature");
        let der = &cert[1..];
        assert_eq!(der, certificates_from_pem(&vector_file(pem)).unwrap()[0]);
        let (_, parsed) = x509_parser::parse_x509_certificate(der).unwrap();
        let now = UNIX_EPOCH
            + Duration::from_secs(parsed.validity().not_before.timestamp() as u64 + 86_400);
        let identity = PeerIdentity::from_id_body(&find(inner, id_kind).unwrap().body).unwrap();
        let peer = verifier.verify(der, &[], &identity, now).unwrap();
        assert_eq!(*peer.public_key(), cert_key(pem));
        assert_eq!(peer.certificate_der(), der);
    }
}

#[test]
fn natd_hashes_equal_strongswans() {
    let mut checked = 0;
    for log in [INITIATOR_LOG, RESPONDER_LOG] {
        let dumps = log_dumps(&log_text(log));
        for (i, chunk) in dumps.iter().enumerate() {
            if chunk.label != "natd_chunk" {
                continue;
            }
            // The hash follows its chunk in the same thread.
            let hash = dumps[i + 1..]
                .iter()
                .find(|d| d.thread == chunk.thread)
                .expect("natd_hash after natd_chunk");
            assert_eq!(hash.label, "natd_hash");
            let c = &chunk.bytes;
            let addr: IpAddr = match c.len() {
                22 => Ipv4Addr::from(<[u8; 4]>::try_from(&c[16..20]).unwrap()).into(),
                34 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&c[16..32]).unwrap()).into(),
                n => panic!("natd_chunk of {n} bytes"),
            };
            let port = u16::from_be_bytes([c[c.len() - 2], c[c.len() - 1]]);
            let ours = natd_hash(
                u64::from_be_bytes(c[0..8].try_into().unwrap()),
                u64::from_be_bytes(c[8..16].try_into().unwrap()),
                addr,
                port,
            );
            assert_eq!(ours.as_slice(), hash.bytes, "{log} line {}", chunk.line);
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked} NAT-D hashes");

    // And from the packet alone: the initiator's NAT_DETECTION_DESTINATION_IP in IKE_SA_INIT
    // is the hash of SPIi, a zero SPIr and the address and port it sent to.
    let datagrams = trace_datagrams();
    let first = frame(&datagrams, 1);
    let msg = first.ike_message().unwrap();
    let h = header(msg);
    let dest = notifies(&message_payloads(msg))
        .into_iter()
        .find(|(ty, _)| *ty == 16389)
        .expect("NAT_DETECTION_DESTINATION_IP")
        .1;
    let ours = natd_hash(
        u64::from_be_bytes(h.spi_i),
        0,
        IpAddr::V4(*first.dst.ip()),
        first.dst.port(),
    );
    assert_eq!(dest, ours);
    println!("{checked} NAT-D hashes equal the logs; NATD_D_IP of frame 1 equals ours");
}

#[test]
fn sk_gcm_decrypts_ike_auth_with_sk_ei_and_sk_er_from_the_log_alone() {
    // SK_ei / SK_er straight from the log (not derived), to separate the SK cipher from the key
    // schedule: if this passes and the schedule test fails, the schedule is wrong.
    let dumps = log_dumps(&log_text(INITIATOR_LOG));
    let sk_ei = SkGcm::new(AeadAlg::AesGcm128, single(&dumps, "Sk_ei secret")).unwrap();
    let sk_er = SkGcm::new(AeadAlg::AesGcm128, single(&dumps, "Sk_er secret")).unwrap();
    let ids = dumps_labelled(&dumps, "IDx'");
    let datagrams = trace_datagrams();

    let request = decrypt_inner(frame(&datagrams, 3).ike_message().unwrap(), &sk_ei);
    let idi = &find(&request, kind::IDI).unwrap().body;
    assert_eq!(idi, &ids[0].bytes);
    assert_eq!(&idi[4..], b"home.example");

    let response = decrypt_inner(frame(&datagrams, 4).ike_message().unwrap(), &sk_er);
    let idr = &find(&response, kind::IDR).unwrap().body;
    assert_eq!(idr, &ids[1].bytes);
    assert_eq!(&idr[4..], b"vps.example");
    // IKE_AUTH request: IDi, CERT, CERTREQ, AUTH, ... SA, TSi, TSr; response: IDr, CERT, AUTH, SA.
    for (inner, kinds) in [
        (&request, [kind::IDI, kind::CERT, kind::AUTH, kind::SA]),
        (&response, [kind::IDR, kind::CERT, kind::AUTH, kind::SA]),
    ] {
        for k in kinds {
            assert!(find(inner, k).is_some(), "payload {k}");
        }
    }
}
