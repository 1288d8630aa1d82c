//! The result of checking a UKI's PCR signatures, as text and as JSON.

use std::fmt;

use serde_json::{json, Value};

use super::policy::PolicyDigest;
use crate::pcr::{to_hex, PcrBank, PcrIndex, PcrValue};
use crate::phase::PhasePath;

/// The result of checking each default phase's PCR 11 signature in each bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSigReport {
    /// The profile whose sections were checked.
    pub profile: u32,
    /// Size of the `.pcrpkey` RSA modulus in bits.
    pub key_bits: u32,
    /// Fingerprint of the `.pcrpkey` key, as "pkfp" stores it.
    pub key_fingerprint: [u8; 32],
    /// One check per bank and phase path, sorted by bank, then phase path.
    pub checks: Vec<PhaseCheck>,
    /// `.pcrsig` entries that no check found: signed for other PCRs or other PCR 11 values.
    pub unmatched: Vec<UnmatchedEntry>,
}

/// The check of one phase path in one bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseCheck {
    /// The phases measured after the sections.
    pub phase: PhasePath,
    /// The predicted PCR 11 value, which also names the bank.
    pub pcr_value: PcrValue,
    /// The PolicyPCR digest of that value, which the matching entry must sign.
    pub policy: PolicyDigest,
    /// The result of the check.
    pub outcome: Outcome,
}

/// The result of one check. `entry` is the index in the bank's `.pcrsig` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An entry for PCR 11 has the expected policy digest and a valid signature by `.pcrpkey`.
    Verified {
        /// The entry.
        entry: usize,
    },
    /// No entry for PCR 11 in this bank has the expected policy digest.
    Missing,
    /// Entries have the expected policy digest, but another key's fingerprint. `entry` is the
    /// first of them.
    KeyMismatch {
        /// The entry.
        entry: usize,
        /// The entry's "pkfp".
        fingerprint: Vec<u8>,
    },
    /// The first entry with the expected policy digest and key has an invalid signature.
    BadSignature {
        /// The entry.
        entry: usize,
        /// The error from the RSA verification.
        error: String,
    },
}

/// A `.pcrsig` entry that matches no checked phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmatchedEntry {
    /// The entry's bank.
    pub bank: PcrBank,
    /// Index in the bank's array.
    pub entry: usize,
    /// The entry's "pcrs".
    pub pcrs: Vec<u32>,
    /// The entry's "pol".
    pub policy: Vec<u8>,
}

impl Outcome {
    /// Returns the name in reports: "verified", "missing", "key-mismatch" or "bad-signature".
    pub fn name(&self) -> &'static str {
        match self {
            Self::Verified { .. } => "verified",
            Self::Missing => "missing",
            Self::KeyMismatch { .. } => "key-mismatch",
            Self::BadSignature { .. } => "bad-signature",
        }
    }
}

impl PhaseCheck {
    /// Returns the bank of the check.
    pub fn bank(&self) -> PcrBank {
        self.pcr_value.bank()
    }
}

impl PcrSigReport {
    /// Returns whether every check verified. A report without checks is not verified.
    pub fn all_verified(&self) -> bool {
        !self.checks.is_empty()
            && self
                .checks
                .iter()
                .all(|check| matches!(check.outcome, Outcome::Verified { .. }))
    }

    /// Formats the report as JSON: "verified" (bool), "profile", "pcrpkey" with "bits" and
    /// "fingerprint", "checks" (one object per bank and phase) and "unmatched_entries".
    pub fn to_json(&self) -> Value {
        let checks: Vec<Value> = self.checks.iter().map(check_json).collect();
        let unmatched: Vec<Value> = self
            .unmatched
            .iter()
            .map(|entry| {
                json!({
                    "bank": entry.bank.name(),
                    "entry": entry.entry,
                    "pcrs": entry.pcrs,
                    "pol": to_hex(&entry.policy),
                })
            })
            .collect();
        json!({
            "verified": self.all_verified(),
            "profile": self.profile,
            "pcrpkey": {
                "algorithm": "rsa",
                "bits": self.key_bits,
                "fingerprint": to_hex(&self.key_fingerprint),
            },
            "checks": checks,
            "unmatched_entries": unmatched,
        })
    }
}

fn check_json(check: &PhaseCheck) -> Value {
    let mut object = json!({
        "bank": check.bank().name(),
        "phase": check.phase.as_str(),
        "pcr": PcrIndex::KERNEL_BOOT.get(),
        "hash": check.pcr_value.to_hex(),
        "pol": to_hex(&check.policy),
        "status": check.outcome.name(),
    });
    let details = match &check.outcome {
        Outcome::Verified { entry } => json!({ "entry": entry }),
        Outcome::Missing => json!({}),
        Outcome::KeyMismatch { entry, fingerprint } => {
            json!({ "entry": entry, "pkfp": to_hex(fingerprint) })
        }
        Outcome::BadSignature { entry, error } => json!({ "entry": entry, "error": error }),
    };
    if let (Some(object), Value::Object(details)) = (object.as_object_mut(), details) {
        object.extend(details);
    }
    object
}

impl fmt::Display for PcrSigReport {
    /// Writes one block per check: bank, phase path and outcome, then the PCR 11 value, the
    /// policy digest and what went wrong, followed by the unmatched entries and a summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            ".pcrpkey: RSA {}-bit public key, fingerprint {}",
            self.key_bits,
            to_hex(&self.key_fingerprint)
        )?;
        writeln!(f, "profile:  {}", self.profile)?;

        let phase_width = self
            .checks
            .iter()
            .map(|check| check.phase.as_str().len())
            .max()
            .unwrap_or(0);
        for check in &self.checks {
            writeln!(f)?;
            write_check(f, check, phase_width, &self.key_fingerprint)?;
        }

        if !self.unmatched.is_empty() {
            writeln!(f)?;
            writeln!(f, ".pcrsig entries that match no checked phase:")?;
            for entry in &self.unmatched {
                writeln!(
                    f,
                    "  {} entry {}: pcrs {:?}, pol {}",
                    entry.bank,
                    entry.entry,
                    entry.pcrs,
                    to_hex(&entry.policy)
                )?;
            }
        }

        let verified = self
            .checks
            .iter()
            .filter(|check| matches!(check.outcome, Outcome::Verified { .. }))
            .count();
        writeln!(f)?;
        let verdict = if self.all_verified() { "PASS" } else { "FAIL" };
        writeln!(
            f,
            "{verdict}: {verified} of {} checks verified",
            self.checks.len()
        )
    }
}

fn write_check(
    f: &mut fmt::Formatter<'_>,
    check: &PhaseCheck,
    phase_width: usize,
    key_fingerprint: &[u8; 32],
) -> fmt::Result {
    let bank = check.bank();
    let status = match &check.outcome {
        Outcome::Verified { entry } => format!("verified (entry {entry})"),
        Outcome::Missing => "MISSING".to_owned(),
        Outcome::KeyMismatch { entry, .. } => format!("KEY MISMATCH (entry {entry})"),
        Outcome::BadSignature { entry, .. } => format!("BAD SIGNATURE (entry {entry})"),
    };
    writeln!(
        f,
        "{:<6}  {:<phase_width$}  {status}",
        bank.name(),
        check.phase.as_str(),
    )?;
    writeln!(f, "        PCR 11 value   {}", check.pcr_value.to_hex())?;
    writeln!(f, "        policy digest  {}", to_hex(&check.policy))?;

    match &check.outcome {
        Outcome::Verified { .. } => Ok(()),
        Outcome::Missing => writeln!(
            f,
            "        no {bank} entry for PCR 11 alone has this policy digest: the entry is \
             absent, or the PCR 11 value it signs differs from this prediction"
        ),
        Outcome::KeyMismatch { fingerprint, .. } => {
            writeln!(f, "        entry pkfp     {}", to_hex(fingerprint))?;
            writeln!(f, "        .pcrpkey       {}", to_hex(key_fingerprint))?;
            writeln!(
                f,
                "        the entry was signed by another key than the one in .pcrpkey"
            )
        }
        Outcome::BadSignature { error, .. } => writeln!(
            f,
            "        the signature does not verify with .pcrpkey (RSASSA-PKCS1-v1_5 over the \
             {bank} hash of the policy digest): {error}"
        ),
    }
}
