//! Why an exchange failed, as a typed error that maps to the Notify the peer gets (RFC 7296 2.21;
//! docs/ARCHITECTURE.md, "Conventions"), with the one-line reason for the log.

use hometun_control::Spi;

use crate::crypto::{CertError, CryptoError, DhGroup};
use crate::proposal::NegotiationError;
use crate::wire::{Notify, NotifyType, PayloadType, ProtocolId, SkError, WireError};

/// A refusal of (part of) a peer's request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IkeError {
    /// No proposal of the peer's is acceptable (or transport mode was asked for).
    #[error("no proposal chosen: {0}")]
    NoProposalChosen(String),
    /// The KE payload's group is not the one we choose.
    #[error("key exchange group {got} unacceptable, requesting {wanted}")]
    InvalidKe {
        /// The group we want.
        wanted: DhGroup,
        /// The group of the KE payload.
        got: u16,
    },
    /// The peer's certificate, identity, authorization or signature failed.
    #[error("{0}")]
    AuthenticationFailed(String),
    /// The traffic selectors leave nothing policy allows.
    #[error("traffic selectors unacceptable: {0}")]
    TsUnacceptable(String),
    /// A payload is missing or malformed.
    #[error("invalid syntax: {0}")]
    InvalidSyntax(String),
    /// A critical payload of a type we do not know.
    #[error("unsupported critical payload {0}")]
    UnsupportedCriticalPayload(PayloadType),
    /// The CHILD SA named by REKEY_SA does not exist.
    #[error("CHILD SA with SPI {0:08x} not found")]
    ChildSaNotFound(Spi),
    /// Another exchange on the same SA is in progress; try again later.
    #[error("temporary failure: {0}")]
    TemporaryFailure(&'static str),
    /// We create no further CHILD SAs beyond the first (and its rekeys).
    #[error("no additional CHILD SAs")]
    NoAdditionalSas,
}

impl IkeError {
    /// The Notify type the peer gets.
    pub fn notify_type(&self) -> NotifyType {
        match self {
            IkeError::NoProposalChosen(_) => NotifyType::NO_PROPOSAL_CHOSEN,
            IkeError::InvalidKe { .. } => NotifyType::INVALID_KE_PAYLOAD,
            IkeError::AuthenticationFailed(_) => NotifyType::AUTHENTICATION_FAILED,
            IkeError::TsUnacceptable(_) => NotifyType::TS_UNACCEPTABLE,
            IkeError::InvalidSyntax(_) => NotifyType::INVALID_SYNTAX,
            IkeError::UnsupportedCriticalPayload(_) => NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
            IkeError::ChildSaNotFound(_) => NotifyType::CHILD_SA_NOT_FOUND,
            IkeError::TemporaryFailure(_) => NotifyType::TEMPORARY_FAILURE,
            IkeError::NoAdditionalSas => NotifyType::NO_ADDITIONAL_SAS,
        }
    }

    /// The Notify payload the peer gets.
    pub fn notify(&self) -> Notify {
        match self {
            IkeError::InvalidKe { wanted, .. } => Notify::new(
                NotifyType::INVALID_KE_PAYLOAD,
                wanted.id().to_be_bytes().to_vec(),
            ),
            IkeError::UnsupportedCriticalPayload(t) => {
                Notify::new(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t.0])
            }
            IkeError::ChildSaNotFound(spi) => Notify::with_spi(
                ProtocolId::ESP,
                spi.to_bytes().to_vec(),
                NotifyType::CHILD_SA_NOT_FOUND,
                Vec::new(),
            ),
            other => Notify::new(other.notify_type(), Vec::new()),
        }
    }

    /// A malformed payload (authenticated, so worth an answer).
    pub fn syntax(what: impl Into<String>) -> Self {
        IkeError::InvalidSyntax(what.into())
    }

    /// A message-layer error of authenticated content.
    pub fn from_wire(err: &WireError) -> Self {
        match err {
            WireError::UnsupportedCriticalPayload(t) => IkeError::UnsupportedCriticalPayload(*t),
            other => IkeError::InvalidSyntax(other.to_string()),
        }
    }

    /// An SK payload error that deserves an answer (authenticated but malformed inside), or
    /// `None` when the message must be dropped silently (RFC 7296 2.21.2).
    pub fn from_sk(err: &SkError) -> Option<Self> {
        match err {
            SkError::InnerMalformed(e) => Some(Self::from_wire(e)),
            SkError::InvalidPadLength { .. } => Some(IkeError::syntax(err.to_string())),
            _ => None,
        }
    }
}

impl From<NegotiationError> for IkeError {
    fn from(err: NegotiationError) -> Self {
        // The variant's own text says "no proposal chosen": keep only what follows, so the
        // log line does not say it twice.
        match err {
            NegotiationError::NoProposalChosen { offered } => {
                IkeError::NoProposalChosen(format!("peer offered {offered}"))
            }
        }
    }
}

impl From<CertError> for IkeError {
    fn from(err: CertError) -> Self {
        IkeError::AuthenticationFailed(err.to_string())
    }
}

impl From<CryptoError> for IkeError {
    fn from(err: CryptoError) -> Self {
        match err.notify_type() {
            Some(NotifyType::NO_PROPOSAL_CHOSEN) => IkeError::NoProposalChosen(err.to_string()),
            Some(NotifyType::AUTHENTICATION_FAILED) => {
                IkeError::AuthenticationFailed(err.to_string())
            }
            // INVALID_KE from crypto means an unknown group: the caller names the wanted one.
            _ => IkeError::InvalidSyntax(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negotiation_error_says_no_proposal_chosen_once() {
        let e = IkeError::from(NegotiationError::NoProposalChosen {
            offered: "ESP:ENCR_AES_GCM_16/128/NO_ESN".into(),
        });
        assert_eq!(
            e.to_string(),
            "no proposal chosen: peer offered ESP:ENCR_AES_GCM_16/128/NO_ESN"
        );
    }

    #[test]
    fn errors_map_to_their_notify() {
        let ke = IkeError::InvalidKe {
            wanted: DhGroup::Curve25519,
            got: 19,
        };
        assert_eq!(ke.notify().data, [0, 31]);
        assert_eq!(ke.notify_type(), NotifyType::INVALID_KE_PAYLOAD);
        assert_eq!(
            IkeError::from(CertError::Revoked).notify_type(),
            NotifyType::AUTHENTICATION_FAILED
        );
        let crit = IkeError::from_wire(&WireError::UnsupportedCriticalPayload(PayloadType(99)));
        assert_eq!(crit.notify().data, [99]);
        assert_eq!(
            IkeError::from_sk(&SkError::IntegrityCheckFailed),
            None,
            "unauthenticated: dropped"
        );
        assert_eq!(
            IkeError::from(CryptoError::BadSignature).to_string(),
            "AUTH signature does not verify with the peer's certificate"
        );
    }
}
