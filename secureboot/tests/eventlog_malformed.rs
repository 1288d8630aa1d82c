//! Malformed event logs: each kind of damage yields its own error, which names the record and
//! the byte offset, and no input panics.

#[path = "support/eventlog_writer.rs"]
mod eventlog_writer;

use appliance_secureboot::eventlog::{
    compare, EventLog, EventLogError, HashAlgorithm, RecordedPcr,
};
use appliance_secureboot::PcrIndex;
use eventlog_writer::*;

fn parse_error(bytes: &[u8]) -> EventLogError {
    EventLog::parse(bytes).expect_err("log must be rejected")
}

/// Builds a crypto-agile log whose last record (index 2) extends PCR 4, so that every prefix of
/// that record contains a non-zero byte and cannot pass for zero padding.
fn two_event_log() -> LogWriter {
    LogWriter::crypto_agile(&[(SHA1, 20), (SHA256, 32)])
        .measure(0, EV_S_CRTM_VERSION, &utf16z("fw 1.0"))
        .measure(
            4,
            EV_EFI_ACTION,
            b"Calling EFI Application from Boot Option",
        )
}

/// Returns the offset of the event data size field of `two_event_log`'s last record.
fn last_event_size_offset(writer: &LogWriter) -> usize {
    // PCR index, event type, count, then sha1 and sha256 digests with their identifiers.
    writer.record_offsets()[2] + 12 + (2 + 20) + (2 + 32)
}

#[test]
fn empty_log() {
    let error = parse_error(&[]);

    assert_eq!(error, EventLogError::Empty);
    assert!(error.to_string().contains("empty"), "{error}");
}

#[test]
fn all_zero_log() {
    assert_eq!(parse_error(&[0; 100]), EventLogError::AllZero { len: 100 });
}

#[test]
fn truncated_first_record() {
    let bytes = LogWriter::sha1_only()
        .measure(0, EV_S_CRTM_VERSION, b"v1")
        .build();

    let error = parse_error(&bytes[..10]);

    assert_eq!(
        error,
        EventLogError::Truncated {
            record: 0,
            offset: 0,
            field: "SHA-1 digest",
            start: 8,
            end: 28,
            log_len: 10,
        }
    );
    let message = error.to_string();
    assert!(message.starts_with("record 0 at offset 0x0: "), "{message}");
}

#[test]
fn truncated_last_record_every_cut() {
    let writer = two_event_log();
    let bytes = writer.bytes();
    let start = writer.record_offsets()[2];

    for cut in start + 1..bytes.len() {
        let error = parse_error(&bytes[..cut]);
        match error {
            EventLogError::Truncated {
                record,
                offset,
                log_len,
                ..
            } => {
                assert_eq!((record, offset, log_len), (2, start, cut), "cut at {cut}");
            }
            EventLogError::EventSize { record, offset, .. } => {
                assert_eq!((record, offset), (2, start), "cut at {cut}");
            }
            other => panic!("cut at {cut}: unexpected {other:?}"),
        }
    }
}

#[test]
fn truncated_sha1_only_log_every_cut() {
    let writer = LogWriter::sha1_only()
        .measure(0, EV_S_CRTM_VERSION, b"v1")
        .measure(
            4,
            EV_EFI_ACTION,
            b"Calling EFI Application from Boot Option",
        );
    let bytes = writer.bytes();
    let start = writer.record_offsets()[1];

    for cut in start + 1..bytes.len() {
        let error = parse_error(&bytes[..cut]);
        let (record, offset) = match error {
            EventLogError::Truncated { record, offset, .. }
            | EventLogError::EventSize { record, offset, .. } => (record, offset),
            other => panic!("cut at {cut}: unexpected {other:?}"),
        };
        assert_eq!((record, offset), (1, start), "cut at {cut}");
    }
}

#[test]
fn event_size_past_end() {
    let writer = two_event_log();
    let size_offset = last_event_size_offset(&writer);
    let mut bytes = writer.bytes().to_vec();
    let available = bytes.len() - size_offset - 4;

    for size in [to_u32(available) + 1, u32::MAX] {
        bytes[size_offset..size_offset + 4].copy_from_slice(&size.to_le_bytes());

        let error = parse_error(&bytes);

        assert_eq!(
            error,
            EventLogError::EventSize {
                record: 2,
                offset: writer.record_offsets()[2],
                field_offset: size_offset,
                size,
                available,
            }
        );
    }
}

#[test]
fn digest_count_too_large() {
    let writer = two_event_log();
    let count_offset = writer.record_offsets()[2] + 8;
    let mut bytes = writer.bytes().to_vec();

    for count in [3, u32::MAX] {
        bytes[count_offset..count_offset + 4].copy_from_slice(&count.to_le_bytes());

        let error = parse_error(&bytes);

        assert_eq!(
            error,
            EventLogError::DigestCount {
                record: 2,
                offset: writer.record_offsets()[2],
                field_offset: count_offset,
                count,
                algorithms: 2,
            }
        );
    }
}

#[test]
fn digests_past_end() {
    let mut writer = two_event_log();
    // Declares two digests but ends inside the second one.
    let mut record = crypto_agile_record(
        4,
        EV_SEPARATOR,
        &[(SHA1, vec![1; 20]), (SHA256, vec![2; 32])],
        &[0; 4],
    );
    record.truncate(12 + 22 + 2 + 10);
    let start = writer.bytes().len();
    writer.push(record);

    let error = parse_error(writer.bytes());

    assert_eq!(
        error,
        EventLogError::Truncated {
            record: 3,
            offset: start,
            field: "digest",
            start: start + 12 + 22 + 2,
            end: start + 12 + 22 + 2 + 32,
            log_len: start + 46,
        }
    );
}

#[test]
fn unknown_algorithm_without_header_size() {
    let mut writer = two_event_log();
    let start = writer.bytes().len();
    writer.push(crypto_agile_record(
        4,
        EV_SEPARATOR,
        &[(SHA1, vec![1; 20]), (SM3_256, vec![2; 32])],
        &[0; 4],
    ));

    let error = parse_error(writer.bytes());

    assert_eq!(
        error,
        EventLogError::UnknownAlgorithm {
            record: 3,
            offset: start,
            field_offset: start + 12 + 22,
            algorithm: HashAlgorithm::SM3_256,
        }
    );
    assert!(error.to_string().contains("uses sm3_256"), "{error}");
}

#[test]
fn duplicate_digest() {
    let mut writer = two_event_log();
    let start = writer.bytes().len();
    writer.push(crypto_agile_record(
        4,
        EV_SEPARATOR,
        &[(SHA1, vec![1; 20]), (SHA1, vec![2; 20])],
        &[0; 4],
    ));

    let error = parse_error(writer.bytes());

    assert_eq!(
        error,
        EventLogError::DuplicateDigest {
            record: 3,
            offset: start,
            field_offset: start + 12 + 22,
            algorithm: HashAlgorithm::SHA1,
        }
    );
}

fn log_with_spec_id(data: &[u8]) -> Vec<u8> {
    sha1_record(0, EV_NO_ACTION, &[0; 20], data)
}

/// Offset of the Spec ID event's data in the log: after the 32-byte SHA-1 format header.
const SPEC_ID_DATA: usize = 32;
/// Offset of the first algorithm entry: after the signature, platform class, version bytes and
/// algorithm count.
const FIRST_ALGORITHM: usize = SPEC_ID_DATA + 16 + 4 + 4 + 4;

#[test]
fn spec_id_without_algorithms() {
    let bytes = log_with_spec_id(&spec_id_data(&[], b""));

    assert_eq!(parse_error(&bytes), EventLogError::SpecIdNoAlgorithms);
}

#[test]
fn spec_id_algorithm_count_past_end() {
    let mut data = spec_id_data(&[(SHA256, 32)], b"");
    data[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    let bytes = log_with_spec_id(&data);

    let error = parse_error(&bytes);

    assert_eq!(
        error,
        EventLogError::SpecIdTruncated {
            field: "algorithm list",
            start: FIRST_ALGORITHM,
            end: FIRST_ALGORITHM + u32::MAX as usize * 4,
            data_end: bytes.len(),
        }
    );
}

#[test]
fn spec_id_vendor_info_past_end() {
    let mut data = spec_id_data(&[(SHA256, 32)], b"vendor");
    let size_index = data.len() - 7;
    data[size_index] = 200;
    let bytes = log_with_spec_id(&data);

    let error = parse_error(&bytes);

    assert_eq!(
        error,
        EventLogError::SpecIdTruncated {
            field: "vendor info",
            start: FIRST_ALGORITHM + 4 + 1,
            end: FIRST_ALGORITHM + 4 + 1 + 200,
            data_end: bytes.len(),
        }
    );
}

#[test]
fn spec_id_wrong_digest_size() {
    let bytes = log_with_spec_id(&spec_id_data(&[(SHA1, 20), (SHA256, 20)], b""));

    let error = parse_error(&bytes);

    assert_eq!(
        error,
        EventLogError::SpecIdDigestSize {
            field_offset: FIRST_ALGORITHM + 4 + 2,
            algorithm: HashAlgorithm::SHA256,
            size: 20,
            expected: "32".to_owned(),
        }
    );
}

#[test]
fn spec_id_unknown_algorithm_zero_size() {
    let bytes = log_with_spec_id(&spec_id_data(&[(0x00b0, 0)], b""));

    let error = parse_error(&bytes);

    assert_eq!(
        error,
        EventLogError::SpecIdDigestSize {
            field_offset: FIRST_ALGORITHM + 2,
            algorithm: HashAlgorithm::new(0x00b0),
            size: 0,
            expected: "at least 1 byte".to_owned(),
        }
    );
}

#[test]
fn spec_id_duplicate_algorithm() {
    let bytes = log_with_spec_id(&spec_id_data(&[(SHA256, 32), (SHA256, 32)], b""));

    let error = parse_error(&bytes);

    assert_eq!(
        error,
        EventLogError::SpecIdDuplicateAlgorithm {
            field_offset: FIRST_ALGORITHM + 4,
            algorithm: HashAlgorithm::SHA256,
        }
    );
}

#[test]
fn startup_locality_wrong_size() {
    let mut writer = LogWriter::crypto_agile(&[(SHA256, 32)]);
    let start = writer.bytes().len();
    writer.push(crypto_agile_record(
        0,
        EV_NO_ACTION,
        &[(SHA256, vec![0; 32])],
        b"StartupLocality\0\x03\x00",
    ));

    let error = parse_error(writer.bytes());

    assert_eq!(
        error,
        EventLogError::StartupLocalitySize {
            record: 1,
            offset: start,
            size: 18,
        }
    );
}

#[test]
fn startup_locality_twice() {
    let writer = LogWriter::crypto_agile(&[(SHA256, 32)])
        .startup_locality(3)
        .startup_locality(0);

    let error = parse_error(writer.bytes());

    assert_eq!(
        error,
        EventLogError::DuplicateStartupLocality {
            record: 2,
            offset: writer.record_offsets()[2],
            first: 1,
        }
    );
}

#[test]
fn error_messages_name_record_and_offset() {
    let writer = two_event_log();
    let size_offset = last_event_size_offset(&writer);
    let mut bytes = writer.bytes().to_vec();
    bytes[size_offset..size_offset + 4].copy_from_slice(&u32::MAX.to_le_bytes());

    let message = parse_error(&bytes).to_string();

    let expected = format!("record 2 at offset {:#x}: ", writer.record_offsets()[2]);
    assert!(message.starts_with(&expected), "{message}");
    assert!(message.contains(&format!("{size_offset:#x}")), "{message}");
    assert!(message.contains("4294967295 bytes"), "{message}");
}

/// Parses, replays, describes and compares, as the agent does with any input.
fn exercise(bytes: &[u8]) {
    let Ok(log) = EventLog::parse(bytes) else {
        return;
    };
    let replay = log.replay();
    for record in log.records() {
        let _ = record.description();
    }
    let recorded: Vec<RecordedPcr> = HashAlgorithm::KNOWN
        .into_iter()
        .flat_map(|algorithm| {
            [0, 4, 11, 17].map(|pcr| RecordedPcr {
                algorithm,
                pcr: PcrIndex::new(pcr),
                value: vec![0; 32],
            })
        })
        .collect();
    let _ = compare(&log, &replay, &recorded);
}

#[test]
fn mutated_logs_never_panic() {
    let mut writer = LogWriter::crypto_agile(&[(SHA1, 20), (SHA256, 32), (0x00b0, 7)])
        .startup_locality(3)
        .measure(0, EV_S_CRTM_VERSION, &utf16z("fw 1.0"))
        .measure(11, EV_IPL, &utf16z(".linux"));
    let tag = [0x2a, 0x58, 0xbc, 0xf5, 6, 0, 0, 0, b'a', 0, b'b', 0, 0, 0];
    writer = writer.measure(12, EV_EVENT_TAG, &tag);
    let original = writer.build();

    for cut in 0..original.len() {
        exercise(&original[..cut]);
    }
    for position in 0..original.len() {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut bytes = original.clone();
            bytes[position] = value;
            exercise(&bytes);
        }
    }
}
