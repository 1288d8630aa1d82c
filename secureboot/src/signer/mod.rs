//! Signing of a UKI's expected PCR 11 values, as `systemd-measure sign` (systemd 257) does.
//!
//! [`sign_pcr11_policy`] predicts PCR 11 for each bank and phase path (see
//! [`crate::predict_pcr11`]), computes the TPM2 PolicyPCR digest of each value (see
//! [`crate::pcrsig::policy_pcr11_digest`]) and has a [`PolicySigner`] sign it. The result
//! serializes to the JSON that `systemd-measure sign --json=short` prints for the same
//! sections, key, banks and phase paths, which a UKI carries as its `.pcrsig` section.
//!
//! ```no_run
//! use appliance_secureboot::signer::{sign_pcr11_policy, PemFileSigner};
//! use appliance_secureboot::{read_image, Pcr11Options, PcrBank, Uki};
//!
//! let bytes = read_image("appliance.efi".as_ref())?;
//! let uki = Uki::parse(&bytes)?;
//! let signer = PemFileSigner::open("pcr-signing.key".as_ref())?;
//! let options = Pcr11Options {
//!     banks: vec![PcrBank::Sha256],
//!     ..Pcr11Options::default()
//! };
//! let signed = sign_pcr11_policy(&uki, &signer, &options)?;
//! println!("{}", signed.to_json()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod pem_file;

pub use error::{KeyError, SignPolicyError, SignerError};
pub use pem_file::PemFileSigner;

use base64ct::{Base64, Encoding};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::pcr::{to_hex, PcrIndex};
use crate::pcrsig::{
    policy_pcr11_digest, BankSignatures, PcrPublicKey, PolicyDigest, SignatureEntry,
};
use crate::predict::{predict_pcr11, Pcr11Options};
use crate::uki::{Uki, UnifiedSection};
use crate::PcrBank;

/// A private key that signs PCR 11 policy digests, such as a key file or a key in an HSM.
///
/// A signature must equal the one that systemd-measure 257 writes with an RSA key, which is
/// also what [`crate::pcrsig::verify_pcrsig`] checks. That is RSASSA-PKCS1-v1_5 (RFC 8017,
/// section 8.2) with the 32-byte policy digest as the message and the hash function of the
/// PCR bank: SHA-1 for sha1, SHA-256 for sha256 and so on. The private key operation thus
/// covers the DER DigestInfo of `bank.digest(policy_digest)`. A backend that signs
/// precomputed hashes, such as PKCS #11's CKM_RSA_PKCS mechanism with a DigestInfo, gets
/// [`PcrBank::digest`] of the policy digest and the bank's hash algorithm.
///
/// Only RSA keys are supported, because the `.pcrsig` verification in this crate supports
/// only RSA.
pub trait PolicySigner {
    /// Returns the public key as a PEM "PUBLIC KEY" block (a DER SubjectPublicKeyInfo), as
    /// `openssl pkey -pubout` writes it and a UKI's `.pcrpkey` section contains it.
    fn public_key_pem(&self) -> Result<String, SignerError>;

    /// Signs a PolicyPCR digest for `bank` as the trait documentation specifies, and returns
    /// the signature, which is as long as the RSA modulus.
    fn sign(&self, bank: PcrBank, policy_digest: &PolicyDigest) -> Result<Vec<u8>, SignerError>;
}

/// Signed PCR 11 policies of a UKI: the content of a `.pcrsig` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPcrPolicy {
    /// SHA-256 of the signing key's PKCS #1 DER encoding, which each entry stores as "pkfp".
    pub key_fingerprint: [u8; 32],
    /// One element per bank, sorted by bank. Each lists one entry per phase path, sorted by
    /// path.
    pub banks: Vec<BankSignatures>,
}

/// Signs the PolicyPCR digest of PCR 11 for each bank and phase path in `options`.
///
/// With [`Pcr11Options::default`] the banks and phase paths are those of `systemd-measure
/// sign` without `--bank` and `--phase`: all four banks and the four paths from enter-initrd
/// to ready. Each signature is checked with the signer's public key, so that a signer whose
/// keys do not belong together fails here rather than at boot.
///
/// This does not compare the signer's key with the UKI's `.pcrpkey`, see
/// [`check_uki_pcrpkey`].
pub fn sign_pcr11_policy(
    uki: &Uki<'_>,
    signer: &dyn PolicySigner,
    options: &Pcr11Options,
) -> Result<SignedPcrPolicy, SignPolicyError> {
    if options.banks.is_empty() {
        return Err(SignPolicyError::NoBanks);
    }
    if options.phase_paths.is_empty() {
        return Err(SignPolicyError::NoPhasePaths);
    }
    let public_key = signer_public_key(signer)?;
    let prediction = predict_pcr11(uki, options)?;

    let mut banks = Vec::with_capacity(prediction.banks.len());
    for bank in &prediction.banks {
        let mut entries = Vec::with_capacity(bank.phases.len());
        for phase in &bank.phases {
            let policy = policy_pcr11_digest(&phase.value);
            let signature = signer.sign(bank.bank, &policy)?;
            public_key
                .verify(bank.bank, &policy, &signature)
                .map_err(|source| SignPolicyError::SignatureCheck {
                    bank: bank.bank,
                    phase: phase.phase.clone(),
                    source,
                })?;
            entries.push(SignatureEntry {
                pcrs: vec![PcrIndex::KERNEL_BOOT.get()],
                key_fingerprint: public_key.fingerprint().to_vec(),
                policy: policy.to_vec(),
                signature,
            });
        }
        banks.push(BankSignatures {
            bank: bank.bank,
            entries,
        });
    }

    Ok(SignedPcrPolicy {
        key_fingerprint: *public_key.fingerprint(),
        banks,
    })
}

/// Checks that the `.pcrsig` signatures of `signer` can verify against the UKI's `.pcrpkey`.
///
/// Passes if the `.pcrpkey` section that systemd-stub measures for `profile` contains the
/// signer's public key, or if the UKI has no `.pcrpkey` section. Fails with
/// [`SignPolicyError::PcrpkeyMismatch`] if it contains another key.
pub fn check_uki_pcrpkey(
    uki: &Uki<'_>,
    profile: u32,
    signer: &dyn PolicySigner,
) -> Result<(), SignPolicyError> {
    let measured = uki.measured_sections(profile)?;
    let Some(section) = measured
        .iter()
        .find(|entry| entry.kind == UnifiedSection::Pcrpkey)
    else {
        return Ok(());
    };

    // The section's raw data may end in NUL padding, which is no part of the PEM text.
    let data = section.data.file_data;
    let end = data
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |last| last + 1);
    let pcrpkey = PcrPublicKey::from_pem(&data[..end])
        .map_err(|source| SignPolicyError::InvalidPcrpkey { profile, source })?;
    let signer_key = signer_public_key(signer)?;

    if pcrpkey.fingerprint() != signer_key.fingerprint() {
        return Err(SignPolicyError::PcrpkeyMismatch {
            profile,
            pcrpkey: to_hex(pcrpkey.fingerprint()),
            signer: to_hex(signer_key.fingerprint()),
        });
    }
    Ok(())
}

fn signer_public_key(signer: &dyn PolicySigner) -> Result<PcrPublicKey, SignPolicyError> {
    let pem = signer.public_key_pem()?;
    PcrPublicKey::from_pem(pem.as_bytes()).map_err(SignPolicyError::SignerPublicKey)
}

impl SignedPcrPolicy {
    /// Formats the signatures as compact JSON, byte for byte as `systemd-measure sign
    /// --json=short` prints them without its final newline.
    ///
    /// The object has one key per bank. Each bank lists objects with "pcrs" (`[11]`), "pkfp"
    /// and "pol" (lower-case hexadecimal) and "sig" (base64 with padding), in that order.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl Serialize for SignedPcrPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.banks.len()))?;
        for bank in &self.banks {
            let entries: Vec<EntryJson<'_>> = bank.entries.iter().map(EntryJson).collect();
            map.serialize_entry(bank.bank.name(), &entries)?;
        }
        map.end()
    }
}

/// The JSON form of a signature entry, with systemd's field names and order.
struct EntryJson<'a>(&'a SignatureEntry);

impl Serialize for EntryJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entry = self.0;
        let mut object = serializer.serialize_struct("SignatureEntry", 4)?;
        object.serialize_field("pcrs", &entry.pcrs)?;
        object.serialize_field("pkfp", &to_hex(&entry.key_fingerprint))?;
        object.serialize_field("pol", &to_hex(&entry.policy))?;
        object.serialize_field("sig", &Base64::encode_string(&entry.signature))?;
        object.end()
    }
}
