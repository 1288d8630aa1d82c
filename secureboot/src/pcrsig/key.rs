//! The `.pcrpkey` public key and PKCS#1 v1.5 signature checks.

use rsa::pkcs8::der::{pem, Decode};
use rsa::pkcs8::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use rsa::traits::PublicKeyParts;
use rsa::PublicKey;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::error::PcrSigError;
use super::policy::PolicyDigest;
use crate::pcr::PcrBank;

/// rsaEncryption (PKCS #1): the algorithm OID of an RSA SubjectPublicKeyInfo.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-ecPublicKey (RFC 5480): the algorithm OID of an elliptic curve SubjectPublicKeyInfo.
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// id-RSASSA-PSS (RFC 4055): an RSA key restricted to PSS signatures.
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// The public key that verifies a UKI's PCR signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrPublicKey {
    key: PublicKey,
    fingerprint: [u8; 32],
}

impl PcrPublicKey {
    /// Parses the contents of a `.pcrpkey` section: a PEM "PUBLIC KEY" block.
    ///
    /// Only RSA keys are supported, because this appliance signs with RSA. Other algorithms,
    /// EC among them, fail with [`PcrSigError::UnsupportedKeyAlgorithm`].
    pub fn from_pem(text: &[u8]) -> Result<Self, PcrSigError> {
        let (label, der) = pem::decode_vec(text).map_err(PcrSigError::InvalidPem)?;
        if label != "PUBLIC KEY" {
            return Err(PcrSigError::UnexpectedPemLabel(label.to_owned()));
        }
        let info =
            SubjectPublicKeyInfoRef::from_der(&der).map_err(PcrSigError::InvalidPublicKeyInfo)?;

        let oid = info.algorithm.oid;
        if oid != RSA_ENCRYPTION {
            let name = match oid {
                EC_PUBLIC_KEY => "EC (id-ecPublicKey)",
                RSASSA_PSS => "RSA restricted to PSS (id-RSASSA-PSS)",
                _ => "unknown",
            };
            return Err(PcrSigError::UnsupportedKeyAlgorithm {
                algorithm: format!("{name}, {oid}"),
            });
        }
        // systemd fingerprints the key as OpenSSL's i2d_PublicKey encodes it, which for RSA is
        // the DER RSAPublicKey of PKCS #1 that the SubjectPublicKeyInfo's BIT STRING contains.
        // The strict DER parser below accepts only the canonical encoding, which is also the
        // one OpenSSL writes.
        let fingerprint = Sha256::digest(info.subject_public_key.raw_bytes()).into();
        let key = PublicKey::try_from(info).map_err(PcrSigError::InvalidRsaKey)?;
        Ok(Self { key, fingerprint })
    }

    /// Returns SHA-256 of the key's PKCS #1 DER encoding, which `.pcrsig` stores as "pkfp".
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Returns the RSA modulus as big-endian bytes, the form a TPM2B_PUBLIC_KEY_RSA takes.
    pub fn modulus(&self) -> Vec<u8> {
        self.key.n().to_be_bytes_trimmed_vartime().to_vec()
    }

    /// Returns the RSA public exponent, or `None` when it does not fit the 32 bits that a
    /// TPM's RSA parameters allow.
    pub fn exponent(&self) -> Option<u32> {
        let bytes = self.key.e().to_be_bytes_trimmed_vartime();
        if bytes.len() > 4 {
            return None;
        }
        Some(
            bytes
                .iter()
                .fold(0u32, |value, byte| (value << 8) | u32::from(*byte)),
        )
    }

    /// Returns the size of the RSA modulus in bits.
    pub fn bits(&self) -> u32 {
        self.key.n().bit_width()
    }

    /// Verifies an RSASSA-PKCS1-v1_5 signature over a policy digest.
    ///
    /// systemd-measure 257 hashes the policy digest with the bank's own algorithm before
    /// signing, SHA-1 for the sha1 bank and so on, as its `digest_and_sign(p->md, ...)` call in
    /// src/measure/measure.c does.
    ///
    /// NOTE: this checks what systemd-measure writes, not what unlocks. systemd's unlock code
    /// (tpm2_policy_authorize in src/shared/tpm2-util.c) has the TPM check an RSASSA signature
    /// over SHA-256 whatever the bank, so a verified sha1, sha384 or sha512 entry may still
    /// fail to unlock. That code is unchecked for release 257.
    pub fn verify(
        &self,
        bank: PcrBank,
        policy: &PolicyDigest,
        signature: &[u8],
    ) -> Result<(), rsa::Error> {
        match bank {
            PcrBank::Sha1 => self.key.pkcs1v15_verify::<Sha1>(policy, signature),
            PcrBank::Sha256 => self.key.pkcs1v15_verify::<Sha256>(policy, signature),
            PcrBank::Sha384 => self.key.pkcs1v15_verify::<Sha384>(policy, signature),
            PcrBank::Sha512 => self.key.pkcs1v15_verify::<Sha512>(policy, signature),
        }
    }
}
