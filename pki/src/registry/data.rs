//! The registry's contents and the rules on them, the same for every backend: which client
//! holds which prefix and certificate, revocations, enrollment tokens, and which server holds
//! each home. A backend ([`super::RegistryBackend`]) only stores this and makes each change
//! all-or-nothing and exclusive.

use std::collections::HashMap;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::PkiError;
use crate::ca::Revoked;
use crate::token::TokenRefusal;

/// Version of the registry file format.
pub const REGISTRY_FORMAT: u32 = 1;
const SECONDS_PER_DAY: i64 = 86_400;

/// A revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// When (Unix seconds).
    pub at: i64,
    /// Revoked because the key is compromised (else: no longer in use).
    #[serde(default)]
    pub key_compromise: bool,
}

/// A certificate that a renewal replaced. It stays valid until its own expiry (it is not
/// revoked and not on the CRL), so that a home whose renewal answer was lost keeps a working
/// certificate; it is no longer the name's current one and cannot renew again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supersession {
    /// When (Unix seconds).
    pub at: i64,
    /// Serial of the certificate that replaced it.
    pub by: String,
}

/// A certificate issued to a client, and the prefix it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRecord {
    /// The client's name (its certificate's dNSName and IKE identity).
    pub name: String,
    /// The prefix in its certificate.
    pub prefix: Ipv6Net,
    /// Certificate serial number, lower-case hex.
    pub serial: String,
    /// When it was issued (Unix seconds).
    pub issued: i64,
    /// When the certificate expires (Unix seconds).
    pub not_after: i64,
    /// The certificate (PEM), so that its bundle can be written again.
    pub certificate: String,
    /// Set once revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
    /// Set once a renewal replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded: Option<Supersession>,
}

impl ClientRecord {
    /// Whether the record still holds its prefix at `now`: not revoked, or revoked less than
    /// `grace_days` ago (routes and caches may still point at the prefix).
    pub fn holds_prefix(&self, now: i64, grace_days: u32) -> bool {
        match &self.revoked {
            None => true,
            Some(r) => now < r.at.saturating_add(i64::from(grace_days) * SECONDS_PER_DAY),
        }
    }

    /// When a revoked record's prefix becomes free again.
    pub fn prefix_free_at(&self, grace_days: u32) -> Option<i64> {
        self.revoked
            .as_ref()
            .map(|r| r.at.saturating_add(i64::from(grace_days) * SECONDS_PER_DAY))
    }
}

/// An enrollment token, stored by the SHA-256 of its secret (the secret itself is not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// The client name the token enrolls.
    pub name: String,
    /// SHA-256 of the secret, lower-case hex.
    pub secret_sha256: String,
    /// When it was made (Unix seconds).
    pub created: i64,
    /// When it stops working (Unix seconds).
    pub expires: i64,
    /// When it was used, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<i64>,
    /// Serial of the certificate issued with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_serial: Option<String>,
}

/// The registry's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryData {
    /// [`REGISTRY_FORMAT`].
    pub format: u32,
    /// The pool prefixes come from.
    pub pool: Ipv6Net,
    /// Length of each client's prefix.
    pub prefix_len: u8,
    /// Days a revoked client's prefix stays held before it can be handed out again.
    pub grace_days: u32,
    /// Number of the last CRL published.
    pub crl_number: u64,
    /// Every certificate issued, in order.
    pub clients: Vec<ClientRecord>,
    /// Enrollment tokens.
    pub tokens: Vec<TokenRecord>,
    /// Which server holds each home (one record per home that some server claimed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<HolderRecord>,
}

/// Two client records whose names differ only in case and which both hold a certificate: the
/// registry cannot be read, as which of the two homes is meant cannot be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "clients {first:?} (serial {first_serial}) and {second:?} (serial {second_serial}) are one \
name in different case and both hold a certificate; revoke one by hand (add \"revoked\": \
{{\"at\": UNIX_TIME}} to its record), then run `hometun pki crl`"
)]
pub struct NameClash {
    /// The name of the earlier record.
    pub first: String,
    /// Its certificate's serial.
    pub first_serial: String,
    /// The name of the later record.
    pub second: String,
    /// Its certificate's serial.
    pub second_serial: String,
}

/// The server that holds a home: the one whose tunnel the home uses (one at a time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holder {
    /// The server's name (its `server.name`).
    pub server: String,
    /// Since when (Unix seconds).
    pub since: i64,
}

/// A [`Holder`] and the home it holds, as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolderRecord {
    /// The home's name.
    pub home: String,
    /// Which server holds it, since when.
    #[serde(flatten)]
    pub holder: Holder,
}

impl RegistryData {
    /// An empty registry for `pool`, handing out `/prefix_len` prefixes.
    pub fn new(pool: Ipv6Net, prefix_len: u8, grace_days: u32) -> Result<Self, PkiError> {
        check_pool(pool, prefix_len)?;
        Ok(RegistryData {
            format: REGISTRY_FORMAT,
            pool: pool.trunc(),
            prefix_len,
            grace_days,
            crl_number: 0,
            clients: Vec::new(),
            tokens: Vec::new(),
            holders: Vec::new(),
        })
    }

    /// How many prefixes the pool hands out (its first prefix stays with the server).
    pub fn capacity(&self) -> u128 {
        capacity(self.pool, self.prefix_len)
    }

    /// The client's current (not revoked) record.
    pub fn active(&self, name: &str) -> Option<&ClientRecord> {
        self.clients
            .iter()
            .rev()
            .find(|c| c.name == name && c.revoked.is_none())
    }

    /// The prefix a revoked `name` still holds at `now` (within the grace period), if any.
    pub fn held_prefix_of(&self, name: &str, now: i64) -> Option<Ipv6Net> {
        self.clients
            .iter()
            .rev()
            .find(|c| c.name == name && c.holds_prefix(now, self.grace_days))
            .map(|c| c.prefix)
    }

    /// The next free prefix: the lowest one not held by any client. The pool's first prefix
    /// (index 0) is never handed out: it is the server's own (and `::` is the subnet-router
    /// anycast address of a /64); except in a pool of a single prefix, which its one home gets
    /// whole (a VPS whose provider puts one /64 on its link, `upstream.mode = "ndp-proxy"`).
    pub fn next_free_prefix(&self, now: i64) -> Result<Ipv6Net, PkiError> {
        let shift = 128 - u32::from(self.prefix_len);
        let base = u128::from(self.pool.network());
        let mut held: Vec<u128> = self
            .clients
            .iter()
            .filter(|c| c.holds_prefix(now, self.grace_days) && self.pool.contains(&c.prefix))
            .map(|c| {
                (u128::from(c.prefix.network()) - base)
                    .checked_shr(shift)
                    .unwrap_or(0)
            })
            .collect();
        held.sort_unstable();
        held.dedup();
        let first = first_index(self.pool, self.prefix_len);
        let mut candidate: u128 = first;
        for index in held {
            if index == candidate {
                candidate += 1;
            } else if index > candidate {
                break;
            }
        }
        if candidate - first >= self.capacity() {
            return Err(PkiError::PoolExhausted {
                pool: self.pool,
                prefix_len: self.prefix_len,
                capacity: self.capacity(),
            });
        }
        let network = base | candidate.checked_shl(shift).unwrap_or(0);
        Ok(Ipv6Net::new(network.into(), self.prefix_len)
            .expect("prefix_len was checked to be at most 128"))
    }

    /// Everything revoked, for the CRL.
    pub fn revoked(&self) -> Vec<Revoked> {
        self.clients
            .iter()
            .filter_map(|c| {
                let r = c.revoked.as_ref()?;
                Some(Revoked {
                    serial: hex_decode(&c.serial)?,
                    at: OffsetDateTime::from_unix_timestamp(r.at).ok()?,
                    key_compromise: r.key_compromise,
                })
            })
            .collect()
    }

    /// Records that `server` holds `home` since `now`; returns the previous holder (which may
    /// be `server` itself).
    pub fn claim(&mut self, home: &str, server: &str, now: i64) -> Option<Holder> {
        let holder = Holder {
            server: server.to_string(),
            since: now,
        };
        match self.holders.iter_mut().find(|h| h.home == home) {
            Some(record) => Some(std::mem::replace(&mut record.holder, holder)),
            None => {
                self.holders.push(HolderRecord {
                    home: home.to_string(),
                    holder,
                });
                None
            }
        }
    }

    /// The server that holds `home`, if any.
    pub fn holder(&self, home: &str) -> Option<&Holder> {
        self.holders
            .iter()
            .find(|h| h.home == home)
            .map(|h| &h.holder)
    }

    /// Forgets that `server` holds `home`; a home another server holds is left alone. Returns
    /// whether `server` held it.
    pub fn release(&mut self, home: &str, server: &str) -> bool {
        let before = self.holders.len();
        self.holders
            .retain(|h| !(h.home == home && h.holder.server == server));
        self.holders.len() != before
    }

    /// The serials of every revoked certificate, with their names.
    pub fn revoked_serials(&self) -> Vec<(String, String)> {
        self.clients
            .iter()
            .filter(|c| c.revoked.is_some())
            .map(|c| (c.name.clone(), c.serial.clone()))
            .collect()
    }

    /// Puts every client and token name in lower case, the one form names are compared in
    /// (registries written before that may hold `Home.example`). Refuses a registry in which
    /// two records of different spelling hold a certificate (not revoked) for what is then one
    /// name: which of the two homes is meant cannot be decided here.
    pub fn normalise_names(&mut self) -> Result<(), NameClash> {
        // Every load comes here, with a record per home: one pass, not a pair of records at a
        // time. Names already in lower case (all of them once written back) cannot clash.
        if self
            .clients
            .iter()
            .any(|c| c.name.bytes().any(|b| b.is_ascii_uppercase()))
        {
            // Lower-case name -> the certified (not revoked) records of it so far, in order.
            let mut certified: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, record) in self.clients.iter().enumerate() {
                if record.revoked.is_some() {
                    continue;
                }
                let same = certified
                    .entry(record.name.to_ascii_lowercase())
                    .or_default();
                if let Some(&first) = same.iter().find(|&&o| self.clients[o].name != record.name) {
                    let other = &self.clients[first];
                    return Err(NameClash {
                        first: other.name.clone(),
                        first_serial: other.serial.clone(),
                        second: record.name.clone(),
                        second_serial: record.serial.clone(),
                    });
                }
                same.push(i);
            }
        }
        for record in &mut self.clients {
            record.name.make_ascii_lowercase();
        }
        for token in &mut self.tokens {
            token.name.make_ascii_lowercase();
        }
        Ok(())
    }

    /// The index of the token with this secret hash. Every stored hash is compared, each in
    /// time that does not depend on where it first differs: the answer's timing says nothing
    /// about how close a guess came.
    fn find_token(&self, secret_sha256: &str) -> Option<usize> {
        let mut found = None;
        for (i, token) in self.tokens.iter().enumerate() {
            if constant_time_eq(token.secret_sha256.as_bytes(), secret_sha256.as_bytes()) {
                found = Some(i);
            }
        }
        found
    }

    /// The token with this secret hash if it can still enroll at `now` (known, unused,
    /// unexpired). Changes nothing: the enrollment listener asks this before it spends any
    /// work on the request's CSR.
    pub fn check_token(&self, secret_sha256: &str, now: i64) -> Result<&TokenRecord, TokenRefusal> {
        let token = &self.tokens[self
            .find_token(secret_sha256)
            .ok_or(TokenRefusal::Unknown)?];
        if let Some(at) = token.used {
            return Err(TokenRefusal::Used { at });
        }
        if now >= token.expires {
            return Err(TokenRefusal::Expired { at: token.expires });
        }
        Ok(token)
    }

    /// Checks the token with this secret hash and marks it used; the token is left untouched
    /// when refused.
    pub fn use_token(
        &mut self,
        secret_sha256: &str,
        csr_name: &str,
        now: i64,
    ) -> Result<&mut TokenRecord, TokenRefusal> {
        self.check_token(secret_sha256, now)?;
        let index = self
            .find_token(secret_sha256)
            .ok_or(TokenRefusal::Unknown)?;
        let token = &mut self.tokens[index];
        if token.name != csr_name {
            return Err(TokenRefusal::NameMismatch {
                token: token.name.clone(),
                csr: csr_name.to_string(),
            });
        }
        token.used = Some(now);
        Ok(token)
    }
}

/// Whether `a == b`, in time that depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

fn capacity(pool: Ipv6Net, prefix_len: u8) -> u128 {
    let bits = u32::from(prefix_len) - u32::from(pool.prefix_len());
    match 1u128.checked_shl(bits) {
        // A pool of one prefix gives it to its one home.
        Some(1) => 1,
        Some(n) => n - 1,
        None => u128::MAX,
    }
}

/// The index of the first prefix handed out: 1 (the first stays with the server), or 0 in a
/// pool of a single prefix.
fn first_index(pool: Ipv6Net, prefix_len: u8) -> u128 {
    u128::from(prefix_len != pool.prefix_len())
}

/// Checks that a pool can hand out at least one `/prefix_len`.
pub fn check_pool(pool: Ipv6Net, prefix_len: u8) -> Result<(), PkiError> {
    if prefix_len > 128 || prefix_len < pool.prefix_len() {
        return Err(PkiError::Invalid(format!(
            "prefix length /{prefix_len} must lie between the pool's /{} and /128",
            pool.prefix_len()
        )));
    }
    Ok(())
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::Registry;
    use super::*;

    fn record(name: &str, prefix: Ipv6Net) -> ClientRecord {
        ClientRecord {
            name: name.into(),
            prefix,
            serial: "01".into(),
            issued: 0,
            not_after: 100,
            certificate: String::new(),
            revoked: None,
            superseded: None,
        }
    }

    fn registry(pool: &str, len: u8) -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::at(&dir.path().join("registry.json"));
        reg.create(&RegistryData::new(pool.parse().unwrap(), len, 30).unwrap())
            .unwrap();
        (dir, reg)
    }

    fn allocate(reg: &Registry, name: &str, now: i64) -> Result<Ipv6Net, PkiError> {
        reg.update(|d| {
            let p = d.next_free_prefix(now)?;
            d.clients.push(record(name, p));
            Ok(p)
        })
    }

    #[test]
    fn allocation_is_sequential_and_skips_the_first_prefix() {
        let (_d, reg) = registry("2001:db8:100::/48", 64);
        let got: Vec<String> = (0..3)
            .map(|i| allocate(&reg, &format!("h{i}"), 0).unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "2001:db8:100:1::/64",
                "2001:db8:100:2::/64",
                "2001:db8:100:3::/64"
            ]
        );
    }

    #[test]
    fn no_reuse_after_restart() {
        let (d, reg) = registry("2001:db8:100::/48", 64);
        let a = allocate(&reg, "a", 0).unwrap();
        drop(reg);
        // A fresh handle, as a new process would have.
        let reg = Registry::at(&d.path().join("registry.json"));
        let b = allocate(&reg, "b", 0).unwrap();
        assert_ne!(a, b);
        assert_eq!(b.to_string(), "2001:db8:100:2::/64");
    }

    #[test]
    fn small_pool_exhausts_with_a_clear_error() {
        let (_d, reg) = registry("2001:db8:100::/62", 64);
        for i in 0..3 {
            allocate(&reg, &format!("h{i}"), 0).unwrap();
        }
        let e = allocate(&reg, "h3", 0).unwrap_err().to_string();
        assert_eq!(
            e,
            "pool 2001:db8:100::/62 is exhausted: all 3 /64 prefixes are allocated or in their revocation grace period"
        );
        // The failed attempt changed nothing.
        assert_eq!(reg.load().unwrap().clients.len(), 3);
    }

    #[test]
    fn revoked_prefix_is_free_only_after_the_grace_period() {
        let (_d, reg) = registry("2001:db8:100::/62", 64);
        let first = allocate(&reg, "a", 0).unwrap();
        reg.update(|d| {
            d.clients[0].revoked = Some(Revocation {
                at: 1000,
                key_compromise: false,
            });
            Ok(())
        })
        .unwrap();
        // Within 30 days: the next one is a new prefix.
        let day = SECONDS_PER_DAY;
        assert_ne!(allocate(&reg, "b", 1000 + 29 * day).unwrap(), first);
        // After the grace period the lowest free one is the revoked one again.
        assert_eq!(allocate(&reg, "c", 1000 + 30 * day).unwrap(), first);
    }

    #[test]
    fn failed_change_writes_nothing_and_stale_temporaries_are_harmless() {
        let (d, reg) = registry("2001:db8:100::/48", 64);
        let before = std::fs::read(reg.location()).unwrap();
        let r: Result<(), _> = reg.update(|data| {
            data.next_free_prefix(0)?;
            data.clients
                .push(record("x", "2001:db8:100:1::/64".parse().unwrap()));
            Err(PkiError::Invalid(
                "failure injected after the allocation".into(),
            ))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(reg.location()).unwrap(), before);
        // A torn temporary from a crashed writer does not disturb anything.
        std::fs::write(d.path().join(".registry.json.tmp.99999"), b"{\"form").unwrap();
        assert_eq!(
            allocate(&reg, "a", 0).unwrap().to_string(),
            "2001:db8:100:1::/64"
        );
        // A failing before_commit step also leaves the file as it was.
        let before = std::fs::read(reg.location()).unwrap();
        let r = reg.update_with(
            |data| {
                data.crl_number += 1;
                Ok(())
            },
            |_| Err(PkiError::Invalid("publishing failed".into())),
        );
        assert!(r.is_err());
        assert_eq!(std::fs::read(reg.location()).unwrap(), before);
    }

    #[test]
    fn concurrent_threads_never_share_a_prefix() {
        let (_d, reg) = registry("2001:db8:100::/48", 64);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let reg = reg.clone();
                std::thread::spawn(move || {
                    (0..10)
                        .map(|i| allocate(&reg, &format!("t{t}-{i}"), 0).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Ipv6Net> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "a prefix was handed out twice");
        assert_eq!(reg.load().unwrap().clients.len(), 80);
        // And they are exactly the first 80: none lost.
        assert_eq!(all.last().unwrap().to_string(), "2001:db8:100:50::/64");
    }

    #[test]
    fn a_pool_of_one_prefix_goes_whole_to_its_one_home() {
        let d = RegistryData::new("2001:db8:200::/64".parse().unwrap(), 64, 1).unwrap();
        assert_eq!(d.capacity(), 1);
        let first = d.next_free_prefix(0).unwrap();
        assert_eq!(first.to_string(), "2001:db8:200::/64");
        let mut taken = d.clone();
        taken.clients.push(record("home.example", first));
        assert!(matches!(
            taken.next_free_prefix(0),
            Err(PkiError::PoolExhausted { capacity: 1, .. })
        ));
        // A larger pool still keeps its first prefix for the server.
        let d = RegistryData::new("2001:db8:200::/63".parse().unwrap(), 64, 1).unwrap();
        assert_eq!(d.capacity(), 1);
        assert_eq!(
            d.next_free_prefix(0).unwrap().to_string(),
            "2001:db8:200:1::/64"
        );
    }

    #[test]
    fn pool_checks() {
        let pool: Ipv6Net = "2001:db8::/64".parse().unwrap();
        assert!(check_pool(pool, 48).is_err());
        assert!(check_pool(pool, 129).is_err());
        assert!(check_pool(pool, 128).is_ok());
        assert_eq!(capacity("::/0".parse().unwrap(), 128), u128::MAX);
        let d = RegistryData::new("2001:db8::/64".parse().unwrap(), 128, 1).unwrap();
        assert_eq!(
            d.next_free_prefix(0).unwrap().to_string(),
            "2001:db8::1/128"
        );
    }

    #[test]
    fn tokens_work_once_and_expire() {
        let mut d = RegistryData::new("2001:db8::/48".parse().unwrap(), 64, 1).unwrap();
        d.tokens.push(TokenRecord {
            name: "home.example".into(),
            secret_sha256: "aa".into(),
            created: 0,
            expires: 100,
            used: None,
            used_serial: None,
        });
        assert_eq!(
            d.use_token("bb", "home.example", 1),
            Err(TokenRefusal::Unknown)
        );
        assert_eq!(
            d.use_token("aa", "other.example", 1),
            Err(TokenRefusal::NameMismatch {
                token: "home.example".into(),
                csr: "other.example".into()
            })
        );
        let mut late = d.clone();
        assert_eq!(
            late.use_token("aa", "home.example", 100),
            Err(TokenRefusal::Expired { at: 100 })
        );
        assert!(d.use_token("aa", "home.example", 5).is_ok());
        assert_eq!(
            d.use_token("aa", "home.example", 6),
            Err(TokenRefusal::Used { at: 5 })
        );
    }
}
