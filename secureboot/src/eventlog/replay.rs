//! Replay of an event log into software PCRs.

use std::collections::BTreeMap;

use super::algorithm::HashAlgorithm;
use super::EventLog;
use crate::pcr::{to_hex, PcrBank, PcrIndex};

/// The PCR values that a log replays to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// One entry per bank that the log has digests for and this crate can compute, sorted by
    /// bank.
    pub banks: Vec<BankReplay>,
    /// Algorithms that the log has digests for but this crate cannot compute (SM3 and
    /// algorithms outside [`HashAlgorithm::KNOWN`]), in log order.
    pub skipped_algorithms: Vec<HashAlgorithm>,
}

/// The replayed PCRs of one bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankReplay {
    /// The bank.
    pub bank: PcrBank,
    /// Each PCR that a record extends, and PCR 0 when the log has a StartupLocality event.
    /// PCRs absent here replay to their reset value, zero bytes.
    pub pcrs: BTreeMap<PcrIndex, PcrReplay>,
}

/// The replay of one PCR in one bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrReplay {
    /// The value the replay started from: zero bytes, except for PCR 0 after a
    /// StartupLocality event, whose last byte is the locality.
    pub initial: Vec<u8>,
    /// The value after extending `initial` with the bank's digest of each record in `records`.
    pub value: Vec<u8>,
    /// Indices of the records that extended the PCR in this bank, in log order.
    pub records: Vec<usize>,
    /// Indices of records of this PCR that have no digest in this bank. If there are any,
    /// `value` is not the value the TPM holds.
    pub missing_digests: Vec<usize>,
}

impl Replay {
    /// Returns the replay of `bank`, if the log has digests for it.
    pub fn bank(&self, bank: PcrBank) -> Option<&BankReplay> {
        self.banks.iter().find(|replay| replay.bank == bank)
    }
}

impl BankReplay {
    /// Returns the value that the log replays `pcr` to, or `None` if some record of the PCR
    /// has no digest in this bank.
    ///
    /// A PCR that no record extends replays to its reset value, zero bytes.
    pub fn value(&self, pcr: PcrIndex) -> Option<Vec<u8>> {
        match self.pcrs.get(&pcr) {
            Some(replay) if replay.is_complete() => Some(replay.value.clone()),
            Some(_) => None,
            None => Some(vec![0; self.bank.digest_len()]),
        }
    }
}

impl PcrReplay {
    /// Returns whether every record of the PCR had a digest in this bank, so that `value` is
    /// what the TPM holds if the log is complete and true.
    pub fn is_complete(&self) -> bool {
        self.missing_digests.is_empty()
    }

    /// Returns the value in lower-case hexadecimal.
    pub fn to_hex(&self) -> String {
        to_hex(&self.value)
    }
}

pub(super) fn replay(log: &EventLog<'_>) -> Replay {
    let mut banks = Vec::new();
    let mut skipped_algorithms = Vec::new();
    for algorithm in log.algorithms() {
        match algorithm.bank() {
            Some(bank) => banks.push(replay_bank(log, bank)),
            None => skipped_algorithms.push(algorithm),
        }
    }
    banks.sort_unstable_by_key(|replay| replay.bank);
    Replay {
        banks,
        skipped_algorithms,
    }
}

fn replay_bank(log: &EventLog<'_>, bank: PcrBank) -> BankReplay {
    let algorithm = HashAlgorithm::from(bank);
    let mut pcrs: BTreeMap<PcrIndex, PcrReplay> = BTreeMap::new();

    if let Some(startup) = log.startup_locality() {
        let mut initial = vec![0; bank.digest_len()];
        if let Some(last) = initial.last_mut() {
            *last = startup.locality;
        }
        pcrs.insert(PcrIndex::new(0), PcrReplay::starting_at(initial));
    }

    for record in log.records().iter().filter(|record| record.is_extended()) {
        let replay = pcrs
            .entry(record.pcr)
            .or_insert_with(|| PcrReplay::starting_at(vec![0; bank.digest_len()]));
        match record.digest(algorithm) {
            Some(digest) => {
                replay.value = extend(bank, &replay.value, digest);
                replay.records.push(record.index);
            }
            None => replay.missing_digests.push(record.index),
        }
    }

    BankReplay { bank, pcrs }
}

impl PcrReplay {
    fn starting_at(initial: Vec<u8>) -> Self {
        Self {
            value: initial.clone(),
            initial,
            records: Vec::new(),
            missing_digests: Vec::new(),
        }
    }
}

/// Computes TPM2_PCR_Extend: the hash of the old value followed by the digest.
fn extend(bank: PcrBank, value: &[u8], digest: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(value.len() + digest.len());
    input.extend_from_slice(value);
    input.extend_from_slice(digest);
    bank.digest(&input)
}
