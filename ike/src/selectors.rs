//! Traffic selectors as hometun uses them: IPv6 prefixes only (IPv4 entries are ignored), and
//! narrowing a peer's request to what policy allows (RFC 7296 2.9).

use std::net::{IpAddr, Ipv6Addr};

use ipnet::Ipv6Net;

use crate::wire::{AddressRange, TrafficSelector, TrafficSelectors};

/// At most this many prefixes on one side of a CHILD SA: each becomes a route and an outbound
/// table entry in the forwarder. A selector that is an address range, not a prefix, splits into
/// many (up to 254); a peer whose selectors need more is refused like one whose selectors
/// allow none (TS_UNACCEPTABLE, or an answer that is not taken).
pub const MAX_PREFIXES: usize = 16;

/// Ranges that split into more prefixes than this (before merging) are not even merged: the
/// work of a request stays small.
const MAX_SPLIT: usize = 4096;

/// ::/0, every IPv6 address.
pub fn any_ipv6() -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::UNSPECIFIED, 0).expect("prefix length 0 is valid")
}

/// A TS payload with one all-ports, all-protocols selector per prefix.
pub fn to_payload(prefixes: &[Ipv6Net]) -> TrafficSelectors {
    TrafficSelectors::new(
        prefixes
            .iter()
            .map(|p| {
                TrafficSelector::Address(AddressRange::ipv6_prefix(p.network(), p.prefix_len()))
            })
            .collect(),
    )
}

/// The IPv6 address ranges of a TS payload as `(start, end)`, skipping IPv4 and unknown types
/// and ranges whose start is after their end.
fn ipv6_ranges(ts: &TrafficSelectors) -> impl Iterator<Item = (u128, u128)> + '_ {
    ts.ranges().filter_map(|r| match (r.start, r.end) {
        (IpAddr::V6(s), IpAddr::V6(e)) if u128::from(s) <= u128::from(e) => {
            Some((u128::from(s), u128::from(e)))
        }
        _ => None,
    })
}

/// The prefixes a TS payload covers (IPv6 entries only; ports and protocols are not kept:
/// hometun's SAs carry all of them).
pub fn prefixes_of(ts: &TrafficSelectors) -> Vec<Ipv6Net> {
    let mut out = Vec::new();
    for (start, end) in ipv6_ranges(ts) {
        if out.len() > MAX_SPLIT {
            break;
        }
        out.extend(range_to_prefixes(start, end));
    }
    Ipv6Net::aggregate(&out)
}

/// Narrows `requested` to `allowed`: each requested IPv6 range intersected with each allowed
/// prefix. Returns the prefixes of the intersection (empty: TS_UNACCEPTABLE). This covers a
/// client asking for ::/0 (it gets its prefix) and one asking for a /128 inside its /64 (it
/// gets the /128), as strongSwan clients do. More than [`MAX_PREFIXES`] is refused: empty.
pub fn narrow(requested: &TrafficSelectors, allowed: &[Ipv6Net]) -> Vec<Ipv6Net> {
    let mut out = Vec::new();
    for (start, end) in ipv6_ranges(requested) {
        for prefix in allowed {
            let a_start = u128::from(prefix.network());
            let a_end = u128::from(prefix.broadcast());
            let lo = start.max(a_start);
            let hi = end.min(a_end);
            if lo <= hi {
                out.extend(range_to_prefixes(lo, hi));
            }
            if out.len() > MAX_SPLIT {
                return Vec::new();
            }
        }
    }
    let out = Ipv6Net::aggregate(&out);
    if out.len() > MAX_PREFIXES {
        return Vec::new();
    }
    out
}

/// The prefixes of `ts` if all of them lie inside `allowed`, `None` otherwise (or if `ts` names
/// no IPv6 prefix): an answer may narrow what was proposed, never widen it (RFC 7296 2.9).
pub fn within(ts: &TrafficSelectors, allowed: &[Ipv6Net]) -> Option<Vec<Ipv6Net>> {
    let all = prefixes_of(ts);
    if all.is_empty() || all.len() > MAX_PREFIXES {
        return None;
    }
    (narrow(ts, allowed) == all).then_some(all)
}

/// The smallest list of prefixes that covers exactly `start..=end`.
pub fn range_to_prefixes(start: u128, end: u128) -> Vec<Ipv6Net> {
    let mut out = Vec::new();
    let mut cur = start;
    loop {
        // The largest block aligned at `cur` that does not pass `end`.
        let mut host_bits = if cur == 0 { 128 } else { cur.trailing_zeros() };
        while host_bits > 0 {
            let last = if host_bits == 128 {
                u128::MAX
            } else {
                cur | ((1u128 << host_bits) - 1)
            };
            if last <= end {
                break;
            }
            host_bits -= 1;
        }
        let prefix_len = u8::try_from(128 - host_bits).expect("at most 128");
        out.push(Ipv6Net::new(Ipv6Addr::from(cur), prefix_len).expect("prefix length at most 128"));
        let last = if host_bits == 128 {
            u128::MAX
        } else {
            cur | ((1u128 << host_bits) - 1)
        };
        if last >= end {
            return out;
        }
        cur = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_accepts_narrowing_and_refuses_widening() {
        let home: Ipv6Net = "2001:db8:1::/64".parse().unwrap();
        let ts = |s: &str| to_payload(&[s.parse().unwrap()]);
        assert_eq!(within(&ts("2001:db8:1::/64"), &[home]), Some(vec![home]));
        assert_eq!(
            within(&ts("2001:db8:1::1/128"), &[home]),
            Some(vec!["2001:db8:1::1/128".parse().unwrap()])
        );
        assert_eq!(within(&ts("2001:db8:2::/64"), &[home]), None);
        assert_eq!(within(&ts("2001:db8::/32"), &[home]), None);
        assert_eq!(within(&ts("::/0"), &[home]), None);
        assert_eq!(within(&TrafficSelectors::new(Vec::new()), &[home]), None);
    }

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_split_into_prefixes() {
        assert_eq!(range_to_prefixes(0, u128::MAX), vec![net("::/0")]);
        assert_eq!(range_to_prefixes(5, 5), vec![net("::5/128")]);
        assert_eq!(
            range_to_prefixes(1, 6),
            vec![
                net("::1/128"),
                net("::2/127"),
                net("::4/127"),
                net("::6/128")
            ]
        );
    }

    #[test]
    fn more_prefixes_than_a_pair_may_hold_are_refused() {
        let home = net("2001:db8:1::/64");
        let base = u128::from(home.network());
        // One range that is no prefix: about 2 x 62 prefixes.
        let odd = TrafficSelectors::new(vec![TrafficSelector::Address(AddressRange::new(
            IpAddr::V6(Ipv6Addr::from(base + 1)),
            IpAddr::V6(Ipv6Addr::from(base + (1 << 63) - 2)),
        ))]);
        assert!(range_to_prefixes(base + 1, base + (1 << 63) - 2).len() > MAX_PREFIXES);
        assert!(narrow(&odd, &[home]).is_empty());
        assert_eq!(within(&odd, &[home]), None);
        // Sixteen prefixes are fine, seventeen are not.
        let hosts = |n: u128| -> Vec<Ipv6Net> {
            (0..n)
                .map(|k| Ipv6Net::new(Ipv6Addr::from(base + 2 * k), 128).unwrap())
                .collect()
        };
        assert_eq!(narrow(&to_payload(&hosts(16)), &[home]).len(), 16);
        assert!(narrow(&to_payload(&hosts(17)), &[home]).is_empty());
        assert_eq!(
            within(&to_payload(&hosts(16)), &[home]).map(|p| p.len()),
            Some(16)
        );
        assert_eq!(within(&to_payload(&hosts(17)), &[home]), None);
    }

    #[test]
    fn narrowing_to_the_clients_prefix() {
        let allowed = [net("2001:db8:1::/64")];
        // ::/0 narrows to the prefix.
        assert_eq!(narrow(&to_payload(&[any_ipv6()]), &allowed), allowed);
        // A /128 inside stays a /128 (strongSwan's local_ts = 2001:db8:1::2/128).
        let host = net("2001:db8:1::2/128");
        assert_eq!(narrow(&to_payload(&[host]), &allowed), vec![host]);
        // Outside: nothing.
        assert!(narrow(&to_payload(&[net("2001:db8:2::/64")]), &allowed).is_empty());
        // IPv4 entries are ignored.
        let v4 = TrafficSelectors::new(vec![TrafficSelector::Address(AddressRange::ipv4_prefix(
            "0.0.0.0".parse().unwrap(),
            0,
        ))]);
        assert!(narrow(&v4, &allowed).is_empty());
        assert!(prefixes_of(&v4).is_empty());
        assert_eq!(prefixes_of(&to_payload(&allowed)), allowed);
    }
}
