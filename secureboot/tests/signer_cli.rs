//! The sign-pcr-policy command of the appliance-secureboot binary: its output, exit status and
//! error messages, with the test key in tests/fixtures/pcrsig-test-key.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use appliance_secureboot::signer::{sign_pcr11_policy, PemFileSigner};
use appliance_secureboot::{Pcr11Options, PcrBank, Uki};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};
use support::PeBuilder;

const PUBLIC_KEY: &str = include_str!("fixtures/pcrsig-test-key/public.pem");

/// The public key of another RSA key, generated with `openssl genpkey -algorithm RSA -pkeyopt
/// rsa_keygen_bits:1024` and `openssl pkey -pubout`.
const OTHER_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDB8+tRE6dJNfQnTnZgg5qbles+
xj5M/wf5pC6qR14teaGqcApsKpzmS5UMrYSx9VIQ83DSInAsFSpHuXyoN3WKJgwT
nwUOOvo0jjRzTf8LJpSxhoaMdwnikguD9J3N8Rz/Bk1c2DT0sAizl25FoOSUeHfF
g7QohKTmt++v2rG8+wIDAQAB
-----END PUBLIC KEY-----
";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pcrsig-test-key")
        .join(name)
}

/// Builds a UKI with an optional `.pcrpkey` and `.pcrsig`.
fn build_uki(pcrpkey: Option<&[u8]>, pcrsig: Option<&[u8]>) -> Vec<u8> {
    let mut builder = PeBuilder::new()
        .section(".linux", b"MZ synthetic kernel for the CLI tests")
        .section(".cmdline", b"console=ttyS0");
    if let Some(pcrpkey) = pcrpkey {
        builder = builder.section(".pcrpkey", pcrpkey);
    }
    if let Some(pcrsig) = pcrsig {
        builder = builder.section(".pcrsig", pcrsig);
    }
    builder.build().bytes
}

/// Signs the sha256 bank with the library and returns the JSON with a final newline.
fn library_json(uki: &[u8]) -> String {
    let signer = PemFileSigner::open(&fixture("private.pem")).expect("the test key loads");
    let options = Pcr11Options {
        banks: vec![PcrBank::Sha256],
        ..Pcr11Options::default()
    };
    let uki = Uki::parse(uki).expect("test UKI parses");
    let signed = sign_pcr11_policy(&uki, &signer, &options).expect("signing succeeds");
    let mut json = signed.to_json().expect("JSON serializes");
    json.push('\n');
    json
}

/// Returns SHA-256 of the PKCS #1 DER encoding of a PEM public key, in hexadecimal.
fn fingerprint_hex(public_pem: &str) -> String {
    let key = rsa::PublicKey::from_public_key_pem(public_pem).expect("public key parses");
    let der = key.to_pkcs1_der().expect("public key encodes");
    Sha256::digest(der.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn run(arguments: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appliance-secureboot"))
        .args(arguments)
        .output()
        .expect("binary starts")
}

/// Runs `appliance-secureboot sign-pcr-policy UKI --key KEY` followed by `options`.
fn sign_pcr_policy(uki: &Path, key: &Path, options: &[&std::ffi::OsStr]) -> Output {
    let mut arguments = vec![
        "sign-pcr-policy".as_ref(),
        uki.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ];
    arguments.extend_from_slice(options);
    run(&arguments)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn cli_prints_and_writes_json() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki_path = directory.path().join("test.efi");
    let uki = build_uki(Some(PUBLIC_KEY.as_bytes()), None);
    std::fs::write(&uki_path, &uki).expect("write UKI");
    let key = fixture("private.pem");
    let output_path = directory.path().join("pcrsig.json");

    let printed = sign_pcr_policy(&uki_path, &key, &["--bank".as_ref(), "sha256".as_ref()]);
    let written = sign_pcr_policy(
        &uki_path,
        &key,
        &[
            "--bank".as_ref(),
            "sha256".as_ref(),
            "--output".as_ref(),
            output_path.as_os_str(),
        ],
    );

    assert!(printed.status.success(), "stderr: {}", stderr(&printed));
    assert!(written.status.success(), "stderr: {}", stderr(&written));
    assert!(written.stdout.is_empty());
    let expected = library_json(&uki);
    assert_eq!(String::from_utf8_lossy(&printed.stdout), expected);
    let file = std::fs::read_to_string(&output_path).expect("read output file");
    assert_eq!(file, expected);
}

#[test]
fn cli_output_passes_verify_pcrsig() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let unsigned_path = directory.path().join("unsigned.efi");
    std::fs::write(&unsigned_path, build_uki(Some(PUBLIC_KEY.as_bytes()), None))
        .expect("write UKI");

    let signed = sign_pcr_policy(&unsigned_path, &fixture("private.pem"), &[]);
    assert!(signed.status.success(), "stderr: {}", stderr(&signed));
    let signed_path = directory.path().join("signed.efi");
    std::fs::write(
        &signed_path,
        build_uki(Some(PUBLIC_KEY.as_bytes()), Some(&signed.stdout)),
    )
    .expect("write signed UKI");
    let verified = run(&["verify-pcrsig".as_ref(), signed_path.as_os_str()]);

    let report = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "report:\n{report}");
    assert!(
        report.contains("PASS: 16 of 16 checks verified"),
        "report:\n{report}"
    );
}

#[test]
fn cli_missing_key_file() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki_path = directory.path().join("test.efi");
    std::fs::write(&uki_path, build_uki(None, None)).expect("write UKI");
    let key = directory.path().join("absent.pem");

    let output = sign_pcr_policy(&uki_path, &key, &[]);

    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let message = stderr(&output);
    assert!(
        message.starts_with(&format!(
            "appliance-secureboot: error: failed to read the private key file {}: ",
            key.display()
        )),
        "{message}"
    );
}

#[test]
fn cli_public_key_as_key() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki_path = directory.path().join("test.efi");
    std::fs::write(&uki_path, build_uki(None, None)).expect("write UKI");
    let key = fixture("public.pem");

    let output = sign_pcr_policy(&uki_path, &key, &[]);

    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&format!("invalid private key file {}", key.display())),
        "{message}"
    );
    assert!(message.contains("\"PUBLIC KEY\" block"), "{message}");
}

#[test]
fn cli_rejects_other_pcrpkey() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki_path = directory.path().join("test.efi");
    std::fs::write(
        &uki_path,
        build_uki(Some(OTHER_PUBLIC_KEY.as_bytes()), None),
    )
    .expect("write UKI");
    let output_path = directory.path().join("pcrsig.json");

    let output = sign_pcr_policy(
        &uki_path,
        &fixture("private.pem"),
        &["--output".as_ref(), output_path.as_os_str()],
    );

    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&fingerprint_hex(OTHER_PUBLIC_KEY)),
        "{message}"
    );
    assert!(message.contains(&fingerprint_hex(PUBLIC_KEY)), "{message}");
    assert!(!output_path.exists(), "no output is written on failure");
}

#[test]
fn cli_unwritable_output() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki_path = directory.path().join("test.efi");
    std::fs::write(&uki_path, build_uki(None, None)).expect("write UKI");
    let output_path = directory.path().join("missing-directory/pcrsig.json");

    let output = sign_pcr_policy(
        &uki_path,
        &fixture("private.pem"),
        &["--output".as_ref(), output_path.as_os_str()],
    );

    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&format!("failed to write {}", output_path.display())),
        "{message}"
    );
}
