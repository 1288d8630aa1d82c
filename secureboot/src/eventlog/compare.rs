//! Comparison of a replayed log with PCR values read from a TPM.

use std::fmt;

use super::algorithm::HashAlgorithm;
use super::event_type::EventType;
use super::replay::Replay;
use super::{EventLog, LogFormat};
use crate::pcr::PcrIndex;

/// PCRs 17 to 22 belong to the dynamic root of trust for measurement (DRTM).
const DRTM_PCRS: std::ops::RangeInclusive<u32> = 17..=22;

/// A PCR value read from the TPM, for example with `tpm2_pcrread`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPcr {
    /// The bank's hash algorithm.
    pub algorithm: HashAlgorithm,
    /// The PCR.
    pub pcr: PcrIndex,
    /// The value. A value whose length differs from the bank's digest size is a mismatch.
    pub value: Vec<u8>,
}

/// The result of comparing one recorded PCR value with the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrComparison {
    /// The bank's hash algorithm.
    pub algorithm: HashAlgorithm,
    /// The PCR.
    pub pcr: PcrIndex,
    /// The result.
    pub outcome: Outcome,
}

/// Whether the log accounts for a recorded PCR value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The log replays to the recorded value.
    Match {
        /// The value.
        value: Vec<u8>,
    },
    /// The log replays to another value: it is incomplete, or something was measured that the
    /// log does not show.
    Mismatch {
        /// The recorded value, which the TPM holds.
        expected: Vec<u8>,
        /// The value that the log replays to.
        actual: Vec<u8>,
        /// The records that extended the PCR, in log order, which the replay used.
        events: Vec<ExplainingEvent>,
    },
    /// The log cannot confirm or refute the recorded value.
    Unverifiable(Unverifiable),
}

impl Outcome {
    /// Returns the name in reports: "match", "mismatch" or "unverifiable".
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Match { .. } => "match",
            Self::Mismatch { .. } => "mismatch",
            Self::Unverifiable(_) => "unverifiable",
        }
    }
}

/// A record that contributed to a mismatching PCR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainingEvent {
    /// Index of the record in the log.
    pub record: usize,
    /// Byte offset of the record in the log.
    pub offset: usize,
    /// The event type.
    pub event_type: EventType,
    /// The record's digest in the compared bank.
    pub digest: Vec<u8>,
    /// A description decoded from the event data, see
    /// [`EventRecord::description`](super::EventRecord::description).
    pub description: Option<String>,
}

/// The reason that the log can neither confirm nor refute a recorded PCR value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unverifiable {
    /// The log has no digests of the algorithm, as a SHA-1-only log has no SHA-256 digests.
    NoDigests {
        /// The algorithm.
        algorithm: HashAlgorithm,
        /// The log's format.
        format: LogFormat,
    },
    /// The log has digests of the algorithm, but this crate cannot compute it (SM3 and
    /// algorithms outside [`HashAlgorithm::KNOWN`]).
    UnsupportedAlgorithm {
        /// The algorithm.
        algorithm: HashAlgorithm,
    },
    /// Some records of the PCR have no digest of the algorithm.
    MissingDigests {
        /// The algorithm.
        algorithm: HashAlgorithm,
        /// The PCR.
        pcr: PcrIndex,
        /// Indices of the records without one.
        records: Vec<usize>,
    },
    /// The PCR is one of the DRTM PCRs 17 to 22. The TPM resets them to all 0xff bytes at
    /// startup and to zero at a dynamic launch, and the firmware log records neither.
    DynamicPcr {
        /// The PCR.
        pcr: PcrIndex,
    },
}

impl fmt::Display for Unverifiable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDigests { algorithm, format } => write!(
                f,
                "the log ({format}) has no {algorithm} digests, so it cannot vouch for any \
                 {algorithm} PCR value"
            ),
            Self::UnsupportedAlgorithm { algorithm } => write!(
                f,
                "the log has {algorithm} digests, but this program cannot compute {algorithm} \
                 hashes to replay them"
            ),
            Self::MissingDigests {
                algorithm,
                pcr,
                records,
            } => {
                let list: Vec<String> = records.iter().map(usize::to_string).collect();
                write!(
                    f,
                    "record(s) {} extend PCR {pcr} but have no {algorithm} digest",
                    list.join(", ")
                )
            }
            Self::DynamicPcr { pcr } => write!(
                f,
                "PCR {pcr} belongs to the dynamic root of trust (PCRs 17 to 22), whose reset \
                 value and dynamic launch this firmware log does not record"
            ),
        }
    }
}

/// Compares recorded PCR values with the replay of `log`, one result per recorded value in
/// the given order.
///
/// `replay` must be `log.replay()`. A PCR that no record extends replays to zero bytes, and
/// PCR 0 starts from the StartupLocality value where the log has one. A PCR is never reported
/// as matching unless every record that extends it carries a digest of the compared bank.
pub fn compare(
    log: &EventLog<'_>,
    replay: &Replay,
    recorded: &[RecordedPcr],
) -> Vec<PcrComparison> {
    recorded
        .iter()
        .map(|entry| PcrComparison {
            algorithm: entry.algorithm,
            pcr: entry.pcr,
            outcome: compare_one(log, replay, entry),
        })
        .collect()
}

fn compare_one(log: &EventLog<'_>, replay: &Replay, recorded: &RecordedPcr) -> Outcome {
    let RecordedPcr {
        algorithm,
        pcr,
        value,
    } = recorded;
    let (algorithm, pcr) = (*algorithm, *pcr);

    if DRTM_PCRS.contains(&pcr.get()) {
        return Outcome::Unverifiable(Unverifiable::DynamicPcr { pcr });
    }
    if !log.algorithms().contains(&algorithm) {
        return Outcome::Unverifiable(Unverifiable::NoDigests {
            algorithm,
            format: log.format(),
        });
    }
    let Some(bank) = algorithm.bank().and_then(|bank| replay.bank(bank)) else {
        return Outcome::Unverifiable(Unverifiable::UnsupportedAlgorithm { algorithm });
    };
    let Some(actual) = bank.value(pcr) else {
        let records = bank
            .pcrs
            .get(&pcr)
            .map(|replayed| replayed.missing_digests.clone())
            .unwrap_or_default();
        return Outcome::Unverifiable(Unverifiable::MissingDigests {
            algorithm,
            pcr,
            records,
        });
    };

    if actual == *value {
        return Outcome::Match { value: actual };
    }
    Outcome::Mismatch {
        expected: value.clone(),
        actual,
        events: explaining_events(log, algorithm, pcr),
    }
}

/// Lists the records that determine the replayed value: those that extend the PCR, and for
/// PCR 0 the StartupLocality event that sets its initial value.
fn explaining_events(
    log: &EventLog<'_>,
    algorithm: HashAlgorithm,
    pcr: PcrIndex,
) -> Vec<ExplainingEvent> {
    let startup_record = log.startup_locality().map(|startup| startup.record);
    log.records()
        .iter()
        .filter(|record| record.pcr == pcr)
        .filter(|record| record.is_extended() || Some(record.index) == startup_record)
        .map(|record| ExplainingEvent {
            record: record.index,
            offset: record.offset,
            event_type: record.event_type,
            digest: record
                .digest(algorithm)
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
            description: record.description(),
        })
        .collect()
}
