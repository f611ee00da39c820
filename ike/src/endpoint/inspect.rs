//! What the tests and fuzz harnesses may look at and do beyond the driver's interface (feature
//! `test-util`): the tamper hook, digests of keys, the reserved SPIs, the lingering pairs, and a
//! check of the SA table's indexes against a visit of every SA.

use std::time::Instant;

use hometun_control::PeerId;

use super::{Endpoint, Sa, sa_deadline};

impl Endpoint {
    /// Makes this endpoint a hostile peer: `tamper` changes each protected message it sends.
    #[cfg(feature = "test-util")]
    pub fn set_tamper(&mut self, tamper: Box<dyn crate::io::Tamper>) {
        self.tamper = Some(tamper);
    }

    /// A digest of SK_d of the current IKE SA with `peer`: tests see that a rekey changed it
    /// without ever seeing the key.
    #[cfg(feature = "test-util")]
    pub fn sk_d_digest(&self, peer: PeerId) -> Option<[u8; 32]> {
        use sha2::Digest;
        self.current_sas()
            .find(|e| e.peer.id == peer)
            .map(|e| sha2::Sha256::digest(e.core.keys.sk_d()).into())
    }

    /// How many of our key pairs are made ahead and ready (see [`Endpoint::defer_crypto`]).
    #[cfg(feature = "test-util")]
    pub fn key_pairs_ready(&self) -> usize {
        self.key_pool.ready()
    }

    /// How many IKE SPIs and inbound ESP SPIs this endpoint holds reserved: after
    /// [`Endpoint::close`] both must be zero, and an installed pair always holds its SPI.
    #[cfg(feature = "test-util")]
    pub fn spis_reserved(&self) -> (usize, usize) {
        self.spis.reserved()
    }

    /// The inbound SPIs of CHILD SAs that both sides deleted but whose inbound half still
    /// lingers for packets in flight, with the time each goes: installed, yet no longer in the
    /// status.
    #[cfg(feature = "test-util")]
    pub fn lingering_inbound(&self) -> Vec<(u32, Instant)> {
        self.sas
            .values()
            .filter_map(|sa| match sa {
                Sa::Up(e) => Some(e.lingering_inbound()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Panics unless the [`SaTable`] index says what a visit of every SA finds: the earliest
    /// deadline and each established SA under its peer. The simulations check it after each
    /// step.
    #[cfg(feature = "test-util")]
    pub fn check_sa_index(&mut self) {
        self.refile();
        let scanned = self
            .sas
            .values()
            .filter_map(|sa| sa_deadline(&self.common, sa))
            .min();
        assert_eq!(
            self.sas.next_deadline(),
            scanned,
            "filed SA deadlines disagree"
        );
        let mut by_peer: Vec<(PeerId, u64)> = self
            .sas
            .iter()
            .filter_map(|(spi, sa)| sa.peer().map(|peer| (peer, *spi)))
            .collect();
        by_peer.sort_unstable();
        let filed: Vec<(PeerId, u64)> = self
            .peer_ids
            .values()
            .flat_map(|peer| self.sas.of_peer(*peer).into_iter().map(|spi| (*peer, spi)))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(filed, by_peer, "SAs filed under the wrong peer");
    }
}
