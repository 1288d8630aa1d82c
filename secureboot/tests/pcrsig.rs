//! PCR signature checks on synthetic UKIs whose `.pcrsig` the tests build and sign with the
//! test key in tests/fixtures/pcrsig-test-key.
//!
//! The expected PCR 11 values, policy digests and key fingerprint are computed here without
//! the library, so a test fails if the library computes any of them differently.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use appliance_secureboot::pcrsig::{
    verify_pcrsig, Outcome, PcrPublicKey, PcrSigError, PcrSigReport, PcrSignatures,
};
use appliance_secureboot::{Error, PcrBank, Uki};
use base64ct::{Base64, Encoding};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::PrivateKey;
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use support::{hand_pcr11, words, PeBuilder};

const PUBLIC_KEY: &str = include_str!("fixtures/pcrsig-test-key/public.pem");
const PRIVATE_KEY: &str = include_str!("fixtures/pcrsig-test-key/private.pem");

/// A P-256 public key, generated with `openssl genpkey -algorithm EC`.
const EC_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEOyHw0u7CpTwelIuV4oJ4yPL1KHIv
DqjxZq6VUT60tLMdSBgwcSUyWN2PKMC4dV1bP28dP4rYd5WaDJod/J4HIA==
-----END PUBLIC KEY-----
";

const DEFAULT_PHASES: [&str; 4] = [
    "enter-initrd",
    "enter-initrd:leave-initrd",
    "enter-initrd:leave-initrd:sysinit",
    "enter-initrd:leave-initrd:sysinit:ready",
];

const LINUX: &[u8] = b"MZ synthetic kernel for the pcrsig tests";
const OSREL: &[u8] = b"ID=appliance-test\nVERSION_ID=1\n";
const CMDLINE: &[u8] = b"console=ttyS0 quiet";

/// Returns the measured sections of the synthetic UKI, in measurement order.
fn measured(pcrpkey: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (".linux", LINUX.to_vec()),
        (".osrel", OSREL.to_vec()),
        (".cmdline", CMDLINE.to_vec()),
        (".pcrpkey", pcrpkey.to_vec()),
    ]
}

/// Builds a UKI from the measured sections plus an optional `.pcrsig`, placed in the middle
/// so that file order differs from measurement order.
fn build_uki(pcrpkey: Option<&[u8]>, pcrsig: Option<&[u8]>) -> Vec<u8> {
    let mut builder = PeBuilder::new()
        .section(".text", &[0xc3; 16])
        .section(".osrel", OSREL)
        .section(".cmdline", CMDLINE);
    if let Some(pcrsig) = pcrsig {
        builder = builder.section(".pcrsig", pcrsig);
    }
    if let Some(pcrpkey) = pcrpkey {
        builder = builder.section(".pcrpkey", pcrpkey);
    }
    builder.section(".linux", LINUX).build().bytes
}

fn decode_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|start| u8::from_str_radix(&text[start..start + 2], 16).expect("hex digits"))
        .collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Computes PCR 11 after `phase` for the given measured sections, in `bank`.
fn pcr11(bank: &str, sections: &[(&str, Vec<u8>)], phase: &str) -> Vec<u8> {
    let borrowed: Vec<(&str, &[u8])> = sections
        .iter()
        .map(|(name, content)| (*name, content.as_slice()))
        .collect();
    let phase_words = words(phase);
    let hex = match bank {
        "sha1" => hand_pcr11::<Sha1>(&borrowed, &phase_words),
        "sha256" => hand_pcr11::<Sha256>(&borrowed, &phase_words),
        "sha384" => hand_pcr11::<Sha384>(&borrowed, &phase_words),
        "sha512" => hand_pcr11::<Sha512>(&borrowed, &phase_words),
        _ => panic!("unknown bank {bank}"),
    };
    decode_hex(&hex)
}

/// Computes the PolicyPCR digest of a trial session for PCR 11 with `value` in `bank`, from
/// the TPM 2.0 Part 3 formula, with the marshaled bytes written out.
fn hand_policy(bank: &str, value: &[u8]) -> Vec<u8> {
    let algorithm: [u8; 2] = match bank {
        "sha1" => [0x00, 0x04],
        "sha256" => [0x00, 0x0b],
        "sha384" => [0x00, 0x0c],
        "sha512" => [0x00, 0x0d],
        _ => panic!("unknown bank {bank}"),
    };
    let mut hasher = Sha256::new();
    hasher.update([0u8; 32]);
    // TPM_CC_PolicyPCR
    hasher.update([0x00, 0x00, 0x01, 0x7f]);
    // TPML_PCR_SELECTION: count 1, hash algorithm, sizeofSelect 3, PCR 11 = byte 1, bit 3.
    hasher.update([0x00, 0x00, 0x00, 0x01]);
    hasher.update(algorithm);
    hasher.update([0x03, 0x00, 0x08, 0x00]);
    hasher.update(Sha256::digest(value));
    hasher.finalize().to_vec()
}

/// The test key, and the fingerprint systemd would store for it: SHA-256 of the PKCS #1 DER
/// RSAPublicKey.
struct Signer {
    key: PrivateKey,
    fingerprint: Vec<u8>,
}

impl Signer {
    fn new() -> Self {
        let key = PrivateKey::from_pkcs8_pem(PRIVATE_KEY).expect("test key parses");
        let public_der = key
            .to_public_key()
            .to_pkcs1_der()
            .expect("public key encodes");
        let fingerprint = Sha256::digest(public_der.as_bytes()).to_vec();
        Self { key, fingerprint }
    }

    /// Signs a policy digest as systemd-measure 257 does: PKCS #1 v1.5 over the digest hashed
    /// with `hash`.
    fn sign(&self, hash: &str, policy: &[u8]) -> Vec<u8> {
        match hash {
            "sha1" => self.key.pkcs1v15_sign::<Sha1>(policy),
            "sha256" => self.key.pkcs1v15_sign::<Sha256>(policy),
            "sha384" => self.key.pkcs1v15_sign::<Sha384>(policy),
            "sha512" => self.key.pkcs1v15_sign::<Sha512>(policy),
            _ => panic!("unknown hash {hash}"),
        }
        .expect("signing succeeds")
    }

    /// Builds the `.pcrsig` entry for PCR 11 after `phase`, signed with the bank's hash.
    fn entry(&self, bank: &str, sections: &[(&str, Vec<u8>)], phase: &str) -> Value {
        let policy = hand_policy(bank, &pcr11(bank, sections, phase));
        json!({
            "pcrs": [11],
            "pkfp": encode_hex(&self.fingerprint),
            "pol": encode_hex(&policy),
            "sig": Base64::encode_string(&self.sign(bank, &policy)),
        })
    }

    /// Builds a `.pcrsig` document for the default phases in `banks`.
    fn document(&self, banks: &[&str], sections: &[(&str, Vec<u8>)]) -> Value {
        let mut document = serde_json::Map::new();
        for bank in banks {
            let entries: Vec<Value> = DEFAULT_PHASES
                .iter()
                .map(|phase| self.entry(bank, sections, phase))
                .collect();
            document.insert((*bank).to_owned(), Value::Array(entries));
        }
        Value::Object(document)
    }
}

fn verify_bytes(uki: &[u8]) -> Result<PcrSigReport, PcrSigError> {
    verify_pcrsig(&Uki::parse(uki).expect("test UKI parses"), 0)
}

/// Builds a UKI with the test key and `document` as `.pcrsig`, and checks it.
fn verify_document(document: &Value) -> PcrSigReport {
    let pcrsig = serde_json::to_vec(document).expect("JSON serializes");
    verify_bytes(&build_uki(Some(PUBLIC_KEY.as_bytes()), Some(&pcrsig))).expect("checks run")
}

fn sha256_document(signer: &Signer) -> Value {
    signer.document(&["sha256"], &measured(PUBLIC_KEY.as_bytes()))
}

/// Returns a mutable reference to entry `index` of `bank`.
fn entry_mut<'a>(document: &'a mut Value, bank: &str, index: usize) -> &'a mut Value {
    &mut document[bank][index]
}

/// Flips the lowest bit of the first byte of a hex field.
fn flip_hex(entry: &mut Value, field: &str) {
    let mut bytes = decode_hex(entry[field].as_str().expect("hex string"));
    bytes[0] ^= 1;
    entry[field] = Value::String(encode_hex(&bytes));
}

fn outcomes(report: &PcrSigReport) -> Vec<(PcrBank, String, Outcome)> {
    report
        .checks
        .iter()
        .map(|check| {
            (
                check.bank(),
                check.phase.as_str().to_owned(),
                check.outcome.clone(),
            )
        })
        .collect()
}

#[test]
fn sha256_signatures_verify() {
    let signer = Signer::new();
    let report = verify_document(&sha256_document(&signer));

    assert!(report.all_verified(), "report:\n{report}");
    assert_eq!(report.checks.len(), 4);
    for (index, (check, phase)) in report.checks.iter().zip(DEFAULT_PHASES).enumerate() {
        assert_eq!(check.bank(), PcrBank::Sha256);
        assert_eq!(check.phase.as_str(), phase);
        assert_eq!(check.outcome, Outcome::Verified { entry: index });
        let sections = measured(PUBLIC_KEY.as_bytes());
        let expected_value = pcr11("sha256", &sections, phase);
        assert_eq!(check.pcr_value.as_bytes(), expected_value.as_slice());
        assert_eq!(
            check.policy.as_slice(),
            hand_policy("sha256", &expected_value)
        );
    }
    assert!(report.unmatched.is_empty(), "report:\n{report}");
    assert_eq!(report.key_fingerprint.as_slice(), signer.fingerprint);
    assert_eq!(report.key_bits, 2048);
}

#[test]
fn all_banks_verify_with_their_hashes() {
    let signer = Signer::new();
    let banks = ["sha1", "sha256", "sha384", "sha512"];
    let document = signer.document(&banks, &measured(PUBLIC_KEY.as_bytes()));
    let report = verify_document(&document);

    assert!(report.all_verified(), "report:\n{report}");
    assert_eq!(report.checks.len(), 16);
    let checked_banks: Vec<PcrBank> = report.checks.iter().map(|check| check.bank()).collect();
    assert_eq!(&checked_banks[0..4], [PcrBank::Sha1; 4]);
    assert_eq!(&checked_banks[12..16], [PcrBank::Sha512; 4]);
}

#[test]
fn flipped_policy_is_missing() {
    let signer = Signer::new();
    let mut document = sha256_document(&signer);
    flip_hex(entry_mut(&mut document, "sha256", 1), "pol");
    let report = verify_document(&document);

    assert!(!report.all_verified());
    assert_eq!(report.checks[0].outcome, Outcome::Verified { entry: 0 });
    assert_eq!(report.checks[1].outcome, Outcome::Missing);
    assert_eq!(report.checks[2].outcome, Outcome::Verified { entry: 2 });
    assert_eq!(report.unmatched.len(), 1);
    assert_eq!(report.unmatched[0].entry, 1);
    assert_eq!(report.unmatched[0].bank, PcrBank::Sha256);
    assert_ne!(report.unmatched[0].policy, report.checks[1].policy);
}

#[test]
fn flipped_signature_is_bad() {
    let signer = Signer::new();
    let mut document = sha256_document(&signer);
    let entry = entry_mut(&mut document, "sha256", 2);
    let mut signature = Base64::decode_vec(entry["sig"].as_str().expect("base64")).expect("sig");
    signature[100] ^= 0x80;
    entry["sig"] = Value::String(Base64::encode_string(&signature));
    let report = verify_document(&document);

    assert!(!report.all_verified());
    assert!(
        matches!(
            report.checks[2].outcome,
            Outcome::BadSignature { entry: 2, .. }
        ),
        "outcome {:?}",
        report.checks[2].outcome
    );
    assert_eq!(report.checks[3].outcome, Outcome::Verified { entry: 3 });
    assert!(report.unmatched.is_empty());
}

#[test]
fn flipped_fingerprint_is_key_mismatch() {
    let signer = Signer::new();
    let mut document = sha256_document(&signer);
    flip_hex(entry_mut(&mut document, "sha256", 3), "pkfp");
    let report = verify_document(&document);

    let mut expected_fingerprint = signer.fingerprint.clone();
    expected_fingerprint[0] ^= 1;
    assert!(!report.all_verified());
    assert_eq!(
        report.checks[3].outcome,
        Outcome::KeyMismatch {
            entry: 3,
            fingerprint: expected_fingerprint
        }
    );
    assert_eq!(report.checks[0].outcome, Outcome::Verified { entry: 0 });
}

#[test]
fn entry_of_right_key_after_other_key() {
    // systemd's unlock code skips entries of other keys, so a later entry for the same policy
    // and the right key counts.
    let signer = Signer::new();
    let mut document = sha256_document(&signer);
    let mut other_key = document["sha256"][0].clone();
    flip_hex(&mut other_key, "pkfp");
    document["sha256"]
        .as_array_mut()
        .expect("array")
        .insert(0, other_key);
    let report = verify_document(&document);

    assert!(report.all_verified(), "report:\n{report}");
    assert_eq!(report.checks[0].outcome, Outcome::Verified { entry: 1 });
    assert!(report.unmatched.is_empty());
}

#[test]
fn bank_hash_mismatch_is_bad_signature() {
    // A sha1 entry signed over the SHA-256 hash of the policy digest, which is not what
    // systemd-measure 257 writes for the sha1 bank.
    let signer = Signer::new();
    let sections = measured(PUBLIC_KEY.as_bytes());
    let mut document = signer.document(&["sha1", "sha256"], &sections);
    let policy = hand_policy("sha1", &pcr11("sha1", &sections, DEFAULT_PHASES[0]));
    document["sha1"][0]["sig"] =
        Value::String(Base64::encode_string(&signer.sign("sha256", &policy)));
    let report = verify_document(&document);

    let sha1_first = &report.checks[0];
    assert_eq!(sha1_first.bank(), PcrBank::Sha1);
    assert!(
        matches!(sha1_first.outcome, Outcome::BadSignature { entry: 0, .. }),
        "outcome {:?}",
        sha1_first.outcome
    );
    assert_eq!(report.checks[1].outcome, Outcome::Verified { entry: 1 });
}

#[test]
fn missing_sha256_bank_fails() {
    let signer = Signer::new();
    let document = signer.document(&["sha1"], &measured(PUBLIC_KEY.as_bytes()));
    let report = verify_document(&document);

    assert!(!report.all_verified());
    assert_eq!(report.checks.len(), 8);
    for (bank, phase, outcome) in outcomes(&report) {
        match bank {
            PcrBank::Sha1 => assert!(matches!(outcome, Outcome::Verified { .. }), "{phase}"),
            PcrBank::Sha256 => assert_eq!(outcome, Outcome::Missing, "{phase}"),
            _ => panic!("unexpected bank {bank}"),
        }
    }
}

#[test]
fn missing_phase_entry_fails() {
    let signer = Signer::new();
    let mut document = sha256_document(&signer);
    document["sha256"].as_array_mut().expect("array").remove(3);
    let report = verify_document(&document);

    assert!(!report.all_verified());
    assert_eq!(report.checks[3].outcome, Outcome::Missing);
    assert_eq!(report.checks[2].outcome, Outcome::Verified { entry: 2 });
}

#[test]
fn entry_for_more_pcrs_is_not_used() {
    let signer = Signer::new();
    let mut document = sha256_document(&signer);
    document["sha256"][0]["pcrs"] = json!([11, 12]);
    let report = verify_document(&document);

    assert_eq!(report.checks[0].outcome, Outcome::Missing);
    assert_eq!(report.unmatched.len(), 1);
    assert_eq!(report.unmatched[0].pcrs, [11, 12]);
}

#[test]
fn repeated_pcr_11_counts_as_pcr_11() {
    let signer = Signer::new();
    let mut document = sha256_document(&signer);
    document["sha256"][0]["pcrs"] = json!([11, 11]);
    let report = verify_document(&document);

    assert_eq!(report.checks[0].outcome, Outcome::Verified { entry: 0 });
}

#[test]
fn trailing_nul_bytes_are_ignored() {
    let signer = Signer::new();
    let mut pcrsig = serde_json::to_vec(&sha256_document(&signer)).expect("JSON");
    pcrsig.extend_from_slice(&[0; 7]);
    let mut pcrpkey = PUBLIC_KEY.as_bytes().to_vec();
    pcrpkey.extend_from_slice(&[0; 3]);

    // The NUL bytes of .pcrpkey are measured, so the document is signed for them too.
    let document = signer.document(&["sha256"], &measured(&pcrpkey));
    let pcrsig_for_padded_key = serde_json::to_vec(&document).expect("JSON");
    let report =
        verify_bytes(&build_uki(Some(&pcrpkey), Some(&pcrsig_for_padded_key))).expect("checks run");
    assert!(report.all_verified(), "report:\n{report}");

    let report =
        verify_bytes(&build_uki(Some(PUBLIC_KEY.as_bytes()), Some(&pcrsig))).expect("checks run");
    assert!(report.all_verified(), "report:\n{report}");
}

#[test]
fn profile_section_overrides_base() {
    let signer = Signer::new();
    let profile = b"ID=first\nTITLE=First profile\n";
    let mut sections = measured(PUBLIC_KEY.as_bytes());
    sections.push((".profile", profile.to_vec()));
    let pcrsig = serde_json::to_vec(&signer.document(&["sha256"], &sections)).expect("JSON");

    // The base .pcrsig is valid JSON but signs nothing, so only the profile's can verify.
    let image = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".osrel", OSREL)
        .section(".cmdline", CMDLINE)
        .section(".pcrpkey", PUBLIC_KEY.as_bytes())
        .section(".pcrsig", b"{}")
        .section(".profile", profile)
        .section(".pcrsig", &pcrsig)
        .build();
    let uki = Uki::parse(&image.bytes).expect("test UKI parses");

    let report = verify_pcrsig(&uki, 0).expect("checks run");
    assert!(report.all_verified(), "report:\n{report}");
    assert_eq!(report.profile, 0);

    let error = verify_pcrsig(&uki, 1).expect_err("profile 1 does not exist");
    assert!(
        matches!(
            error,
            PcrSigError::Uki(Error::ProfileNotFound {
                requested: 1,
                available: 1
            })
        ),
        "error {error:?}"
    );
}

#[test]
fn missing_pcrsig_section() {
    let error = verify_bytes(&build_uki(Some(PUBLIC_KEY.as_bytes()), None))
        .expect_err("no .pcrsig section");
    assert!(
        matches!(
            error,
            PcrSigError::MissingSection {
                section: ".pcrsig",
                profile: 0
            }
        ),
        "error {error:?}"
    );
    assert!(error.to_string().contains("systemd-measure sign"));
}

#[test]
fn missing_pcrpkey_section() {
    let error = verify_bytes(&build_uki(None, Some(b"{}"))).expect_err("no .pcrpkey section");
    assert!(
        matches!(
            error,
            PcrSigError::MissingSection {
                section: ".pcrpkey",
                ..
            }
        ),
        "error {error:?}"
    );
}

#[test]
fn ec_key_is_unsupported() {
    let error = verify_bytes(&build_uki(Some(EC_PUBLIC_KEY.as_bytes()), Some(b"{}")))
        .expect_err("EC keys are unsupported");
    let PcrSigError::UnsupportedKeyAlgorithm { algorithm } = &error else {
        panic!("error {error:?}");
    };
    assert_eq!(algorithm, "EC (id-ecPublicKey), 1.2.840.10045.2.1");
    assert!(error.to_string().contains("only RSA keys"), "{error}");
}

#[test]
fn malformed_pcrpkey_sections() {
    type Check = fn(&PcrSigError) -> bool;
    let not_a_key = "-----BEGIN PUBLIC KEY-----\nAAECAwQF\n-----END PUBLIC KEY-----\n";
    let cases: [(&str, &[u8], Check); 4] = [
        ("text", b"not a PEM document", |error| {
            matches!(error, PcrSigError::InvalidPem(_))
        }),
        (
            "empty PEM body",
            b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
            |error| matches!(error, PcrSigError::InvalidPem(_)),
        ),
        (
            "private key",
            PRIVATE_KEY.as_bytes(),
            |error| matches!(error, PcrSigError::UnexpectedPemLabel(label) if label == "PRIVATE KEY"),
        ),
        ("DER garbage", not_a_key.as_bytes(), |error| {
            matches!(error, PcrSigError::InvalidPublicKeyInfo(_))
        }),
    ];
    for (name, pcrpkey, check) in cases {
        let error = PcrPublicKey::from_pem(pcrpkey).expect_err(name);
        assert!(check(&error), "{name}: error {error:?}");
    }
}

#[test]
fn malformed_pcrsig_documents() {
    let valid_entry = json!({
        "pcrs": [11],
        "pkfp": "00ff",
        "pol": "abcd",
        "sig": "AAEC",
    });
    let with = |field: &str, value: Value| {
        let mut entry = valid_entry.clone();
        entry[field] = value;
        json!({ "sha256": [entry] }).to_string()
    };
    let without = |field: &str| {
        let mut entry = valid_entry.clone();
        entry.as_object_mut().expect("object").remove(field);
        json!({ "sha256": [entry] }).to_string()
    };

    let cases: Vec<(String, &str)> = vec![
        ("not JSON".to_owned(), "is not valid JSON"),
        ("[]".to_owned(), "contains a JSON array"),
        (
            r#"{"SHA256": []}"#.to_owned(),
            "unknown PCR bank \"SHA256\"",
        ),
        (
            r#"{"sm3_256": []}"#.to_owned(),
            "unknown PCR bank \"sm3_256\"",
        ),
        (
            r#"{"sha256": {}}"#.to_owned(),
            "bank sha256 is a JSON object",
        ),
        (
            r#"{"sha256": [1]}"#.to_owned(),
            "entry 0 of bank sha256 is a JSON number",
        ),
        (
            without("pol"),
            "entry 0 of bank sha256 has no \"pol\" field",
        ),
        (without("sig"), "has no \"sig\" field"),
        (
            with("pol", json!("xyz")),
            "\"pol\" is \"xyz\", expected a string of hex",
        ),
        (with("pkfp", json!("abc")), "\"pkfp\" is \"abc\", expected"),
        (with("pol", json!(12)), "\"pol\" is 12, expected"),
        (
            with("sig", json!("!!!!")),
            "\"sig\" is \"!!!!\", expected a base64",
        ),
        (
            with("pcrs", json!([-1])),
            "\"pcrs\" is [-1], expected an array",
        ),
        (
            with("pcrs", json!("11")),
            "\"pcrs\" is \"11\", expected an array",
        ),
        (
            with("pcrs", json!([4294967296u64])),
            "\"pcrs\" is [4294967296]",
        ),
    ];
    for (input, expected) in cases {
        let error = PcrSignatures::parse(input.as_bytes()).expect_err(&input);
        let message = error.to_string();
        assert!(
            message.contains(expected),
            "input {input}: message {message:?} lacks {expected:?}"
        );
    }

    assert!(PcrSignatures::parse(valid_entry.to_string().as_bytes()).is_err());
    let parsed = PcrSignatures::parse(json!({ "sha256": [valid_entry] }).to_string().as_bytes())
        .expect("valid entry parses");
    assert_eq!(parsed.entries(PcrBank::Sha256).len(), 1);
    assert_eq!(parsed.entries(PcrBank::Sha1).len(), 0);
}

#[test]
fn long_field_value_is_shortened() {
    let document = json!({ "sha256": [{
        "pcrs": [11], "pkfp": "x".repeat(500), "pol": "00", "sig": "AA==",
    }] });
    let message = PcrSignatures::parse(document.to_string().as_bytes())
        .expect_err("pkfp is not hex")
        .to_string();
    assert!(message.len() < 300, "message {message:?}");
    assert!(message.contains("..."), "message {message:?}");
}

#[test]
fn every_truncated_input_is_handled() {
    // Every prefix of a valid .pcrsig and .pcrpkey must parse or fail, never panic.
    let signer = Signer::new();
    let document = serde_json::to_vec(&sha256_document(&signer)).expect("JSON");
    for end in 0..document.len() {
        let _ = PcrSignatures::parse(&document[..end]);
    }
    assert!(PcrSignatures::parse(&document).is_ok());

    let key = PUBLIC_KEY.as_bytes();
    for end in 0..key.len() {
        let _ = PcrPublicKey::from_pem(&key[..end]);
    }
    assert!(PcrPublicKey::from_pem(key).is_ok());
}

fn run_cli(uki: &Path, json: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_appliance-secureboot"));
    command.arg("verify-pcrsig").arg(uki);
    if json {
        command.arg("--json");
    }
    command.output().expect("appliance-secureboot starts")
}

#[test]
fn cli_exit_status_and_json() {
    let signer = Signer::new();
    let directory = tempfile::tempdir().expect("temporary directory");

    let good = directory.path().join("good.efi");
    let pcrsig = serde_json::to_vec(&sha256_document(&signer)).expect("JSON");
    std::fs::write(&good, build_uki(Some(PUBLIC_KEY.as_bytes()), Some(&pcrsig))).expect("write");
    let output = run_cli(&good, false);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "stdout:\n{stdout}");
    assert!(stdout.contains("PASS: 4 of 4 checks verified"), "{stdout}");

    let mut document = sha256_document(&signer);
    flip_hex(entry_mut(&mut document, "sha256", 0), "pkfp");
    let bad = directory.path().join("bad.efi");
    let pcrsig = serde_json::to_vec(&document).expect("JSON");
    std::fs::write(&bad, build_uki(Some(PUBLIC_KEY.as_bytes()), Some(&pcrsig))).expect("write");
    let output = run_cli(&bad, false);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "stdout:\n{stdout}");
    assert!(stdout.contains("KEY MISMATCH (entry 0)"), "{stdout}");
    assert!(stdout.contains("FAIL: 3 of 4 checks verified"), "{stdout}");

    let output = run_cli(&bad, true);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["verified"], json!(false));
    assert_eq!(report["checks"][0]["status"], json!("key-mismatch"));
    assert_eq!(report["checks"][0]["entry"], json!(0));
    assert_eq!(report["checks"][1]["status"], json!("verified"));
    assert_eq!(report["pcrpkey"]["bits"], json!(2048));
    assert_eq!(
        report["pcrpkey"]["fingerprint"],
        json!(encode_hex(&signer.fingerprint))
    );

    let output = run_cli(&directory.path().join("absent.efi"), false);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("failed to read"), "{stderr}");
}
