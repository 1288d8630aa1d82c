//! Hash algorithm identifiers as event log records carry them.

use std::fmt;

use crate::pcr::PcrBank;

/// A hash algorithm by its TPM_ALG_ID, the 16-bit identifier that the TPM 2.0 Library
/// specification (part 2, "Structures") assigns.
///
/// Crypto-agile event logs tag each digest with this identifier. The log's Spec ID event lists
/// the identifiers that occur and the size of each digest, so a parser can skip digests of
/// algorithms it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HashAlgorithm(u16);

impl HashAlgorithm {
    /// TPM_ALG_SHA1, 20-byte digests.
    pub const SHA1: Self = Self(0x0004);
    /// TPM_ALG_SHA256, 32-byte digests.
    pub const SHA256: Self = Self(0x000b);
    /// TPM_ALG_SHA384, 48-byte digests.
    pub const SHA384: Self = Self(0x000c);
    /// TPM_ALG_SHA512, 64-byte digests.
    pub const SHA512: Self = Self(0x000d);
    /// TPM_ALG_SM3_256, 32-byte digests.
    pub const SM3_256: Self = Self(0x0012);

    /// The algorithms that have a name and a standard digest size here, ordered by identifier.
    pub const KNOWN: [Self; 5] = [
        Self::SHA1,
        Self::SHA256,
        Self::SHA384,
        Self::SHA512,
        Self::SM3_256,
    ];

    /// Creates an algorithm from its TPM_ALG_ID.
    pub const fn new(id: u16) -> Self {
        Self(id)
    }

    /// Returns the TPM_ALG_ID.
    pub const fn id(self) -> u16 {
        self.0
    }

    /// Returns the lower-case name (sha1, sha256, sha384, sha512 or sm3_256), or `None` for an
    /// algorithm outside [`Self::KNOWN`].
    pub const fn name(self) -> Option<&'static str> {
        match self {
            Self::SHA1 => Some("sha1"),
            Self::SHA256 => Some("sha256"),
            Self::SHA384 => Some("sha384"),
            Self::SHA512 => Some("sha512"),
            Self::SM3_256 => Some("sm3_256"),
            _ => None,
        }
    }

    /// Looks up a known algorithm by name, ignoring case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::KNOWN.into_iter().find(|algorithm| {
            algorithm
                .name()
                .is_some_and(|own| own.eq_ignore_ascii_case(name))
        })
    }

    /// Returns the digest size in bytes that the algorithm defines, or `None` for an algorithm
    /// outside [`Self::KNOWN`].
    pub const fn standard_digest_len(self) -> Option<usize> {
        match self {
            Self::SHA1 => Some(20),
            Self::SHA256 | Self::SM3_256 => Some(32),
            Self::SHA384 => Some(48),
            Self::SHA512 => Some(64),
            _ => None,
        }
    }

    /// Returns the PCR bank that this crate can compute for the algorithm, or `None` for SM3 and
    /// algorithms outside [`Self::KNOWN`].
    pub const fn bank(self) -> Option<PcrBank> {
        match self {
            Self::SHA1 => Some(PcrBank::Sha1),
            Self::SHA256 => Some(PcrBank::Sha256),
            Self::SHA384 => Some(PcrBank::Sha384),
            Self::SHA512 => Some(PcrBank::Sha512),
            _ => None,
        }
    }
}

impl From<PcrBank> for HashAlgorithm {
    fn from(bank: PcrBank) -> Self {
        match bank {
            PcrBank::Sha1 => Self::SHA1,
            PcrBank::Sha256 => Self::SHA256,
            PcrBank::Sha384 => Self::SHA384,
            PcrBank::Sha512 => Self::SHA512,
        }
    }
}

impl fmt::Display for HashAlgorithm {
    /// Writes the name, or the identifier in hexadecimal for an algorithm without one, padded
    /// to the requested width.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.pad(name),
            None => f.pad(&format!("algorithm {:#06x}", self.0)),
        }
    }
}
