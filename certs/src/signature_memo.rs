//! Signature checks that succeeded, remembered.
//!
//! rustls-webpki checks every signature on a path each time it builds one: the CA's signature
//! on the home's certificate, and, once CRLs are configured, the CA's signature on its CRL.
//! A server checks the same CRL on every handshake and the same home certificate on each of
//! that home's handshakes, and each check is an Ed25519 (or ECDSA) verification, about a
//! quarter of a full handshake's crypto (bench/README.md, "handshakes.sh").
//!
//! Whether a signature verifies is a pure function of the algorithm, the key, the message and
//! the signature, so a success can be remembered: [`Remembered`] wraps a webpki algorithm and
//! keeps the SHA-256 of each (algorithm, key, signature, message) it verified. A failure is
//! never remembered, and nothing but the signature check is skipped (webpki still checks
//! validity dates, revocation, name constraints and usages on every path).

use rustls_pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};

use crate::memo::{self, Memo};

/// The digests of the checks that succeeded, shared by all algorithms (the digest binds the
/// algorithm); at most [`memo::CAPACITY`].
static VERIFIED: Memo<()> = Memo::new();

/// Forgets every success remembered so far: the next check of each signature is done again
/// (the handshake benchmark measures a certificate seen for the first time with it).
pub fn forget_all() {
    VERIFIED.clear();
}

/// A webpki signature algorithm whose successes are remembered.
#[derive(Debug)]
pub struct Remembered(pub &'static dyn SignatureVerificationAlgorithm);

impl Remembered {
    /// What identifies one check: every input.
    fn digest(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> [u8; 32] {
        memo::digest(&[
            self.0.public_key_alg_id().as_ref(),
            self.0.signature_alg_id().as_ref(),
            public_key,
            signature,
            message,
        ])
    }
}

impl SignatureVerificationAlgorithm for Remembered {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        VERIFIED.remember(self.digest(public_key, message, signature), || {
            self.0.verify_signature(public_key, message, signature)
        })
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.0.public_key_alg_id()
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.0.signature_alg_id()
    }

    fn fips(&self) -> bool {
        self.0.fips()
    }
}

#[cfg(test)]
mod tests {
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use super::*;

    static ED25519: Remembered = Remembered(webpki::ring::ED25519);

    fn key_pair(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    #[test]
    fn a_good_signature_verifies_and_is_remembered() {
        let key = key_pair(1);
        let message = b"a CRL's signed part, remembered";
        let signature = key.sign(message);
        let public = key.public_key().as_ref();
        assert!(
            ED25519
                .verify_signature(public, message, signature.as_ref())
                .is_ok()
        );
        let digest = ED25519.digest(public, message, signature.as_ref());
        assert!(VERIFIED.get(&digest).is_some());
        // And it still verifies from memory.
        assert!(
            ED25519
                .verify_signature(public, message, signature.as_ref())
                .is_ok()
        );
    }

    #[test]
    fn a_remembered_success_speaks_for_nothing_else() {
        let key = key_pair(2);
        let message = b"a home certificate's signed part";
        let signature = key.sign(message);
        let public = key.public_key().as_ref();
        ED25519
            .verify_signature(public, message, signature.as_ref())
            .unwrap();
        // Another message, another key, another signature: each is checked, and fails.
        let other_message = b"a home certificate's signed parT";
        assert!(
            ED25519
                .verify_signature(public, other_message, signature.as_ref())
                .is_err()
        );
        let other_key = key_pair(3);
        assert!(
            ED25519
                .verify_signature(other_key.public_key().as_ref(), message, signature.as_ref())
                .is_err()
        );
        let mut forged = signature.as_ref().to_vec();
        forged[10] ^= 1;
        assert!(ED25519.verify_signature(public, message, &forged).is_err());
        // A failure is not remembered.
        let digest = ED25519.digest(public, message, &forged);
        assert!(VERIFIED.get(&digest).is_none());
        assert!(ED25519.verify_signature(public, message, &forged).is_err());
    }

    #[test]
    fn parts_cannot_be_shifted_from_one_input_to_the_next() {
        let a = ED25519.digest(b"key", b"message", b"signature");
        let b = ED25519.digest(b"ke", b"message", b"ysignature");
        assert_ne!(a, b);
    }
}
