//! PCR 11 policy signing with the test key in tests/fixtures/pcrsig-test-key.
//!
//! The signed JSON must pass this crate's `.pcrsig` checks when built into a UKI. Key files
//! that are missing, malformed, encrypted or contain no RSA private key must fail with an error
//! that names the problem and contains no key material. tests/signer_cli.rs covers the
//! sign-pcr-policy command, and tests/signer_systemd.rs compares the JSON with systemd-measure.

mod support;

use std::path::{Path, PathBuf};

use appliance_secureboot::pcrsig::{verify_pcrsig, Outcome, PolicyDigest};
use appliance_secureboot::signer::{
    check_uki_pcrpkey, sign_pcr11_policy, KeyError, PemFileSigner, PolicySigner, SignPolicyError,
    SignedPcrPolicy, SignerError,
};
use appliance_secureboot::{Pcr11Options, PcrBank, PhasePath, Uki};
use base64ct::{Base64, Encoding};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, LineEnding};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::PeBuilder;

const PUBLIC_KEY: &str = include_str!("fixtures/pcrsig-test-key/public.pem");
const PRIVATE_KEY: &str = include_str!("fixtures/pcrsig-test-key/private.pem");

/// A P-256 key, generated with `openssl genpkey -algorithm EC -pkeyopt
/// ec_paramgen_curve:P-256`.
const EC_PKCS8_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgs2Mc2zmNlSne6+A7
aN9YIUcB6VfKNRdbJgfJ+bw1vMKhRANCAAR7iDQAdGM/LEhMpw120M+PmrjNTvpD
dAYDBejEv+wfI7CMHSXAyeKBuoLEviGmb+R5JAWyBH3Fs3ee0beEvRXm
-----END PRIVATE KEY-----
";

/// The public key of that P-256 key, from `openssl pkey -pubout`.
const EC_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEe4g0AHRjPyxITKcNdtDPj5q4zU76
Q3QGAwXoxL/sHyOwjB0lwMnigbqCxL4hpm/keSQFsgR9xbN3ntG3hL0V5g==
-----END PUBLIC KEY-----
";

/// The same P-256 key as `openssl ec` writes it, in the SEC 1 format.
const EC_SEC1_KEY: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEILNjHNs5jZUp3uvgO2jfWCFHAelXyjUXWyYHyfm8NbzCoAoGCCqGSM49
AwEHoUQDQgAEe4g0AHRjPyxITKcNdtDPj5q4zU76Q3QGAwXoxL/sHyOwjB0lwMni
gbqCxL4hpm/keSQFsgR9xbN3ntG3hL0V5g==
-----END EC PRIVATE KEY-----
";

/// The same P-256 key encrypted with `openssl ec -aes128`, in OpenSSL's traditional format.
const EC_ENCRYPTED_KEY: &str = "-----BEGIN EC PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: AES-128-CBC,CA0485FEFFD0E4011149646AEC0C5FCC

d5r20cBLE7yxh6w7KvQaGYrLQ7Ld/cVN9ymhY6TNXzn8rZChIcZvBGVAP7E3HM8l
BAdcQ0UGHtgzqHvraTRhJNDUl6e270Uh0orUjc9S5WjeA/1Dx59CF2hrPpgHGPKr
33AgyvLTWib0FAy+PW4o9zleeeLam53Gx6xWcmArOXU=
-----END EC PRIVATE KEY-----
";

/// An Ed25519 key, generated with `openssl genpkey -algorithm ED25519`.
const ED25519_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICnchjkZ2D8xezsBP99LC+cIg6e7VtyI1q3u9fRmWTUk
-----END PRIVATE KEY-----
";

/// An Ed25519 key encrypted with `openssl genpkey -algorithm ED25519 -aes-256-cbc`, a PKCS #8
/// EncryptedPrivateKeyInfo.
const ENCRYPTED_PKCS8_KEY: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAjScmChwA9KwgICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEOAB150VYbmrFY4lohSNDDMEQKis
5q4QQS648w8gphcLbeHUyLD5x/3G2dsKEFskA8CkkCVtvj+AQKJbQExL6yXfKF9i
dD+ec40Qa5I/kI1abhg=
-----END ENCRYPTED PRIVATE KEY-----
";

/// The public key of another RSA key, generated with `openssl genpkey -algorithm RSA -pkeyopt
/// rsa_keygen_bits:1024` and `openssl pkey -pubout`.
const OTHER_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDB8+tRE6dJNfQnTnZgg5qbles+
xj5M/wf5pC6qR14teaGqcApsKpzmS5UMrYSx9VIQ83DSInAsFSpHuXyoN3WKJgwT
nwUOOvo0jjRzTf8LJpSxhoaMdwnikguD9J3N8Rz/Bk1c2DT0sAizl25FoOSUeHfF
g7QohKTmt++v2rG8+wIDAQAB
-----END PUBLIC KEY-----
";

const DEFAULT_PHASES: [&str; 4] = [
    "enter-initrd",
    "enter-initrd:leave-initrd",
    "enter-initrd:leave-initrd:sysinit",
    "enter-initrd:leave-initrd:sysinit:ready",
];

const LINUX: &[u8] = b"MZ synthetic kernel for the signer tests";
const OSREL: &[u8] = b"ID=appliance-test\nVERSION_ID=1\n";
const CMDLINE: &[u8] = b"console=ttyS0 quiet";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pcrsig-test-key")
        .join(name)
}

fn test_signer() -> PemFileSigner {
    PemFileSigner::open(&fixture("private.pem")).expect("the test key loads")
}

/// Builds a UKI with an optional `.pcrpkey` and `.pcrsig`, in another file order than the
/// measurement order.
fn build_uki(pcrpkey: Option<&[u8]>, pcrsig: Option<&[u8]>) -> Vec<u8> {
    let mut builder = PeBuilder::new()
        .section(".text", &[0xc3; 16])
        .section(".cmdline", CMDLINE);
    if let Some(pcrsig) = pcrsig {
        builder = builder.section(".pcrsig", pcrsig);
    }
    if let Some(pcrpkey) = pcrpkey {
        builder = builder.section(".pcrpkey", pcrpkey);
    }
    builder
        .section(".osrel", OSREL)
        .section(".linux", LINUX)
        .build()
        .bytes
}

fn sign_bytes(uki: &[u8], signer: &dyn PolicySigner, options: &Pcr11Options) -> SignedPcrPolicy {
    let uki = Uki::parse(uki).expect("test UKI parses");
    sign_pcr11_policy(&uki, signer, options).expect("signing succeeds")
}

fn sha256_options() -> Pcr11Options {
    Pcr11Options {
        banks: vec![PcrBank::Sha256],
        ..Pcr11Options::default()
    }
}

fn to_json(signed: &SignedPcrPolicy) -> String {
    signed.to_json().expect("JSON serializes")
}

/// Returns SHA-256 of the PKCS #1 DER encoding of a PEM public key, which systemd stores as
/// "pkfp".
fn fingerprint_of(public_pem: &str) -> Vec<u8> {
    let key = rsa::PublicKey::from_public_key_pem(public_pem).expect("public key parses");
    let der = key.to_pkcs1_der().expect("public key encodes");
    Sha256::digest(der.as_bytes()).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn key_error(result: Result<PemFileSigner, SignerError>) -> KeyError {
    match result {
        Err(SignerError::InvalidKey(error)) => error,
        Err(SignerError::InvalidKeyFile { source, .. }) => source,
        other => panic!("expected an invalid key error, got {other:?}"),
    }
}

/// Returns the error message with its sources, as the command-line tool prints it.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[test]
fn round_trip_all_banks_verify() {
    let signed = sign_bytes(
        &build_uki(Some(PUBLIC_KEY.as_bytes()), None),
        &test_signer(),
        &Pcr11Options::default(),
    );
    let json = to_json(&signed);
    let uki = build_uki(Some(PUBLIC_KEY.as_bytes()), Some(json.as_bytes()));

    let report =
        verify_pcrsig(&Uki::parse(&uki).expect("signed UKI parses"), 0).expect("checks run");

    assert!(report.all_verified(), "report:\n{report}");
    assert_eq!(report.checks.len(), 16, "report:\n{report}");
    for check in &report.checks {
        assert!(
            matches!(check.outcome, Outcome::Verified { .. }),
            "{} {}: {:?}",
            check.bank(),
            check.phase,
            check.outcome
        );
    }
    assert!(report.unmatched.is_empty(), "report:\n{report}");
}

#[test]
fn round_trip_sha256_default_phases() {
    let signed = sign_bytes(
        &build_uki(Some(PUBLIC_KEY.as_bytes()), None),
        &test_signer(),
        &sha256_options(),
    );
    let json = to_json(&signed);
    let uki = build_uki(Some(PUBLIC_KEY.as_bytes()), Some(json.as_bytes()));

    let report =
        verify_pcrsig(&Uki::parse(&uki).expect("signed UKI parses"), 0).expect("checks run");

    assert!(report.all_verified(), "report:\n{report}");
    let phases: Vec<&str> = report
        .checks
        .iter()
        .map(|check| check.phase.as_str())
        .collect();
    assert_eq!(phases, DEFAULT_PHASES);
    assert!(report.unmatched.is_empty(), "report:\n{report}");
}

#[test]
fn json_has_systemd_layout() {
    let signed = sign_bytes(
        &build_uki(Some(PUBLIC_KEY.as_bytes()), None),
        &test_signer(),
        &Pcr11Options::default(),
    );
    let json = to_json(&signed);
    let fingerprint = hex(&fingerprint_of(PUBLIC_KEY));

    assert!(
        json.starts_with(&format!(
            "{{\"sha1\":[{{\"pcrs\":[11],\"pkfp\":\"{fingerprint}\",\"pol\":\""
        )),
        "{json}"
    );
    assert!(json.ends_with("\"}]}"), "{json}");
    assert!(!json.contains(char::is_whitespace), "{json}");

    let document: Value = serde_json::from_str(&json).expect("valid JSON");
    let banks: Vec<&String> = document.as_object().expect("object").keys().collect();
    assert_eq!(banks, ["sha1", "sha256", "sha384", "sha512"]);
    for bank in ["sha1", "sha256", "sha384", "sha512"] {
        let entries = document[bank].as_array().expect("array of entries");
        assert_eq!(entries.len(), 4, "{bank}");
        for entry in entries {
            assert_eq!(entry["pcrs"], serde_json::json!([11]), "{bank}");
            assert_eq!(entry["pkfp"], fingerprint.as_str(), "{bank}");
            let policy = entry["pol"].as_str().expect("pol is a string");
            assert_eq!(policy.len(), 64, "{bank}");
            assert_eq!(policy, policy.to_lowercase(), "{bank}");
            let signature = entry["sig"].as_str().expect("sig is a string");
            let decoded = Base64::decode_vec(signature).expect("padded base64");
            assert_eq!(decoded.len(), 256, "{bank}: 2048-bit signature");
        }
    }
    assert_eq!(signed.key_fingerprint.to_vec(), fingerprint_of(PUBLIC_KEY));
}

#[test]
fn phases_sorted_and_deduplicated() {
    let options = Pcr11Options {
        banks: vec![PcrBank::Sha256, PcrBank::Sha1, PcrBank::Sha256],
        phase_paths: ["enter-initrd:leave-initrd", "enter-initrd", "enter-initrd"]
            .iter()
            .map(|path| path.parse::<PhasePath>().expect("valid phase path"))
            .collect(),
        profile: 0,
    };
    let signed = sign_bytes(&build_uki(None, None), &test_signer(), &options);
    let all_banks = sign_bytes(
        &build_uki(None, None),
        &test_signer(),
        &Pcr11Options::default(),
    );

    let banks: Vec<PcrBank> = signed.banks.iter().map(|bank| bank.bank).collect();
    assert_eq!(banks, [PcrBank::Sha1, PcrBank::Sha256]);
    for bank in &signed.banks {
        let reference = all_banks
            .banks
            .iter()
            .find(|listed| listed.bank == bank.bank)
            .expect("bank signed by default");
        assert_eq!(bank.entries.len(), 2, "{}", bank.bank);
        assert_eq!(
            bank.entries[0], reference.entries[0],
            "{} enter-initrd",
            bank.bank
        );
        assert_eq!(
            bank.entries[1], reference.entries[1],
            "{} enter-initrd:leave-initrd",
            bank.bank
        );
    }
}

#[test]
fn public_key_pem_as_openssl_writes() {
    let pem = test_signer().public_key_pem().expect("public key encodes");
    assert_eq!(pem, PUBLIC_KEY);
}

#[test]
fn pkcs1_key_signs_identically() {
    // The rsa crate writes the same PEM text as `openssl pkey -traditional` for this key
    // (compared once with OpenSSL 3.0.19).
    let key = rsa::PrivateKey::from_pkcs8_pem(PRIVATE_KEY).expect("test key parses");
    let pkcs1 = key.to_pkcs1_pem(LineEnding::LF).expect("key encodes");
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    let pkcs1_signer = PemFileSigner::from_pem(pkcs1.as_bytes()).expect("PKCS #1 key loads");

    let uki = build_uki(Some(PUBLIC_KEY.as_bytes()), None);
    let from_pkcs1 = sign_bytes(&uki, &pkcs1_signer, &Pcr11Options::default());
    let from_pkcs8 = sign_bytes(&uki, &test_signer(), &Pcr11Options::default());

    assert_eq!(to_json(&from_pkcs1), to_json(&from_pkcs8));
    assert_eq!(pkcs1_signer.bits(), 2048);
    assert_eq!(pkcs1_signer.path(), None);
}

#[test]
fn no_banks_or_phases_rejected() {
    let bytes = build_uki(None, None);
    let uki = Uki::parse(&bytes).expect("test UKI parses");
    let signer = test_signer();

    let no_banks = Pcr11Options {
        banks: Vec::new(),
        ..Pcr11Options::default()
    };
    let result = sign_pcr11_policy(&uki, &signer, &no_banks);
    assert!(
        matches!(result, Err(SignPolicyError::NoBanks)),
        "{result:?}"
    );

    let no_phases = Pcr11Options {
        phase_paths: Vec::new(),
        ..Pcr11Options::default()
    };
    let result = sign_pcr11_policy(&uki, &signer, &no_phases);
    assert!(
        matches!(result, Err(SignPolicyError::NoPhasePaths)),
        "{result:?}"
    );
}

#[test]
fn uki_without_linux_rejected() {
    let bytes = PeBuilder::new().section(".cmdline", CMDLINE).build().bytes;
    let uki = Uki::parse(&bytes).expect("test image parses");

    let result = sign_pcr11_policy(&uki, &test_signer(), &sha256_options());

    assert!(
        matches!(
            result,
            Err(SignPolicyError::Uki(
                appliance_secureboot::Error::MissingLinux { profile: 0 }
            ))
        ),
        "{result:?}"
    );
}

/// A signer whose public key does not belong to its private key.
struct MismatchedSigner(PemFileSigner);

impl PolicySigner for MismatchedSigner {
    fn public_key_pem(&self) -> Result<String, SignerError> {
        Ok(OTHER_PUBLIC_KEY.to_owned())
    }

    fn sign(&self, bank: PcrBank, policy_digest: &PolicyDigest) -> Result<Vec<u8>, SignerError> {
        self.0.sign(bank, policy_digest)
    }
}

#[test]
fn mismatched_signer_fails_check() {
    let bytes = build_uki(None, None);
    let uki = Uki::parse(&bytes).expect("test UKI parses");

    let result = sign_pcr11_policy(&uki, &MismatchedSigner(test_signer()), &sha256_options());

    let Err(error) = result else {
        panic!("signing with a mismatched public key succeeded");
    };
    assert!(
        matches!(
            &error,
            SignPolicyError::SignatureCheck {
                bank: PcrBank::Sha256,
                phase,
                ..
            } if phase.as_str() == "enter-initrd"
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("do not belong together"),
        "{error}"
    );
}

/// A signer whose HSM cannot be reached.
struct FailingSigner;

#[derive(Debug, thiserror::Error)]
#[error("HSM slot 3 not found")]
struct HsmError;

impl PolicySigner for FailingSigner {
    fn public_key_pem(&self) -> Result<String, SignerError> {
        Ok(PUBLIC_KEY.to_owned())
    }

    fn sign(&self, _bank: PcrBank, _policy_digest: &PolicyDigest) -> Result<Vec<u8>, SignerError> {
        Err(SignerError::Backend(Box::new(HsmError)))
    }
}

#[test]
fn backend_error_reaches_caller() {
    let bytes = build_uki(None, None);
    let uki = Uki::parse(&bytes).expect("test UKI parses");

    let result = sign_pcr11_policy(&uki, &FailingSigner, &sha256_options());

    let Err(error) = result else {
        panic!("signing with a failing signer succeeded");
    };
    assert!(
        matches!(error, SignPolicyError::Signer(SignerError::Backend(_))),
        "{error:?}"
    );
    assert_eq!(
        error_chain(&error),
        "the signer failed: HSM slot 3 not found"
    );
}

/// A signer whose public key is the given PEM text.
struct PublicKeyOnlySigner(&'static str);

impl PolicySigner for PublicKeyOnlySigner {
    fn public_key_pem(&self) -> Result<String, SignerError> {
        Ok(self.0.to_owned())
    }

    fn sign(&self, _bank: PcrBank, _policy_digest: &PolicyDigest) -> Result<Vec<u8>, SignerError> {
        panic!("the public key is checked before signing")
    }
}

#[test]
fn signer_public_key_must_be_rsa() {
    let bytes = build_uki(None, None);
    let uki = Uki::parse(&bytes).expect("test UKI parses");

    for (name, pem) in [
        ("text without PEM", "not a PEM document"),
        ("EC public key", EC_PUBLIC_KEY),
    ] {
        let result = sign_pcr11_policy(&uki, &PublicKeyOnlySigner(pem), &sha256_options());
        assert!(
            matches!(result, Err(SignPolicyError::SignerPublicKey(_))),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn pcrpkey_check_passes_same_key() {
    let bytes = build_uki(Some(PUBLIC_KEY.as_bytes()), None);
    let uki = Uki::parse(&bytes).expect("test UKI parses");
    let result = check_uki_pcrpkey(&uki, 0, &test_signer());
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn pcrpkey_check_passes_without_pcrpkey() {
    let bytes = build_uki(None, None);
    let uki = Uki::parse(&bytes).expect("test UKI parses");
    let result = check_uki_pcrpkey(&uki, 0, &test_signer());
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn pcrpkey_check_rejects_other_key() {
    let bytes = build_uki(Some(OTHER_PUBLIC_KEY.as_bytes()), None);
    let uki = Uki::parse(&bytes).expect("test UKI parses");

    let result = check_uki_pcrpkey(&uki, 0, &test_signer());

    let Err(SignPolicyError::PcrpkeyMismatch {
        profile,
        pcrpkey,
        signer,
    }) = result
    else {
        panic!("expected a .pcrpkey mismatch, got {result:?}");
    };
    assert_eq!(profile, 0);
    assert_eq!(pcrpkey, hex(&fingerprint_of(OTHER_PUBLIC_KEY)));
    assert_eq!(signer, hex(&fingerprint_of(PUBLIC_KEY)));
}

#[test]
fn pcrpkey_check_rejects_invalid_pcrpkey() {
    let bytes = build_uki(Some(b"no key"), None);
    let uki = Uki::parse(&bytes).expect("test UKI parses");

    let result = check_uki_pcrpkey(&uki, 0, &test_signer());

    assert!(
        matches!(
            result,
            Err(SignPolicyError::InvalidPcrpkey { profile: 0, .. })
        ),
        "{result:?}"
    );
}

#[test]
fn missing_key_file() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("absent.pem");

    let result = PemFileSigner::open(&path);

    let Err(error) = result else {
        panic!("opening a missing key file succeeded");
    };
    let SignerError::ReadKey {
        path: reported,
        source,
    } = &error
    else {
        panic!("expected a read error, got {error:?}");
    };
    assert_eq!(reported, &path);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn public_key_instead_of_private() {
    let error = PemFileSigner::open(&fixture("public.pem")).expect_err("a public key is rejected");

    let SignerError::InvalidKeyFile { path, source } = &error else {
        panic!("expected an invalid key file error, got {error:?}");
    };
    assert_eq!(path, &fixture("public.pem"));
    assert!(
        matches!(source, KeyError::NotPrivate { label } if label == "PUBLIC KEY"),
        "{source:?}"
    );
    let message = error_chain(&error);
    assert!(message.contains("public.pem"), "{message}");
    assert!(message.contains("no private key"), "{message}");
}

#[test]
fn pkcs1_public_key_instead_of_private() {
    let key = rsa::PublicKey::from_public_key_pem(PUBLIC_KEY).expect("public key parses");
    let pem = key
        .to_pkcs1_pem(LineEnding::LF)
        .expect("public key encodes");

    let error = key_error(PemFileSigner::from_pem(pem.as_bytes()));

    assert!(
        matches!(&error, KeyError::NotPrivate { label } if label == "RSA PUBLIC KEY"),
        "{error:?}"
    );
}

#[test]
fn ec_and_ed25519_keys_rejected() {
    for (name, pem, expected) in [
        (
            "PKCS #8 EC",
            EC_PKCS8_KEY,
            "EC (id-ecPublicKey), 1.2.840.10045.2.1",
        ),
        ("SEC 1 EC", EC_SEC1_KEY, "EC"),
        ("Ed25519", ED25519_KEY, "Ed25519, 1.3.101.112"),
    ] {
        let error = key_error(PemFileSigner::from_pem(pem.as_bytes()));
        assert!(
            matches!(&error, KeyError::UnsupportedAlgorithm { algorithm } if algorithm == expected),
            "{name}: {error:?}"
        );
        assert!(
            error.to_string().contains("only RSA keys"),
            "{name}: {error}"
        );
    }
}

#[test]
fn encrypted_keys_rejected() {
    for (name, pem) in [
        ("PKCS #8", ENCRYPTED_PKCS8_KEY),
        ("traditional", EC_ENCRYPTED_KEY),
    ] {
        let error = key_error(PemFileSigner::from_pem(pem.as_bytes()));
        assert!(matches!(error, KeyError::Encrypted), "{name}: {error:?}");
    }
}

#[test]
fn text_without_pem_block() {
    let error = key_error(PemFileSigner::from_pem(b"not a key\n"));
    assert!(matches!(error, KeyError::InvalidPem(_)), "{error:?}");
}

#[test]
fn pem_with_invalid_base64() {
    let broken = PRIVATE_KEY.replacen("MII", "M*I", 1);

    let error = key_error(PemFileSigner::from_pem(broken.as_bytes()));

    assert!(matches!(error, KeyError::InvalidPem(_)), "{error:?}");
}

#[test]
fn certificate_label_rejected() {
    let relabeled = PUBLIC_KEY.replace("PUBLIC KEY", "CERTIFICATE");
    let error = key_error(PemFileSigner::from_pem(relabeled.as_bytes()));
    assert!(
        matches!(&error, KeyError::NotPrivate { label } if label == "CERTIFICATE"),
        "{error:?}"
    );

    let relabeled = PUBLIC_KEY.replace("PUBLIC KEY", "OPENSSH PRIVATE KEY");
    let error = key_error(PemFileSigner::from_pem(relabeled.as_bytes()));
    assert!(
        matches!(&error, KeyError::UnexpectedPemLabel { label } if label == "OPENSSH PRIVATE KEY"),
        "{error:?}"
    );
}

#[test]
fn binary_der_key_file() {
    let der = rsa::PrivateKey::from_pkcs8_pem(PRIVATE_KEY)
        .expect("test key parses")
        .to_pkcs1_der()
        .expect("key encodes");
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("key.der");
    std::fs::write(&path, der.as_bytes()).expect("write DER key");

    let error = PemFileSigner::open(&path).expect_err("a DER key is rejected");

    assert!(
        matches!(
            &error,
            SignerError::InvalidKeyFile {
                source: KeyError::NotText,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error_chain(&error).contains("openssl pkey -inform DER"),
        "{error}"
    );
}

#[test]
fn private_key_info_not_der() {
    // A valid DER SEQUENCE that is no PrivateKeyInfo: the SubjectPublicKeyInfo of the key.
    let relabeled = PUBLIC_KEY.replace("PUBLIC KEY", "PRIVATE KEY");

    let error = key_error(PemFileSigner::from_pem(relabeled.as_bytes()));

    assert!(matches!(error, KeyError::InvalidPkcs8(_)), "{error:?}");
}

/// Returns the test key with one byte of the private exponent changed, as PEM.
fn corrupted_private_key() -> String {
    let (label, der) =
        rsa::pkcs8::der::pem::decode_vec(PRIVATE_KEY.as_bytes()).expect("test key is PEM");
    let mut der = der;
    // `openssl asn1parse` shows the private exponent at bytes 303 to 558 of this
    // PrivateKeyInfo, so changing byte 400 keeps the DER valid but breaks the key.
    der[400] ^= 0x01;
    rsa::pkcs8::der::pem::encode_string(label, LineEnding::LF, &der).expect("PEM encodes")
}

#[test]
fn corrupted_key_error_hides_material() {
    let pem = corrupted_private_key();
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("corrupted.pem");
    std::fs::write(&path, &pem).expect("write key");

    let error = PemFileSigner::open(&path).expect_err("a corrupted key is rejected");

    assert!(
        matches!(
            &error,
            SignerError::InvalidKeyFile {
                source: KeyError::InvalidPkcs8Key(_),
                ..
            }
        ),
        "{error:?}"
    );
    let printed = format!("{}\n{error:?}", error_chain(&error));
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    for start in (0..body.len() - 12).step_by(4) {
        let piece = &body[start..start + 12];
        assert!(
            !printed.contains(piece),
            "the error contains key text {piece:?}:\n{printed}"
        );
    }
}

#[test]
fn signer_debug_hides_key() {
    let printed = format!("{:?}", test_signer());

    assert!(printed.contains("bits: 2048"), "{printed}");
    assert!(printed.contains("private.pem"), "{printed}");
    let body: String = PRIVATE_KEY
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    for start in (0..body.len() - 12).step_by(4) {
        let piece = &body[start..start + 12];
        assert!(
            !printed.contains(piece),
            "Debug contains key text {piece:?}: {printed}"
        );
    }
}
