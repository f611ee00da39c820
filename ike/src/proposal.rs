//! IKE and ESP proposals: strongSwan-style strings (`aes128gcm16-prfsha256-x25519`,
//! `aes128gcm16-esn`), their SA payload form, and negotiation (the responder takes its first
//! preference that the initiator offers, as strongSwan does by default).

use std::fmt;
use std::str::FromStr;

use hometun_control::{AeadAlg, Spi};

use crate::crypto::DhGroup;
use crate::crypto::suite::{PRF, encr_transform};
use crate::wire::{self, EncrId, EsnId, ProtocolId, SecurityAssociation, Transform, TransformType};

/// A proposal string that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    /// The string is empty.
    #[error("empty proposal")]
    Empty,
    /// A keyword that names no algorithm we implement.
    #[error(
        "unknown or unsupported algorithm `{0}` (known: aes128gcm16, aes256gcm16, prfsha256, x25519, curve25519, ecp256, esn, noesn)"
    )]
    UnknownAlgorithm(String),
    /// A keyword of a type the proposal kind does not take (ESN in an IKE proposal...).
    #[error("`{keyword}` does not belong in an {kind} proposal")]
    Misplaced {
        /// The keyword.
        keyword: String,
        /// "IKE" or "ESP".
        kind: &'static str,
    },
    /// A required algorithm type is missing.
    #[error("{kind} proposal `{text}` has no {what}")]
    Missing {
        /// "IKE" or "ESP".
        kind: &'static str,
        /// The proposal text.
        text: String,
        /// What is missing ("encryption algorithm", "key exchange group").
        what: &'static str,
    },
}

/// Why no proposal could be agreed on: every variant answers NO_PROPOSAL_CHOSEN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// None of the peer's proposals matches any of ours.
    #[error("no proposal chosen: peer offered {offered}")]
    NoProposalChosen {
        /// The peer's proposals, for the log line.
        offered: String,
    },
}

impl NegotiationError {
    /// The Notify that reports this to the peer.
    pub const fn notify_type(&self) -> wire::NotifyType {
        wire::NotifyType::NO_PROPOSAL_CHOSEN
    }
}

/// One IKE SA proposal: alternatives for each transform type, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeProposal {
    /// ENCR_AES_GCM_16 with 128- or 256-bit keys.
    pub encryption: Vec<AeadAlg>,
    /// Key exchange groups (19, 31).
    pub groups: Vec<DhGroup>,
}

/// One CHILD SA (ESP) proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspProposal {
    /// ENCR_AES_GCM_16 with 128- or 256-bit keys.
    pub encryption: Vec<AeadAlg>,
    /// PFS groups for CREATE_CHILD_SA; empty for none (IKE_AUTH never carries a KE).
    pub groups: Vec<DhGroup>,
    /// With groups: a peer that refuses PFS is accepted too (`modpnone` in strongSwan's
    /// notation; on the wire a D-H transform NONE beside the groups, RFC 7296 3.3.2).
    pub pfs_optional: bool,
    /// Extended sequence numbers, in preference order (`false` = NO_ESN). Default: NO_ESN only.
    pub esn: Vec<bool>,
}

/// How the Diffie-Hellman transforms of ESP proposals count in [`EspProposal::select`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspGroups {
    /// IKE_AUTH: no KE payload travels, DH transforms are ignored (RFC 7296 1.2).
    Ignore,
    /// CREATE_CHILD_SA without a KE payload: only proposals that allow no group.
    None,
    /// CREATE_CHILD_SA with a KE payload of this group (PFS).
    Ke(wire::DhGroup),
}

/// What an IKE SA negotiation settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChosenIke {
    /// SK payload cipher.
    pub encryption: AeadAlg,
    /// Key exchange group.
    pub group: DhGroup,
}

/// What a CHILD SA negotiation settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChosenEsp {
    /// ESP cipher.
    pub encryption: AeadAlg,
    /// PFS group, if any.
    pub group: Option<DhGroup>,
    /// 64-bit sequence numbers.
    pub esn: bool,
}

enum Keyword {
    Encr(AeadAlg),
    Prf,
    Group(DhGroup),
    /// `modpnone`: no Diffie-Hellman is acceptable too (ESP only).
    NoGroup,
    Esn(bool),
}

fn keyword(word: &str) -> Result<Keyword, ProposalError> {
    Ok(match word.to_ascii_lowercase().as_str() {
        "aes128gcm16" | "aes128gcm128" => Keyword::Encr(AeadAlg::AesGcm128),
        "aes256gcm16" | "aes256gcm128" => Keyword::Encr(AeadAlg::AesGcm256),
        "prfsha256" => Keyword::Prf,
        "x25519" | "curve25519" | "modp31" => Keyword::Group(DhGroup::Curve25519),
        "ecp256" => Keyword::Group(DhGroup::Ecp256),
        "modpnone" | "none" => Keyword::NoGroup,
        "esn" => Keyword::Esn(true),
        "noesn" => Keyword::Esn(false),
        _ => return Err(ProposalError::UnknownAlgorithm(word.to_string())),
    })
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

fn group_name(group: DhGroup) -> &'static str {
    match group {
        DhGroup::Curve25519 => "x25519",
        DhGroup::Ecp256 => "ecp256",
    }
}

impl IkeProposal {
    /// Reads `aes128gcm16-prfsha256-x25519`-style text. The PRF may be left out (AEAD
    /// proposals imply PRF_HMAC_SHA2_256 here, the only one we implement).
    pub fn parse(text: &str) -> Result<Self, ProposalError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ProposalError::Empty);
        }
        let mut proposal = IkeProposal {
            encryption: Vec::new(),
            groups: Vec::new(),
        };
        for word in text.split('-') {
            match keyword(word)? {
                Keyword::Encr(alg) => push_unique(&mut proposal.encryption, alg),
                Keyword::Prf => {}
                Keyword::Group(group) => push_unique(&mut proposal.groups, group),
                Keyword::Esn(_) | Keyword::NoGroup => {
                    return Err(ProposalError::Misplaced {
                        keyword: word.to_string(),
                        kind: "IKE",
                    });
                }
            }
        }
        let missing = |what| ProposalError::Missing {
            kind: "IKE",
            text: text.to_string(),
            what,
        };
        if proposal.encryption.is_empty() {
            return Err(missing("encryption algorithm"));
        }
        if proposal.groups.is_empty() {
            return Err(missing("key exchange group"));
        }
        Ok(proposal)
    }

    /// The SA payload form (`spi`: empty in IKE_SA_INIT, 8 bytes when rekeying the IKE SA).
    pub fn to_wire(&self, number: u8, spi: Vec<u8>) -> wire::Proposal {
        let mut transforms: Vec<Transform> = self
            .encryption
            .iter()
            .map(|&alg| {
                let (id, bits) = encr_transform(alg);
                Transform::encr(id, Some(bits))
            })
            .collect();
        transforms.push(Transform::prf(PRF));
        transforms.extend(self.groups.iter().map(|g| Transform::dh(g.to_wire())));
        wire::Proposal::new(number, ProtocolId::IKE, spi, transforms)
    }

    /// Our proposals as an SA payload.
    pub fn sa_payload(proposals: &[IkeProposal], spi: &[u8]) -> SecurityAssociation {
        SecurityAssociation::new(
            proposals
                .iter()
                .enumerate()
                .map(|(i, p)| p.to_wire(proposal_number(i), spi.to_vec()))
                .collect(),
        )
    }

    /// Every group of these proposals, in order, without repeats.
    pub fn all_groups(proposals: &[IkeProposal]) -> Vec<DhGroup> {
        let mut groups = Vec::new();
        for p in proposals {
            for &g in &p.groups {
                push_unique(&mut groups, g);
            }
        }
        groups
    }

    /// Responder side: picks from the peer's proposals. Our proposals are tried in order, and
    /// in each the first algorithm of each type the peer's proposal offers; `ke_group` (the
    /// group of the peer's KE payload) is taken when the chosen proposal allows it, so a
    /// stock client's guess costs no extra round trip. Returns the choice and the one-proposal
    /// SA payload of the answer (its number echoed, `spi` as ours).
    pub fn select(
        ours: &[IkeProposal],
        offered: &SecurityAssociation,
        ke_group: Option<wire::DhGroup>,
        spi: &[u8],
    ) -> Result<(ChosenIke, Vec<u8>, wire::Proposal), NegotiationError> {
        for mine in ours {
            for theirs in &offered.proposals {
                if theirs.protocol != ProtocolId::IKE {
                    continue;
                }
                let Some(encryption) = pick_encr(&mine.encryption, theirs) else {
                    continue;
                };
                if !offers(theirs, TransformType::PRF, PRF.0)
                    || theirs
                        .transforms_of(TransformType::INTEG)
                        .any(|t| t.transform_id != 0)
                {
                    continue;
                }
                let their_groups: Vec<DhGroup> = mine
                    .groups
                    .iter()
                    .copied()
                    .filter(|g| offers(theirs, TransformType::DH, g.id()))
                    .collect();
                let Some(&first) = their_groups.first() else {
                    continue;
                };
                let group = ke_group
                    .and_then(DhGroup::from_wire)
                    .filter(|g| their_groups.contains(g))
                    .unwrap_or(first);
                let chosen = ChosenIke { encryption, group };
                let answer = IkeProposal {
                    encryption: vec![encryption],
                    groups: vec![group],
                }
                .to_wire(theirs.number, spi.to_vec());
                return Ok((chosen, theirs.spi.clone(), answer));
            }
        }
        Err(NegotiationError::NoProposalChosen {
            offered: describe(offered),
        })
    }

    /// Initiator side: checks the responder's one-proposal answer against what we offered.
    pub fn accept(
        ours: &[IkeProposal],
        answer: &SecurityAssociation,
    ) -> Result<(ChosenIke, Vec<u8>), NegotiationError> {
        let refused = || NegotiationError::NoProposalChosen {
            offered: describe(answer),
        };
        let [theirs] = answer.proposals.as_slice() else {
            return Err(refused());
        };
        let encr: Vec<&Transform> = theirs.transforms_of(TransformType::ENCR).collect();
        let groups: Vec<&Transform> = theirs.transforms_of(TransformType::DH).collect();
        let ([encr], [group]) = (encr.as_slice(), groups.as_slice()) else {
            return Err(refused());
        };
        if theirs.protocol != ProtocolId::IKE || !offers(theirs, TransformType::PRF, PRF.0) {
            return Err(refused());
        }
        let encryption =
            crate::crypto::suite::aead_alg(EncrId(encr.transform_id), encr.key_length())
                .map_err(|_| refused())?;
        let group = DhGroup::from_id(group.transform_id).ok_or_else(refused)?;
        let mine = ours
            .iter()
            .any(|p| p.encryption.contains(&encryption) && p.groups.contains(&group));
        if !mine {
            return Err(refused());
        }
        Ok((ChosenIke { encryption, group }, theirs.spi.clone()))
    }
}

impl EspProposal {
    /// Reads `aes128gcm16`, `aes256gcm16-esn`, `aes128gcm16-x25519` (PFS) style text.
    pub fn parse(text: &str) -> Result<Self, ProposalError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ProposalError::Empty);
        }
        let mut proposal = EspProposal {
            encryption: Vec::new(),
            groups: Vec::new(),
            pfs_optional: false,
            esn: Vec::new(),
        };
        for word in text.split('-') {
            match keyword(word)? {
                Keyword::Encr(alg) => push_unique(&mut proposal.encryption, alg),
                Keyword::Group(group) => push_unique(&mut proposal.groups, group),
                Keyword::NoGroup => proposal.pfs_optional = true,
                Keyword::Esn(esn) => push_unique(&mut proposal.esn, esn),
                Keyword::Prf => {
                    return Err(ProposalError::Misplaced {
                        keyword: word.to_string(),
                        kind: "ESP",
                    });
                }
            }
        }
        if proposal.encryption.is_empty() {
            return Err(ProposalError::Missing {
                kind: "ESP",
                text: text.to_string(),
                what: "encryption algorithm",
            });
        }
        if proposal.esn.is_empty() {
            proposal.esn.push(false);
        }
        Ok(proposal)
    }

    /// The SA payload form with our inbound SPI; `with_groups` adds the PFS groups (only in
    /// CREATE_CHILD_SA: IKE_AUTH proposals carry none).
    pub fn to_wire(&self, number: u8, spi: Spi, with_groups: bool) -> wire::Proposal {
        let mut transforms: Vec<Transform> = self
            .encryption
            .iter()
            .map(|&alg| {
                let (id, bits) = encr_transform(alg);
                Transform::encr(id, Some(bits))
            })
            .collect();
        if with_groups {
            transforms.extend(self.groups.iter().map(|g| Transform::dh(g.to_wire())));
            if self.pfs_optional && !self.groups.is_empty() {
                transforms.push(Transform::dh(wire::DhGroup(0)));
            }
        }
        transforms.extend(
            self.esn
                .iter()
                .map(|&esn| Transform::esn(if esn { EsnId::ESN } else { EsnId::NO_ESN })),
        );
        wire::Proposal::new(number, ProtocolId::ESP, spi.to_bytes().to_vec(), transforms)
    }

    /// Our proposals as an SA payload.
    pub fn sa_payload(
        proposals: &[EspProposal],
        spi: Spi,
        with_groups: bool,
    ) -> SecurityAssociation {
        SecurityAssociation::new(
            proposals
                .iter()
                .enumerate()
                .map(|(i, p)| p.to_wire(proposal_number(i), spi, with_groups))
                .collect(),
        )
    }

    /// Whether a CHILD SA may be rekeyed without a Diffie-Hellman exchange under this proposal.
    pub fn allows_no_pfs(&self) -> bool {
        self.groups.is_empty() || self.pfs_optional
    }

    /// Whether any of `proposals` allows a rekey without PFS.
    pub fn allow_no_pfs(proposals: &[EspProposal]) -> bool {
        proposals.iter().any(EspProposal::allows_no_pfs)
    }

    /// The group of our rekey's KE payload: the first group of the first proposal that names
    /// one (none when no proposal asks for PFS).
    pub fn default_group(proposals: &[EspProposal]) -> Option<DhGroup> {
        proposals.iter().find_map(|p| p.groups.first().copied())
    }

    /// Every PFS group of `proposals`, in order.
    pub fn all_groups(proposals: &[EspProposal]) -> Vec<DhGroup> {
        let mut groups = Vec::new();
        for p in proposals {
            for &g in &p.groups {
                push_unique(&mut groups, g);
            }
        }
        groups
    }

    /// Responder side: picks from the peer's ESP proposals like [`IkeProposal::select`].
    /// `groups` says how Diffie-Hellman transforms count (see [`EspGroups`]). Returns the
    /// choice, the peer's SPI and the one-proposal answer with our SPI `spi`. With
    /// [`EspGroups::Ke`] the chosen group may differ from the KE payload's: the caller then
    /// answers INVALID_KE_PAYLOAD.
    pub fn select(
        ours: &[EspProposal],
        offered: &SecurityAssociation,
        groups: EspGroups,
        spi: Spi,
    ) -> Result<(ChosenEsp, Spi, wire::Proposal), NegotiationError> {
        for mine in ours {
            for theirs in &offered.proposals {
                if theirs.protocol != ProtocolId::ESP {
                    continue;
                }
                let Some(peer_spi) = Spi::from_bytes(&theirs.spi) else {
                    continue;
                };
                if peer_spi.0 == 0 {
                    continue;
                }
                let Some(encryption) = pick_encr(&mine.encryption, theirs) else {
                    continue;
                };
                if theirs
                    .transforms_of(TransformType::INTEG)
                    .any(|t| t.transform_id != 0)
                {
                    continue;
                }
                let their_groups: Vec<u16> = theirs
                    .transforms_of(TransformType::DH)
                    .map(|t| t.transform_id)
                    .filter(|&id| id != 0)
                    .collect();
                let group = match groups {
                    EspGroups::Ignore => None,
                    EspGroups::None => {
                        // The peer sent no KE: only if both sides accept a rekey without PFS.
                        let theirs_ok =
                            their_groups.is_empty() || offers(theirs, TransformType::DH, 0);
                        if !theirs_ok || !mine.allows_no_pfs() {
                            continue;
                        }
                        None
                    }
                    EspGroups::Ke(ke) => {
                        let common: Vec<DhGroup> = mine
                            .groups
                            .iter()
                            .copied()
                            .filter(|g| their_groups.contains(&g.id()))
                            .collect();
                        match common.first() {
                            Some(&first) => Some(
                                DhGroup::from_wire(ke)
                                    .filter(|g| common.contains(g))
                                    .unwrap_or(first),
                            ),
                            // No group in common: without PFS if both allow it.
                            None if mine.allows_no_pfs()
                                && (their_groups.is_empty()
                                    || offers(theirs, TransformType::DH, 0)) =>
                            {
                                None
                            }
                            None => continue,
                        }
                    }
                };
                // No ESN transform at all means NO_ESN (RFC 7296 3.3.2 lets it be omitted).
                let their_esn: Vec<bool> =
                    if theirs.transforms_of(TransformType::ESN).next().is_none() {
                        vec![false]
                    } else {
                        theirs
                            .transforms_of(TransformType::ESN)
                            .filter_map(|t| match EsnId(t.transform_id) {
                                EsnId::ESN => Some(true),
                                EsnId::NO_ESN => Some(false),
                                _ => None,
                            })
                            .collect()
                    };
                let Some(&esn) = mine.esn.iter().find(|e| their_esn.contains(e)) else {
                    continue;
                };
                let chosen = ChosenEsp {
                    encryption,
                    group,
                    esn,
                };
                let answer = EspProposal {
                    encryption: vec![encryption],
                    groups: group.into_iter().collect(),
                    pfs_optional: false,
                    esn: vec![esn],
                }
                .to_wire(theirs.number, spi, group.is_some());
                return Ok((chosen, peer_spi, answer));
            }
        }
        Err(NegotiationError::NoProposalChosen {
            offered: describe(offered),
        })
    }

    /// Initiator side: checks the one-proposal answer; returns the choice and the peer's SPI.
    /// `sent` is what our request carried: [`EspGroups::Ignore`] in IKE_AUTH, else the KE
    /// we sent, if any.
    pub fn accept(
        ours: &[EspProposal],
        answer: &SecurityAssociation,
        sent: EspGroups,
    ) -> Result<(ChosenEsp, Spi), NegotiationError> {
        let ke_group = match sent {
            EspGroups::Ke(g) => DhGroup::from_wire(g),
            EspGroups::None | EspGroups::Ignore => None,
        };
        let refused = || NegotiationError::NoProposalChosen {
            offered: describe(answer),
        };
        let [theirs] = answer.proposals.as_slice() else {
            return Err(refused());
        };
        if theirs.protocol != ProtocolId::ESP {
            return Err(refused());
        }
        let spi = Spi::from_bytes(&theirs.spi).ok_or_else(refused)?;
        if spi.0 == 0 {
            return Err(refused());
        }
        let encr: Vec<&Transform> = theirs.transforms_of(TransformType::ENCR).collect();
        let [encr] = encr.as_slice() else {
            return Err(refused());
        };
        let encryption =
            crate::crypto::suite::aead_alg(EncrId(encr.transform_id), encr.key_length())
                .map_err(|_| refused())?;
        let esns: Vec<&Transform> = theirs.transforms_of(TransformType::ESN).collect();
        let esn = match esns.as_slice() {
            [] => false,
            [t] if EsnId(t.transform_id) == EsnId::NO_ESN => false,
            [t] if EsnId(t.transform_id) == EsnId::ESN => true,
            _ => return Err(refused()),
        };
        let groups: Vec<u16> = theirs
            .transforms_of(TransformType::DH)
            .map(|t| t.transform_id)
            .filter(|&id| id != 0)
            .collect();
        let group = match (groups.as_slice(), ke_group) {
            ([], _) => None,
            ([id], Some(g)) if *id == g.id() => Some(g),
            _ => return Err(refused()),
        };
        // An answer without a group is ours only if our proposals allow no PFS (IKE_AUTH
        // carries no KE: groups do not count there).
        let mine = ours.iter().any(|p| {
            p.encryption.contains(&encryption)
                && p.esn.contains(&esn)
                && match (group, sent) {
                    (_, EspGroups::Ignore) => true,
                    (Some(g), _) => p.groups.contains(&g),
                    (None, _) => p.allows_no_pfs(),
                }
        });
        if !mine {
            return Err(refused());
        }
        Ok((
            ChosenEsp {
                encryption,
                group,
                esn,
            },
            spi,
        ))
    }
}

fn proposal_number(index: usize) -> u8 {
    u8::try_from(index + 1).unwrap_or(u8::MAX)
}

fn offers(proposal: &wire::Proposal, transform_type: TransformType, id: u16) -> bool {
    proposal
        .transforms_of(transform_type)
        .any(|t| t.transform_id == id)
}

fn pick_encr(ours: &[AeadAlg], theirs: &wire::Proposal) -> Option<AeadAlg> {
    ours.iter().copied().find(|&alg| {
        let (id, bits) = encr_transform(alg);
        theirs
            .transforms_of(TransformType::ENCR)
            .any(|t| EncrId(t.transform_id) == id && t.key_length() == Some(bits))
    })
}

/// The peer's proposals for a log line: `IKE:ENCR_AES_CBC/128/PRF_HMAC_SHA1/MODP_2048, ...`.
pub fn describe(sa: &SecurityAssociation) -> String {
    if sa.proposals.is_empty() {
        return "nothing".into();
    }
    sa.proposals
        .iter()
        .map(|p| {
            let transforms: Vec<String> = p.transforms.iter().map(|t| t.to_string()).collect();
            format!("{}:{}", p.protocol, transforms.join("/"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<&str> = self.encryption.iter().map(|a| a.name()).collect();
        words.push("prfsha256");
        words.extend(self.groups.iter().map(|&g| group_name(g)));
        f.write_str(&words.join("-"))
    }
}

impl fmt::Display for EspProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<&str> = self.encryption.iter().map(|a| a.name()).collect();
        words.extend(self.groups.iter().map(|&g| group_name(g)));
        if self.pfs_optional && !self.groups.is_empty() {
            words.push("modpnone");
        }
        if self.esn != [false] {
            words.extend(self.esn.iter().map(|&e| if e { "esn" } else { "noesn" }));
        }
        f.write_str(&words.join("-"))
    }
}

impl fmt::Display for ChosenIke {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-prfsha256-{}",
            self.encryption.name(),
            group_name(self.group)
        )
    }
}

impl fmt::Display for ChosenEsp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encryption.name())?;
        if let Some(g) = self.group {
            write!(f, "-{}", group_name(g))?;
        }
        if self.esn {
            f.write_str("-esn")?;
        }
        Ok(())
    }
}

impl FromStr for IkeProposal {
    type Err = ProposalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl FromStr for EspProposal {
    type Err = ProposalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{DhGroup as WireGroup, PrfId};

    fn ike(s: &str) -> IkeProposal {
        IkeProposal::parse(s).unwrap()
    }

    fn esp(s: &str) -> EspProposal {
        EspProposal::parse(s).unwrap()
    }

    #[test]
    fn strongswan_strings_parse_and_print() {
        let p = ike("aes128gcm16-prfsha256-x25519");
        assert_eq!(p.encryption, [AeadAlg::AesGcm128]);
        assert_eq!(p.groups, [DhGroup::Curve25519]);
        assert_eq!(p.to_string(), "aes128gcm16-prfsha256-x25519");
        let p = ike("aes256gcm16-prfsha256-ecp256");
        assert_eq!(p.groups, [DhGroup::Ecp256]);
        assert_eq!(
            ike("AES128GCM16-curve25519").to_string(),
            "aes128gcm16-prfsha256-x25519"
        );
        let e = esp("aes128gcm16");
        assert_eq!(e.esn, [false]);
        assert!(e.groups.is_empty());
        assert_eq!(e.to_string(), "aes128gcm16");
        let e = esp("aes128gcm16-esn");
        assert_eq!(e.esn, [true]);
        assert_eq!(e.to_string(), "aes128gcm16-esn");
        assert_eq!(esp("aes256gcm16-x25519").groups, [DhGroup::Curve25519]);
        assert_eq!(
            "aes128gcm16".parse::<EspProposal>().unwrap(),
            esp("aes128gcm16")
        );
    }

    #[test]
    fn bad_strings_are_refused_with_a_reason() {
        assert_eq!(IkeProposal::parse(" "), Err(ProposalError::Empty));
        assert_eq!(
            IkeProposal::parse("aes128cbc-sha256-x25519"),
            Err(ProposalError::UnknownAlgorithm("aes128cbc".into()))
        );
        assert!(matches!(
            IkeProposal::parse("aes128gcm16-prfsha256"),
            Err(ProposalError::Missing {
                what: "key exchange group",
                ..
            })
        ));
        assert!(matches!(
            IkeProposal::parse("aes128gcm16-x25519-esn"),
            Err(ProposalError::Misplaced { .. })
        ));
        assert!(matches!(
            EspProposal::parse("aes128gcm16-prfsha256"),
            Err(ProposalError::Misplaced { .. })
        ));
        assert!(matches!(
            EspProposal::parse("x25519"),
            Err(ProposalError::Missing { .. })
        ));
        assert!(
            IkeProposal::parse("modp2048")
                .unwrap_err()
                .to_string()
                .contains("unknown or unsupported algorithm `modp2048`")
        );
    }

    #[test]
    fn wire_form_lists_every_alternative() {
        let p = ike("aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256").to_wire(1, vec![]);
        let names: Vec<String> = p.transforms.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "ENCR_AES_GCM_16/128",
                "ENCR_AES_GCM_16/256",
                "PRF_HMAC_SHA2_256",
                "CURVE25519",
                "ECP_256"
            ]
        );
        let e = esp("aes128gcm16-x25519").to_wire(2, Spi(0x0102_0304), false);
        assert_eq!(e.spi, [1, 2, 3, 4]);
        let names: Vec<String> = e.transforms.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            ["ENCR_AES_GCM_16/128", "NO_ESN"],
            "no DH in IKE_AUTH"
        );
        let e = esp("aes128gcm16-x25519").to_wire(2, Spi(9), true);
        assert_eq!(e.transforms_of(TransformType::DH).count(), 1);
    }

    #[test]
    fn the_responder_takes_its_first_preference_the_initiator_offers() {
        let offered = IkeProposal::sa_payload(
            &[ike("aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256")],
            &[],
        );
        let ours = [
            ike("aes256gcm16-prfsha256-ecp256-x25519"),
            ike("aes128gcm16-prfsha256-x25519"),
        ];
        let (chosen, _, answer) =
            IkeProposal::select(&ours, &offered, Some(WireGroup::ECP_256), &[]).unwrap();
        assert_eq!(chosen.encryption, AeadAlg::AesGcm256);
        assert_eq!(chosen.group, DhGroup::Ecp256);
        assert_eq!(chosen.to_string(), "aes256gcm16-prfsha256-ecp256");
        assert_eq!(answer.number, 1);
        assert_eq!(answer.transforms.len(), 3);
        // The KE's group is honoured when the chosen proposal allows it.
        let (chosen, _, _) =
            IkeProposal::select(&ours, &offered, Some(WireGroup::CURVE25519), &[]).unwrap();
        assert_eq!(chosen.group, DhGroup::Curve25519);
        // A group outside ours: our preference, for INVALID_KE_PAYLOAD.
        let (chosen, _, _) =
            IkeProposal::select(&ours, &offered, Some(WireGroup::MODP_2048), &[]).unwrap();
        assert_eq!(chosen.group, DhGroup::Ecp256);
        // The initiator checks the answer against its offer.
        let answer_sa = SecurityAssociation::new(vec![answer]);
        let (accepted, _) = IkeProposal::accept(
            &[ike("aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256")],
            &answer_sa,
        )
        .unwrap();
        assert_eq!(accepted.encryption, AeadAlg::AesGcm256);
        assert!(IkeProposal::accept(&[ike("aes128gcm16-prfsha256-x25519")], &answer_sa).is_err());
    }

    #[test]
    fn nothing_in_common_is_no_proposal_chosen() {
        let mut offered = IkeProposal::sa_payload(&[ike("aes128gcm16-prfsha256-x25519")], &[]);
        let err = IkeProposal::select(&[ike("aes256gcm16-prfsha256-x25519")], &offered, None, &[])
            .unwrap_err();
        assert_eq!(
            err.notify_type(),
            crate::wire::NotifyType::NO_PROPOSAL_CHOSEN
        );
        assert!(
            err.to_string()
                .contains("IKE:ENCR_AES_GCM_16/128/PRF_HMAC_SHA2_256/CURVE25519")
        );
        // Another PRF only.
        offered.proposals[0].transforms[1] = Transform::prf(PrfId::PRF_HMAC_SHA1);
        assert!(
            IkeProposal::select(&[ike("aes128gcm16-prfsha256-x25519")], &offered, None, &[])
                .is_err()
        );
    }

    #[test]
    fn esp_selection_with_esn_and_pfs() {
        let ours = [esp("aes128gcm16-esn-noesn")];
        let offered = EspProposal::sa_payload(&[esp("aes128gcm16")], Spi(0x1234), false);
        let (chosen, peer_spi, answer) =
            EspProposal::select(&ours, &offered, EspGroups::Ignore, Spi(0x99)).unwrap();
        assert!(!chosen.esn, "the peer offers NO_ESN only");
        assert_eq!(peer_spi, Spi(0x1234));
        assert_eq!(answer.spi, 0x99u32.to_be_bytes());
        let offered = EspProposal::sa_payload(&[esp("aes128gcm16-esn")], Spi(0x1234), false);
        assert!(
            EspProposal::select(&[esp("aes128gcm16")], &offered, EspGroups::Ignore, Spi(1))
                .is_err()
        );
        let (chosen, _, _) =
            EspProposal::select(&ours, &offered, EspGroups::Ignore, Spi(1)).unwrap();
        assert!(chosen.esn);

        // PFS: a KE of a group both allow is taken; without KE a group-only offer fails.
        let pfs = [esp("aes128gcm16-x25519-ecp256")];
        let offered = EspProposal::sa_payload(&[esp("aes128gcm16-ecp256")], Spi(7), true);
        let (chosen, _, answer) =
            EspProposal::select(&pfs, &offered, EspGroups::Ke(WireGroup::ECP_256), Spi(1)).unwrap();
        assert_eq!(chosen.group, Some(DhGroup::Ecp256));
        assert_eq!(answer.transforms_of(TransformType::DH).count(), 1);
        assert!(EspProposal::select(&pfs, &offered, EspGroups::None, Spi(1)).is_err());
        let (accepted, spi) = EspProposal::accept(
            &[esp("aes128gcm16-ecp256")],
            &SecurityAssociation::new(vec![answer]),
            EspGroups::Ke(WireGroup::ECP_256),
        )
        .unwrap();
        assert_eq!((accepted.group, spi), (Some(DhGroup::Ecp256), Spi(1)));
        // SPI zero is never accepted.
        let offered = EspProposal::sa_payload(&[esp("aes128gcm16")], Spi(0), false);
        assert!(EspProposal::select(&ours, &offered, EspGroups::Ignore, Spi(1)).is_err());
    }
}
