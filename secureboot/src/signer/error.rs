//! Errors from loading a signing key, signing PCR 11 policies and checking a UKI's `.pcrpkey`.
//!
//! The variants store paths, PEM labels, algorithm names and the errors of the DER and RSA
//! code. Those report positions, lengths and at most one tag byte, never the key's content.

use std::path::PathBuf;

use crate::error::Error;
use crate::pcr::PcrBank;
use crate::pcrsig::PcrSigError;
use crate::phase::PhasePath;

/// An error from a [`super::PolicySigner`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The private key file could not be read.
    #[error("failed to read the private key file {}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// Error from the operating system.
        #[source]
        source: std::io::Error,
    },

    /// The private key file does not contain a usable RSA private key.
    #[error("invalid private key file {}", path.display())]
    InvalidKeyFile {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: KeyError,
    },

    /// PEM text given in memory does not contain a usable RSA private key.
    #[error("invalid private key")]
    InvalidKey(#[source] KeyError),

    /// The public key could not be encoded as a SubjectPublicKeyInfo.
    #[error("failed to encode the public key as PEM")]
    EncodePublicKey(#[source] rsa::pkcs8::spki::Error),

    /// The RSA signing operation failed.
    #[error("failed to sign the {bank} policy digest")]
    Sign {
        /// The bank whose hash algorithm the signature uses.
        bank: PcrBank,
        /// Error from the rsa crate.
        #[source]
        source: rsa::Error,
    },

    /// A signer outside this crate, such as one backed by an HSM, failed.
    #[error("the signer failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The reason why PEM text is not a usable RSA private key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The content is not UTF-8 text, so it cannot be PEM.
    #[error(
        "the key is not PEM text; a binary DER key can be converted with `openssl pkey \
         -inform DER -in KEY.der -out KEY.pem`"
    )]
    NotText,

    /// The text is not one well-formed PEM block.
    #[error(
        "the key is not a valid PEM document; expected one \"PRIVATE KEY\" or \"RSA PRIVATE \
         KEY\" block as `openssl genpkey` writes it"
    )]
    InvalidPem(#[source] rsa::pkcs8::der::Error),

    /// The key is encrypted with a passphrase.
    #[error(
        "the private key is encrypted, which this signer does not support; give a key file \
         without a passphrase, or sign with a signer backed by the key's HSM"
    )]
    Encrypted,

    /// The PEM block contains a public key or a certificate, not a private key.
    #[error(
        "the PEM text contains a {label:?} block, which is no private key; give the private key \
         (\"PRIVATE KEY\" or \"RSA PRIVATE KEY\") whose public key the UKI's .pcrpkey contains"
    )]
    NotPrivate {
        /// The PEM label.
        label: String,
    },

    /// The PEM block has a label that this signer does not read.
    #[error(
        "the PEM text contains a {label:?} block, expected \"PRIVATE KEY\" (PKCS #8) or \"RSA \
         PRIVATE KEY\" (PKCS #1)"
    )]
    UnexpectedPemLabel {
        /// The PEM label.
        label: String,
    },

    /// The key is not a plain RSA key.
    #[error(
        "the private key has algorithm {algorithm}; this signer supports only RSA keys \
         (rsaEncryption, 1.2.840.113549.1.1.1), such as `openssl genpkey -algorithm RSA` \
         creates"
    )]
    UnsupportedAlgorithm {
        /// The algorithm's name and, for PKCS #8 keys, its OID.
        algorithm: String,
    },

    /// The "PRIVATE KEY" block is not a DER PrivateKeyInfo (PKCS #8).
    #[error("the \"PRIVATE KEY\" block does not contain a valid DER PrivateKeyInfo (PKCS #8)")]
    InvalidPkcs8(#[source] rsa::pkcs8::der::Error),

    /// The PKCS #8 PrivateKeyInfo does not contain a valid RSA private key.
    #[error("the PKCS #8 PrivateKeyInfo does not contain a valid RSA private key")]
    InvalidPkcs8Key(#[source] rsa::pkcs8::Error),

    /// The "RSA PRIVATE KEY" block is not a valid RSAPrivateKey (PKCS #1).
    #[error("the \"RSA PRIVATE KEY\" block does not contain a valid RSAPrivateKey (PKCS #1)")]
    InvalidPkcs1Key(#[source] rsa::pkcs1::Error),
}

/// An error that prevents signing a UKI's PCR 11 policies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignPolicyError {
    /// The UKI could not be parsed, or its PCR 11 values could not be predicted.
    #[error(transparent)]
    Uki(#[from] Error),

    /// The options select no bank.
    #[error("no PCR bank selected; select at least one, such as sha256")]
    NoBanks,

    /// The options select no phase path.
    #[error(
        "no boot phase path selected; select at least one, such as \
         enter-initrd:leave-initrd:sysinit:ready"
    )]
    NoPhasePaths,

    /// The signer failed.
    #[error(transparent)]
    Signer(#[from] SignerError),

    /// The signer's public key is not a PEM RSA public key that `.pcrpkey` could contain.
    #[error("the signer's public key cannot be used as a .pcrpkey")]
    SignerPublicKey(#[source] PcrSigError),

    /// A signature does not verify with the signer's own public key.
    #[error(
        "the signature of the {bank} policy digest for phase path {phase} does not verify with \
         the signer's public key; the signer's public key and private key do not belong \
         together"
    )]
    SignatureCheck {
        /// The bank.
        bank: PcrBank,
        /// The phase path.
        phase: PhasePath,
        /// Error from the RSA verification.
        #[source]
        source: rsa::Error,
    },

    /// The UKI's `.pcrpkey` section is not a PEM RSA public key.
    #[error("the UKI's .pcrpkey section for profile {profile} is not a usable public key")]
    InvalidPcrpkey {
        /// The profile whose `.pcrpkey` was read.
        profile: u32,
        /// The parse error.
        #[source]
        source: PcrSigError,
    },

    /// The UKI's `.pcrpkey` section contains another key than the signer's.
    #[error(
        "the UKI's .pcrpkey section for profile {profile} contains the public key with \
         fingerprint {pcrpkey}, but the signing key has fingerprint {signer}; `verify-pcrsig` \
         and the appliance's early boot check verify the signatures with .pcrpkey, so sign \
         with the private key of .pcrpkey or rebuild the UKI with the signing key's public key"
    )]
    PcrpkeyMismatch {
        /// The profile whose `.pcrpkey` was read.
        profile: u32,
        /// SHA-256 of the `.pcrpkey` key's PKCS #1 DER encoding, in hexadecimal.
        pcrpkey: String,
        /// SHA-256 of the signer's key's PKCS #1 DER encoding, in hexadecimal.
        signer: String,
    },
}
