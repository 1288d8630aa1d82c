//! Byte-for-byte comparison of signed PCR 11 policies with `systemd-measure sign --json=short`
//! from the appliance's tools tree (systemd 257).
//!
//! RSASSA-PKCS1-v1_5 signatures are deterministic, so for the same sections, key, banks and
//! phase paths both tools must print the same bytes. systemd-measure reads each measured
//! section from a file holding its loaded content (VirtualSize bytes, zero-filled past the raw
//! data), which the tests extract without the library. Both sign with the test key in
//! tests/fixtures/pcrsig-test-key.
//!
//! The tests skip, printing why, only when the tools tree is absent
//! ($APPLIANCE_CACHE/tools-trixie, by default under /var/cache/appliance). The test of the
//! appliance UKI also skips when build/image/appliance.efi is absent.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use appliance_secureboot::signer::{sign_pcr11_policy, PemFileSigner};
use appliance_secureboot::{Pcr11Options, PcrBank, PhasePath, Uki};
use support::tools::{
    appliance_uki, copy_stable, path_option, section_options, tools, Tools, MEASURED,
};
use support::{loaded_sections, PeBuilder};

const PUBLIC_KEY: &str = include_str!("fixtures/pcrsig-test-key/public.pem");

/// Runs `systemd-measure sign --json=short` with the test key on section files and returns
/// its stdout.
///
/// mkosi runs in `directory`, outside the repository, so that it reads none of the image's
/// configuration, which needs the packages that `make` builds.
fn systemd_measure_sign(
    tools: &Tools,
    directory: &Path,
    sections: &[(&str, PathBuf)],
    banks: &[&str],
    phases: &[&str],
) -> String {
    let mut command = tools.sandbox_command(directory);
    command
        .arg("/usr/lib/systemd/systemd-measure")
        .arg("sign")
        .arg("--json=short")
        .arg(path_option(
            "--private-key=",
            &tools.test_key("private.pem"),
        ))
        .args(section_options(sections));
    command.args(banks.iter().map(|bank| format!("--bank={bank}")));
    command.args(phases.iter().map(|phase| format!("--phase={phase}")));

    let output = command.output().expect("image/mkosi starts");
    assert!(
        output.status.success(),
        "systemd-measure sign failed with {}:\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
    );
    String::from_utf8(output.stdout).expect("systemd-measure prints UTF-8")
}

/// Writes the loaded content of each non-empty measured section of a UKI without profiles to a
/// file in `directory`, and returns the names and paths.
fn write_measured_sections(uki: &[u8], directory: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut files: Vec<(&'static str, PathBuf)> = Vec::new();
    for (name, content) in loaded_sections(uki) {
        let Some(known) = MEASURED.iter().find(|known| **known == name) else {
            continue;
        };
        if content.is_empty() {
            continue;
        }
        assert!(
            !files.iter().any(|(seen, _)| seen == known),
            "the UKI contains {name} twice"
        );
        let path = directory.join(format!("section{name}"));
        std::fs::write(&path, &content).expect("write section file");
        files.push((*known, path));
    }
    assert!(
        files.iter().any(|(name, _)| *name == ".linux"),
        "the UKI has no .linux section"
    );
    files
}

/// Signs a UKI with the library and returns the JSON with systemd-measure's final newline.
fn library_sign(tools: &Tools, uki: &[u8], banks: &[&str], phases: &[&str]) -> String {
    let signer = PemFileSigner::open(&tools.test_key("private.pem")).expect("the test key loads");
    let mut options = Pcr11Options::default();
    if !banks.is_empty() {
        options.banks = banks
            .iter()
            .map(|bank| bank.parse::<PcrBank>().expect("valid bank"))
            .collect();
    }
    if !phases.is_empty() {
        options.phase_paths = phases
            .iter()
            .map(|phase| phase.parse::<PhasePath>().expect("valid phase path"))
            .collect();
    }
    let uki = Uki::parse(uki).expect("the UKI parses");
    let signed = sign_pcr11_policy(&uki, &signer, &options).expect("signing succeeds");
    let mut json = signed.to_json().expect("JSON serializes");
    json.push('\n');
    json
}

/// Runs `appliance-secureboot sign-pcr-policy` with the test key and returns its stdout.
fn cli_sign(tools: &Tools, uki: &Path, banks: &[&str], phases: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_appliance-secureboot"));
    command
        .arg("sign-pcr-policy")
        .arg(uki)
        .arg("--key")
        .arg(tools.test_key("private.pem"));
    for bank in banks {
        command.arg("--bank").arg(bank);
    }
    for phase in phases {
        command.arg("--phase").arg(phase);
    }
    let output = command.output().expect("binary starts");
    assert!(
        output.status.success(),
        "sign-pcr-policy failed with {}:\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Returns a synthetic UKI with the test key's public key as `.pcrpkey`, in another file order
/// than the measurement order.
///
/// `.linux` does not start with "MZ", because systemd-measure would read it as a PE kernel and
/// pad it to SizeOfImage. `.initrd` has a VirtualSize past its data, so that both tools must
/// hash the zero fill.
fn synthetic_uki() -> Vec<u8> {
    let linux: Vec<u8> = (0..5000u32)
        .map(|i| u8::try_from(i * 13 % 251).expect("below 251"))
        .collect();
    let initrd: Vec<u8> = (0..3000u32)
        .map(|i| u8::try_from(i * 7 % 253).expect("below 253"))
        .collect();
    PeBuilder::new()
        .section(".pcrpkey", PUBLIC_KEY.as_bytes())
        .section(".uname", b"6.12.0-signer")
        .section_with_virtual_size(b".initrd", &initrd, 4096)
        .section(".cmdline", b"console=ttyS0 quiet")
        .section(".osrel", b"ID=appliance-test\nVERSION_ID=1\n")
        .section(
            ".sbat",
            b"sbat,1,SBAT Version,sbat,1,https://example.invalid\n",
        )
        .section(".linux", &linux)
        .build()
        .bytes
}

#[test]
fn synthetic_uki_default_banks_and_phases() {
    let Some(tools) = tools() else {
        return;
    };
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki = synthetic_uki();
    let uki_path = directory.path().join("synthetic.efi");
    std::fs::write(&uki_path, &uki).expect("write UKI");
    let sections = write_measured_sections(&uki, directory.path());

    let expected = systemd_measure_sign(&tools, directory.path(), &sections, &[], &[]);

    assert_eq!(library_sign(&tools, &uki, &[], &[]), expected);
    assert_eq!(cli_sign(&tools, &uki_path, &[], &[]), expected);
}

#[test]
fn synthetic_uki_selected_banks_and_phases() {
    let Some(tools) = tools() else {
        return;
    };
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki = synthetic_uki();
    let uki_path = directory.path().join("synthetic.efi");
    std::fs::write(&uki_path, &uki).expect("write UKI");
    let sections = write_measured_sections(&uki, directory.path());
    // Out of order and with a duplicate, which both tools sort and drop.
    let banks = ["sha512", "sha1", "sha512"];
    let phases = [
        "enter-initrd:leave-initrd:sysinit:ready:shutdown",
        "enter-initrd",
        "sysinit",
        "enter-initrd",
    ];

    let expected = systemd_measure_sign(&tools, directory.path(), &sections, &banks, &phases);

    assert_eq!(library_sign(&tools, &uki, &banks, &phases), expected);
    assert_eq!(cli_sign(&tools, &uki_path, &banks, &phases), expected);
}

#[test]
fn appliance_uki_sha256() {
    let Some(tools) = tools() else {
        return;
    };
    let Some(source) = appliance_uki(&tools.repo_root) else {
        return;
    };
    let directory = tempfile::tempdir().expect("temporary directory");
    let copy = directory.path().join("appliance.efi");
    copy_stable(&source, &copy);
    let uki = std::fs::read(&copy).expect("read the copied UKI");
    let sections = write_measured_sections(&uki, directory.path());

    // Only sha256, the bank the appliance signs. With all four banks this test took 26 s
    // instead of 4 s (debug build, 75 MB UKI, 2-core x86-64 VM), and the synthetic UKI covers
    // the other banks. The UKI's .pcrpkey contains the appliance's key, not the test key, so
    // this calls the library, because the command rejects that mismatch.
    let expected = systemd_measure_sign(&tools, directory.path(), &sections, &["sha256"], &[]);

    assert_eq!(library_sign(&tools, &uki, &["sha256"], &[]), expected);
}
