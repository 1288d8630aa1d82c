//! Event log replay and comparison on logs built with the test writer, checked against PCR
//! values computed with the hash crates directly.

#[path = "support/eventlog_writer.rs"]
mod eventlog_writer;

use std::path::Path;

use appliance_secureboot::eventlog::{
    compare, EventLog, EventType, HashAlgorithm, LogFormat, Outcome, RecordedPcr, Unverifiable,
};
use appliance_secureboot::pcr::to_hex;
use appliance_secureboot::{PcrBank, PcrIndex};
use eventlog_writer::*;
use sha1::Sha1;
use sha2::{Sha256, Sha384};

const CRTM_VERSION: &str = "Test firmware 2.1";
const SEPARATOR: [u8; 4] = [0; 4];

/// Builds a crypto-agile log with events in PCRs 0, 4, 7 and 11, and an EV_NO_ACTION record with
/// non-zero digests in PCR 5 that a replay must skip.
fn sample_log() -> LogWriter {
    LogWriter::crypto_agile(&THREE_BANKS)
        .measure(0, EV_S_CRTM_VERSION, &utf16z(CRTM_VERSION))
        .measure(0, EV_POST_CODE, b"POST CODE")
        .measure(5, EV_NO_ACTION, b"not extended")
        .measure(7, EV_EFI_VARIABLE_DRIVER_CONFIG, b"SecureBoot stand-in")
        .measure(
            4,
            EV_EFI_ACTION,
            b"Calling EFI Application from Boot Option",
        )
        .measure(0, EV_SEPARATOR, &SEPARATOR)
        .measure(7, EV_SEPARATOR, &SEPARATOR)
        .measure(4, EV_SEPARATOR, &SEPARATOR)
        .measure(11, EV_IPL, &utf16z(".linux"))
        .measure(11, EV_IPL, b"kernel image stand-in")
}

/// Returns the data of the events that `sample_log` extends into `pcr`, in order.
fn sample_events(pcr: u32) -> Vec<Vec<u8>> {
    match pcr {
        0 => vec![
            utf16z(CRTM_VERSION),
            b"POST CODE".to_vec(),
            SEPARATOR.to_vec(),
        ],
        4 => vec![
            b"Calling EFI Application from Boot Option".to_vec(),
            SEPARATOR.to_vec(),
        ],
        7 => vec![b"SecureBoot stand-in".to_vec(), SEPARATOR.to_vec()],
        11 => vec![utf16z(".linux"), b"kernel image stand-in".to_vec()],
        _ => Vec::new(),
    }
}

fn digests(algorithm: u16, events: &[Vec<u8>]) -> Vec<Vec<u8>> {
    events.iter().map(|data| hash(algorithm, 0, data)).collect()
}

fn replayed_hex(log: &EventLog<'_>, bank: PcrBank, pcr: u32) -> String {
    let replay = log.replay();
    let value = replay
        .bank(bank)
        .expect("bank is replayed")
        .value(PcrIndex::new(pcr))
        .expect("complete replay");
    to_hex(&value)
}

fn compare_one(log: &EventLog<'_>, algorithm: HashAlgorithm, pcr: u32, value: Vec<u8>) -> Outcome {
    let recorded = [RecordedPcr {
        algorithm,
        pcr: PcrIndex::new(pcr),
        value,
    }];
    let mut results = compare(log, &log.replay(), &recorded);
    assert_eq!(results.len(), 1);
    results.remove(0).outcome
}

#[test]
fn crypto_agile_format_and_header() {
    let bytes = sample_log().build();

    let log = EventLog::parse(&bytes).expect("valid log");

    assert_eq!(log.format(), LogFormat::CryptoAgile);
    assert_eq!(log.format().name(), "tcg-2.0-crypto-agile");
    assert_eq!(log.records().len(), 11);
    let spec_id = log.spec_id().expect("Spec ID event");
    assert_eq!(spec_id.spec_version_major, 2);
    assert_eq!(spec_id.uintn_size, 2);
    assert_eq!(
        log.algorithms(),
        [
            HashAlgorithm::SHA1,
            HashAlgorithm::SHA256,
            HashAlgorithm::SHA384
        ]
    );
    assert_eq!(log.records()[0].event_type, EventType::EV_NO_ACTION);
    assert_eq!(log.records()[1].event_type, EventType::EV_S_CRTM_VERSION);
}

#[test]
fn crypto_agile_sha256_replay() {
    let bytes = sample_log().build();
    let log = EventLog::parse(&bytes).expect("valid log");

    for pcr in [0, 4, 7, 11] {
        let expected = extend_chain::<Sha256>(&[0; 32], &digests(SHA256, &sample_events(pcr)));
        assert_eq!(
            replayed_hex(&log, PcrBank::Sha256, pcr),
            to_hex(&expected),
            "PCR {pcr}"
        );
    }
}

#[test]
fn crypto_agile_sha1_and_sha384_replay() {
    let bytes = sample_log().build();
    let log = EventLog::parse(&bytes).expect("valid log");

    for pcr in [0, 4, 7, 11] {
        let events = sample_events(pcr);
        let sha1 = extend_chain::<Sha1>(&[0; 20], &digests(SHA1, &events));
        let sha384 = extend_chain::<Sha384>(&[0; 48], &digests(SHA384, &events));
        assert_eq!(
            replayed_hex(&log, PcrBank::Sha1, pcr),
            to_hex(&sha1),
            "PCR {pcr}"
        );
        assert_eq!(
            replayed_hex(&log, PcrBank::Sha384, pcr),
            to_hex(&sha384),
            "PCR {pcr}"
        );
    }
}

#[test]
fn replay_skips_no_action_records() {
    let bytes = sample_log().build();
    let log = EventLog::parse(&bytes).expect("valid log");

    let replay = log.replay();

    let sha256 = replay.bank(PcrBank::Sha256).expect("sha256 bank");
    assert!(!sha256.pcrs.contains_key(&PcrIndex::new(5)));
    assert_eq!(sha256.value(PcrIndex::new(5)), Some(vec![0; 32]));
    let pcr4 = &sha256.pcrs[&PcrIndex::new(4)];
    assert_eq!(pcr4.records, [5, 8]);
    assert!(pcr4.is_complete());
}

#[test]
fn replay_lists_banks_in_order() {
    let bytes = LogWriter::crypto_agile(&[(SHA384, 48), (SHA256, 32), (SHA1, 20)])
        .measure(4, EV_IPL, b"grub_cmd: linux /vmlinuz")
        .build();
    let log = EventLog::parse(&bytes).expect("valid log");

    let replay = log.replay();

    let banks: Vec<PcrBank> = replay.banks.iter().map(|bank| bank.bank).collect();
    assert_eq!(banks, [PcrBank::Sha1, PcrBank::Sha256, PcrBank::Sha384]);
}

#[test]
fn startup_locality_sets_pcr0_start() {
    let bytes = LogWriter::crypto_agile(&THREE_BANKS)
        .startup_locality(3)
        .measure(0, EV_S_CRTM_VERSION, &utf16z(CRTM_VERSION))
        .measure(0, EV_SEPARATOR, &SEPARATOR)
        .build();
    let log = EventLog::parse(&bytes).expect("valid log");
    let mut initial = [0u8; 32];
    initial[31] = 3;
    let events = vec![utf16z(CRTM_VERSION), SEPARATOR.to_vec()];
    let expected = extend_chain::<Sha256>(&initial, &digests(SHA256, &events));

    let replay = log.replay();

    let startup = log.startup_locality().expect("StartupLocality event");
    assert_eq!(startup.record, 1);
    assert_eq!(startup.locality, 3);
    let pcr0 = &replay.bank(PcrBank::Sha256).expect("sha256").pcrs[&PcrIndex::new(0)];
    assert_eq!(pcr0.initial, initial);
    assert_eq!(to_hex(&pcr0.value), to_hex(&expected));
    assert_eq!(pcr0.records, [2, 3]);
}

#[test]
fn startup_locality_alone_sets_pcr0() {
    let bytes = LogWriter::crypto_agile(&THREE_BANKS)
        .startup_locality(4)
        .build();
    let log = EventLog::parse(&bytes).expect("valid log");

    let replay = log.replay();

    let mut sha1 = vec![0; 20];
    sha1[19] = 4;
    let mut sha384 = vec![0; 48];
    sha384[47] = 4;
    assert_eq!(
        replay
            .bank(PcrBank::Sha1)
            .expect("sha1")
            .value(PcrIndex::new(0)),
        Some(sha1)
    );
    assert_eq!(
        replay
            .bank(PcrBank::Sha384)
            .expect("sha384")
            .value(PcrIndex::new(0)),
        Some(sha384)
    );
}

#[test]
fn startup_locality_in_other_pcr_ignored() {
    let mut writer = LogWriter::crypto_agile(&THREE_BANKS);
    let digests = writer.zero_digests();
    writer.push(crypto_agile_record(
        3,
        EV_NO_ACTION,
        &digests,
        b"StartupLocality\0\x03",
    ));
    let bytes = writer.build();
    let log = EventLog::parse(&bytes).expect("valid log");

    let replay = log.replay();

    assert_eq!(log.startup_locality(), None);
    assert!(replay
        .bank(PcrBank::Sha256)
        .expect("sha256")
        .pcrs
        .is_empty());
}

#[test]
fn startup_locality_mismatch_lists_event() {
    let bytes = LogWriter::crypto_agile(&THREE_BANKS)
        .startup_locality(3)
        .measure(0, EV_S_CRTM_VERSION, &utf16z(CRTM_VERSION))
        .build();
    let log = EventLog::parse(&bytes).expect("valid log");

    let outcome = compare_one(&log, HashAlgorithm::SHA256, 0, vec![0x11; 32]);

    let Outcome::Mismatch { events, .. } = outcome else {
        panic!("expected a mismatch, got {outcome:?}");
    };
    let listed: Vec<(usize, EventType)> = events
        .iter()
        .map(|event| (event.record, event.event_type))
        .collect();
    assert_eq!(
        listed,
        [
            (1, EventType::EV_NO_ACTION),
            (2, EventType::EV_S_CRTM_VERSION)
        ]
    );
    assert_eq!(events[0].description.as_deref(), Some("StartupLocality 3"));
}

#[test]
fn sha1_only_log_replay() {
    let bytes = LogWriter::sha1_only()
        .measure(0, EV_S_CRTM_VERSION, &utf16z(CRTM_VERSION))
        .measure(0, EV_SEPARATOR, &SEPARATOR)
        .measure(9, EV_NO_ACTION, b"skipped")
        .build();
    let log = EventLog::parse(&bytes).expect("valid log");
    let events = vec![utf16z(CRTM_VERSION), SEPARATOR.to_vec()];
    let expected = extend_chain::<Sha1>(&[0; 20], &digests(SHA1, &events));

    assert_eq!(log.format(), LogFormat::Sha1Only);
    assert_eq!(log.records().len(), 3);
    assert_eq!(replayed_hex(&log, PcrBank::Sha1, 0), to_hex(&expected));
    assert!(!log
        .replay()
        .bank(PcrBank::Sha1)
        .expect("sha1")
        .pcrs
        .contains_key(&PcrIndex::new(9)));
}

#[test]
fn spec_id_without_first_position_is_data() {
    // A Spec ID event that is not the first record does not switch formats: the log stays
    // SHA-1 only and the event is an ordinary EV_NO_ACTION record.
    let mut writer = LogWriter::sha1_only().measure(0, EV_S_CRTM_VERSION, b"v1");
    writer.push(sha1_record(
        0,
        EV_NO_ACTION,
        &[0; 20],
        &spec_id_data(&THREE_BANKS, b""),
    ));
    let bytes = writer.measure(0, EV_SEPARATOR, &SEPARATOR).build();

    let log = EventLog::parse(&bytes).expect("valid log");

    assert_eq!(log.format(), LogFormat::Sha1Only);
    assert_eq!(log.records().len(), 3);
}

#[test]
fn digests_in_any_order() {
    let mut writer = LogWriter::crypto_agile(&THREE_BANKS);
    let data = b"reordered";
    let mut digests = writer.digests_of(data);
    digests.reverse();
    writer.push(crypto_agile_record(8, EV_IPL, &digests, data));
    let bytes = writer.build();
    let log = EventLog::parse(&bytes).expect("valid log");
    let expected = extend_chain::<Sha256>(&[0; 32], &[hash(SHA256, 0, data)]);

    assert_eq!(replayed_hex(&log, PcrBank::Sha256, 8), to_hex(&expected));
}

#[test]
fn unknown_listed_algorithm_is_skipped() {
    const UNKNOWN: u16 = 0x00b0;
    let algorithms = [(SHA256, 32), (UNKNOWN, 40), (SM3_256, 32)];
    let bytes = LogWriter::crypto_agile(&algorithms)
        .measure(
            4,
            EV_EFI_ACTION,
            b"Calling EFI Application from Boot Option",
        )
        .build();
    let log = EventLog::parse(&bytes).expect("valid log");
    let expected = extend_chain::<Sha256>(
        &[0; 32],
        &[hash(SHA256, 0, b"Calling EFI Application from Boot Option")],
    );

    let replay = log.replay();

    assert_eq!(
        replay.skipped_algorithms,
        [HashAlgorithm::new(UNKNOWN), HashAlgorithm::SM3_256]
    );
    assert_eq!(log.records()[1].digests[1].digest.len(), 40);
    assert_eq!(replayed_hex(&log, PcrBank::Sha256, 4), to_hex(&expected));
}

#[test]
fn trailing_zero_padding_accepted() {
    let mut bytes = sample_log().build();
    let unpadded = EventLog::parse(&bytes).expect("valid log").replay();
    bytes.extend([0; 64]);

    let log = EventLog::parse(&bytes).expect("padded log");

    assert_eq!(log.trailing_zero_bytes(), 64);
    assert_eq!(log.records().len(), 11);
    assert_eq!(log.replay(), unpadded);
}

#[test]
fn compare_match() {
    let bytes = sample_log().build();
    let log = EventLog::parse(&bytes).expect("valid log");
    let expected = extend_chain::<Sha256>(&[0; 32], &digests(SHA256, &sample_events(11)));

    let outcome = compare_one(&log, HashAlgorithm::SHA256, 11, expected.clone());

    assert_eq!(outcome, Outcome::Match { value: expected });
    assert_eq!(outcome.name(), "match");
}

#[test]
fn compare_unextended_pcr_matches_zero() {
    let bytes = sample_log().build();
    let log = EventLog::parse(&bytes).expect("valid log");

    let zero = compare_one(&log, HashAlgorithm::SHA256, 9, vec![0; 32]);
    let other = compare_one(&log, HashAlgorithm::SHA256, 9, vec![1; 32]);

    assert_eq!(zero.name(), "match");
    assert_eq!(
        other,
        Outcome::Mismatch {
            expected: vec![1; 32],
            actual: vec![0; 32],
            events: Vec::new(),
        }
    );
}

#[test]
fn compare_mismatch_explains_events() {
    let bytes = sample_log().build();
    let log = EventLog::parse(&bytes).expect("valid log");
    let replayed = extend_chain::<Sha256>(&[0; 32], &digests(SHA256, &sample_events(11)));

    let outcome = compare_one(&log, HashAlgorithm::SHA256, 11, vec![0x5a; 32]);

    let Outcome::Mismatch {
        expected,
        actual,
        events,
    } = outcome
    else {
        panic!("expected a mismatch, got {outcome:?}");
    };
    assert_eq!(expected, vec![0x5a; 32]);
    assert_eq!(actual, replayed);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].record, 9);
    assert_eq!(events[0].offset, sample_log().record_offsets()[9]);
    assert_eq!(events[0].event_type, EventType::EV_IPL);
    assert_eq!(events[0].digest, hash(SHA256, 0, &utf16z(".linux")));
    assert_eq!(events[0].description.as_deref(), Some(".linux"));
    assert_eq!(
        events[1].description.as_deref(),
        Some("kernel image stand-in")
    );
}

#[test]
fn compare_wrong_length_mismatches() {
    let bytes = sample_log().build();
    let log = EventLog::parse(&bytes).expect("valid log");

    let outcome = compare_one(&log, HashAlgorithm::SHA256, 9, vec![0; 20]);

    assert_eq!(outcome.name(), "mismatch");
}

#[test]
fn compare_bank_absent_unverifiable() {
    let bytes = sample_log().build();
    let log = EventLog::parse(&bytes).expect("valid log");

    let outcome = compare_one(&log, HashAlgorithm::SHA512, 11, vec![0; 64]);

    assert_eq!(
        outcome,
        Outcome::Unverifiable(Unverifiable::NoDigests {
            algorithm: HashAlgorithm::SHA512,
            format: LogFormat::CryptoAgile,
        })
    );
}

#[test]
fn compare_sm3_unverifiable() {
    let bytes = LogWriter::crypto_agile(&[(SHA256, 32), (SM3_256, 32)])
        .measure(11, EV_IPL, b"x")
        .build();
    let log = EventLog::parse(&bytes).expect("valid log");

    let outcome = compare_one(&log, HashAlgorithm::SM3_256, 11, vec![0; 32]);

    assert_eq!(
        outcome,
        Outcome::Unverifiable(Unverifiable::UnsupportedAlgorithm {
            algorithm: HashAlgorithm::SM3_256,
        })
    );
}

#[test]
fn compare_missing_digest_unverifiable() {
    let mut writer = LogWriter::crypto_agile(&THREE_BANKS).measure(11, EV_IPL, b"complete");
    writer.push(crypto_agile_record(
        11,
        EV_IPL,
        &[(SHA1, hash(SHA1, 0, b"partial"))],
        b"partial",
    ));
    let bytes = writer.build();
    let log = EventLog::parse(&bytes).expect("valid log");
    // The only value a verifier could match: the SHA-256 chain without the partial record.
    let without_partial = extend_chain::<Sha256>(&[0; 32], &[hash(SHA256, 0, b"complete")]);

    let sha256 = compare_one(&log, HashAlgorithm::SHA256, 11, without_partial);
    let sha1 = compare_one(
        &log,
        HashAlgorithm::SHA1,
        11,
        extend_chain::<Sha1>(
            &[0; 20],
            &[hash(SHA1, 0, b"complete"), hash(SHA1, 0, b"partial")],
        ),
    );

    assert_eq!(
        sha256,
        Outcome::Unverifiable(Unverifiable::MissingDigests {
            algorithm: HashAlgorithm::SHA256,
            pcr: PcrIndex::KERNEL_BOOT,
            records: vec![2],
        })
    );
    assert_eq!(sha1.name(), "match");
    let replay = log.replay();
    assert_eq!(
        replay
            .bank(PcrBank::Sha256)
            .expect("sha256")
            .value(PcrIndex::KERNEL_BOOT),
        None
    );
}

#[test]
fn compare_drtm_pcr_unverifiable() {
    let bytes = sample_log().build();
    let log = EventLog::parse(&bytes).expect("valid log");

    for pcr in [17, 22] {
        let outcome = compare_one(&log, HashAlgorithm::SHA256, pcr, vec![0xff; 32]);
        assert_eq!(
            outcome,
            Outcome::Unverifiable(Unverifiable::DynamicPcr {
                pcr: PcrIndex::new(pcr)
            }),
            "PCR {pcr}"
        );
    }
    assert_eq!(
        compare_one(&log, HashAlgorithm::SHA256, 23, vec![0; 32]).name(),
        "match"
    );
}

#[test]
fn compare_keeps_request_order() {
    let bytes = sample_log().build();
    let log = EventLog::parse(&bytes).expect("valid log");
    let recorded: Vec<RecordedPcr> = [(HashAlgorithm::SHA512, 4), (HashAlgorithm::SHA1, 9)]
        .into_iter()
        .map(|(algorithm, pcr)| RecordedPcr {
            algorithm,
            pcr: PcrIndex::new(pcr),
            value: vec![0; 20],
        })
        .collect();

    let results = compare(&log, &log.replay(), &recorded);

    let order: Vec<(HashAlgorithm, u32)> = results
        .iter()
        .map(|result| (result.algorithm, result.pcr.get()))
        .collect();
    assert_eq!(
        order,
        [(HashAlgorithm::SHA512, 4), (HashAlgorithm::SHA1, 9)]
    );
    assert_eq!(results[0].outcome.name(), "unverifiable");
    assert_eq!(results[1].outcome.name(), "match");
}

#[test]
fn unverifiable_messages_name_cause() {
    let cases = [
        (
            Unverifiable::NoDigests {
                algorithm: HashAlgorithm::SHA256,
                format: LogFormat::Sha1Only,
            },
            "the log (tcg-1.2-sha1-only) has no sha256 digests",
        ),
        (
            Unverifiable::UnsupportedAlgorithm {
                algorithm: HashAlgorithm::SM3_256,
            },
            "cannot compute sm3_256 hashes",
        ),
        (
            Unverifiable::MissingDigests {
                algorithm: HashAlgorithm::SHA256,
                pcr: PcrIndex::new(4),
                records: vec![3, 5],
            },
            "record(s) 3, 5 extend PCR 4 but have no sha256 digest",
        ),
        (
            Unverifiable::DynamicPcr {
                pcr: PcrIndex::new(17),
            },
            "PCR 17 belongs to the dynamic root of trust",
        ),
    ];
    for (reason, expected) in cases {
        let message = reason.to_string();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
}

#[test]
fn fuzz_seeds_parse() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/eventlog");
    let mut paths: Vec<_> = std::fs::read_dir(&directory)
        .expect("seed folder")
        .map(|entry| entry.expect("seed entry").path())
        .collect();
    paths.sort();

    for path in &paths {
        let bytes = std::fs::read(path).expect("read seed");
        let log =
            EventLog::parse(&bytes).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(!log.replay().banks.is_empty(), "{}", path.display());
    }
    assert_eq!(paths.len(), 3);
}
