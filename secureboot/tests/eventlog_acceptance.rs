//! Acceptance case: an event log in the SHA-1-only format, whose first record is
//! EV_S_CRTM_VERSION instead of a Spec ID event. The values of its expected.json are the
//! assertions.

#[path = "support/eventlog_writer.rs"]
mod eventlog_writer;

use std::collections::BTreeSet;
use std::path::PathBuf;

use appliance_secureboot::eventlog::{
    compare, EventLog, EventType, HashAlgorithm, LogFormat, Outcome, RecordedPcr, Unverifiable,
};
use appliance_secureboot::pcr::to_hex;
use appliance_secureboot::{PcrBank, PcrIndex};
use eventlog_writer::extend_chain;
use serde_json::Value;
use sha2::Sha256;

const CASE: &str = "b02-eventlog-sha1-legacy-format";

fn case_file(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(CASE)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

fn expected() -> Value {
    let document: Value = serde_json::from_slice(&case_file("expected.json")).expect("valid JSON");
    document["expected"].clone()
}

fn expected_sha1_replay() -> Vec<(u32, String)> {
    expected()["pcr_sha1_replay"]
        .as_object()
        .expect("pcr_sha1_replay is an object")
        .iter()
        .map(|(pcr, value)| {
            (
                pcr.parse().expect("PCR keys are numbers"),
                value.as_str().expect("values are strings").to_owned(),
            )
        })
        .collect()
}

#[test]
fn legacy_log_parses() {
    let bytes = case_file("binary_bios_measurements");
    let expected = expected();

    let parsed = EventLog::parse(&bytes);

    assert_eq!(expected["parse_ok"], Value::Bool(true));
    let log = parsed.expect("the log parses although it has no Spec ID event");
    assert_eq!(log.format(), LogFormat::Sha1Only);
    assert_eq!(log.format().name(), expected["log_format"]);
    assert_eq!(log.records().len() as u64, expected["records"]);
    assert_eq!(log.trailing_zero_bytes(), 0);
}

#[test]
fn legacy_log_first_record_is_crtm_version() {
    let bytes = case_file("binary_bios_measurements");

    let log = EventLog::parse(&bytes).expect("valid log");

    let first = &log.records()[0];
    assert_eq!(first.event_type, EventType::EV_S_CRTM_VERSION);
    assert!(log.spec_id().is_none());
    assert_eq!(first.description().as_deref(), Some("HOLDOUT vFW 1.0"));
}

#[test]
fn legacy_log_sha1_replay() {
    let bytes = case_file("binary_bios_measurements");
    let log = EventLog::parse(&bytes).expect("valid log");

    let replay = log.replay();

    let sha1 = replay.bank(PcrBank::Sha1).expect("sha1 bank");
    for (pcr, value) in expected_sha1_replay() {
        let replayed = sha1.value(PcrIndex::new(pcr)).expect("complete replay");
        assert_eq!(to_hex(&replayed), value, "PCR {pcr}");
    }
    let replayed_pcrs: BTreeSet<u32> = sha1.pcrs.keys().map(|pcr| pcr.get()).collect();
    let expected_pcrs: BTreeSet<u32> = expected_sha1_replay().iter().map(|(pcr, _)| *pcr).collect();
    assert_eq!(replayed_pcrs, expected_pcrs);
}

#[test]
fn legacy_log_has_only_sha1() {
    let bytes = case_file("binary_bios_measurements");
    let log = EventLog::parse(&bytes).expect("valid log");

    let replay = log.replay();

    assert_eq!(log.algorithms(), [HashAlgorithm::SHA1]);
    let banks: Vec<PcrBank> = replay.banks.iter().map(|bank| bank.bank).collect();
    assert_eq!(banks, [PcrBank::Sha1]);
    assert!(replay.skipped_algorithms.is_empty());
}

#[test]
fn legacy_log_pcr11_sha256_unverifiable() {
    let bytes = case_file("binary_bios_measurements");
    let log = EventLog::parse(&bytes).expect("valid log");
    let replay = log.replay();
    // Candidates that a careless verifier could accept: zero, and the SHA-1 digests extended
    // into a SHA-256 PCR.
    let pcr11_sha1_digests: Vec<Vec<u8>> = log
        .records()
        .iter()
        .filter(|record| record.pcr == PcrIndex::KERNEL_BOOT)
        .map(|record| record.digests[0].digest.to_vec())
        .collect();
    let candidates = [
        vec![0; 32],
        extend_chain::<Sha256>(&[0; 32], &pcr11_sha1_digests),
    ];

    for value in candidates {
        let recorded = [RecordedPcr {
            algorithm: HashAlgorithm::SHA256,
            pcr: PcrIndex::KERNEL_BOOT,
            value,
        }];
        let results = compare(&log, &replay, &recorded);

        assert_eq!(results.len(), 1);
        let outcome = &results[0].outcome;
        assert_eq!(outcome.name(), expected()["pcr11_sha256_verification"]);
        assert_eq!(
            *outcome,
            Outcome::Unverifiable(Unverifiable::NoDigests {
                algorithm: HashAlgorithm::SHA256,
                format: LogFormat::Sha1Only,
            })
        );
    }
}

#[test]
fn legacy_log_sha1_values_verify() {
    let bytes = case_file("binary_bios_measurements");
    let log = EventLog::parse(&bytes).expect("valid log");
    let recorded: Vec<RecordedPcr> = expected_sha1_replay()
        .into_iter()
        .map(|(pcr, value)| RecordedPcr {
            algorithm: HashAlgorithm::SHA1,
            pcr: PcrIndex::new(pcr),
            value: hex(&value),
        })
        .collect();

    let results = compare(&log, &log.replay(), &recorded);

    for result in &results {
        assert!(
            matches!(result.outcome, Outcome::Match { .. }),
            "PCR {}: {:?}",
            result.pcr,
            result.outcome
        );
    }
}

#[test]
fn legacy_log_pcr11_mismatch_explained() {
    let bytes = case_file("binary_bios_measurements");
    let log = EventLog::parse(&bytes).expect("valid log");
    let recorded = [RecordedPcr {
        algorithm: HashAlgorithm::SHA1,
        pcr: PcrIndex::KERNEL_BOOT,
        value: vec![0xaa; 20],
    }];

    let results = compare(&log, &log.replay(), &recorded);

    let Outcome::Mismatch {
        expected,
        actual,
        events,
    } = &results[0].outcome
    else {
        panic!("expected a mismatch, got {:?}", results[0].outcome);
    };
    assert_eq!(*expected, vec![0xaa; 20]);
    assert_eq!(to_hex(actual), "95df8e41e76b3e273f25dd97c27a134a52be3c80");
    let descriptions: Vec<Option<&str>> = events
        .iter()
        .map(|event| event.description.as_deref())
        .collect();
    assert_eq!(
        descriptions,
        [
            Some(".linux"),
            Some(".linux"),
            Some(".osrel"),
            Some(".osrel"),
            Some(".cmdline"),
            Some(".cmdline"),
        ]
    );
    assert!(events
        .iter()
        .all(|event| event.event_type == EventType::EV_IPL));
    assert!(events.iter().all(|event| event.digest.len() == 20));
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digits"))
        .collect()
}
