//! IANA registries of IKEv2 as open newtypes: a value this crate does not know still parses,
//! survives a round trip and prints as its number (docs/ARCHITECTURE.md, "Conventions").

use std::fmt;

/// Defines an open registry newtype: associated constants for the known values, `name()` for
/// their registry names, and `Display`/`Debug` that fall back to the number.
macro_rules! registry {
    (
        $(#[$outer:meta])*
        pub struct $name:ident($repr:ty) {
            $( $(#[$inner:meta])* $konst:ident = $value:literal => $text:literal, )*
        }
    ) => {
        $(#[$outer])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $repr);

        impl $name {
            $(
                $(#[$inner])*
                #[doc = concat!("`", $text, "` (", stringify!($value), ").")]
                pub const $konst: Self = Self($value);
            )*

            /// The registry name of this value, or `None` for a value this crate does not know.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some($text), )*
                    _ => None,
                }
            }

            /// Whether this crate knows the value.
            pub const fn is_known(self) -> bool {
                self.name().is_some()
            }
        }

        impl From<$repr> for $name {
            fn from(value: $repr) -> Self {
                Self(value)
            }
        }

        impl From<$name> for $repr {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, "{}", self.0),
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }
    };
}

registry! {
    /// Exchange type of the IKE header (RFC 7296 3.1, IANA "IKEv2 Exchange Types").
    pub struct ExchangeType(u8) {
        IKE_SA_INIT = 34 => "IKE_SA_INIT",
        IKE_AUTH = 35 => "IKE_AUTH",
        CREATE_CHILD_SA = 36 => "CREATE_CHILD_SA",
        INFORMATIONAL = 37 => "INFORMATIONAL",
        IKE_SESSION_RESUME = 38 => "IKE_SESSION_RESUME",
        IKE_INTERMEDIATE = 43 => "IKE_INTERMEDIATE",
        IKE_FOLLOWUP_KE = 44 => "IKE_FOLLOWUP_KE",
    }
}

registry! {
    /// Payload type, as found in Next Payload fields (RFC 7296 3.2, IANA "IKEv2 Payload Types").
    /// The names are the short ones strongSwan and RFC 7296 use in message summaries.
    pub struct PayloadType(u8) {
        /// No next payload: ends a payload chain.
        NONE = 0 => "NONE",
        SA = 33 => "SA",
        KE = 34 => "KE",
        IDI = 35 => "IDi",
        IDR = 36 => "IDr",
        CERT = 37 => "CERT",
        CERTREQ = 38 => "CERTREQ",
        AUTH = 39 => "AUTH",
        NONCE = 40 => "No",
        NOTIFY = 41 => "N",
        DELETE = 42 => "D",
        VENDOR_ID = 43 => "V",
        TSI = 44 => "TSi",
        TSR = 45 => "TSr",
        /// Encrypted and Authenticated (RFC 7296 3.14, RFC 5282).
        SK = 46 => "SK",
        CP = 47 => "CP",
        EAP = 48 => "EAP",
        GSPM = 49 => "GSPM",
        /// Encrypted and Authenticated Fragment (RFC 7383).
        SKF = 53 => "SKF",
    }
}

registry! {
    /// Protocol ID of proposals, notifications and deletes (RFC 7296 3.3.1).
    pub struct ProtocolId(u8) {
        /// No protocol: notifications about the IKE SA itself.
        NONE = 0 => "NONE",
        IKE = 1 => "IKE",
        AH = 2 => "AH",
        ESP = 3 => "ESP",
    }
}

registry! {
    /// Transform type of a transform substructure (RFC 7296 3.3.2, RFC 9370).
    pub struct TransformType(u8) {
        ENCR = 1 => "ENCR",
        PRF = 2 => "PRF",
        INTEG = 3 => "INTEG",
        /// Diffie-Hellman group (now "Key Exchange Method").
        DH = 4 => "DH",
        ESN = 5 => "ESN",
        ADDKE1 = 6 => "ADDKE1",
        ADDKE2 = 7 => "ADDKE2",
        ADDKE3 = 8 => "ADDKE3",
        ADDKE4 = 9 => "ADDKE4",
        ADDKE5 = 10 => "ADDKE5",
        ADDKE6 = 11 => "ADDKE6",
        ADDKE7 = 12 => "ADDKE7",
    }
}

registry! {
    /// Transform IDs of transform type 1, encryption algorithms (RFC 7296 3.3.2, RFC 5282).
    pub struct EncrId(u16) {
        ENCR_DES_IV64 = 1 => "ENCR_DES_IV64",
        ENCR_DES = 2 => "ENCR_DES",
        ENCR_3DES = 3 => "ENCR_3DES",
        ENCR_RC5 = 4 => "ENCR_RC5",
        ENCR_IDEA = 5 => "ENCR_IDEA",
        ENCR_CAST = 6 => "ENCR_CAST",
        ENCR_BLOWFISH = 7 => "ENCR_BLOWFISH",
        ENCR_3IDEA = 8 => "ENCR_3IDEA",
        ENCR_DES_IV32 = 9 => "ENCR_DES_IV32",
        ENCR_NULL = 11 => "ENCR_NULL",
        ENCR_AES_CBC = 12 => "ENCR_AES_CBC",
        ENCR_AES_CTR = 13 => "ENCR_AES_CTR",
        ENCR_AES_CCM_8 = 14 => "ENCR_AES_CCM_8",
        ENCR_AES_CCM_12 = 15 => "ENCR_AES_CCM_12",
        ENCR_AES_CCM_16 = 16 => "ENCR_AES_CCM_16",
        ENCR_AES_GCM_8 = 18 => "ENCR_AES_GCM_8",
        ENCR_AES_GCM_12 = 19 => "ENCR_AES_GCM_12",
        /// AES-GCM with a 16-octet ICV (RFC 4106, RFC 5282): the hometun profile.
        ENCR_AES_GCM_16 = 20 => "ENCR_AES_GCM_16",
        ENCR_NULL_AUTH_AES_GMAC = 21 => "ENCR_NULL_AUTH_AES_GMAC",
        ENCR_CAMELLIA_CBC = 23 => "ENCR_CAMELLIA_CBC",
        ENCR_CAMELLIA_CTR = 24 => "ENCR_CAMELLIA_CTR",
        ENCR_CAMELLIA_CCM_8 = 25 => "ENCR_CAMELLIA_CCM_8",
        ENCR_CAMELLIA_CCM_12 = 26 => "ENCR_CAMELLIA_CCM_12",
        ENCR_CAMELLIA_CCM_16 = 27 => "ENCR_CAMELLIA_CCM_16",
        ENCR_CHACHA20_POLY1305 = 28 => "ENCR_CHACHA20_POLY1305",
        ENCR_AES_CCM_8_IIV = 29 => "ENCR_AES_CCM_8_IIV",
        ENCR_AES_GCM_16_IIV = 30 => "ENCR_AES_GCM_16_IIV",
        ENCR_CHACHA20_POLY1305_IIV = 31 => "ENCR_CHACHA20_POLY1305_IIV",
    }
}

registry! {
    /// Transform IDs of transform type 2, pseudorandom functions (RFC 7296 3.3.2, RFC 4868).
    pub struct PrfId(u16) {
        PRF_HMAC_MD5 = 1 => "PRF_HMAC_MD5",
        PRF_HMAC_SHA1 = 2 => "PRF_HMAC_SHA1",
        PRF_HMAC_TIGER = 3 => "PRF_HMAC_TIGER",
        PRF_AES128_XCBC = 4 => "PRF_AES128_XCBC",
        /// The hometun profile.
        PRF_HMAC_SHA2_256 = 5 => "PRF_HMAC_SHA2_256",
        PRF_HMAC_SHA2_384 = 6 => "PRF_HMAC_SHA2_384",
        PRF_HMAC_SHA2_512 = 7 => "PRF_HMAC_SHA2_512",
        PRF_AES128_CMAC = 8 => "PRF_AES128_CMAC",
    }
}

registry! {
    /// Transform IDs of transform type 3, integrity algorithms (RFC 7296 3.3.2, RFC 4868).
    pub struct IntegId(u16) {
        NONE = 0 => "NONE",
        AUTH_HMAC_MD5_96 = 1 => "AUTH_HMAC_MD5_96",
        AUTH_HMAC_SHA1_96 = 2 => "AUTH_HMAC_SHA1_96",
        AUTH_DES_MAC = 3 => "AUTH_DES_MAC",
        AUTH_KPDK_MD5 = 4 => "AUTH_KPDK_MD5",
        AUTH_AES_XCBC_96 = 5 => "AUTH_AES_XCBC_96",
        AUTH_HMAC_MD5_128 = 6 => "AUTH_HMAC_MD5_128",
        AUTH_HMAC_SHA1_160 = 7 => "AUTH_HMAC_SHA1_160",
        AUTH_AES_CMAC_96 = 8 => "AUTH_AES_CMAC_96",
        AUTH_AES_128_GMAC = 9 => "AUTH_AES_128_GMAC",
        AUTH_AES_192_GMAC = 10 => "AUTH_AES_192_GMAC",
        AUTH_AES_256_GMAC = 11 => "AUTH_AES_256_GMAC",
        AUTH_HMAC_SHA2_256_128 = 12 => "AUTH_HMAC_SHA2_256_128",
        AUTH_HMAC_SHA2_384_192 = 13 => "AUTH_HMAC_SHA2_384_192",
        AUTH_HMAC_SHA2_512_256 = 14 => "AUTH_HMAC_SHA2_512_256",
    }
}

registry! {
    /// Transform IDs of transform type 4, Diffie-Hellman groups (RFC 7296 3.3.2, IANA
    /// "Transform Type 4"); also the group of a KE payload.
    pub struct DhGroup(u16) {
        NONE = 0 => "NONE",
        MODP_768 = 1 => "MODP_768",
        MODP_1024 = 2 => "MODP_1024",
        MODP_1536 = 5 => "MODP_1536",
        MODP_2048 = 14 => "MODP_2048",
        MODP_3072 = 15 => "MODP_3072",
        MODP_4096 = 16 => "MODP_4096",
        MODP_6144 = 17 => "MODP_6144",
        MODP_8192 = 18 => "MODP_8192",
        /// NIST P-256 (RFC 5903).
        ECP_256 = 19 => "ECP_256",
        ECP_384 = 20 => "ECP_384",
        ECP_521 = 21 => "ECP_521",
        MODP_1024_160 = 22 => "MODP_1024_160",
        MODP_2048_224 = 23 => "MODP_2048_224",
        MODP_2048_256 = 24 => "MODP_2048_256",
        ECP_192 = 25 => "ECP_192",
        ECP_224 = 26 => "ECP_224",
        BRAINPOOL_P224R1 = 27 => "BRAINPOOL_P224R1",
        BRAINPOOL_P256R1 = 28 => "BRAINPOOL_P256R1",
        BRAINPOOL_P384R1 = 29 => "BRAINPOOL_P384R1",
        BRAINPOOL_P512R1 = 30 => "BRAINPOOL_P512R1",
        /// X25519 (RFC 8031): the hometun profile.
        CURVE25519 = 31 => "CURVE25519",
        CURVE448 = 32 => "CURVE448",
        ML_KEM_512 = 35 => "ML_KEM_512",
        ML_KEM_768 = 36 => "ML_KEM_768",
        ML_KEM_1024 = 37 => "ML_KEM_1024",
    }
}

registry! {
    /// Transform IDs of transform type 5, extended sequence numbers (RFC 7296 3.3.2).
    pub struct EsnId(u16) {
        NO_ESN = 0 => "NO_ESN",
        ESN = 1 => "ESN",
    }
}

registry! {
    /// Transform attribute type, without the format bit (RFC 7296 3.3.5).
    pub struct AttributeType(u16) {
        /// Key length in bits, for variable-length ciphers such as AES; always TV format.
        KEY_LENGTH = 14 => "KEY_LENGTH",
    }
}

registry! {
    /// ID type of the IDi/IDr payloads (RFC 7296 3.5).
    pub struct IdType(u8) {
        ID_IPV4_ADDR = 1 => "ID_IPV4_ADDR",
        ID_FQDN = 2 => "ID_FQDN",
        ID_RFC822_ADDR = 3 => "ID_RFC822_ADDR",
        ID_IPV6_ADDR = 5 => "ID_IPV6_ADDR",
        ID_DER_ASN1_DN = 9 => "ID_DER_ASN1_DN",
        ID_DER_ASN1_GN = 10 => "ID_DER_ASN1_GN",
        ID_KEY_ID = 11 => "ID_KEY_ID",
        ID_FC_NAME = 12 => "ID_FC_NAME",
        ID_NULL = 13 => "ID_NULL",
    }
}

registry! {
    /// Certificate encoding of the CERT and CERTREQ payloads (RFC 7296 3.6).
    pub struct CertEncoding(u8) {
        PKCS7_X509 = 1 => "PKCS7_X509",
        PGP = 2 => "PGP",
        DNS_SIGNED_KEY = 3 => "DNS_SIGNED_KEY",
        /// A DER-encoded X.509 certificate (CERT) or SHA-1 hashes of CA keys (CERTREQ).
        X509_SIGNATURE = 4 => "X509_SIGNATURE",
        KERBEROS_TOKEN = 6 => "KERBEROS_TOKEN",
        CRL = 7 => "CRL",
        ARL = 8 => "ARL",
        SPKI = 9 => "SPKI",
        X509_ATTRIBUTE = 10 => "X509_ATTRIBUTE",
        RAW_RSA_KEY = 11 => "RAW_RSA_KEY",
        HASH_URL_X509_CERT = 12 => "HASH_URL_X509_CERT",
        HASH_URL_X509_BUNDLE = 13 => "HASH_URL_X509_BUNDLE",
        OCSP_CONTENT = 14 => "OCSP_CONTENT",
        RAW_PUBLIC_KEY = 15 => "RAW_PUBLIC_KEY",
    }
}

registry! {
    /// Authentication method of the AUTH payload (RFC 7296 3.8, RFC 7427).
    pub struct AuthMethod(u8) {
        RSA_DIGITAL_SIGNATURE = 1 => "RSA_DIGITAL_SIGNATURE",
        SHARED_KEY_MIC = 2 => "SHARED_KEY_MIC",
        DSS_DIGITAL_SIGNATURE = 3 => "DSS_DIGITAL_SIGNATURE",
        ECDSA_SHA256_P256 = 9 => "ECDSA_SHA256_P256",
        ECDSA_SHA384_P384 = 10 => "ECDSA_SHA384_P384",
        ECDSA_SHA512_P521 = 11 => "ECDSA_SHA512_P521",
        GENERIC_SECURE_PASSWORD = 12 => "GENERIC_SECURE_PASSWORD",
        NULL_AUTH = 13 => "NULL_AUTH",
        /// RFC 7427 digital signature (AlgorithmIdentifier + signature): the hometun profile.
        DIGITAL_SIGNATURE = 14 => "DIGITAL_SIGNATURE",
    }
}

registry! {
    /// Notify message type (RFC 7296 3.10.1 and later RFCs; IANA "IKEv2 Notify Message Types").
    /// Values below 16384 are errors, the rest status types.
    pub struct NotifyType(u16) {
        UNSUPPORTED_CRITICAL_PAYLOAD = 1 => "UNSUPPORTED_CRITICAL_PAYLOAD",
        INVALID_IKE_SPI = 4 => "INVALID_IKE_SPI",
        INVALID_MAJOR_VERSION = 5 => "INVALID_MAJOR_VERSION",
        INVALID_SYNTAX = 7 => "INVALID_SYNTAX",
        INVALID_MESSAGE_ID = 9 => "INVALID_MESSAGE_ID",
        INVALID_SPI = 11 => "INVALID_SPI",
        NO_PROPOSAL_CHOSEN = 14 => "NO_PROPOSAL_CHOSEN",
        INVALID_KE_PAYLOAD = 17 => "INVALID_KE_PAYLOAD",
        AUTHENTICATION_FAILED = 24 => "AUTHENTICATION_FAILED",
        SINGLE_PAIR_REQUIRED = 34 => "SINGLE_PAIR_REQUIRED",
        NO_ADDITIONAL_SAS = 35 => "NO_ADDITIONAL_SAS",
        INTERNAL_ADDRESS_FAILURE = 36 => "INTERNAL_ADDRESS_FAILURE",
        FAILED_CP_REQUIRED = 37 => "FAILED_CP_REQUIRED",
        TS_UNACCEPTABLE = 38 => "TS_UNACCEPTABLE",
        INVALID_SELECTORS = 39 => "INVALID_SELECTORS",
        UNACCEPTABLE_ADDRESSES = 40 => "UNACCEPTABLE_ADDRESSES",
        UNEXPECTED_NAT_DETECTED = 41 => "UNEXPECTED_NAT_DETECTED",
        USE_ASSIGNED_HOA = 42 => "USE_ASSIGNED_HoA",
        TEMPORARY_FAILURE = 43 => "TEMPORARY_FAILURE",
        CHILD_SA_NOT_FOUND = 44 => "CHILD_SA_NOT_FOUND",
        INVALID_GROUP_ID = 45 => "INVALID_GROUP_ID",
        AUTHORIZATION_FAILED = 46 => "AUTHORIZATION_FAILED",
        STATE_NOT_FOUND = 47 => "STATE_NOT_FOUND",
        INITIAL_CONTACT = 16384 => "INITIAL_CONTACT",
        SET_WINDOW_SIZE = 16385 => "SET_WINDOW_SIZE",
        ADDITIONAL_TS_POSSIBLE = 16386 => "ADDITIONAL_TS_POSSIBLE",
        IPCOMP_SUPPORTED = 16387 => "IPCOMP_SUPPORTED",
        NAT_DETECTION_SOURCE_IP = 16388 => "NAT_DETECTION_SOURCE_IP",
        NAT_DETECTION_DESTINATION_IP = 16389 => "NAT_DETECTION_DESTINATION_IP",
        COOKIE = 16390 => "COOKIE",
        USE_TRANSPORT_MODE = 16391 => "USE_TRANSPORT_MODE",
        HTTP_CERT_LOOKUP_SUPPORTED = 16392 => "HTTP_CERT_LOOKUP_SUPPORTED",
        REKEY_SA = 16393 => "REKEY_SA",
        ESP_TFC_PADDING_NOT_SUPPORTED = 16394 => "ESP_TFC_PADDING_NOT_SUPPORTED",
        NON_FIRST_FRAGMENTS_ALSO = 16395 => "NON_FIRST_FRAGMENTS_ALSO",
        MOBIKE_SUPPORTED = 16396 => "MOBIKE_SUPPORTED",
        ADDITIONAL_IP4_ADDRESS = 16397 => "ADDITIONAL_IP4_ADDRESS",
        ADDITIONAL_IP6_ADDRESS = 16398 => "ADDITIONAL_IP6_ADDRESS",
        NO_ADDITIONAL_ADDRESSES = 16399 => "NO_ADDITIONAL_ADDRESSES",
        UPDATE_SA_ADDRESSES = 16400 => "UPDATE_SA_ADDRESSES",
        COOKIE2 = 16401 => "COOKIE2",
        NO_NATS_ALLOWED = 16402 => "NO_NATS_ALLOWED",
        AUTH_LIFETIME = 16403 => "AUTH_LIFETIME",
        MULTIPLE_AUTH_SUPPORTED = 16404 => "MULTIPLE_AUTH_SUPPORTED",
        ANOTHER_AUTH_FOLLOWS = 16405 => "ANOTHER_AUTH_FOLLOWS",
        REDIRECT_SUPPORTED = 16406 => "REDIRECT_SUPPORTED",
        REDIRECT = 16407 => "REDIRECT",
        REDIRECTED_FROM = 16408 => "REDIRECTED_FROM",
        TICKET_LT_OPAQUE = 16409 => "TICKET_LT_OPAQUE",
        TICKET_REQUEST = 16410 => "TICKET_REQUEST",
        TICKET_ACK = 16411 => "TICKET_ACK",
        TICKET_NACK = 16412 => "TICKET_NACK",
        TICKET_OPAQUE = 16413 => "TICKET_OPAQUE",
        LINK_ID = 16414 => "LINK_ID",
        USE_WESP_MODE = 16415 => "USE_WESP_MODE",
        ROHC_SUPPORTED = 16416 => "ROHC_SUPPORTED",
        EAP_ONLY_AUTHENTICATION = 16417 => "EAP_ONLY_AUTHENTICATION",
        CHILDLESS_IKEV2_SUPPORTED = 16418 => "CHILDLESS_IKEV2_SUPPORTED",
        QUICK_CRASH_DETECTION = 16419 => "QUICK_CRASH_DETECTION",
        IKEV2_MESSAGE_ID_SYNC_SUPPORTED = 16420 => "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
        IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED = 16421 => "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED",
        IKEV2_MESSAGE_ID_SYNC = 16422 => "IKEV2_MESSAGE_ID_SYNC",
        IPSEC_REPLAY_COUNTER_SYNC = 16423 => "IPSEC_REPLAY_COUNTER_SYNC",
        SECURE_PASSWORD_METHODS = 16424 => "SECURE_PASSWORD_METHODS",
        PSK_PERSIST = 16425 => "PSK_PERSIST",
        PSK_CONFIRM = 16426 => "PSK_CONFIRM",
        ERX_SUPPORTED = 16427 => "ERX_SUPPORTED",
        IFOM_CAPABILITY = 16428 => "IFOM_CAPABILITY",
        SENDER_REQUEST_ID = 16429 => "SENDER_REQUEST_ID",
        /// RFC 7383 (the brief calls it FRAGMENTATION_SUPPORTED).
        IKEV2_FRAGMENTATION_SUPPORTED = 16430 => "IKEV2_FRAGMENTATION_SUPPORTED",
        /// RFC 7427: the data lists the hash algorithms the sender accepts for signatures.
        SIGNATURE_HASH_ALGORITHMS = 16431 => "SIGNATURE_HASH_ALGORITHMS",
        CLONE_IKE_SA_SUPPORTED = 16432 => "CLONE_IKE_SA_SUPPORTED",
        CLONE_IKE_SA = 16433 => "CLONE_IKE_SA",
        PUZZLE = 16434 => "PUZZLE",
        USE_PPK = 16435 => "USE_PPK",
        PPK_IDENTITY = 16436 => "PPK_IDENTITY",
        NO_PPK_AUTH = 16437 => "NO_PPK_AUTH",
        INTERMEDIATE_EXCHANGE_SUPPORTED = 16438 => "INTERMEDIATE_EXCHANGE_SUPPORTED",
        IP4_ALLOWED = 16439 => "IP4_ALLOWED",
        IP6_ALLOWED = 16440 => "IP6_ALLOWED",
        ADDITIONAL_KEY_EXCHANGE = 16441 => "ADDITIONAL_KEY_EXCHANGE",
        USE_AGGFRAG = 16442 => "USE_AGGFRAG",
        SUPPORTED_AUTH_METHODS = 16443 => "SUPPORTED_AUTH_METHODS",
    }
}

impl NotifyType {
    /// Whether this is an error type (below 16384), as opposed to a status type.
    pub const fn is_error(self) -> bool {
        self.0 < 16384
    }
}

registry! {
    /// Traffic selector type (RFC 7296 3.13.1).
    pub struct TsType(u8) {
        TS_IPV4_ADDR_RANGE = 7 => "TS_IPV4_ADDR_RANGE",
        TS_IPV6_ADDR_RANGE = 8 => "TS_IPV6_ADDR_RANGE",
        TS_FC_ADDR_RANGE = 9 => "TS_FC_ADDR_RANGE",
        TS_SECLABEL = 10 => "TS_SECLABEL",
    }
}

registry! {
    /// Hash algorithm of SIGNATURE_HASH_ALGORITHMS (RFC 7427 7, IANA "IKEv2 Hash Algorithms").
    pub struct HashAlgorithm(u16) {
        SHA1 = 1 => "SHA1",
        SHA2_256 = 2 => "SHA2_256",
        SHA2_384 = 3 => "SHA2_384",
        SHA2_512 = 4 => "SHA2_512",
        /// The message itself is signed (RFC 8420, Ed25519 and Ed448).
        IDENTITY = 5 => "IDENTITY",
        STREEBOG_256 = 6 => "STREEBOG_256",
        STREEBOG_512 = 7 => "STREEBOG_512",
    }
}

registry! {
    /// CFG type of the Configuration payload (RFC 7296 3.15).
    pub struct ConfigType(u8) {
        CFG_REQUEST = 1 => "CFG_REQUEST",
        CFG_REPLY = 2 => "CFG_REPLY",
        CFG_SET = 3 => "CFG_SET",
        CFG_ACK = 4 => "CFG_ACK",
    }
}

registry! {
    /// Configuration attribute type, without the reserved bit (RFC 7296 3.15.1).
    pub struct ConfigAttributeType(u16) {
        INTERNAL_IP4_ADDRESS = 1 => "INTERNAL_IP4_ADDRESS",
        INTERNAL_IP4_NETMASK = 2 => "INTERNAL_IP4_NETMASK",
        INTERNAL_IP4_DNS = 3 => "INTERNAL_IP4_DNS",
        INTERNAL_IP4_NBNS = 4 => "INTERNAL_IP4_NBNS",
        INTERNAL_IP4_DHCP = 6 => "INTERNAL_IP4_DHCP",
        APPLICATION_VERSION = 7 => "APPLICATION_VERSION",
        INTERNAL_IP6_ADDRESS = 8 => "INTERNAL_IP6_ADDRESS",
        INTERNAL_IP6_DNS = 10 => "INTERNAL_IP6_DNS",
        INTERNAL_IP6_DHCP = 12 => "INTERNAL_IP6_DHCP",
        INTERNAL_IP4_SUBNET = 13 => "INTERNAL_IP4_SUBNET",
        SUPPORTED_ATTRIBUTES = 14 => "SUPPORTED_ATTRIBUTES",
        INTERNAL_IP6_SUBNET = 15 => "INTERNAL_IP6_SUBNET",
        INTERNAL_IP6_LINK = 17 => "INTERNAL_IP6_LINK",
        INTERNAL_IP6_PREFIX = 18 => "INTERNAL_IP6_PREFIX",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_have_names_and_unknown_ones_print_as_numbers() {
        assert_eq!(PayloadType::SK.name(), Some("SK"));
        assert_eq!(PayloadType(99).name(), None);
        assert_eq!(PayloadType(99).to_string(), "99");
        assert_eq!(format!("{:?}", PayloadType(99)), "PayloadType(99)");
        assert_eq!(NotifyType(16388).to_string(), "NAT_DETECTION_SOURCE_IP");
        assert_eq!(EncrId::ENCR_AES_GCM_16.0, 20);
        assert_eq!(PrfId::PRF_HMAC_SHA2_256.0, 5);
        assert_eq!(DhGroup::CURVE25519.0, 31);
        assert_eq!(DhGroup::ECP_256.0, 19);
        assert_eq!(AuthMethod::DIGITAL_SIGNATURE.0, 14);
        assert!(NotifyType::INVALID_SYNTAX.is_error());
        assert!(!NotifyType::COOKIE.is_error());
        assert_eq!(u16::from(HashAlgorithm::IDENTITY), 5);
    }
}
