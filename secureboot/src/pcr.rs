//! TPM PCR indices, banks and software PCR extension.

use std::fmt;
use std::str::FromStr;

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::error::Error;
use crate::pe::SectionData;

/// A TPM platform configuration register, by index.
///
/// The constants name PCRs that systemd 257 measures into. The names in quotes are systemd's,
/// from its docs/TPM2_PCR_MEASUREMENTS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PcrIndex(u32);

impl PcrIndex {
    /// PCR 11, "kernel-boot": systemd-stub extends it with the UKI's sections, and
    /// systemd-pcrphase with the boot phases.
    pub const KERNEL_BOOT: Self = Self(11);

    /// PCR 12, "kernel-config": systemd-stub extends it with the kernel command line from
    /// outside the UKI, credentials and configuration extensions.
    pub const KERNEL_CONFIG: Self = Self(12);

    /// PCR 13, "sysexts": systemd-stub extends it with system extension images.
    pub const SYSEXTS: Self = Self(13);

    /// Creates an index. TPM 2.0 PC clients have PCRs 0 to 23.
    pub const fn new(index: u32) -> Self {
        Self(index)
    }

    /// Returns the index as a number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PcrIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A PCR bank: the hash algorithm that a set of PCRs uses.
///
/// The order of the variants is the order of their names as strings, which is the order in
/// which systemd-measure lists banks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PcrBank {
    /// SHA-1, 20-byte digests.
    Sha1,
    /// SHA-256, 32-byte digests.
    Sha256,
    /// SHA-384, 48-byte digests.
    Sha384,
    /// SHA-512, 64-byte digests.
    Sha512,
}

impl PcrBank {
    /// All banks, in the order systemd-measure lists them.
    pub const ALL: [Self; 4] = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512];

    /// Returns the lower-case name that systemd-measure and the kernel's sysfs use.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Returns the digest size in bytes.
    pub const fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Hashes `data` with this bank's algorithm.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut hasher = BankHasher::new(self);
        hasher.update(data);
        hasher.finalize()
    }

    /// Hashes a loaded section: its file data followed by its zero fill.
    ///
    /// The zero fill is hashed in chunks, so a large VirtualSize needs no large buffer.
    pub fn digest_section(self, data: SectionData<'_>) -> Vec<u8> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

        let mut hasher = BankHasher::new(self);
        hasher.update(data.file_data);
        let mut remaining = data.zero_fill;
        while remaining > 0 {
            let chunk = usize::try_from(remaining).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
            hasher.update(&ZEROS[..chunk]);
            remaining -= chunk as u64;
        }
        hasher.finalize()
    }
}

impl fmt::Display for PcrBank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PcrBank {
    type Err = Error;

    /// Parses a bank name case-insensitively, as systemd-measure's `--bank=` does.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|bank| bank.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::UnknownBank(name.to_owned()))
    }
}

enum BankHasher {
    Sha1(Sha1),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl BankHasher {
    fn new(bank: PcrBank) -> Self {
        match bank {
            PcrBank::Sha1 => Self::Sha1(Sha1::new()),
            PcrBank::Sha256 => Self::Sha256(Sha256::new()),
            PcrBank::Sha384 => Self::Sha384(Sha384::new()),
            PcrBank::Sha512 => Self::Sha512(Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(hasher) => hasher.update(data),
            Self::Sha256(hasher) => hasher.update(data),
            Self::Sha384(hasher) => hasher.update(data),
            Self::Sha512(hasher) => hasher.update(data),
        }
    }

    fn finalize(self) -> Vec<u8> {
        match self {
            Self::Sha1(hasher) => hasher.finalize().to_vec(),
            Self::Sha256(hasher) => hasher.finalize().to_vec(),
            Self::Sha384(hasher) => hasher.finalize().to_vec(),
            Self::Sha512(hasher) => hasher.finalize().to_vec(),
        }
    }
}

/// The value of one PCR in one bank, computed in software.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrValue {
    bank: PcrBank,
    value: Vec<u8>,
}

impl PcrValue {
    /// Returns the value of a PCR after reset: all zero bytes.
    pub fn zero(bank: PcrBank) -> Self {
        Self {
            bank,
            value: vec![0; bank.digest_len()],
        }
    }

    /// Returns a PCR value read from a TPM, or `None` when `bytes` is not one
    /// digest of `bank` long.
    pub fn from_bytes(bank: PcrBank, bytes: &[u8]) -> Option<Self> {
        (bytes.len() == bank.digest_len()).then(|| Self {
            bank,
            value: bytes.to_vec(),
        })
    }

    /// Extends the PCR with a digest: the new value is the hash of the old value followed by
    /// `digest`, as TPM2_PCR_Extend computes it.
    ///
    /// `digest` should be a digest of this bank. Like systemd-measure, this hashes other lengths
    /// as given.
    pub fn extend(&mut self, digest: &[u8]) {
        let mut hasher = BankHasher::new(self.bank);
        hasher.update(&self.value);
        hasher.update(digest);
        self.value = hasher.finalize();
    }

    /// Extends the PCR with the digest of `event`, as a measurement of `event` does.
    pub fn measure(&mut self, event: &[u8]) {
        let digest = self.bank.digest(event);
        self.extend(&digest);
    }

    /// Returns the bank.
    pub fn bank(&self) -> PcrBank {
        self.bank
    }

    /// Returns the value.
    pub fn as_bytes(&self) -> &[u8] {
        &self.value
    }

    /// Returns the value in lower-case hexadecimal.
    pub fn to_hex(&self) -> String {
        to_hex(&self.value)
    }
}

/// Formats bytes as lower-case hexadecimal.
pub fn to_hex(bytes: &[u8]) -> String {
    use fmt::Write;

    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // fmt::Write for String returns Ok for every input.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}
