//! Errors from reading a UKI's `.pcrsig` and `.pcrpkey` sections.

use crate::error::Error;
use crate::pcr::PcrBank;

/// An error that prevents checking a UKI's PCR signatures at all.
///
/// A signature that is missing, made with another key or invalid is no error: the report lists
/// it (see [`super::Outcome`]). Entries are numbered from 0 in the order of their bank's JSON
/// array.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PcrSigError {
    /// The UKI could not be read or parsed, or its PCR 11 values could not be predicted.
    #[error(transparent)]
    Uki(#[from] Error),

    /// The UKI has no non-empty section of this name for the profile.
    #[error(
        "the UKI has no {section} section in profile {profile} or its base sections; sign the \
         expected PCR 11 values with `systemd-measure sign` (mkosi: SignExpectedPcr=yes) and \
         rebuild the UKI"
    )]
    MissingSection {
        /// ".pcrsig" or ".pcrpkey".
        section: &'static str,
        /// The profile that was checked.
        profile: u32,
    },

    /// The `.pcrsig` section is not valid JSON.
    #[error("the .pcrsig section is not valid JSON")]
    InvalidJson(#[source] serde_json::Error),

    /// The `.pcrsig` JSON is not an object.
    #[error(
        "the .pcrsig section contains a JSON {found}, expected an object with one key per PCR \
         bank, such as {{\"sha256\": [...]}}"
    )]
    NotAnObject {
        /// The JSON type found instead.
        found: &'static str,
    },

    /// A key of the `.pcrsig` object is not a bank name that systemd-measure writes.
    #[error(
        "the .pcrsig section has signatures for unknown PCR bank {0:?}, expected sha1, sha256, \
         sha384 or sha512 in lower case"
    )]
    UnknownBank(String),

    /// The value of a bank is not a JSON array.
    #[error("the .pcrsig value of bank {bank} is a JSON {found}, expected an array of entries")]
    BankNotAnArray {
        /// The bank.
        bank: PcrBank,
        /// The JSON type found instead.
        found: &'static str,
    },

    /// An entry of a bank is not a JSON object.
    #[error(
        ".pcrsig entry {entry} of bank {bank} is a JSON {found}, expected an object with \
         \"pcrs\", \"pkfp\", \"pol\" and \"sig\""
    )]
    EntryNotAnObject {
        /// The bank.
        bank: PcrBank,
        /// Index of the entry in the bank's array.
        entry: usize,
        /// The JSON type found instead.
        found: &'static str,
    },

    /// An entry lacks one of the fields that systemd-measure writes.
    #[error(".pcrsig entry {entry} of bank {bank} has no {field:?} field")]
    MissingField {
        /// The bank.
        bank: PcrBank,
        /// Index of the entry in the bank's array.
        entry: usize,
        /// "pcrs", "pkfp", "pol" or "sig".
        field: &'static str,
    },

    /// A field of an entry has the wrong type or cannot be decoded.
    #[error(".pcrsig entry {entry} of bank {bank}: {field:?} is {found}, expected {expected}")]
    InvalidField {
        /// The bank.
        bank: PcrBank,
        /// Index of the entry in the bank's array.
        entry: usize,
        /// "pcrs", "pkfp", "pol" or "sig".
        field: &'static str,
        /// Description of the expected content, such as "a string of hexadecimal digits".
        expected: &'static str,
        /// The JSON value found, shortened to at most 80 characters.
        found: String,
    },

    /// The `.pcrpkey` section is not a PEM document.
    #[error(
        "the .pcrpkey section is not a PEM document; expected a \"PUBLIC KEY\" block as \
         `openssl pkey -pubout` writes it"
    )]
    InvalidPem(#[source] rsa::pkcs8::der::pem::Error),

    /// The `.pcrpkey` PEM block has another label than "PUBLIC KEY".
    #[error(
        "the .pcrpkey section is a PEM {0:?} block, expected \"PUBLIC KEY\" (a DER \
         SubjectPublicKeyInfo)"
    )]
    UnexpectedPemLabel(String),

    /// The `.pcrpkey` PEM block does not contain a DER SubjectPublicKeyInfo.
    #[error("the .pcrpkey PEM block does not contain a valid DER SubjectPublicKeyInfo")]
    InvalidPublicKeyInfo(#[source] rsa::pkcs8::der::Error),

    /// The `.pcrpkey` key is not an RSA key.
    #[error(
        "the .pcrpkey public key has algorithm {algorithm}; only RSA keys (rsaEncryption, \
         1.2.840.113549.1.1.1) are supported"
    )]
    UnsupportedKeyAlgorithm {
        /// The algorithm's name and OID.
        algorithm: String,
    },

    /// The `.pcrpkey` RSA key is malformed or its size is outside 1024 to 8192 bits.
    #[error("the .pcrpkey RSA public key is invalid or its modulus is outside 1024 to 8192 bits")]
    InvalidRsaKey(#[source] rsa::pkcs8::spki::Error),
}
