//! Detection against fixture trees: the acceptance cases under
//! `tests/fixtures/cases` and this project's own trees under
//! `tests/fixtures/vm`. Each folder's `expected.json` contains the assertions.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use appliance_agent::detect::Detection;
use serde_json::Value;

use support::{detect_fixture, fixture, fixture_fs};

/// GPU sets in `expected.json`, each compared as a set.
const GPU_SETS: &[&str] = &[
    "gpus",
    "passthrough_gpus",
    "usable_gpus",
    "unbound_gpus",
    "emulated_display_devices",
    "not_gpus",
];

/// Keys of `expected.json` that carry no assertion.
const COMMENT_KEYS: &[&str] = &["note"];

fn load_expected(case_dir: &Path) -> Value {
    let text = fs::read_to_string(case_dir.join("expected.json")).expect("read expected.json");
    let document: Value = serde_json::from_str(&text).expect("valid expected.json");
    document["expected"].clone()
}

fn gpu_set(detection: &Detection, key: &str) -> BTreeSet<String> {
    let gpu = &detection.gpu;
    let list = match key {
        "gpus" => &gpu.gpus,
        "passthrough_gpus" => &gpu.passthrough_gpus,
        "usable_gpus" => &gpu.usable_gpus,
        "unbound_gpus" => &gpu.unbound_gpus,
        "emulated_display_devices" => &gpu.emulated_display_devices,
        "not_gpus" => &gpu.not_gpus,
        other => panic!("no GPU set named {other}"),
    };
    list.iter().cloned().collect()
}

/// Checks every key of `expected` against the detection result. A key
/// that this function does not know fails the test, so no expectation is
/// skipped without notice.
fn assert_matches(label: &str, detection: &Detection, expected: &Value) {
    let expected = expected.as_object().expect("expected is an object");

    for (key, value) in expected {
        match key.as_str() {
            "vm" => assert_eq!(detection.vm.as_str(), value, "{label}: vm"),
            "container" => assert_eq!(detection.container.as_str(), value, "{label}: container"),
            "is_virtualized" => {
                assert_eq!(detection.is_virtualized, *value, "{label}: is_virtualized")
            }
            "systemd_detect_virt" => {
                assert_eq!(
                    detection.virtualization, *value,
                    "{label}: systemd_detect_virt"
                )
            }
            "must_not_be" => {
                let forbidden: Vec<&str> = match value {
                    Value::String(one) => vec![one.as_str()],
                    Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                    other => panic!("{label}: must_not_be has an unexpected form {other}"),
                };
                for name in forbidden {
                    assert_ne!(
                        detection.vm.as_str(),
                        name,
                        "{label}: vm must not be {name}"
                    );
                    assert_ne!(
                        detection.virtualization, name,
                        "{label}: virtualization must not be {name}"
                    );
                }
            }
            set if GPU_SETS.contains(&set) => {
                let expected_set: BTreeSet<String> = value
                    .as_array()
                    .expect("GPU set is a list")
                    .iter()
                    .map(|item| item.as_str().expect("PCI address is a string").to_owned())
                    .collect();
                assert_eq!(gpu_set(detection, set), expected_set, "{label}: {set}");
            }
            comment if COMMENT_KEYS.contains(&comment) => {}
            other => panic!("{label}: expected.json key {other} has no check"),
        }
    }
}

fn check_fixture(relative: &str) -> Detection {
    let dir = fixture(relative);
    let detection = detect_fixture(&dir);
    assert_matches(relative, &detection, &load_expected(&dir));
    detection
}

fn check_scenario(relative: &str, scenario: &str) -> Detection {
    let case_dir = fixture(relative);
    let detection = detect_fixture(&case_dir.join(format!("scenario-{scenario}")));
    let expected = &load_expected(&case_dir)["scenarios"][scenario];
    assert!(
        expected.is_object(),
        "{relative}: no expectations for scenario {scenario}"
    );
    assert_matches(
        &format!("{relative} scenario {scenario}"),
        &detection,
        expected,
    );
    detection
}

// Acceptance cases.

#[test]
fn parallels_wins_over_kvm_cpuid() {
    let detection = check_fixture("cases/a02-parallels-exposing-kvm-cpuid");

    let dmi_match = detection
        .evidence
        .iter()
        .find(|evidence| evidence.probe == "dmi")
        .expect("DMI evidence");
    assert_eq!(dmi_match.source, "/sys/class/dmi/id/product_name");
    assert_eq!(dmi_match.observed, "Parallels Virtual Platform");
}

#[test]
fn virtualbox_board_vendor_wins() {
    let detection = check_fixture("cases/a03-virtualbox-on-branded-host-dmi");

    assert!(
        detection
            .evidence
            .iter()
            .any(|evidence| evidence.source == "/sys/class/dmi/id/board_vendor"),
        "{:?}",
        detection.evidence
    );
}

#[test]
fn ec2_metal_unprivileged_is_bare_metal() {
    let detection = check_fixture("cases/a05-ec2-metal-unprivileged");

    let smbios_error = detection
        .read_errors
        .iter()
        .find(|error| error.path == "/sys/firmware/dmi/entries/0-0/raw")
        .expect("SMBIOS read error recorded");
    assert!(
        smbios_error.error.starts_with("EACCES"),
        "{}",
        smbios_error.error
    );
    assert!(
        detection
            .evidence
            .iter()
            .any(|evidence| evidence.observed == "c7i.metal-24xl"),
        "{:?}",
        detection.evidence
    );
}

#[test]
fn ec2_metal_override_gives_eacces() {
    let view = fixture_fs(&fixture("cases/a05-ec2-metal-unprivileged"));

    let err = view
        .read("/sys/firmware/dmi/entries/0-0/raw")
        .expect_err("the override makes the table unreadable");

    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
}

#[test]
fn ec2_metal_absent_paths_are_enoent() {
    let view = fixture_fs(&fixture("cases/a05-ec2-metal-unprivileged"));

    for path in ["/sys/hypervisor/type", "/proc/xen"] {
        assert!(!view.exists(path).expect("existence check"), "{path}");
    }
}

#[test]
fn wsl2_release_string_is_wsl() {
    check_scenario("cases/a07-wsl2-kernel-strings", "A");
}

#[test]
fn lowercase_microsoft_is_not_wsl() {
    check_scenario("cases/a07-wsl2-kernel-strings", "B");
}

#[test]
fn gpu_passthrough_in_kvm_guest() {
    let detection = check_fixture("cases/a08-gpu-passthrough-in-kvm-guest");

    assert!(detection.gpu_passthrough_usable());
}

// This project's own fixture trees, described in tests/fixtures/README.md.

/// Every folder under `tests/fixtures/vm`, each checked by a test below.
const OWN_FIXTURES: &[&str] = &[
    "aarch64-qemu-fw-cfg",
    "aarch64-xen-device-tree",
    "bare-metal-server",
    "docker-on-kvm",
    "hyperv",
    "hypervisor-bit-only",
    "kvm-gpu-passthrough",
    "kvm-q35",
    "qemu-hyperv-enlightenments",
    "qemu-tcg",
    "s390x-zvm",
    "smbios-vm-bit",
    "virtualbox",
    "vmware",
    "xen-dom0",
    "xen-pv-domu",
];

#[test]
fn every_own_fixture_is_listed() {
    let mut on_disk: Vec<String> = fs::read_dir(fixture("vm"))
        .expect("list fixtures")
        .map(|entry| {
            entry
                .expect("fixture entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    on_disk.sort();

    assert_eq!(on_disk, OWN_FIXTURES);
}

#[test]
fn kvm_q35_without_gpu() {
    let detection = check_fixture("vm/kvm-q35");

    assert!(!detection.gpu_passthrough_usable());
}

#[test]
fn qemu_tcg() {
    check_fixture("vm/qemu-tcg");
}

#[test]
fn qemu_with_hyperv_enlightenments() {
    let detection = check_fixture("vm/qemu-hyperv-enlightenments");

    assert!(
        detection
            .evidence
            .iter()
            .any(|evidence| evidence.source == "CPUID leaf 0x40000100"
                && evidence.observed == "KVMKVMKVM"),
        "{:?}",
        detection.evidence
    );
}

#[test]
fn vmware() {
    check_fixture("vm/vmware");
}

#[test]
fn hyperv() {
    check_fixture("vm/hyperv");
}

#[test]
fn virtualbox() {
    check_fixture("vm/virtualbox");
}

#[test]
fn xen_pv_domu() {
    check_fixture("vm/xen-pv-domu");
}

#[test]
fn xen_dom0_is_not_vm() {
    check_fixture("vm/xen-dom0");
}

#[test]
fn bare_metal_server() {
    let detection = check_fixture("vm/bare-metal-server");

    assert!(!detection.gpu_passthrough_usable());
}

#[test]
fn hypervisor_bit_only_is_vm_other() {
    check_fixture("vm/hypervisor-bit-only");
}

#[test]
fn smbios_vm_bit_is_vm_other() {
    check_fixture("vm/smbios-vm-bit");
}

#[test]
fn kvm_gpu_passthrough() {
    let detection = check_fixture("vm/kvm-gpu-passthrough");

    assert!(detection.gpu_passthrough_usable());
}

#[test]
fn aarch64_qemu_fw_cfg() {
    check_fixture("vm/aarch64-qemu-fw-cfg");
}

#[test]
fn aarch64_xen_device_tree() {
    check_fixture("vm/aarch64-xen-device-tree");
}

#[test]
fn s390x_zvm() {
    check_fixture("vm/s390x-zvm");
}

#[test]
fn docker_on_kvm() {
    let detection = check_fixture("vm/docker-on-kvm");

    assert!(
        detection
            .read_errors
            .iter()
            .any(|error| error.path == "/proc/1/environ"),
        "{:?}",
        detection.read_errors
    );
}

// Checks of the checker: a wrong expectation must fail.

#[test]
#[should_panic(expected = "vm")]
fn wrong_vm_expectation_fails() {
    let detection = detect_fixture(&fixture("vm/kvm-q35"));
    assert_matches("kvm-q35", &detection, &serde_json::json!({ "vm": "qemu" }));
}

#[test]
#[should_panic(expected = "has no check")]
fn unknown_expectation_key_fails() {
    let detection = detect_fixture(&fixture("vm/kvm-q35"));
    assert_matches(
        "kvm-q35",
        &detection,
        &serde_json::json!({ "hypervisor_vendor": "kvm" }),
    );
}
