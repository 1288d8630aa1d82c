//! Checks of this boot's measurements, each reported on its own so that an
//! operator sees which PCR differs, the expected and actual values, and the
//! log events that explain it.

use appliance_secureboot::eventlog::EventLog;
use appliance_secureboot::pcrsig::{policy_pcr11_digest, PcrPublicKey, PcrSignatures};
use appliance_secureboot::PcrBank;
use appliance_secureboot::PcrIndex;
use appliance_secureboot::PcrValue;
use serde::{Deserialize, Serialize};

use super::pcrs::{encode_hex, PCR_UKI, PCR_VOLUME_KEY};
use super::userspace_log::UserspaceEvent;

/// PCRs whose whole history the firmware log and systemd's log record:
/// 0 to 15 except 10. The kernel's IMA extends PCR 10 and keeps its own log
/// in securityfs, which this check does not replay. PCR 16 is for debugging
/// and 17 to 23 belong to the dynamic root of trust; neither log covers them.
pub const CHECKED_PCRS: [u32; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15];

/// Path of the UKI's `.pcrsig` in the initrd, where systemd-stub puts it.
pub const PCR_SIGNATURE_FILE: &str = "/.extra/tpm2-pcr-signature.json";

/// Path of the UKI's `.pcrpkey` in the initrd, where systemd-stub puts it.
pub const PCR_PUBLIC_KEY_FILE: &str = "/.extra/tpm2-pcr-public-key.pem";

/// The bank every check uses: the one systemd seals and signs policies in.
pub const BANK: PcrBank = PcrBank::Sha256;

/// Result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    Failed,
    /// The inputs were missing, so the check could neither pass nor fail.
    Unverifiable,
}

/// A PCR that differs from what the logs or the policy expect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrMismatch {
    pub pcr: u32,
    pub bank: String,
    /// Value the logs replay to, or the value the policy needs.
    pub expected: String,
    /// Value the TPM holds.
    pub actual: String,
    /// Log events that extended this PCR, in order, as short descriptions.
    pub events: Vec<String>,
}

/// One named check and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<PcrMismatch>,
}

impl Check {
    fn new(name: &str, status: CheckStatus, summary: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            status,
            summary: summary.into(),
            mismatches: Vec::new(),
        }
    }
}

/// Replays the firmware event log, then systemd's userspace log, and
/// compares each static PCR with the TPM's value.
pub fn check_event_log(
    log_bytes: Option<&[u8]>,
    userspace: &[UserspaceEvent],
    tpm: &std::collections::BTreeMap<u32, Vec<u8>>,
) -> Check {
    const NAME: &str = "event_log";
    let Some(log_bytes) = log_bytes else {
        return Check::new(
            NAME,
            CheckStatus::Unverifiable,
            "no firmware event log at /sys/kernel/security/tpm0/binary_bios_measurements",
        );
    };
    let log = match EventLog::parse(log_bytes) {
        Ok(log) => log,
        Err(err) => {
            return Check::new(
                NAME,
                CheckStatus::Failed,
                format!("firmware event log is invalid: {err}"),
            )
        }
    };
    let replay = log.replay();
    let Some(bank_replay) = replay.bank(BANK) else {
        return Check::new(
            NAME,
            CheckStatus::Unverifiable,
            format!(
                "the firmware event log ({}) has no {BANK} digests",
                log.format()
            ),
        );
    };

    let mut mismatches = Vec::new();
    let mut unverifiable = Vec::new();
    for pcr in CHECKED_PCRS {
        let Some(actual) = tpm.get(&pcr) else {
            unverifiable.push(format!("PCR {pcr}: the TPM exposes no {BANK} value"));
            continue;
        };
        let index = PcrIndex::new(pcr);
        let Some(firmware_value) = bank_replay.value(index) else {
            unverifiable.push(format!(
                "PCR {pcr}: some firmware records have no {BANK} digest"
            ));
            continue;
        };
        let later: Vec<&UserspaceEvent> =
            userspace.iter().filter(|event| event.pcr == pcr).collect();
        let expected = later.iter().fold(firmware_value, |value, event| {
            match event
                .digests
                .iter()
                .find(|(bank, _)| *bank == BANK.to_string())
            {
                Some((_, digest)) => BANK.digest(&[value.as_slice(), digest].concat()),
                None => value,
            }
        });
        if &expected == actual {
            continue;
        }

        let mut events = firmware_events(&log, &replay, index);
        events.extend(later.iter().map(|event| {
            format!(
                "systemd: {}",
                event.description.as_deref().unwrap_or("no description")
            )
        }));
        mismatches.push(PcrMismatch {
            pcr,
            bank: BANK.to_string(),
            expected: encode_hex(&expected),
            actual: encode_hex(actual),
            events,
        });
    }

    if !mismatches.is_empty() {
        let list: Vec<String> = mismatches.iter().map(|m| m.pcr.to_string()).collect();
        let mut check = Check::new(
            NAME,
            CheckStatus::Failed,
            format!(
                "PCR {} differ from the replayed event logs: the logs do not describe this boot",
                list.join(", ")
            ),
        );
        check.mismatches = mismatches;
        return check;
    }
    if !unverifiable.is_empty() {
        return Check::new(NAME, CheckStatus::Unverifiable, unverifiable.join("; "));
    }
    Check::new(
        NAME,
        CheckStatus::Passed,
        format!(
            "PCRs 0 to 9 and 11 to 15 ({BANK}) equal the replay of {} firmware records and {} \
             systemd records",
            log.records().len(),
            userspace.len()
        ),
    )
}

fn firmware_events(
    log: &EventLog<'_>,
    replay: &appliance_secureboot::eventlog::Replay,
    pcr: PcrIndex,
) -> Vec<String> {
    let Some(bank) = replay.bank(BANK) else {
        return Vec::new();
    };
    let Some(pcr_replay) = bank.pcrs.get(&pcr) else {
        return Vec::new();
    };
    pcr_replay
        .records
        .iter()
        .filter_map(|index| log.records().get(*index))
        .map(|record| {
            format!(
                "firmware record {} ({}): {}",
                record.index,
                record.event_type,
                record
                    .description()
                    .unwrap_or_else(|| "no description".to_owned())
            )
        })
        .collect()
}

/// Checks PCR 11 against the policies signed with the PCR signing key,
/// which systemd-stub hands to the initrd from the UKI's `.pcrsig` and
/// `.pcrpkey` sections. Secure Boot only proves the UKI was signed with the
/// db key; this proves its PCR 11 is one the PCR signing key approved.
pub fn check_signed_policy(
    signature_json: Option<&[u8]>,
    public_key_pem: Option<&[u8]>,
    tpm: &std::collections::BTreeMap<u32, Vec<u8>>,
    pcr11_events: Vec<String>,
) -> Check {
    const NAME: &str = "pcr11_signed_policy";
    let (Some(signature_json), Some(public_key_pem)) = (signature_json, public_key_pem) else {
        return Check::new(
            NAME,
            CheckStatus::Failed,
            format!(
                "no signed PCR 11 policy: {} or {} is missing, so the UKI carries no .pcrsig or \
                 .pcrpkey section; boot a UKI built by this project",
                PCR_SIGNATURE_FILE, PCR_PUBLIC_KEY_FILE
            ),
        );
    };
    let key = match PcrPublicKey::from_pem(public_key_pem) {
        Ok(key) => key,
        Err(err) => {
            return Check::new(
                NAME,
                CheckStatus::Failed,
                format!("{PCR_PUBLIC_KEY_FILE}: {err}"),
            )
        }
    };
    let signatures = match PcrSignatures::parse(signature_json) {
        Ok(signatures) => signatures,
        Err(err) => {
            return Check::new(
                NAME,
                CheckStatus::Failed,
                format!("{PCR_SIGNATURE_FILE}: {err}"),
            )
        }
    };
    let Some(actual) = tpm.get(&PCR_UKI) else {
        return Check::new(
            NAME,
            CheckStatus::Unverifiable,
            format!("the TPM exposes no {BANK} PCR 11"),
        );
    };
    let Some(value) = PcrValue::from_bytes(BANK, actual) else {
        return Check::new(
            NAME,
            CheckStatus::Failed,
            format!("the TPM's {BANK} PCR 11 has the wrong length"),
        );
    };
    let policy = policy_pcr11_digest(&value);

    let entries: Vec<_> = signatures
        .entries(BANK)
        .iter()
        .filter(|entry| entry.selects_only(PcrIndex::KERNEL_BOOT))
        .collect();
    let Some(entry) = entries.iter().find(|entry| entry.policy == policy) else {
        let signed: Vec<String> = entries
            .iter()
            .map(|entry| encode_hex(&entry.policy))
            .collect();
        let mut check = Check::new(
            NAME,
            CheckStatus::Failed,
            format!(
                "PCR 11 matches none of the {} policies signed for this UKI: the kernel, initrd, \
                 command line or another UKI section differs from what was signed",
                signed.len()
            ),
        );
        check.mismatches.push(PcrMismatch {
            pcr: PCR_UKI,
            bank: BANK.to_string(),
            expected: format!(
                "a value whose PolicyPCR digest is one of [{}]",
                signed.join(", ")
            ),
            actual: encode_hex(actual),
            events: pcr11_events,
        });
        return check;
    };
    if entry.key_fingerprint != key.fingerprint() {
        return Check::new(
            NAME,
            CheckStatus::Failed,
            format!(
                "the policy for PCR 11 was signed by key {}, not by the UKI's key {}",
                encode_hex(&entry.key_fingerprint),
                encode_hex(key.fingerprint())
            ),
        );
    }
    if let Err(err) = key.verify(BANK, &policy, &entry.signature) {
        return Check::new(
            NAME,
            CheckStatus::Failed,
            format!("the signature over PCR 11's policy is invalid: {err}"),
        );
    }
    Check::new(
        NAME,
        CheckStatus::Passed,
        format!(
            "PCR 11 matches a policy signed by key {}",
            encode_hex(key.fingerprint())
        ),
    )
}

/// Lists the log events that extended `pcr`, for a report on that PCR.
pub fn pcr_events(log_bytes: Option<&[u8]>, userspace: &[UserspaceEvent], pcr: u32) -> Vec<String> {
    let mut events = Vec::new();
    if let Some(log) = log_bytes.and_then(|bytes| EventLog::parse(bytes).ok()) {
        events = firmware_events(&log, &log.replay(), PcrIndex::new(pcr));
    }
    events.extend(
        userspace
            .iter()
            .filter(|event| event.pcr == pcr)
            .map(|event| {
                format!(
                    "systemd: {}",
                    event.description.as_deref().unwrap_or("no description")
                )
            }),
    );
    events
}

/// Checks that no volume key has been measured yet: PCR 15 must be all
/// zeros until the vault opens.
pub fn check_pcr15_unused(tpm: &std::collections::BTreeMap<u32, Vec<u8>>) -> Check {
    const NAME: &str = "pcr15_unused";
    let Some(value) = tpm.get(&PCR_VOLUME_KEY) else {
        return Check::new(
            NAME,
            CheckStatus::Unverifiable,
            format!("the TPM exposes no {BANK} PCR 15"),
        );
    };
    if value.iter().all(|byte| *byte == 0) {
        return Check::new(
            NAME,
            CheckStatus::Passed,
            "PCR 15 is zero: no volume was opened before the vault",
        );
    }
    let mut check = Check::new(
        NAME,
        CheckStatus::Failed,
        "PCR 15 is not zero: a LUKS volume was opened before the vault, so a look-alike vault could be in use",
    );
    check.mismatches.push(PcrMismatch {
        pcr: PCR_VOLUME_KEY,
        bank: BANK.to_string(),
        expected: encode_hex(&vec![0; BANK.digest_len()]),
        actual: encode_hex(value),
        events: Vec::new(),
    });
    check
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const EV_NO_ACTION: u32 = 3;
    const EV_POST_CODE: u32 = 1;
    const TPM_ALG_SHA256: u16 = 0x000b;

    /// Writes a crypto-agile log: the Spec ID header, then one SHA-256
    /// record per (pcr, digest, event data).
    fn crypto_agile_log(records: &[(u32, Vec<u8>, &[u8])]) -> Vec<u8> {
        let mut spec_id = Vec::new();
        spec_id.extend_from_slice(b"Spec ID Event03\0");
        spec_id.extend_from_slice(&0u32.to_le_bytes()); // platform class
        spec_id.extend_from_slice(&[0, 2, 0, 2]); // minor, major, errata, uintn size
        spec_id.extend_from_slice(&1u32.to_le_bytes());
        spec_id.extend_from_slice(&TPM_ALG_SHA256.to_le_bytes());
        spec_id.extend_from_slice(&32u16.to_le_bytes());
        spec_id.push(0); // vendor info size

        let mut log = Vec::new();
        log.extend_from_slice(&0u32.to_le_bytes());
        log.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        log.extend_from_slice(&[0; 20]);
        log.extend_from_slice(&u32::try_from(spec_id.len()).expect("small").to_le_bytes());
        log.extend_from_slice(&spec_id);

        for (pcr, digest, data) in records {
            log.extend_from_slice(&pcr.to_le_bytes());
            log.extend_from_slice(&EV_POST_CODE.to_le_bytes());
            log.extend_from_slice(&1u32.to_le_bytes());
            log.extend_from_slice(&TPM_ALG_SHA256.to_le_bytes());
            log.extend_from_slice(digest);
            log.extend_from_slice(&u32::try_from(data.len()).expect("small").to_le_bytes());
            log.extend_from_slice(data);
        }
        log
    }

    fn extend(value: &[u8], digest: &[u8]) -> Vec<u8> {
        BANK.digest(&[value, digest].concat())
    }

    fn zero_pcrs() -> BTreeMap<u32, Vec<u8>> {
        (0..=15).map(|pcr| (pcr, vec![0; 32])).collect()
    }

    #[test]
    fn event_log_matching_tpm_passes() {
        let digest = BANK.digest(b"firmware volume");
        let log = crypto_agile_log(&[(0, digest.clone(), b"POST CODE")]);
        let mut tpm = zero_pcrs();
        tpm.insert(0, extend(&[0; 32], &digest));

        let check = check_event_log(Some(&log), &[], &tpm);

        assert_eq!(check.status, CheckStatus::Passed, "{}", check.summary);
        assert!(check.mismatches.is_empty());
    }

    #[test]
    fn event_log_mismatch_names_pcr() {
        let digest = BANK.digest(b"firmware volume");
        let log = crypto_agile_log(&[(4, digest.clone(), b"POST CODE")]);
        let mut tpm = zero_pcrs();
        tpm.insert(4, extend(&[0; 32], &BANK.digest(b"something else")));

        let check = check_event_log(Some(&log), &[], &tpm);

        assert_eq!(check.status, CheckStatus::Failed);
        assert_eq!(check.mismatches.len(), 1);
        let mismatch = &check.mismatches[0];
        assert_eq!(mismatch.pcr, 4);
        assert_eq!(mismatch.expected, encode_hex(&extend(&[0; 32], &digest)));
        assert_eq!(mismatch.actual, encode_hex(&tpm[&4]));
        assert_eq!(mismatch.events.len(), 1);
        assert!(
            mismatch.events[0].starts_with("firmware record 1"),
            "{:?}",
            mismatch.events
        );
    }

    #[test]
    fn userspace_log_completes_pcr11() {
        let stub = BANK.digest(b".linux");
        let phase = BANK.digest(b"enter-initrd");
        let log = crypto_agile_log(&[(11, stub.clone(), b".linux")]);
        let mut tpm = zero_pcrs();
        tpm.insert(11, extend(&extend(&[0; 32], &stub), &phase));
        let userspace = [UserspaceEvent {
            pcr: 11,
            digests: vec![("sha256".to_owned(), phase)],
            description: Some("enter-initrd".to_owned()),
        }];

        let without = check_event_log(Some(&log), &[], &tpm);
        let with = check_event_log(Some(&log), &userspace, &tpm);

        assert_eq!(without.status, CheckStatus::Failed);
        assert_eq!(with.status, CheckStatus::Passed, "{}", with.summary);
    }

    #[test]
    fn sha1_only_log_unverifiable() {
        // A legacy log: its first record is an ordinary SHA-1 event, not a
        // Spec ID header, so it has no SHA-256 digests to replay.
        let mut log = Vec::new();
        log.extend_from_slice(&0u32.to_le_bytes());
        log.extend_from_slice(&8u32.to_le_bytes()); // EV_S_CRTM_VERSION
        log.extend_from_slice(&[7; 20]);
        log.extend_from_slice(&2u32.to_le_bytes());
        log.extend_from_slice(&[1, 0]);

        let check = check_event_log(Some(&log), &[], &zero_pcrs());

        assert_eq!(check.status, CheckStatus::Unverifiable, "{}", check.summary);
    }

    #[test]
    fn missing_log_unverifiable() {
        let check = check_event_log(None, &[], &zero_pcrs());
        assert_eq!(check.status, CheckStatus::Unverifiable);
    }

    #[test]
    fn invalid_log_fails() {
        let check = check_event_log(Some(&[1, 2, 3]), &[], &zero_pcrs());
        assert_eq!(check.status, CheckStatus::Failed);
        assert!(check.summary.contains("invalid"), "{}", check.summary);
    }

    #[test]
    fn ima_pcr10_not_compared() {
        let log = crypto_agile_log(&[(0, BANK.digest(b"x"), b"x")]);
        let mut tpm = zero_pcrs();
        tpm.insert(0, extend(&[0; 32], &BANK.digest(b"x")));
        tpm.insert(10, vec![0xaf; 32]);

        let check = check_event_log(Some(&log), &[], &tpm);

        assert_eq!(check.status, CheckStatus::Passed, "{}", check.summary);
    }

    const TEST_PUBLIC_KEY: &[u8] =
        include_bytes!("../../../secureboot/tests/fixtures/pcrsig-test-key/public.pem");

    #[test]
    fn signed_policy_missing_fails() {
        let check = check_signed_policy(None, None, &zero_pcrs(), Vec::new());

        assert_eq!(check.status, CheckStatus::Failed);
        assert!(check.summary.contains(".pcrsig"), "{}", check.summary);
    }

    #[test]
    fn signed_policy_other_value_fails() {
        // A policy signed for some other PCR 11 value: the check must name
        // PCR 11 and the TPM's value without reaching the signature.
        let json = format!(
            r#"{{"sha256":[{{"pcrs":[11],"pkfp":"{}","pol":"{}","sig":"AAAA"}}]}}"#,
            "00".repeat(32),
            "11".repeat(32)
        );
        let mut tpm = zero_pcrs();
        tpm.insert(11, vec![0x42; 32]);

        let check = check_signed_policy(
            Some(json.as_bytes()),
            Some(TEST_PUBLIC_KEY),
            &tpm,
            vec!["systemd: enter-initrd".to_owned()],
        );

        assert_eq!(check.status, CheckStatus::Failed, "{}", check.summary);
        assert_eq!(check.mismatches.len(), 1);
        assert_eq!(check.mismatches[0].pcr, 11);
        assert_eq!(check.mismatches[0].actual, encode_hex(&[0x42; 32]));
        assert!(check.mismatches[0].expected.contains(&"11".repeat(32)));
        assert_eq!(check.mismatches[0].events, vec!["systemd: enter-initrd"]);
    }

    #[test]
    fn signed_policy_bad_signature_fails() {
        let mut tpm = zero_pcrs();
        tpm.insert(11, vec![0x42; 32]);
        let value = PcrValue::from_bytes(BANK, &tpm[&11]).expect("length");
        let key = PcrPublicKey::from_pem(TEST_PUBLIC_KEY).expect("key");
        let json = format!(
            r#"{{"sha256":[{{"pcrs":[11],"pkfp":"{}","pol":"{}","sig":"AAAA"}}]}}"#,
            encode_hex(key.fingerprint()),
            encode_hex(&policy_pcr11_digest(&value))
        );

        let check = check_signed_policy(
            Some(json.as_bytes()),
            Some(TEST_PUBLIC_KEY),
            &tpm,
            Vec::new(),
        );

        assert_eq!(check.status, CheckStatus::Failed);
        assert!(check.summary.contains("signature"), "{}", check.summary);
    }

    #[test]
    fn signed_policy_invalid_json_fails() {
        let check =
            check_signed_policy(Some(b"{"), Some(TEST_PUBLIC_KEY), &zero_pcrs(), Vec::new());

        assert_eq!(check.status, CheckStatus::Failed);
        assert!(
            check.summary.contains(PCR_SIGNATURE_FILE),
            "{}",
            check.summary
        );
    }

    #[test]
    fn pcr15_zero_passes() {
        assert_eq!(check_pcr15_unused(&zero_pcrs()).status, CheckStatus::Passed);
    }

    #[test]
    fn pcr15_extended_fails() {
        let mut tpm = zero_pcrs();
        tpm.insert(15, vec![1; 32]);

        let check = check_pcr15_unused(&tpm);

        assert_eq!(check.status, CheckStatus::Failed);
        assert_eq!(check.mismatches[0].actual, encode_hex(&[1; 32]));
    }
}
