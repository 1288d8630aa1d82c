//! The TPM 2.0 policy digest of a PCR policy, computed in software.
//!
//! TPM2_PolicyPCR (TPM 2.0 Library, Part 3) updates a policy session's digest as
//!
//! ```text
//! policyDigest_new = H(policyDigest_old || TPM_CC_PolicyPCR || pcrs || H(PCR values))
//! ```
//!
//! where `pcrs` is the marshaled TPML_PCR_SELECTION, the PCR values are concatenated in
//! selection order, and H is the session's hash algorithm. A trial session starts from an
//! all-zero digest. systemd 257 (`tpm2_calculate_policy_pcr` in src/shared/tpm2-util.c) uses a
//! SHA-256 session for every bank, so the digest is always SHA-256, even for a SHA-1 PCR value.

use sha2::{Digest, Sha256};

use crate::pcr::{PcrBank, PcrIndex, PcrValue};

/// TPM_CC_PolicyPCR: the command code of TPM2_PolicyPCR, which the policy digest includes.
pub const TPM_CC_POLICY_PCR: u32 = 0x0000_017F;

/// TPM_ALG_SHA1: the algorithm ID that names the SHA-1 bank in a PCR selection.
pub const TPM_ALG_SHA1: u16 = 0x0004;
/// TPM_ALG_SHA256: the algorithm ID that names the SHA-256 bank in a PCR selection.
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// TPM_ALG_SHA384: the algorithm ID that names the SHA-384 bank in a PCR selection.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// TPM_ALG_SHA512: the algorithm ID that names the SHA-512 bank in a PCR selection.
pub const TPM_ALG_SHA512: u16 = 0x000D;

/// Bytes in the PCR bitmap of a TPMS_PCR_SELECTION (sizeofSelect).
///
/// Three bytes cover PCRs 0 to 23, all that a PC client TPM has. tpm2-tss marshals this
/// size, so a different size would yield a different digest.
pub const PCR_SELECT_SIZE: u8 = 3;

/// Length of a policy digest: the output length of SHA-256, the session hash algorithm.
pub const POLICY_DIGEST_LEN: usize = 32;

/// A TPM 2.0 policy digest (TPM2B_DIGEST contents) from a SHA-256 policy session.
pub type PolicyDigest = [u8; POLICY_DIGEST_LEN];

/// Returns the TPM algorithm ID (TPMI_ALG_HASH) of a bank.
pub const fn tpm_alg_id(bank: PcrBank) -> u16 {
    match bank {
        PcrBank::Sha1 => TPM_ALG_SHA1,
        PcrBank::Sha256 => TPM_ALG_SHA256,
        PcrBank::Sha384 => TPM_ALG_SHA384,
        PcrBank::Sha512 => TPM_ALG_SHA512,
    }
}

/// Marshals a TPML_PCR_SELECTION that selects PCR 11 in one bank, in TPM byte order (big
/// endian): count, then one TPMS_PCR_SELECTION of hash, sizeofSelect and the bitmap.
pub fn pcr11_selection(bank: PcrBank) -> [u8; 10] {
    let pcr = PcrIndex::KERNEL_BOOT.get();
    let mut bitmap = [0u8; PCR_SELECT_SIZE as usize];
    // Bit n of the bitmap selects PCR n, counting from bit 0 of byte 0.
    bitmap[(pcr / 8) as usize] = 1 << (pcr % 8);

    let mut selection = [0u8; 10];
    selection[0..4].copy_from_slice(&1u32.to_be_bytes());
    selection[4..6].copy_from_slice(&tpm_alg_id(bank).to_be_bytes());
    selection[6] = PCR_SELECT_SIZE;
    selection[7..10].copy_from_slice(&bitmap);
    selection
}

/// Computes the digest that a fresh trial session contains after TPM2_PolicyPCR selected PCR 11
/// in `value`'s bank and PCR 11 had `value`.
///
/// This is the digest that `systemd-measure sign` signs and stores as "pol" in `.pcrsig`.
pub fn policy_pcr11_digest(value: &PcrValue) -> PolicyDigest {
    let pcr_digest = Sha256::digest(value.as_bytes());

    let mut hasher = Sha256::new();
    hasher.update([0u8; POLICY_DIGEST_LEN]);
    hasher.update(TPM_CC_POLICY_PCR.to_be_bytes());
    hasher.update(pcr11_selection(value.bank()));
    hasher.update(pcr_digest);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_bytes_for_sha256() {
        assert_eq!(
            pcr11_selection(PcrBank::Sha256),
            [0, 0, 0, 1, 0x00, 0x0b, 3, 0x00, 0x08, 0x00]
        );
    }

    #[test]
    fn selection_names_each_bank() {
        for (bank, id) in [
            (PcrBank::Sha1, [0x00, 0x04]),
            (PcrBank::Sha256, [0x00, 0x0b]),
            (PcrBank::Sha384, [0x00, 0x0c]),
            (PcrBank::Sha512, [0x00, 0x0d]),
        ] {
            assert_eq!(pcr11_selection(bank)[4..6], id, "algorithm ID of {bank}");
        }
    }

    #[test]
    fn digest_of_zero_sha256_pcr() {
        // PolicyPCR over PCR 11 of the SHA-256 bank while PCR 11 is all zeros, computed by
        // hand from the formula in the module documentation.
        let mut expected_input = vec![0u8; 32];
        expected_input.extend_from_slice(&[0x00, 0x00, 0x01, 0x7f]);
        expected_input.extend_from_slice(&[0, 0, 0, 1, 0x00, 0x0b, 3, 0x00, 0x08, 0x00]);
        expected_input.extend_from_slice(&Sha256::digest([0u8; 32]));
        let expected: PolicyDigest = Sha256::digest(&expected_input).into();

        assert_eq!(
            policy_pcr11_digest(&PcrValue::zero(PcrBank::Sha256)),
            expected
        );
    }

    #[test]
    fn digest_depends_on_bank() {
        let sha1 = policy_pcr11_digest(&PcrValue::zero(PcrBank::Sha1));
        let sha256 = policy_pcr11_digest(&PcrValue::zero(PcrBank::Sha256));
        assert_ne!(sha1, sha256);
    }
}
