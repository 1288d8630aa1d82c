//! A [`PolicySigner`] backed by an RSA private key in a PEM file.

use std::fmt;
use std::path::{Path, PathBuf};

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::der::Decode;
use rsa::pkcs8::SecretDocument;
use rsa::pkcs8::{EncodePublicKey, LineEnding, ObjectIdentifier, PrivateKeyInfoRef};
use rsa::traits::PublicKeyParts;
use rsa::PrivateKey;
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

use super::error::{KeyError, SignerError};
use super::PolicySigner;
use crate::pcr::PcrBank;
use crate::pcrsig::PolicyDigest;

/// rsaEncryption (PKCS #1): the only algorithm OID this signer accepts.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-RSASSA-PSS (RFC 4055): an RSA key restricted to PSS, which cannot make the PKCS #1 v1.5
/// signatures that systemd expects.
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// id-ecPublicKey (RFC 5480).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// id-Ed25519 (RFC 8410).
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Signs with an RSA private key read from a PEM file, as `systemd-measure sign
/// --private-key=FILE` does.
///
/// The file may contain a PKCS #8 "PRIVATE KEY" block, as `openssl genpkey` writes it, or a
/// PKCS #1 "RSA PRIVATE KEY" block, as `openssl pkey -traditional` writes it. Encrypted keys
/// are rejected.
///
/// The file content and the decoded DER are wiped when they are dropped, through
/// [`Zeroizing`] and der's `SecretDocument`. When the signer is dropped, rsa 0.10's
/// `PrivateKey` wipes the private exponent, the primes and the CRT exponents.
///
/// NOTE: rsa 0.10 does not wipe the CRT coefficient, nor copies that the big-integer
/// arithmetic or a growing buffer leave in freed memory, and exposes none of them.
///
/// Signing uses RSA blinding with random numbers from the operating system, which does not
/// change the deterministic PKCS #1 v1.5 signature.
pub struct PemFileSigner {
    key: PrivateKey,
    path: Option<PathBuf>,
}

impl PemFileSigner {
    /// Reads a PEM RSA private key file.
    ///
    /// Errors name the file and the problem, such as a public key or an EC key given instead
    /// of an RSA private key.
    pub fn open(path: &Path) -> Result<Self, SignerError> {
        let bytes = std::fs::read(path).map_err(|source| SignerError::ReadKey {
            path: path.to_owned(),
            source,
        })?;
        let bytes = Zeroizing::new(bytes);
        let key = parse_private_key(&bytes).map_err(|source| SignerError::InvalidKeyFile {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            key,
            path: Some(path.to_owned()),
        })
    }

    /// Parses PEM text that contains an RSA private key, as [`PemFileSigner::open`] does for
    /// a file. The caller stays responsible for wiping `text`.
    pub fn from_pem(text: &[u8]) -> Result<Self, SignerError> {
        let key = parse_private_key(text).map_err(SignerError::InvalidKey)?;
        Ok(Self { key, path: None })
    }

    /// Returns the size of the RSA modulus in bits.
    pub fn bits(&self) -> u32 {
        self.key.n().bit_width()
    }

    /// Returns the file the key was read from, or None for a key parsed from memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl fmt::Debug for PemFileSigner {
    /// Writes the path and key size only, never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemFileSigner")
            .field("path", &self.path)
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}

impl PolicySigner for PemFileSigner {
    fn public_key_pem(&self) -> Result<String, SignerError> {
        self.key
            .as_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(SignerError::EncodePublicKey)
    }

    fn sign(&self, bank: PcrBank, policy_digest: &PolicyDigest) -> Result<Vec<u8>, SignerError> {
        let signature = match bank {
            PcrBank::Sha1 => self.key.pkcs1v15_sign::<Sha1>(policy_digest),
            PcrBank::Sha256 => self.key.pkcs1v15_sign::<Sha256>(policy_digest),
            PcrBank::Sha384 => self.key.pkcs1v15_sign::<Sha384>(policy_digest),
            PcrBank::Sha512 => self.key.pkcs1v15_sign::<Sha512>(policy_digest),
        };
        signature.map_err(|source| SignerError::Sign { bank, source })
    }
}

/// Parses the first PEM block of `bytes` as an RSA private key.
fn parse_private_key(bytes: &[u8]) -> Result<PrivateKey, KeyError> {
    let text = std::str::from_utf8(bytes).map_err(|_| KeyError::NotText)?;
    // OpenSSL's traditional encrypted PKCS #1 format adds RFC 1421 headers, which the RFC 7468
    // parser rejects with a less helpful error.
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(KeyError::Encrypted);
    }
    let (label, document) = SecretDocument::from_pem(text).map_err(KeyError::InvalidPem)?;

    match label {
        "PRIVATE KEY" => rsa_key_from_pkcs8(&document),
        "RSA PRIVATE KEY" => {
            PrivateKey::from_pkcs1_der(document.as_bytes()).map_err(KeyError::InvalidPkcs1Key)
        }
        "ENCRYPTED PRIVATE KEY" => Err(KeyError::Encrypted),
        "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => Err(KeyError::NotPrivate {
            label: label.to_owned(),
        }),
        "EC PRIVATE KEY" => Err(KeyError::UnsupportedAlgorithm {
            algorithm: "EC".to_owned(),
        }),
        _ => Err(KeyError::UnexpectedPemLabel {
            label: label.to_owned(),
        }),
    }
}

fn rsa_key_from_pkcs8(document: &SecretDocument) -> Result<PrivateKey, KeyError> {
    let info = PrivateKeyInfoRef::from_der(document.as_bytes()).map_err(KeyError::InvalidPkcs8)?;
    let oid = info.algorithm.oid;
    if oid != RSA_ENCRYPTION {
        let name = match oid {
            RSASSA_PSS => "RSA restricted to PSS (id-RSASSA-PSS)",
            EC_PUBLIC_KEY => "EC (id-ecPublicKey)",
            ED25519 => "Ed25519",
            _ => "unknown",
        };
        return Err(KeyError::UnsupportedAlgorithm {
            algorithm: format!("{name}, {oid}"),
        });
    }
    PrivateKey::try_from(info).map_err(KeyError::InvalidPkcs8Key)
}
