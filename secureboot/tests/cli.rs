//! The appliance-secureboot binary: output formats, exit status and error messages.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use sha2::Sha256;
use support::{hand_pcr11, words, PeBuilder};

const LINUX: &[u8] = b"MZ fake kernel image";
const CMDLINE: &[u8] = b"console=ttyS0";

fn run(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appliance-secureboot"))
        .args(arguments)
        .output()
        .expect("binary starts")
}

fn write_uki(directory: &Path) -> String {
    let image = PeBuilder::new()
        .section(".cmdline", CMDLINE)
        .section(".linux", LINUX)
        .build();
    let path = directory.join("test.efi");
    std::fs::write(&path, &image.bytes).expect("write UKI");
    path.to_str().expect("UTF-8 path").to_owned()
}

fn expected_sha256(phase: &str) -> String {
    hand_pcr11::<Sha256>(&[(".linux", LINUX), (".cmdline", CMDLINE)], &words(phase))
}

#[test]
fn pcr11_json_output() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki = write_uki(directory.path());

    let output = run(&[
        "pcr11",
        &uki,
        "--json",
        "--bank",
        "sha256",
        "--phase",
        "enter-initrd",
    ]);

    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    let expected = format!(
        "{{\"sha256\":[{{\"phase\":\"enter-initrd\",\"pcr\":11,\"hash\":\"{}\"}}]}}\n",
        expected_sha256("enter-initrd")
    );
    assert_eq!(stdout, expected);
}

#[test]
fn pcr11_json_defaults() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki = write_uki(directory.path());

    let output = run(&["pcr11", &uki, "--json"]);

    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    let banks: Vec<&String> = json.as_object().expect("object").keys().collect();
    assert_eq!(banks, ["sha1", "sha256", "sha384", "sha512"]);
    let sha256 = json["sha256"].as_array().expect("list");
    assert_eq!(sha256.len(), 4);
    let last = &sha256[3];
    assert_eq!(last["phase"], "enter-initrd:leave-initrd:sysinit:ready");
    assert_eq!(last["pcr"], 11);
    assert_eq!(
        last["hash"],
        expected_sha256("enter-initrd:leave-initrd:sysinit:ready")
    );
}

#[test]
fn pcr11_table_output() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki = write_uki(directory.path());

    let output = run(&["pcr11", &uki, "--bank", "SHA256"]);

    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(stdout.contains(".linux"), "{stdout}");
    assert!(stdout.contains(".cmdline"), "{stdout}");
    assert!(stdout.contains("PCR 11 VALUE"), "{stdout}");
    let ready_row = stdout
        .lines()
        .find(|line| line.contains("enter-initrd:leave-initrd:sysinit:ready"))
        .expect("row for the ready phase");
    assert!(ready_row.starts_with("sha256"), "{ready_row}");
    assert!(
        ready_row.ends_with(&expected_sha256("enter-initrd:leave-initrd:sysinit:ready")),
        "{ready_row}"
    );
}

#[test]
fn sections_lists_file_order() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki = write_uki(directory.path());

    let output = run(&["sections", &uki]);

    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    let names: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    assert_eq!(names, [".cmdline", ".linux"]);
}

#[test]
fn missing_file_fails_with_cause() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("absent.efi");

    let output = run(&["pcr11", path.to_str().expect("UTF-8 path")]);

    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("appliance-secureboot: error: failed to read "),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn malformed_uki_fails() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("not-a-uki.efi");
    std::fs::write(&path, b"#!/bin/sh\necho not a PE image\n").expect("write file");

    let output = run(&["pcr11", path.to_str().expect("UTF-8 path"), "--json"]);

    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert!(stderr.contains("invalid DOS magic"), "{stderr}");
}

#[test]
fn unknown_bank_rejected() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki = write_uki(directory.path());

    let output = run(&["pcr11", &uki, "--bank", "md5"]);

    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert!(stderr.contains("unknown PCR bank \"md5\""), "{stderr}");
}

#[test]
fn unknown_phase_rejected() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki = write_uki(directory.path());

    let output = run(&["pcr11", &uki, "--phase", "enter-initrd:boot"]);

    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert!(stderr.contains("\"boot\" is not a boot phase"), "{stderr}");
}

#[test]
fn missing_profile_rejected() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let uki = write_uki(directory.path());

    let output = run(&["pcr11", &uki, "--profile", "1"]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 output");
    assert!(stderr.contains("profile 1 not found"), "{stderr}");
}
