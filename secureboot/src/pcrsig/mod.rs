//! Verification of a UKI's signed PCR 11 policies (`.pcrsig` and `.pcrpkey`).
//!
//! `systemd-measure sign` predicts PCR 11 for each boot phase, computes the TPM2 PolicyPCR
//! digest of each value (see [`policy_pcr11_digest`]) and signs it. The UKI carries the
//! signatures as JSON in `.pcrsig` and the public key as PEM in `.pcrpkey`. A secret sealed
//! with TPM2_PolicyAuthorize to that key unseals when the TPM verifies a signature over the
//! policy digest of the current PCR 11 value.
//!
//! [`verify_pcrsig`] predicts PCR 11 itself and checks, for each phase path that
//! systemd-measure 257 signs by default ([`crate::phase::DEFAULT_PHASE_PATHS`]), that
//! `.pcrsig` has a valid signature for exactly that value. Every phase verifies only if this
//! crate's prediction equals the one systemd-measure signed.
//!
//! ```no_run
//! use appliance_secureboot::pcrsig::verify_pcrsig;
//! use appliance_secureboot::{read_image, Uki};
//!
//! let bytes = read_image("appliance.efi".as_ref())?;
//! let uki = Uki::parse(&bytes)?;
//! let report = verify_pcrsig(&uki, 0)?;
//! print!("{report}");
//! assert!(report.all_verified());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod key;
mod policy;
mod report;
mod signatures;

pub use error::PcrSigError;
pub use key::PcrPublicKey;
pub use policy::{
    pcr11_selection, policy_pcr11_digest, tpm_alg_id, PolicyDigest, PCR_SELECT_SIZE,
    POLICY_DIGEST_LEN, TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384, TPM_ALG_SHA512,
    TPM_CC_POLICY_PCR,
};
pub use report::{Outcome, PcrSigReport, PhaseCheck, UnmatchedEntry};
pub use signatures::{BankSignatures, PcrSignatures, SignatureEntry};

use crate::pcr::{PcrBank, PcrIndex};
use crate::phase::PhasePath;
use crate::predict::{predict_pcr11, Pcr11Options};
use crate::uki::{Uki, UnifiedSection};

/// Checks the `.pcrsig` signatures of a UKI profile against this crate's PCR 11 prediction.
///
/// The checked banks are sha256, which systemd's TPM2 unlock code prefers and the appliance
/// build signs, and every other bank that `.pcrsig` lists. The phase paths are
/// systemd-measure's defaults.
/// Fails if the UKI lacks `.pcrsig` or `.pcrpkey`, if either is malformed, or if PCR 11
/// cannot be predicted. A missing or invalid signature is no error, see [`Outcome`].
pub fn verify_pcrsig(uki: &Uki<'_>, profile: u32) -> Result<PcrSigReport, PcrSigError> {
    // Checks the profile and the measured sections first, so that their errors come before
    // those about .pcrsig and .pcrpkey.
    uki.measured_sections(profile)?;

    let signature_text = section_text(uki, UnifiedSection::Pcrsig, profile)?;
    let key_text = section_text(uki, UnifiedSection::Pcrpkey, profile)?;
    let signatures = PcrSignatures::parse(signature_text)?;
    let key = PcrPublicKey::from_pem(key_text)?;

    let mut banks = vec![PcrBank::Sha256];
    banks.extend(signatures.banks().iter().map(|listed| listed.bank));
    let options = Pcr11Options {
        banks,
        phase_paths: PhasePath::defaults(),
        profile,
    };
    let prediction = predict_pcr11(uki, &options)?;

    let mut checks = Vec::new();
    let mut used = Vec::new();
    for bank in &prediction.banks {
        let entries = signatures.entries(bank.bank);
        for phase in &bank.phases {
            let policy = policy_pcr11_digest(&phase.value);
            let candidates: Vec<usize> = entries
                .iter()
                .enumerate()
                .filter(|(_, entry)| {
                    entry.selects_only(PcrIndex::KERNEL_BOOT) && entry.policy == policy
                })
                .map(|(index, _)| index)
                .collect();
            used.extend(candidates.iter().map(|&index| (bank.bank, index)));

            let outcome = check_candidates(&key, bank.bank, &policy, entries, &candidates);
            checks.push(PhaseCheck {
                phase: phase.phase.clone(),
                pcr_value: phase.value.clone(),
                policy,
                outcome,
            });
        }
    }

    let unmatched = signatures
        .banks()
        .iter()
        .flat_map(|listed| {
            listed
                .entries
                .iter()
                .enumerate()
                .map(move |(index, entry)| (listed.bank, index, entry))
        })
        .filter(|(bank, index, _)| !used.contains(&(*bank, *index)))
        .map(|(bank, index, entry)| UnmatchedEntry {
            bank,
            entry: index,
            pcrs: entry.pcrs.clone(),
            policy: entry.policy.clone(),
        })
        .collect();

    Ok(PcrSigReport {
        profile,
        key_bits: key.bits(),
        key_fingerprint: *key.fingerprint(),
        checks,
        unmatched,
    })
}

/// Decides the outcome from the entries whose PCRs and policy digest match, as systemd's
/// unlock code picks an entry: the first one whose fingerprint is that of the key.
fn check_candidates(
    key: &PcrPublicKey,
    bank: PcrBank,
    policy: &PolicyDigest,
    entries: &[SignatureEntry],
    candidates: &[usize],
) -> Outcome {
    let Some(&first) = candidates.first() else {
        return Outcome::Missing;
    };
    let by_key = candidates
        .iter()
        .copied()
        .find(|&index| entries[index].key_fingerprint == key.fingerprint());
    let Some(index) = by_key else {
        return Outcome::KeyMismatch {
            entry: first,
            fingerprint: entries[first].key_fingerprint.clone(),
        };
    };
    match key.verify(bank, policy, &entries[index].signature) {
        Ok(()) => Outcome::Verified { entry: index },
        Err(error) => Outcome::BadSignature {
            entry: index,
            error: error.to_string(),
        },
    }
}

/// Returns the content of the section that systemd-stub uses for `profile`, without trailing
/// NUL bytes.
///
/// systemd-stub takes a profile's own section and falls back to the base section, and within
/// each it uses the first non-empty section of a name. The zero fill past the raw data is left
/// out, which only drops NUL bytes that the trimming would remove anyway.
fn section_text<'a>(
    uki: &Uki<'a>,
    kind: UnifiedSection,
    profile: u32,
) -> Result<&'a [u8], PcrSigError> {
    let mut current_profile: Option<u32> = None;
    let mut profiles_seen = 0u32;
    let mut base = None;
    let mut own = None;
    for section in uki.sections() {
        let name = section.name_bytes();
        if name == UnifiedSection::Profile.name().as_bytes() {
            current_profile = Some(profiles_seen);
            profiles_seen = profiles_seen.saturating_add(1);
            continue;
        }
        if name != kind.name().as_bytes() || section.virtual_size == 0 {
            continue;
        }
        match current_profile {
            None if base.is_none() => base = Some(section),
            Some(number) if number == profile && own.is_none() => own = Some(section),
            _ => {}
        }
    }

    let section = own.or(base).ok_or(PcrSigError::MissingSection {
        section: kind.name(),
        profile,
    })?;
    let data = uki.image().section_data(section).file_data;
    let end = data
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |last| last + 1);
    Ok(&data[..end])
}
