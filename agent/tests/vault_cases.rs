//! Recorded field cases of the unlock order. The cases replace the TPM and cryptsetup with a
//! simulation (their `tpm-sim.json` and `keyslot-secrets.json`); that simulation lives only
//! here. The same order runs against swtpm and real LUKS2 headers in vault_swtpm.rs.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use appliance_agent::vault::secret::Secret;
use appliance_agent::vault::token::{Luks2Metadata, Tpm2Token};
use appliance_agent::vault::tpm::UnsealError;
use appliance_agent::vault::unlock::{
    self, KeyslotOpener, RecoveryPrompt, TokenUnsealer, UnlockMethod,
};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The case's TPM: a token unseals iff every PCR it was sealed to has that value now.
struct SimulatedTpm {
    sim: Value,
    calls: u32,
}

impl TokenUnsealer for SimulatedTpm {
    fn unseal(&mut self, token: &Tpm2Token) -> Result<Secret, UnsealError> {
        self.calls += 1;
        if !self.sim["device_present"].as_bool().unwrap_or(false) {
            return Err(UnsealError::NoTpm("/dev/tpmrm0 does not exist".to_owned()));
        }
        let blob = BASE64.encode(&token.blob);
        let sealed = &self.sim["sealed_blobs"][&blob];
        let sealed_to = sealed["sealed_to"].as_object().expect("sealed_to");
        let pcrs = &self.sim["pcrs"][token.pcr_bank.as_str()];
        let mut mismatched: Vec<u32> = sealed_to
            .iter()
            .filter(|(pcr, value)| pcrs.get(pcr.as_str()) != Some(value))
            .map(|(pcr, _)| pcr.parse().expect("pcr index"))
            .collect();
        mismatched.sort_unstable();
        if !mismatched.is_empty() {
            let pcrs = mismatched
                .iter()
                .map(|pcr| format!("pcr {pcr}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(UnsealError::PolicyMismatch {
                pcrs,
                detail: "simulated".to_owned(),
            });
        }
        let passphrase = sealed["unseals_to"].as_str().expect("unseals_to");
        // The flow base64-encodes the unsealed bytes into the passphrase, as systemd does.
        Ok(Secret::from_vec(BASE64.decode(passphrase).expect("base64")))
    }
}

/// The case's keyslots: a keyslot opens iff the passphrase equals its secret. Records
/// every keyslot that was tried so the test can see nothing else was touched.
struct SimulatedKeyslots {
    secrets: BTreeMap<u32, String>,
}

impl KeyslotOpener for SimulatedKeyslots {
    fn open(&mut self, keyslot: u32, passphrase: &[u8]) -> Result<Option<u32>, String> {
        Ok(
            (self.secrets.get(&keyslot).map(String::as_bytes) == Some(passphrase))
                .then_some(keyslot),
        )
    }
}

struct Operator {
    answer: String,
    asked: u32,
}

impl RecoveryPrompt for Operator {
    fn ask(&mut self, reason: &str) -> Option<Secret> {
        assert!(reason.contains("TPM"), "the prompt says why: {reason}");
        self.asked += 1;
        Some(Secret::from_slice(self.answer.as_bytes()))
    }
}

#[test]
fn c02_tpm_unusable_recovery_key() {
    let case = support::fixture("cases/c02-tpm-unseal-fails-after-firmware-update");
    let expected = read_json(&case.join("expected.json"));
    let metadata = Luks2Metadata::from_json(&read_json(&case.join("luks2-metadata.json")))
        .expect("metadata parses");
    let secrets: BTreeMap<u32, String> = read_json(&case.join("keyslot-secrets.json"))
        .as_object()
        .expect("object")
        .iter()
        .map(|(slot, secret)| {
            (
                slot.parse().expect("slot"),
                secret.as_str().expect("text").to_owned(),
            )
        })
        .collect();
    let answer = read_json(&case.join("operator-input.json"))["recovery_key_if_asked"]
        .as_str()
        .expect("recovery key")
        .to_owned();

    for scenario in ["A", "B"] {
        let want = &expected["expected"]["scenarios"][scenario];
        let mut tpm = SimulatedTpm {
            sim: read_json(&case.join(format!("scenario-{scenario}/tpm-sim.json"))),
            calls: 0,
        };
        let before = secrets.clone();
        let mut keyslots = SimulatedKeyslots {
            secrets: secrets.clone(),
        };
        let mut operator = Operator {
            answer: answer.clone(),
            asked: 0,
        };

        let report = unlock::unlock(&metadata, Some(&mut tpm), &mut keyslots, &mut operator, 3);

        assert_eq!(
            report.unlocked,
            want["unlocked"].as_bool().expect("bool"),
            "{scenario}"
        );
        assert_eq!(
            report.keyslot.map(|slot| slot.to_string()).as_deref(),
            want["unlocked_keyslot"].as_str(),
            "{scenario}"
        );
        assert_eq!(
            report.recovery_prompted,
            want["recovery_prompted"].as_bool().expect("bool")
        );
        assert_eq!(
            report.tpm_result,
            want["tpm_result"].as_str().expect("text"),
            "{scenario}"
        );
        assert_eq!(report.method, Some(UnlockMethod::RecoveryKey));
        if let Some(reseal) = want.get("offers_or_performs_reseal_to_current_pcrs") {
            assert_eq!(
                report.reseal_offered,
                reseal.as_bool().expect("bool"),
                "{scenario}"
            );
        }
        // must_not: no boot failure (the flow returned an unlocked report), keyslot 0 is
        // untouched, no re-seal before the recovery key was proven, no TPM retry loop.
        assert_eq!(keyslots.secrets, before, "{scenario}: keyslots changed");
        assert_eq!(operator.asked, 1, "{scenario}");
        assert_eq!(tpm.calls, 1, "{scenario}: the TPM was tried once");
    }
}

#[test]
fn unattended_stays_locked_with_reason() {
    let case = support::fixture("cases/c02-tpm-unseal-fails-after-firmware-update");
    let metadata = Luks2Metadata::from_json(&read_json(&case.join("luks2-metadata.json")))
        .expect("metadata parses");
    let mut tpm = SimulatedTpm {
        sim: read_json(&case.join("scenario-A/tpm-sim.json")),
        calls: 0,
    };
    struct Unattended;
    impl RecoveryPrompt for Unattended {
        fn ask(&mut self, _reason: &str) -> Option<Secret> {
            None
        }
    }
    let mut keyslots = SimulatedKeyslots {
        secrets: BTreeMap::new(),
    };
    let report = unlock::unlock(&metadata, Some(&mut tpm), &mut keyslots, &mut Unattended, 3);
    assert!(!report.unlocked);
    assert!(!report.reseal_offered);
    let reason = report.locked_reason.expect("reason");
    assert!(reason.contains("policy mismatch (pcr 0)"), "{reason}");
    assert!(reason.contains("recovery key"), "{reason}");
}

#[test]
fn orphan_token_skipped() {
    let case = support::fixture("cases/c02-tpm-unseal-fails-after-firmware-update");
    let mut json = read_json(&case.join("luks2-metadata.json"));
    let good = json["tokens"]["1"].clone();
    let mut orphan = good.clone();
    orphan["keyslots"] = serde_json::json!(["7"]);
    json["tokens"] = serde_json::json!({ "0": orphan, "1": good });
    let metadata = Luks2Metadata::from_json(&json).expect("metadata parses");
    let mut sim = read_json(&case.join("scenario-A/tpm-sim.json"));
    // PCR 0 back to the sealed value: the TPM token works.
    sim["pcrs"]["sha256"]["0"] =
        serde_json::json!("02b1e6ef3311e624a1943b504e540d2c40b47699aeacdce5ce24d605384ded80");
    let mut tpm = SimulatedTpm { sim, calls: 0 };
    let secrets = read_json(&case.join("keyslot-secrets.json"));
    let mut keyslots = SimulatedKeyslots {
        secrets: [(1, secrets["1"].as_str().expect("text").to_owned())].into(),
    };
    let mut operator = Operator {
        answer: String::new(),
        asked: 0,
    };
    let report = unlock::unlock(&metadata, Some(&mut tpm), &mut keyslots, &mut operator, 3);
    assert!(report.unlocked);
    assert_eq!(report.method, Some(UnlockMethod::Tpm));
    assert_eq!(report.keyslot, Some(1));
    assert!(
        report.tokens[0].result.starts_with("skipped"),
        "{:?}",
        report.tokens
    );
    assert_eq!(operator.asked, 0);
}
