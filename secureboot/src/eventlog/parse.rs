//! Binary parsing of both event log formats.
//!
//! All integers are little-endian. A SHA-1 format record (TCG_PCClientPCREvent) is:
//!
//! ```text
//! u32 pcrIndex, u32 eventType, u8 digest[20], u32 eventDataSize, u8 event[eventDataSize]
//! ```
//!
//! A crypto-agile record (TCG_PCR_EVENT2) replaces the digest with a list:
//!
//! ```text
//! u32 pcrIndex, u32 eventType, u32 count, { u16 algorithmId, u8 digest[size] } x count,
//! u32 eventSize, u8 event[eventSize]
//! ```
//!
//! where each digest's size comes from the Spec ID event that opens a crypto-agile log.

use std::collections::{BTreeMap, BTreeSet};

use super::algorithm::HashAlgorithm;
use super::error::EventLogError;
use super::event_type::EventType;
use super::{
    AlgorithmSize, EventDigest, EventLog, EventRecord, LogFormat, SpecIdEvent, StartupLocality,
};
use crate::pcr::PcrIndex;

/// The signature that starts the event data of the Spec ID event of a crypto-agile log.
pub(super) const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";

/// The signature that starts the event data of a StartupLocality event.
pub(super) const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";

const SHA1_DIGEST_LEN: usize = 20;

pub(super) fn parse_log(bytes: &[u8]) -> Result<EventLog<'_>, EventLogError> {
    if bytes.is_empty() {
        return Err(EventLogError::Empty);
    }
    // Firmware hands over a log area that may be longer than the log, and the rest is zero.
    // Everything from `content_end` on is such padding.
    let Some(last_nonzero) = bytes.iter().rposition(|&byte| byte != 0) else {
        return Err(EventLogError::AllZero { len: bytes.len() });
    };
    let content_end = last_nonzero + 1;

    let mut reader = Reader {
        bytes,
        position: 0,
        record: 0,
        record_offset: 0,
    };
    let first = reader.sha1_record()?;
    let spec_id = if first.event_type == EventType::EV_NO_ACTION
        && first.data.starts_with(SPEC_ID_SIGNATURE)
    {
        Some(parse_spec_id(&first, reader.position)?)
    } else {
        None
    };

    let mut log = EventLog {
        format: if spec_id.is_some() {
            LogFormat::CryptoAgile
        } else {
            LogFormat::Sha1Only
        },
        spec_id,
        records: Vec::new(),
        startup_locality: None,
        trailing_zero_bytes: 0,
    };
    add_record(&mut log, first)?;

    let digest_sizes = log.spec_id.as_ref().map(SpecIdEvent::digest_sizes);
    while reader.position < bytes.len() {
        if reader.position >= content_end {
            log.trailing_zero_bytes = bytes.len() - reader.position;
            break;
        }
        reader.start_record(log.records.len());
        let record = match &digest_sizes {
            Some(sizes) => reader.crypto_agile_record(sizes)?,
            None => reader.sha1_record()?,
        };
        add_record(&mut log, record)?;
    }
    Ok(log)
}

/// Appends a record, and takes PCR 0's initial value from it if it is a StartupLocality event.
fn add_record<'a>(log: &mut EventLog<'a>, record: EventRecord<'a>) -> Result<(), EventLogError> {
    let is_startup_locality = record.event_type == EventType::EV_NO_ACTION
        && record.pcr == PcrIndex::new(0)
        && record.data.starts_with(STARTUP_LOCALITY_SIGNATURE);
    if is_startup_locality {
        if let Some(first) = &log.startup_locality {
            return Err(EventLogError::DuplicateStartupLocality {
                record: record.index,
                offset: record.offset,
                first: first.record,
            });
        }
        let &[locality] = &record.data[STARTUP_LOCALITY_SIGNATURE.len()..] else {
            return Err(EventLogError::StartupLocalitySize {
                record: record.index,
                offset: record.offset,
                size: record.data.len(),
            });
        };
        log.startup_locality = Some(StartupLocality {
            record: record.index,
            locality,
        });
    }
    log.records.push(record);
    Ok(())
}

/// Reads the Spec ID event's fields from the first record's event data, which ends at
/// `data_end` in the log.
fn parse_spec_id(record: &EventRecord<'_>, data_end: usize) -> Result<SpecIdEvent, EventLogError> {
    let mut reader = SpecIdReader {
        data: record.data,
        position: 0,
        data_start: data_end - record.data.len(),
    };
    reader.take(SPEC_ID_SIGNATURE.len(), "signature")?;
    let platform_class = reader.u32("platform class")?;
    let version = reader.take(4, "version and UINTN size")?;
    let (spec_version_minor, spec_version_major, spec_errata, uintn_size) =
        (version[0], version[1], version[2], version[3]);

    let count = reader.u32("algorithm count")?;
    if count == 0 {
        return Err(EventLogError::SpecIdNoAlgorithms);
    }
    // Check the whole list up front, so that a corrupt count fails here with its full extent.
    let list_len = usize::try_from(count)
        .unwrap_or(usize::MAX)
        .saturating_mul(4);
    reader.check(list_len, "algorithm list")?;

    let mut algorithms: Vec<AlgorithmSize> = Vec::new();
    let mut listed = BTreeSet::new();
    for _ in 0..count {
        let field_offset = reader.offset();
        let algorithm = HashAlgorithm::new(reader.u16("algorithm identifier")?);
        let size = reader.u16("digest size")?;
        if !listed.insert(algorithm) {
            return Err(EventLogError::SpecIdDuplicateAlgorithm {
                field_offset,
                algorithm,
            });
        }
        let expected = match algorithm.standard_digest_len() {
            Some(len) if usize::from(size) != len => Some(len.to_string()),
            None if size == 0 => Some("at least 1 byte".to_owned()),
            _ => None,
        };
        if let Some(expected) = expected {
            return Err(EventLogError::SpecIdDigestSize {
                field_offset: field_offset + 2,
                algorithm,
                size,
                expected,
            });
        }
        algorithms.push(AlgorithmSize {
            algorithm,
            digest_size: size,
        });
    }

    let vendor_info_size = reader.take(1, "vendor info size")?[0];
    let vendor_info = reader
        .take(usize::from(vendor_info_size), "vendor info")?
        .to_vec();

    Ok(SpecIdEvent {
        platform_class,
        spec_version_major,
        spec_version_minor,
        spec_errata,
        uintn_size,
        algorithms,
        vendor_info,
    })
}

/// A position in the log and the record being read, for error messages.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    record: usize,
    record_offset: usize,
}

impl<'a> Reader<'a> {
    fn start_record(&mut self, index: usize) {
        self.record = index;
        self.record_offset = self.position;
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], EventLogError> {
        let start = self.position;
        let end = start.saturating_add(len);
        let Some(slice) = self.bytes.get(start..end) else {
            return Err(EventLogError::Truncated {
                record: self.record,
                offset: self.record_offset,
                field,
                start,
                end,
                log_len: self.bytes.len(),
            });
        };
        self.position = end;
        Ok(slice)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, EventLogError> {
        let bytes = self.take(2, field)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, EventLogError> {
        let bytes = self.take(4, field)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Reads the event data size and the event data.
    fn event_data(&mut self) -> Result<&'a [u8], EventLogError> {
        let field_offset = self.position;
        let size = self.u32("event data size")?;
        let available = self.bytes.len() - self.position;
        match usize::try_from(size) {
            Ok(len) if len <= available => self.take(len, "event data"),
            _ => Err(EventLogError::EventSize {
                record: self.record,
                offset: self.record_offset,
                field_offset,
                size,
                available,
            }),
        }
    }

    fn sha1_record(&mut self) -> Result<EventRecord<'a>, EventLogError> {
        let pcr = PcrIndex::new(self.u32("PCR index")?);
        let event_type = EventType::new(self.u32("event type")?);
        let digest = self.take(SHA1_DIGEST_LEN, "SHA-1 digest")?;
        let data = self.event_data()?;
        Ok(EventRecord {
            index: self.record,
            offset: self.record_offset,
            pcr,
            event_type,
            digests: vec![EventDigest {
                algorithm: HashAlgorithm::SHA1,
                digest,
            }],
            data,
        })
    }

    fn crypto_agile_record(
        &mut self,
        digest_sizes: &BTreeMap<HashAlgorithm, usize>,
    ) -> Result<EventRecord<'a>, EventLogError> {
        let pcr = PcrIndex::new(self.u32("PCR index")?);
        let event_type = EventType::new(self.u32("event type")?);

        let count_offset = self.position;
        let count = self.u32("digest count")?;
        if usize::try_from(count).map_or(true, |count| count > digest_sizes.len()) {
            return Err(EventLogError::DigestCount {
                record: self.record,
                offset: self.record_offset,
                field_offset: count_offset,
                count,
                algorithms: digest_sizes.len(),
            });
        }

        let mut digests = Vec::new();
        let mut seen = BTreeSet::new();
        for _ in 0..count {
            let field_offset = self.position;
            let algorithm = HashAlgorithm::new(self.u16("digest algorithm identifier")?);
            let Some(&size) = digest_sizes.get(&algorithm) else {
                return Err(EventLogError::UnknownAlgorithm {
                    record: self.record,
                    offset: self.record_offset,
                    field_offset,
                    algorithm,
                });
            };
            if !seen.insert(algorithm) {
                return Err(EventLogError::DuplicateDigest {
                    record: self.record,
                    offset: self.record_offset,
                    field_offset,
                    algorithm,
                });
            }
            let digest = self.take(size, "digest")?;
            digests.push(EventDigest { algorithm, digest });
        }

        let data = self.event_data()?;
        Ok(EventRecord {
            index: self.record,
            offset: self.record_offset,
            pcr,
            event_type,
            digests,
            data,
        })
    }
}

/// A position inside the Spec ID event's data.
struct SpecIdReader<'a> {
    data: &'a [u8],
    position: usize,
    /// Offset of the event data in the log.
    data_start: usize,
}

impl<'a> SpecIdReader<'a> {
    fn offset(&self) -> usize {
        self.data_start + self.position
    }

    fn check(&self, len: usize, field: &'static str) -> Result<(), EventLogError> {
        if len <= self.data.len() - self.position {
            return Ok(());
        }
        Err(EventLogError::SpecIdTruncated {
            field,
            start: self.offset(),
            end: self.offset().saturating_add(len),
            data_end: self.data_start + self.data.len(),
        })
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], EventLogError> {
        self.check(len, field)?;
        let slice = &self.data[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, EventLogError> {
        let bytes = self.take(2, field)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, EventLogError> {
        let bytes = self.take(4, field)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}
