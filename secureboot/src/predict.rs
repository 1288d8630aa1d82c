//! Prediction of PCR 11 values, as `systemd-measure calculate` computes them in systemd 257.
//!
//! Starting from zero, systemd-stub extends PCR 11 for each measured section (see
//! [`Uki::measured_sections`]) with the digest of the section name including its NUL byte and
//! then with the digest of the loaded content (VirtualSize bytes). systemd-pcrphase then
//! extends it with the digest of each phase word.

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::error::Error;
use crate::pcr::{PcrBank, PcrIndex, PcrValue};
use crate::phase::PhasePath;
use crate::uki::Uki;

/// Parameters of a PCR 11 prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcr11Options {
    /// Banks to compute. The prediction lists them sorted and without duplicates.
    pub banks: Vec<PcrBank>,
    /// Phase paths to compute. The prediction lists them sorted and without duplicates, as
    /// systemd-measure does.
    pub phase_paths: Vec<PhasePath>,
    /// Profile that systemd-stub boots. 0 is its default.
    pub profile: u32,
}

impl Default for Pcr11Options {
    /// Returns the options that match `systemd-measure calculate` without `--bank` and
    /// `--phase`: all banks, the default phase paths and profile 0.
    fn default() -> Self {
        Self {
            banks: PcrBank::ALL.to_vec(),
            phase_paths: PhasePath::defaults(),
            profile: 0,
        }
    }
}

/// Predicted PCR 11 values for several banks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcr11Prediction {
    /// One entry per bank, sorted by bank.
    pub banks: Vec<BankPrediction>,
}

/// Predicted PCR 11 values in one bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankPrediction {
    /// The bank.
    pub bank: PcrBank,
    /// The value after systemd-stub measured the sections, before any phase.
    pub after_sections: PcrValue,
    /// The value after each phase path, sorted by path.
    pub phases: Vec<PhaseValue>,
}

/// The value of PCR 11 after the phases of one path were measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseValue {
    /// The phases measured after the sections.
    pub phase: PhasePath,
    /// The PCR value after them.
    pub value: PcrValue,
}

/// Predicts PCR 11 for booting a UKI.
///
/// Fails if the UKI's measured sections cannot be determined, see
/// [`Uki::measured_sections`].
pub fn predict_pcr11(uki: &Uki<'_>, options: &Pcr11Options) -> Result<Pcr11Prediction, Error> {
    let measured = uki.measured_sections(options.profile)?;

    let mut banks = options.banks.clone();
    banks.sort_unstable();
    banks.dedup();
    let mut phase_paths = options.phase_paths.clone();
    phase_paths.sort_unstable();
    phase_paths.dedup();

    let mut predictions = Vec::with_capacity(banks.len());
    for bank in banks {
        let mut after_sections = PcrValue::zero(bank);
        for entry in &measured {
            after_sections.measure(&entry.kind.name_event());
            after_sections.extend(&bank.digest_section(entry.data));
        }

        let phases = phase_paths
            .iter()
            .map(|path| {
                let mut value = after_sections.clone();
                for word in path.words() {
                    value.measure(word.as_bytes());
                }
                PhaseValue {
                    phase: path.clone(),
                    value,
                }
            })
            .collect();

        predictions.push(BankPrediction {
            bank,
            after_sections,
            phases,
        });
    }
    Ok(Pcr11Prediction { banks: predictions })
}

impl Pcr11Prediction {
    /// Formats the prediction as compact JSON in the shape of `systemd-measure calculate
    /// --json=short`: an object with one key per bank, each a list of objects with "phase",
    /// "pcr" and "hash".
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl Serialize for Pcr11Prediction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.banks.len()))?;
        for bank in &self.banks {
            map.serialize_entry(bank.bank.name(), &bank.phases)?;
        }
        map.end()
    }
}

impl Serialize for PhaseValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entry = serializer.serialize_struct("PhaseValue", 3)?;
        entry.serialize_field("phase", self.phase.as_str())?;
        entry.serialize_field("pcr", &PcrIndex::KERNEL_BOOT.get())?;
        entry.serialize_field("hash", &self.value.to_hex())?;
        entry.end()
    }
}
