//! A responder's IKE SA between its IKE_SA_INIT answer and its keys, when the shared secret and
//! key derivation run as a job off the driver's task ([`crate::endpoint::Endpoint::defer_crypto`]).
//! It answers retransmitted IKE_SA_INIT requests like a half-open SA, and keeps the first
//! IKE_AUTH request that comes before the keys (it cannot be opened yet) for when they do.

use std::net::SocketAddrV4;

use super::responder::{HalfOpen, InitExchange};
use super::{Addresses, IkeCore};
use crate::crypto::{CryptoError, IkeSaKeys};
use crate::proposal::ChosenIke;
use crate::wire::Header;

/// IKE_SA_INIT answered; the keys are being derived.
pub(crate) struct Deriving {
    spi_i: u64,
    spi_r: u64,
    chosen: ChosenIke,
    addresses: Addresses,
    pub init: InitExchange,
    early: Option<EarlyAuth>,
}

/// An IKE_AUTH request that came before the keys.
pub(crate) struct EarlyAuth {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub header: Header,
    pub data: Vec<u8>,
}

impl Deriving {
    pub(crate) fn new(
        spi_i: u64,
        spi_r: u64,
        chosen: ChosenIke,
        addresses: Addresses,
        init: InitExchange,
    ) -> Self {
        Deriving {
            spi_i,
            spi_r,
            chosen,
            addresses,
            init,
            early: None,
        }
    }

    /// Our SPI.
    pub fn spi(&self) -> u64 {
        self.spi_r
    }

    /// The initiator's SPI.
    pub fn spi_i(&self) -> u64 {
        self.spi_i
    }

    /// Keeps an IKE_AUTH request until the keys are there. Only the first is kept: an honest
    /// initiator's retransmission is the same message, and one copy bounds what a flood of
    /// forged ones can make us hold (one message per half-open SA).
    pub fn hold_early(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        header: Header,
        data: &[u8],
    ) {
        if self.early.is_none() {
            self.early = Some(EarlyAuth {
                local,
                remote,
                header,
                data: data.to_vec(),
            });
        }
    }

    /// The keys are derived: the half-open SA, and the IKE_AUTH request that waited for them.
    pub fn keys_derived(
        self,
        keys: IkeSaKeys,
    ) -> Result<(HalfOpen, Option<EarlyAuth>), CryptoError> {
        let core = IkeCore::new(
            keys,
            self.chosen,
            self.spi_i,
            self.spi_r,
            false,
            self.addresses,
        )?;
        Ok((HalfOpen::new(core, self.init), self.early))
    }
}
