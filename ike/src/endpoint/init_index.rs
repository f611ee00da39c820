//! Which of our IKE SAs answered which IKE_SA_INIT: (SPIi, source) -> our SPI, and back. A
//! retransmitted IKE_SA_INIT gets the same answer, and a late copy of one whose SA is up is
//! dropped (RFC 7296 2.1); the way back lets an SA that goes take its entry out without a
//! visit of every entry (a server holds one per home).

use std::collections::HashMap;
use std::net::SocketAddrV4;

#[derive(Default)]
pub(super) struct InitIndex {
    ours_by_init: HashMap<(u64, SocketAddrV4), u64>,
    init_by_ours: HashMap<u64, (u64, SocketAddrV4)>,
}

impl InitIndex {
    /// Our SPI for the IKE_SA_INIT with `spi_i` from `source`.
    pub(super) fn get(&self, spi_i: u64, source: SocketAddrV4) -> Option<u64> {
        self.ours_by_init.get(&(spi_i, source)).copied()
    }

    pub(super) fn insert(&mut self, spi_i: u64, source: SocketAddrV4, ours: u64) {
        if let Some(old) = self.ours_by_init.insert((spi_i, source), ours) {
            self.init_by_ours.remove(&old);
        }
        if let Some(old) = self.init_by_ours.insert(ours, (spi_i, source)) {
            self.ours_by_init.remove(&old);
        }
    }

    /// Takes out the entry of the IKE_SA_INIT with `spi_i` from `source`.
    pub(super) fn remove_init(&mut self, spi_i: u64, source: SocketAddrV4) {
        if let Some(ours) = self.ours_by_init.remove(&(spi_i, source)) {
            self.init_by_ours.remove(&ours);
        }
    }

    /// Takes out the entry of our SA `ours`.
    pub(super) fn remove_ours(&mut self, ours: u64) {
        if let Some(init) = self.init_by_ours.remove(&ours) {
            self.ours_by_init.remove(&init);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(std::net::Ipv4Addr::new(192, 0, 2, 2), port)
    }

    #[test]
    fn an_entry_goes_by_either_key() {
        let mut index = InitIndex::default();
        index.insert(1, source(500), 10);
        index.insert(2, source(500), 20);
        assert_eq!(index.get(1, source(500)), Some(10));
        assert_eq!(index.get(1, source(4500)), None);
        index.remove_ours(10);
        assert_eq!(index.get(1, source(500)), None);
        index.remove_init(2, source(500));
        assert_eq!(index.get(2, source(500)), None);
        assert!(index.ours_by_init.is_empty() && index.init_by_ours.is_empty());
    }

    #[test]
    fn a_replaced_entry_leaves_nothing_behind() {
        let mut index = InitIndex::default();
        index.insert(1, source(500), 10);
        // The same request answered by another SA of ours, then one of ours re-used.
        index.insert(1, source(500), 11);
        index.insert(3, source(500), 11);
        assert_eq!(index.get(1, source(500)), None);
        assert_eq!(index.get(3, source(500)), Some(11));
        index.remove_ours(11);
        assert!(index.ours_by_init.is_empty() && index.init_by_ours.is_empty());
    }
}
