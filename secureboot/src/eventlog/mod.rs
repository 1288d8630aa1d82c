//! TCG event logs: parsing, PCR replay and comparison with recorded PCR values.
//!
//! The firmware logs each measurement it extends into a PCR, and Linux serves the log at
//! `/sys/kernel/security/tpm0/binary_bios_measurements`. Logs come in two formats:
//!
//! - Crypto-agile (TCG PC Client Platform Firmware Profile, TPM 2.0): the first record is an
//!   EV_NO_ACTION event in SHA-1 format whose data is the "Spec ID Event03" header, which lists
//!   the hash algorithms and their digest sizes. Every later record carries one digest per
//!   algorithm.
//! - SHA-1 only (the TPM 1.2 format, also used by some TPM 2.0 firmware and vTPMs): every record
//!   carries one SHA-1 digest and there is no Spec ID event.
//!
//! Replaying a log extends software PCRs with each record's digests, which must reproduce the
//! values the TPM holds. A bank whose digests the log lacks cannot be checked against it:
//! [`compare`] reports such PCRs as [`Outcome::Unverifiable`], never as a match.
//!
//! ```no_run
//! use appliance_secureboot::eventlog::EventLog;
//!
//! let bytes = std::fs::read("/sys/kernel/security/tpm0/binary_bios_measurements")?;
//! let log = EventLog::parse(&bytes)?;
//! let replay = log.replay();
//! for bank in &replay.banks {
//!     for (pcr, value) in &bank.pcrs {
//!         println!("{} {pcr} {}", bank.bank, value.to_hex());
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod algorithm;
mod compare;
mod describe;
mod error;
mod event_type;
mod parse;
mod replay;

use std::collections::BTreeMap;
use std::fmt;

pub use algorithm::HashAlgorithm;
pub use compare::{compare, ExplainingEvent, Outcome, PcrComparison, RecordedPcr, Unverifiable};
pub use error::EventLogError;
pub use event_type::EventType;
pub use replay::{BankReplay, PcrReplay, Replay};

use crate::pcr::PcrIndex;

/// The format of an event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// TCG_PCR_EVENT2 records after a Spec ID event, with one digest per listed algorithm.
    CryptoAgile,
    /// TCG_PCClientPCREvent records with one SHA-1 digest each.
    Sha1Only,
}

impl LogFormat {
    /// Returns the name in reports: "tcg-2.0-crypto-agile" or "tcg-1.2-sha1-only".
    pub const fn name(self) -> &'static str {
        match self {
            Self::CryptoAgile => "tcg-2.0-crypto-agile",
            Self::Sha1Only => "tcg-1.2-sha1-only",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed event log. It borrows the digests and event data from the input bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog<'a> {
    format: LogFormat,
    spec_id: Option<SpecIdEvent>,
    records: Vec<EventRecord<'a>>,
    startup_locality: Option<StartupLocality>,
    trailing_zero_bytes: usize,
}

/// One record of an event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord<'a> {
    /// Position in the log, counted from 0. Record 0 of a crypto-agile log is the Spec ID event.
    pub index: usize,
    /// Byte offset of the record in the log.
    pub offset: usize,
    /// The PCR that the record extends.
    pub pcr: PcrIndex,
    /// The event type.
    pub event_type: EventType,
    /// The digests in log order: one SHA-1 digest in a SHA-1 format record, one per algorithm
    /// in a crypto-agile record.
    pub digests: Vec<EventDigest<'a>>,
    /// The event data, which describes what was measured. Its digest is not always the
    /// record's digest: for most event types the firmware hashed other bytes.
    pub data: &'a [u8],
}

/// One digest of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventDigest<'a> {
    /// The hash algorithm.
    pub algorithm: HashAlgorithm,
    /// The digest, of the size the Spec ID event gives for the algorithm.
    pub digest: &'a [u8],
}

/// The fields of the Spec ID event (TCG_EfiSpecIDEvent) that opens a crypto-agile log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIdEvent {
    /// platformClass: 0 for clients, 1 for servers.
    pub platform_class: u32,
    /// specVersionMajor: 2 for the TPM 2.0 PC Client profile.
    pub spec_version_major: u8,
    /// specVersionMinor.
    pub spec_version_minor: u8,
    /// specErrata.
    pub spec_errata: u8,
    /// uintnSize: 1 for 32-bit UINTN, 2 for 64-bit.
    pub uintn_size: u8,
    /// The algorithms whose digests the records carry, with their sizes, in header order.
    pub algorithms: Vec<AlgorithmSize>,
    /// vendorInfo.
    pub vendor_info: Vec<u8>,
}

impl SpecIdEvent {
    fn digest_sizes(&self) -> BTreeMap<HashAlgorithm, usize> {
        self.algorithms
            .iter()
            .map(|entry| (entry.algorithm, usize::from(entry.digest_size)))
            .collect()
    }
}

/// An algorithm listed in the Spec ID event, with the size of its digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmSize {
    /// The algorithm.
    pub algorithm: HashAlgorithm,
    /// The digest size in bytes. For the algorithms in [`HashAlgorithm::KNOWN`], parsing checks
    /// that it is the size the algorithm defines.
    pub digest_size: u16,
}

/// A StartupLocality event: the TPM locality from which the firmware sent TPM2_Startup.
///
/// The TPM resets PCR 0 to zero bytes with the last byte set to that locality, so a replay of
/// PCR 0 starts from that value instead of zero. The event is an EV_NO_ACTION record in PCR 0
/// whose data is the signature "StartupLocality\0" followed by the locality byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartupLocality {
    /// Index of the record.
    pub record: usize,
    /// The locality, usually 3 or, with an H-CRTM, 4.
    pub locality: u8,
}

impl<'a> EventLog<'a> {
    /// Parses a log in either format.
    ///
    /// A log whose first record is an EV_NO_ACTION event with the "Spec ID Event03" signature is
    /// crypto-agile, and any other is SHA-1 only. Zero bytes after the last record are accepted
    /// as padding of the firmware's log area, as the Linux kernel stops reading at a record with
    /// event type 0 and event data size 0. Nothing is allocated by a size read from the log, so a
    /// corrupt size costs no memory.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EventLogError> {
        parse::parse_log(bytes)
    }

    /// Returns the format.
    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// Returns the Spec ID event, which only crypto-agile logs have.
    pub fn spec_id(&self) -> Option<&SpecIdEvent> {
        self.spec_id.as_ref()
    }

    /// Returns all records in log order, including EV_NO_ACTION records.
    pub fn records(&self) -> &[EventRecord<'a>] {
        &self.records
    }

    /// Returns the StartupLocality event, if the log has one.
    pub fn startup_locality(&self) -> Option<StartupLocality> {
        self.startup_locality
    }

    /// Returns the number of zero bytes after the last record.
    pub fn trailing_zero_bytes(&self) -> usize {
        self.trailing_zero_bytes
    }

    /// Returns the algorithms whose digests the records carry: those of the Spec ID event, or
    /// SHA-1 alone.
    pub fn algorithms(&self) -> Vec<HashAlgorithm> {
        match &self.spec_id {
            Some(spec_id) => spec_id
                .algorithms
                .iter()
                .map(|entry| entry.algorithm)
                .collect(),
            None => vec![HashAlgorithm::SHA1],
        }
    }

    /// Replays the log into every bank that this crate can compute, see [`Replay`].
    pub fn replay(&self) -> Replay {
        replay::replay(self)
    }
}

impl EventRecord<'_> {
    /// Returns the digest of `algorithm`, if the record has one.
    pub fn digest(&self, algorithm: HashAlgorithm) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|digest| digest.algorithm == algorithm)
            .map(|digest| digest.digest)
    }

    /// Returns whether the record extends its PCR. Only EV_NO_ACTION records do not.
    pub fn is_extended(&self) -> bool {
        self.event_type != EventType::EV_NO_ACTION
    }

    /// Decodes a short description from the event data of known textual events, such as the
    /// string of an EV_IPL event or the file path of a loaded image.
    ///
    /// Returns `None` when the type has no decoder here or its data does not decode. The text
    /// is cut to about 120 characters, and control characters are escaped.
    pub fn description(&self) -> Option<String> {
        describe::describe(self)
    }
}
