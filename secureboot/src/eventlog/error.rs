//! Errors from parsing an event log.

use super::algorithm::HashAlgorithm;

/// An error from parsing an event log.
///
/// Records are numbered from 0 in log order, and record 0 of a crypto-agile log is its Spec ID
/// event. Offsets are byte offsets from the start of the log. `offset` is where the record
/// starts, and other offsets point at the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventLogError {
    /// The log has no bytes.
    #[error(
        "the event log is empty (0 bytes); copy it from \
         /sys/kernel/security/tpm0/binary_bios_measurements as root, on a machine whose firmware \
         has a TPM and measured boot enabled"
    )]
    Empty,

    /// The log has bytes, but all of them are zero.
    #[error(
        "the event log has {len} bytes, all zero, so it contains no records; the firmware \
         reserved the log area but logged nothing, or the copy failed"
    )]
    AllZero {
        /// Length of the log.
        len: usize,
    },

    /// A fixed-size field of a record ends past the end of the log.
    #[error(
        "record {record} at offset {offset:#x}: the {field} needs bytes {start:#x}..{end:#x}, \
         but the log has only {log_len:#x} bytes; the log is truncated, so copy it again"
    )]
    Truncated {
        /// Index of the record.
        record: usize,
        /// Offset of the record.
        offset: usize,
        /// The field that does not fit.
        field: &'static str,
        /// Offset where the field starts.
        start: usize,
        /// Offset where the field ends (exclusive).
        end: usize,
        /// Length of the log.
        log_len: usize,
    },

    /// A record's event data size runs past the end of the log.
    #[error(
        "record {record} at offset {offset:#x}: the event data size at offset {field_offset:#x} \
         is {size} bytes, but only {available} bytes follow it; the size field is corrupt or the \
         log is truncated"
    )]
    EventSize {
        /// Index of the record.
        record: usize,
        /// Offset of the record.
        offset: usize,
        /// Offset of the size field.
        field_offset: usize,
        /// The event data size as recorded.
        size: u32,
        /// Bytes left in the log after the size field.
        available: usize,
    },

    /// A crypto-agile record declares more digests than the Spec ID event lists algorithms.
    #[error(
        "record {record} at offset {offset:#x}: the digest count at offset {field_offset:#x} is \
         {count}, but the Spec ID event lists only {algorithms} algorithm(s) and each may occur \
         once; the record is corrupt"
    )]
    DigestCount {
        /// Index of the record.
        record: usize,
        /// Offset of the record.
        offset: usize,
        /// Offset of the count field.
        field_offset: usize,
        /// The digest count as recorded.
        count: u32,
        /// Number of algorithms in the Spec ID event.
        algorithms: usize,
    },

    /// A crypto-agile record contains a digest of an algorithm that the Spec ID event does not
    /// list, so the digest's size and the offset of everything after it are unknown.
    #[error(
        "record {record} at offset {offset:#x}: the digest at offset {field_offset:#x} uses \
         {algorithm}, which the Spec ID event does not list, so its size is unknown and the rest \
         of the log cannot be read; the record or the Spec ID event is corrupt"
    )]
    UnknownAlgorithm {
        /// Index of the record.
        record: usize,
        /// Offset of the record.
        offset: usize,
        /// Offset of the digest's algorithm identifier.
        field_offset: usize,
        /// The algorithm.
        algorithm: HashAlgorithm,
    },

    /// A crypto-agile record contains two digests of one algorithm.
    #[error(
        "record {record} at offset {offset:#x}: a second {algorithm} digest starts at offset \
         {field_offset:#x}, so the PCR extension is ambiguous; the record is corrupt"
    )]
    DuplicateDigest {
        /// Index of the record.
        record: usize,
        /// Offset of the record.
        offset: usize,
        /// Offset of the second digest's algorithm identifier.
        field_offset: usize,
        /// The algorithm.
        algorithm: HashAlgorithm,
    },

    /// A field of the Spec ID event ends past the end of the event's data.
    #[error(
        "record 0 at offset 0x0: the Spec ID event's {field} needs bytes {start:#x}..{end:#x}, \
         but its event data ends at {data_end:#x}; the Spec ID event is corrupt"
    )]
    SpecIdTruncated {
        /// The field that does not fit.
        field: &'static str,
        /// Offset where the field starts.
        start: usize,
        /// Offset where the field ends (exclusive).
        end: usize,
        /// Offset where the Spec ID event's data ends.
        data_end: usize,
    },

    /// The Spec ID event lists no algorithms.
    #[error(
        "record 0 at offset 0x0: the Spec ID event lists 0 algorithms, but a crypto-agile log \
         needs at least one to size its digests; the Spec ID event is corrupt"
    )]
    SpecIdNoAlgorithms,

    /// The Spec ID event lists an algorithm twice.
    #[error(
        "record 0 at offset 0x0: the Spec ID event lists {algorithm} twice (second entry at \
         offset {field_offset:#x}); the Spec ID event is corrupt"
    )]
    SpecIdDuplicateAlgorithm {
        /// Offset of the second entry.
        field_offset: usize,
        /// The algorithm.
        algorithm: HashAlgorithm,
    },

    /// The Spec ID event gives a digest size that is 0, or that differs from the size the
    /// algorithm defines.
    #[error(
        "record 0 at offset 0x0: the Spec ID event gives {algorithm} a digest size of {size} \
         bytes at offset {field_offset:#x}, expected {expected}; the Spec ID event is corrupt"
    )]
    SpecIdDigestSize {
        /// Offset of the size field.
        field_offset: usize,
        /// The algorithm.
        algorithm: HashAlgorithm,
        /// The size as recorded.
        size: u16,
        /// The size the algorithm defines, or "at least 1 byte" for an unknown algorithm.
        expected: String,
    },

    /// A StartupLocality event's data is not 17 bytes: the signature and one locality byte.
    #[error(
        "record {record} at offset {offset:#x}: the StartupLocality event has {size} bytes of \
         event data, expected 17 (the 16-byte signature and the locality); the record is corrupt"
    )]
    StartupLocalitySize {
        /// Index of the record.
        record: usize,
        /// Offset of the record.
        offset: usize,
        /// The event data size.
        size: usize,
    },

    /// The log contains a second StartupLocality event.
    #[error(
        "record {record} at offset {offset:#x}: second StartupLocality event (the first is \
         record {first}), but PCR 0 has one initial value; the log is corrupt"
    )]
    DuplicateStartupLocality {
        /// Index of the second event.
        record: usize,
        /// Offset of the second event.
        offset: usize,
        /// Index of the first event.
        first: usize,
    },
}
