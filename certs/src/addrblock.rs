//! RFC 3779 IP address delegation extension (`sbgp-ipAddrBlock`, OID 1.3.6.1.5.5.7.1.7): the
//! certificate itself says which IPv6 prefix a home owns.
//!
//! The encoding is the one of RFC 3779 section 2.2.3 that strongSwan's x509 plugin reads and
//! its addrblock plugin enforces:
//!
//! ```text
//! IPAddrBlocks        ::= SEQUENCE OF IPAddressFamily
//! IPAddressFamily     ::= SEQUENCE { addressFamily OCTET STRING (SIZE (2..3)),   -- 00 02 = IPv6
//!                                    ipAddressChoice IPAddressChoice }
//! IPAddressChoice     ::= CHOICE { inherit NULL, addressesOrRanges SEQUENCE OF IPAddressOrRange }
//! IPAddressOrRange    ::= CHOICE { addressPrefix IPAddress, addressRange IPAddressRange }
//! IPAddressRange      ::= SEQUENCE { min IPAddress, max IPAddress }
//! IPAddress           ::= BIT STRING
//! ```
//!
//! hometun marks the extension **non-critical**: the IKE daemon verifies chains with
//! rustls-webpki, which rejects every certificate carrying a critical extension it does not
//! know (and it does not know this one). strongSwan also writes it non-critical.

use std::net::Ipv6Addr;

use ipnet::{Ipv6Net, Ipv6Subnets};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::der::{self, DerError, Reader, tag};
use crate::memo::{self, Memo};

/// OID of the extension, as components.
pub const OID_IP_ADDR_BLOCKS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 7];
/// Dotted form of [`OID_IP_ADDR_BLOCKS`].
pub const OID_IP_ADDR_BLOCKS_STR: &str = "1.3.6.1.5.5.7.1.7";

/// Address family identifier of IPv6 (IANA AFI 2).
const AFI_IPV6: [u8; 2] = [0, 2];
/// Address family identifier of IPv4 (IANA AFI 1).
const AFI_IPV4: [u8; 2] = [0, 1];

/// Why an address block extension or the certificate around it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrBlockError {
    /// The certificate is not valid DER X.509.
    #[error("certificate does not parse: {0}")]
    Certificate(String),
    /// The extension's DER is broken.
    #[error("ipAddrBlocks: {0}")]
    Der(#[from] DerError),
    /// The certificate carries the extension more than once.
    #[error("ipAddrBlocks extension appears more than once")]
    DuplicateExtension,
    /// An address family appears twice (RFC 3779 2.2.3.3 allows one entry per family).
    #[error("ipAddrBlocks lists address family {0:02x?} twice")]
    DuplicateFamily(Vec<u8>),
    /// The addressFamily octet string is not 2 or 3 bytes.
    #[error("ipAddrBlocks: addressFamily of {0} bytes (must be 2 or 3)")]
    BadFamily(usize),
    /// `inherit` for IPv6: the prefix would come from the issuer, which hometun never issues.
    #[error("ipAddrBlocks: IPv6 'inherit' is not supported")]
    Inherit,
    /// A BIT STRING that is not a valid address of its family.
    #[error("ipAddrBlocks: invalid address bit string")]
    BadAddress,
    /// An address range whose minimum lies above its maximum.
    #[error("ipAddrBlocks: range minimum above maximum")]
    BadRange,
    /// Encoding asked for no prefix at all.
    #[error("no prefix to encode")]
    Empty,
}

/// Encodes the extension value (the DER `IPAddrBlocks`) for a set of IPv6 prefixes.
///
/// The output is canonical as RFC 3779 2.2.3.6 asks: sorted, overlapping and adjacent prefixes
/// merged, and a merged block that is not a single prefix written as an address range.
pub fn encode_ipv6_prefixes(prefixes: &[Ipv6Net]) -> Result<Vec<u8>, AddrBlockError> {
    if prefixes.is_empty() {
        return Err(AddrBlockError::Empty);
    }
    let mut ranges: Vec<(u128, u128)> = prefixes
        .iter()
        .map(|p| (u128::from(p.network()), u128::from(p.broadcast())))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            // Overlapping or adjacent: one block (checked_add: an end of all ones adjoins nothing).
            Some(last) if last.1.checked_add(1).is_none_or(|next| start <= next) => {
                last.1 = last.1.max(end);
            }
            _ => merged.push((start, end)),
        }
    }
    let mut blocks = Vec::new();
    for (start, end) in merged {
        match range_as_prefix(start, end) {
            Some(len) => write_bits(&mut blocks, start, u32::from(len)),
            None => {
                let mut range = Vec::new();
                // min: trailing zero bits dropped; max: trailing one bits dropped (RFC 3779 2.1.2).
                write_bits(&mut range, start, 128 - start.trailing_zeros());
                write_bits(&mut range, end, 128 - end.trailing_ones());
                der::write(&mut blocks, tag::SEQUENCE, &range);
            }
        }
    }
    let mut family = Vec::new();
    der::write(&mut family, tag::OCTET_STRING, &AFI_IPV6);
    der::write(&mut family, tag::SEQUENCE, &blocks);
    let mut families = Vec::new();
    der::write(&mut families, tag::SEQUENCE, &family);
    let mut out = Vec::new();
    der::write(&mut out, tag::SEQUENCE, &families);
    Ok(out)
}

/// The prefix length if `start..=end` is exactly one prefix.
fn range_as_prefix(start: u128, end: u128) -> Option<u8> {
    let size_minus_one = end.wrapping_sub(start);
    // A prefix covers 2^k addresses aligned on 2^k.
    if size_minus_one
        .checked_add(1)
        .is_none_or(|size| size.is_power_of_two())
        && start & size_minus_one == 0
    {
        Some((128 - size_minus_one.count_ones()) as u8)
    } else {
        None
    }
}

/// Writes the first `bits` bits of `value` (an IPv6 address) as a DER BIT STRING.
fn write_bits(out: &mut Vec<u8>, value: u128, bits: u32) {
    let bytes = bits.div_ceil(8) as usize;
    let unused = (bytes * 8) as u32 - bits;
    let mut contents = Vec::with_capacity(bytes + 1);
    contents.push(unused as u8);
    let masked = if bits == 0 {
        0
    } else {
        value & (u128::MAX << (128 - bits))
    };
    contents.extend_from_slice(&masked.to_be_bytes()[..bytes]);
    der::write(out, tag::BIT_STRING, &contents);
}

/// What an `IPAddrBlocks` value grants, per family this crate knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrBlocks {
    /// The IPv6 blocks as prefixes (ranges split into the fewest prefixes), in certificate
    /// order; `None` when the extension has no IPv6 family.
    pub ipv6: Option<Vec<Ipv6Net>>,
    /// Whether an IPv4 family is present (hometun does not use it; it is checked for form only).
    pub has_ipv4: bool,
}

/// Decodes an extension value (the DER `IPAddrBlocks`).
pub fn decode_ip_addr_blocks(value: &[u8]) -> Result<AddrBlocks, AddrBlockError> {
    let mut outer = Reader::new(value);
    let families = outer.read(tag::SEQUENCE)?;
    outer.finish()?;
    let mut result = AddrBlocks::default();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut families = Reader::new(families);
    while !families.is_empty() {
        let mut family = Reader::new(families.read(tag::SEQUENCE)?);
        let afi = family.read(tag::OCTET_STRING)?;
        if !(2..=3).contains(&afi.len()) {
            return Err(AddrBlockError::BadFamily(afi.len()));
        }
        if seen.iter().any(|s| s == afi) {
            return Err(AddrBlockError::DuplicateFamily(afi.to_vec()));
        }
        seen.push(afi.to_vec());
        // The SAFI (third byte) does not change what the addresses mean for a tunnel.
        let max_bits = match [afi[0], afi[1]] {
            AFI_IPV6 => 128,
            AFI_IPV4 => 32,
            _ => 128, // Unknown family: read for form only, at most IPv6 width.
        };
        let is_v6 = afi[..2] == AFI_IPV6;
        match family.peek_tag() {
            Some(tag::NULL) => {
                if !family.read(tag::NULL)?.is_empty() {
                    return Err(AddrBlockError::Der(DerError::BadLength));
                }
                if is_v6 {
                    return Err(AddrBlockError::Inherit);
                }
            }
            _ => {
                let list = family.read(tag::SEQUENCE)?;
                let mut prefixes = Vec::new();
                let mut items = Reader::new(list);
                while !items.is_empty() {
                    let (t, contents) = items.read_any()?;
                    let (start, end) = match t {
                        tag::BIT_STRING => {
                            let (addr, bits) = read_bits(contents, max_bits)?;
                            let host = if bits == 128 { 0 } else { u128::MAX >> bits };
                            (addr, addr | host)
                        }
                        tag::SEQUENCE => {
                            let mut range = Reader::new(contents);
                            let (min, _) = read_bits(range.read(tag::BIT_STRING)?, max_bits)?;
                            let (max, max_len) = read_bits(range.read(tag::BIT_STRING)?, max_bits)?;
                            range.finish()?;
                            // Missing trailing bits of the maximum are ones (RFC 3779 2.1.2).
                            let fill = if max_len == 128 {
                                0
                            } else {
                                u128::MAX >> max_len
                            };
                            let max = max | fill;
                            if min > max {
                                return Err(AddrBlockError::BadRange);
                            }
                            (min, max)
                        }
                        found => {
                            return Err(AddrBlockError::Der(DerError::UnexpectedTag {
                                expected: tag::BIT_STRING,
                                found,
                            }));
                        }
                    };
                    if is_v6 {
                        prefixes.extend(Ipv6Subnets::new(
                            Ipv6Addr::from(start),
                            Ipv6Addr::from(end),
                            0,
                        ));
                    }
                }
                if is_v6 {
                    result.ipv6 = Some(prefixes);
                }
            }
        }
        family.finish()?;
        if afi[..2] == AFI_IPV4 {
            result.has_ipv4 = true;
        }
    }
    Ok(result)
}

/// Reads an address BIT STRING: (address left-aligned in a u128, number of bits).
fn read_bits(contents: &[u8], max_bits: u32) -> Result<(u128, u32), AddrBlockError> {
    let (&unused, bytes) = contents.split_first().ok_or(AddrBlockError::BadAddress)?;
    if unused > 7 || (bytes.is_empty() && unused != 0) || bytes.len() > 16 {
        return Err(AddrBlockError::BadAddress);
    }
    let bits = (bytes.len() * 8) as u32 - u32::from(unused);
    if bits > max_bits {
        return Err(AddrBlockError::BadAddress);
    }
    let mut buf = [0u8; 16];
    buf[..bytes.len()].copy_from_slice(bytes);
    let value = u128::from_be_bytes(buf);
    // Unused bits are zero in DER; mask them so a sloppy encoder cannot widen anything.
    let value = if bits == 0 {
        0
    } else {
        value & (u128::MAX << (128 - bits))
    };
    Ok((value, bits))
}

/// The IPv6 prefixes a certificate's `sbgp-ipAddrBlock` extension grants.
///
/// Returns an empty list when the certificate has no such extension or no IPv6 family in it
/// (the server may then know the client from `[[clients]]` in server.toml). This does not
/// verify the certificate: call it on a certificate whose chain was verified (in IKE_AUTH,
/// the IKE daemon's `CertificateVerifier` did; [`crate::verify::TrustStore`] does both).
///
/// What a certificate's bytes give is remembered ([`crate::memo`]): the server asks on every
/// handshake, and parsing the certificate was a tenth of its IKE daemon's work per handshake
/// (bench/README.md, "handshakes.sh"). A failure is not remembered.
pub fn prefixes_from_certificate(der: &[u8]) -> Result<Vec<Ipv6Net>, AddrBlockError> {
    static PREFIXES: Memo<Vec<Ipv6Net>> = Memo::new();
    PREFIXES.remember(memo::digest(&[der]), || {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| AddrBlockError::Certificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(AddrBlockError::Der(DerError::TrailingData));
        }
        prefixes_from_parsed(&cert)
    })
}

/// [`prefixes_from_certificate`] on a certificate already parsed with x509-parser.
pub fn prefixes_from_parsed(cert: &X509Certificate<'_>) -> Result<Vec<Ipv6Net>, AddrBlockError> {
    let mut found = None;
    for ext in cert.extensions() {
        if ext.oid.to_id_string() == OID_IP_ADDR_BLOCKS_STR {
            if found.is_some() {
                return Err(AddrBlockError::DuplicateExtension);
            }
            found = Some(ext.value);
        }
    }
    match found {
        None => Ok(Vec::new()),
        Some(value) => Ok(decode_ip_addr_blocks(value)?.ipv6.unwrap_or_default()),
    }
}

/// Whether the address range `start..=end` (an IKE traffic selector) lies inside one of
/// `prefixes`. A client may ask for its prefix or any part of it, nothing else.
pub fn range_within(prefixes: &[Ipv6Net], start: Ipv6Addr, end: Ipv6Addr) -> bool {
    start <= end
        && prefixes
            .iter()
            .any(|p| p.contains(&start) && p.contains(&end))
}

/// Whether every prefix of `inner` lies inside one of `outer` (RFC 3779 nesting).
pub fn all_within(inner: &[Ipv6Net], outer: &[Ipv6Net]) -> bool {
    inner.iter().all(|p| outer.iter().any(|o| o.contains(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    #[test]
    fn one_prefix_encodes_to_fixed_bytes() {
        let der = encode_ipv6_prefixes(&[net("2001:db8:100:1::/64")]).unwrap();
        // SEQUENCE { SEQUENCE { OCTET STRING 00 02, SEQUENCE { BIT STRING 0 unused, 8 bytes } } }
        assert_eq!(
            der,
            [
                0x30, 0x13, 0x30, 0x11, 0x04, 0x02, 0x00, 0x02, 0x30, 0x0b, 0x03, 0x09, 0x00, 0x20,
                0x01, 0x0d, 0xb8, 0x01, 0x00, 0x00, 0x01
            ]
        );
        let back = decode_ip_addr_blocks(&der).unwrap();
        assert_eq!(back.ipv6, Some(vec![net("2001:db8:100:1::/64")]));
    }

    #[test]
    fn odd_prefix_lengths_use_unused_bits() {
        // /60: 8 bytes with 4 unused bits (RFC 3779 2.1.1 example style).
        let der = encode_ipv6_prefixes(&[net("2001:db8:100:10::/60")]).unwrap();
        assert_eq!(
            &der[10..],
            &[
                0x03, 0x09, 0x04, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0x00, 0x10
            ]
        );
        let der = encode_ipv6_prefixes(&[net("::/0")]).unwrap();
        assert_eq!(&der[10..], &[0x03, 0x01, 0x00]);
        for p in [
            "::/0",
            "2001:db8::/32",
            "2001:db8::1/128",
            "2001:db8:8000::/33",
        ] {
            let der = encode_ipv6_prefixes(&[net(p)]).unwrap();
            assert_eq!(
                decode_ip_addr_blocks(&der).unwrap().ipv6,
                Some(vec![net(p)])
            );
        }
    }

    #[test]
    fn adjacent_prefixes_merge_and_ranges_round_trip() {
        // Two halves of a /64 become one prefix.
        let der = encode_ipv6_prefixes(&[net("2001:db8:0:1:8000::/65"), net("2001:db8:0:1::/65")])
            .unwrap();
        assert_eq!(
            decode_ip_addr_blocks(&der).unwrap().ipv6,
            Some(vec![net("2001:db8:0:1::/64")])
        );
        // :1 and :2 are adjacent but not one prefix: an addressRange.
        let der =
            encode_ipv6_prefixes(&[net("2001:db8:0:2::/64"), net("2001:db8:0:1::/64")]).unwrap();
        // min 2001:db8:0:1 and max 2001:db8:0:2, 64 bits each (trailing zeros / ones dropped).
        assert!(
            der.windows(4).any(|w| w == [0x30, 0x16, 0x03, 0x09]),
            "{der:02x?}"
        );
        assert_eq!(
            decode_ip_addr_blocks(&der).unwrap().ipv6,
            Some(vec![net("2001:db8:0:1::/64"), net("2001:db8:0:2::/64")])
        );
        // Overlap collapses into the larger prefix.
        let der = encode_ipv6_prefixes(&[net("2001:db8::/48"), net("2001:db8:0:5::/64")]).unwrap();
        assert_eq!(
            decode_ip_addr_blocks(&der).unwrap().ipv6,
            Some(vec![net("2001:db8::/48")])
        );
        assert_eq!(encode_ipv6_prefixes(&[]), Err(AddrBlockError::Empty));
    }

    #[test]
    fn ipv4_family_is_skipped_and_inherit_refused() {
        // IPv4 10.0.0.0/8 then IPv6 2001:db8::/32.
        let mut v4 = Vec::new();
        der::write(&mut v4, tag::OCTET_STRING, &[0, 1]);
        let mut bits = Vec::new();
        der::write(&mut bits, tag::BIT_STRING, &[0x00, 0x0a]);
        der::write(&mut v4, tag::SEQUENCE, &bits);
        let v6 = &encode_ipv6_prefixes(&[net("2001:db8::/32")]).unwrap()[2..];
        let mut all = Vec::new();
        der::write(&mut all, tag::SEQUENCE, &v4);
        all.extend_from_slice(v6);
        let mut value = Vec::new();
        der::write(&mut value, tag::SEQUENCE, &all);
        let b = decode_ip_addr_blocks(&value).unwrap();
        assert!(b.has_ipv4);
        assert_eq!(b.ipv6, Some(vec![net("2001:db8::/32")]));

        let inherit = [0x30, 0x08, 0x30, 0x06, 0x04, 0x02, 0x00, 0x02, 0x05, 0x00];
        assert_eq!(
            decode_ip_addr_blocks(&inherit),
            Err(AddrBlockError::Inherit)
        );
    }

    #[test]
    fn hostile_values_are_refused_without_panic() {
        let cases: &[&[u8]] = &[
            &[],
            &[0x30],
            &[0x30, 0x00, 0x00],
            &[0x30, 0x04, 0x30, 0x02, 0x04, 0x00],
            // Unused bits 8.
            &[
                0x30, 0x0b, 0x30, 0x09, 0x04, 0x02, 0x00, 0x02, 0x30, 0x03, 0x03, 0x01, 0x08,
            ],
            // 17 address bytes.
            &[
                0x30, 0x1b, 0x30, 0x19, 0x04, 0x02, 0x00, 0x02, 0x30, 0x13, 0x03, 0x11, 0x00, 1, 2,
                3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
            ],
            // IPv4 with 5 bytes (40 bits).
            &[
                0x30, 0x0f, 0x30, 0x0d, 0x04, 0x02, 0x00, 0x01, 0x30, 0x07, 0x03, 0x05, 0x00, 1, 2,
                3, 4, 5,
            ],
        ];
        for case in cases {
            assert!(decode_ip_addr_blocks(case).is_err(), "{case:02x?}");
        }
        // Range with min > max.
        let mut range = Vec::new();
        der::write(&mut range, tag::BIT_STRING, &[0x00, 0x20, 0x02]);
        der::write(&mut range, tag::BIT_STRING, &[0x00, 0x20, 0x01]);
        let mut list = Vec::new();
        der::write(&mut list, tag::SEQUENCE, &range);
        let mut fam = Vec::new();
        der::write(&mut fam, tag::OCTET_STRING, &[0, 2]);
        der::write(&mut fam, tag::SEQUENCE, &list);
        let mut fams = Vec::new();
        der::write(&mut fams, tag::SEQUENCE, &fam);
        let mut value = Vec::new();
        der::write(&mut value, tag::SEQUENCE, &fams);
        assert_eq!(decode_ip_addr_blocks(&value), Err(AddrBlockError::BadRange));
        // Duplicate family.
        let family = &encode_ipv6_prefixes(&[net("2001:db8::/32")]).unwrap()[2..];
        let mut twice = family.to_vec();
        twice.extend_from_slice(family);
        let mut value = Vec::new();
        der::write(&mut value, tag::SEQUENCE, &twice);
        assert!(matches!(
            decode_ip_addr_blocks(&value),
            Err(AddrBlockError::DuplicateFamily(_))
        ));
        assert!(prefixes_from_certificate(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
    }

    #[test]
    fn ts_ranges_must_lie_inside_the_prefix() {
        let p = [net("2001:db8:100:1::/64")];
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert!(range_within(
            &p,
            a("2001:db8:100:1::"),
            a("2001:db8:100:1:ffff:ffff:ffff:ffff")
        ));
        assert!(range_within(
            &p,
            a("2001:db8:100:1::5"),
            a("2001:db8:100:1::5")
        ));
        assert!(!range_within(
            &p,
            a("2001:db8:100:1::"),
            a("2001:db8:100:2::")
        ));
        assert!(!range_within(
            &p,
            a("2001:db8:100:1::9"),
            a("2001:db8:100:1::1")
        ));
        assert!(!range_within(
            &p,
            a("::"),
            a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        ));
        assert!(all_within(&p, &[net("2001:db8:100::/48")]));
        assert!(!all_within(&p, &[net("2001:db8:200::/48")]));
    }
}
