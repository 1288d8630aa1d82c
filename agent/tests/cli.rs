//! The `detect` and `early` commands, run as the real binary on fixtures.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use support::fixture;

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appliance-agent"))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("run appliance-agent")
}

fn stdout_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Returns the probe options that replay a fixture folder.
fn probe_args(dir: &Path) -> Vec<String> {
    let mut args = vec![
        "--root".to_owned(),
        dir.join("root").display().to_string(),
        "--cpuid".to_owned(),
        dir.join("cpuid.json").display().to_string(),
    ];
    let overrides = dir.join("fs_overrides.json");
    if overrides.exists() {
        args.push("--fs-overrides".to_owned());
        args.push(overrides.display().to_string());
    }
    args
}

fn run_with_probe_args(command: &[&str], dir: &Path) -> Output {
    let probe = probe_args(dir);
    let mut args: Vec<&str> = command.to_vec();
    args.extend(probe.iter().map(String::as_str));
    agent(&args)
}

fn string_set(value: &Value) -> Vec<String> {
    let mut items: Vec<String> = value
        .as_array()
        .expect("list")
        .iter()
        .map(|item| item.as_str().expect("string").to_owned())
        .collect();
    items.sort();
    items
}

#[test]
fn detect_json_reports_passthrough() {
    let output = run_with_probe_args(
        &["detect", "--json"],
        &fixture("cases/a08-gpu-passthrough-in-kvm-guest"),
    );

    assert!(output.status.success(), "{}", stderr_text(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(report["vm"], "kvm");
    assert_eq!(report["container"], "none");
    assert_eq!(report["is_virtualized"], true);
    assert!(report["evidence"].is_array());
    assert_eq!(
        string_set(&report["gpu"]["passthrough_gpus"]),
        ["0000:06:00.0", "0000:07:00.0", "0000:08:00.0"]
    );
}

#[test]
fn detect_text_summary() {
    let output = run_with_probe_args(
        &["detect"],
        &fixture("cases/a02-parallels-exposing-kvm-cpuid"),
    );

    assert!(output.status.success(), "{}", stderr_text(&output));
    let text = stdout_text(&output);
    assert!(text.contains("vm: parallels\n"), "{text}");
    assert!(text.contains("container: none\n"), "{text}");
}

#[test]
fn detect_rejects_missing_root() {
    let output = agent(&["detect", "--root", "/nonexistent/appliance-root"]);

    assert!(!output.status.success());
    let message = stderr_text(&output);
    assert!(message.contains("/nonexistent/appliance-root"), "{message}");
    assert!(message.contains("not a directory"), "{message}");
}

#[test]
fn detect_rejects_invalid_cpuid_file() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let cpuid = dir.path().join("cpuid.json");
    fs::write(&cpuid, "{\"arch\": 64}").expect("write cpuid.json");

    let output = agent(&["detect", "--cpuid", &cpuid.display().to_string()]);

    assert!(!output.status.success());
    let message = stderr_text(&output);
    assert!(message.contains("invalid CPUID file"), "{message}");
    assert!(message.contains(&cpuid.display().to_string()), "{message}");
}

#[test]
fn collected_bundle_replays_same_result() {
    let case = fixture("cases/a05-ec2-metal-unprivileged");
    let scratch = tempfile::tempdir().expect("create temp dir");
    let bundle = scratch.path().join("bundle");
    let bundle_arg = bundle.display().to_string();

    let collected = run_with_probe_args(&["detect", "--json", "--collect", &bundle_arg], &case);
    assert!(collected.status.success(), "{}", stderr_text(&collected));

    let product_name =
        fs::read_to_string(bundle.join("root/sys/class/dmi/id/product_name")).expect("copied file");
    assert_eq!(product_name.trim(), "c7i.metal-24xl");
    let overrides: Value = serde_json::from_str(
        &fs::read_to_string(bundle.join("fs_overrides.json")).expect("read overrides"),
    )
    .expect("valid overrides");
    assert!(string_set(&overrides["unreadable"])
        .contains(&"/sys/firmware/dmi/entries/0-0/raw".to_owned()));
    assert!(string_set(&overrides["absent"]).contains(&"/proc/xen".to_owned()));
    assert!(!bundle
        .join("root/sys/firmware/dmi/entries/0-0/raw")
        .exists());

    let replayed = run_with_probe_args(&["detect", "--json"], &bundle);
    assert!(replayed.status.success(), "{}", stderr_text(&replayed));
    let original: Value = serde_json::from_slice(&collected.stdout).expect("JSON");
    let replay: Value = serde_json::from_slice(&replayed.stdout).expect("JSON");
    assert_eq!(replay, original);
    assert_eq!(replay["vm"], "none");
}

#[test]
fn collected_bundle_keeps_driver_links() {
    let case = fixture("vm/kvm-gpu-passthrough");
    let scratch = tempfile::tempdir().expect("create temp dir");
    let bundle = scratch.path().join("bundle");

    let collected = run_with_probe_args(
        &[
            "detect",
            "--json",
            "--collect",
            &bundle.display().to_string(),
        ],
        &case,
    );
    assert!(collected.status.success(), "{}", stderr_text(&collected));

    let replayed = run_with_probe_args(&["detect", "--json"], &bundle);
    let replay: Value = serde_json::from_slice(&replayed.stdout).expect("JSON");
    assert_eq!(string_set(&replay["gpu"]["usable_gpus"]), ["0000:01:00.0"]);
    assert_eq!(string_set(&replay["gpu"]["unbound_gpus"]), ["0000:02:00.0"]);
}

#[test]
fn collect_rejects_non_empty_directory() {
    let scratch = tempfile::tempdir().expect("create temp dir");
    fs::write(scratch.path().join("notes.txt"), "keep").expect("write file");

    let output = run_with_probe_args(
        &["detect", "--collect", &scratch.path().display().to_string()],
        &fixture("vm/kvm-q35"),
    );

    assert!(!output.status.success());
    let message = stderr_text(&output);
    assert!(message.contains("is not empty"), "{message}");
}

#[test]
fn early_prints_console_line() {
    let state = tempfile::tempdir().expect("create temp dir");
    let state_arg = state.path().display().to_string();

    let output = run_with_probe_args(
        &["early", "--state-dir", &state_arg],
        &fixture("vm/kvm-gpu-passthrough"),
    );

    assert!(output.status.success(), "{}", stderr_text(&output));
    assert_eq!(
        stdout_text(&output),
        "appliance-agent early: boot secure_boot=unsupported tpm=none\n\
         appliance-agent early: measurements verdict=unverifiable not_passed=[tpm]\n\
         appliance-agent early: vault absent reason=no partition with the vault's GPT type \
         b69992a8-67ec-4659-a0e0-e8f5be18f8bc and label appliance-vault\n\
         appliance-agent early: platform is_vm=true hypervisor=kvm gpu_passthrough=true\n"
    );
    let written: Value = serde_json::from_str(
        &fs::read_to_string(state.path().join("platform.json")).expect("platform.json"),
    )
    .expect("valid JSON");
    assert_eq!(written["format_version"], 1);
    assert_eq!(written["detection"]["vm"], "kvm");
}

#[test]
fn early_logs_skipped_steps() {
    let state = tempfile::tempdir().expect("create temp dir");

    let output = run_with_probe_args(
        &["early", "--state-dir", &state.path().display().to_string()],
        &fixture("vm/bare-metal-server"),
    );

    assert!(output.status.success(), "{}", stderr_text(&output));
    assert_eq!(
        stdout_text(&output),
        "appliance-agent early: boot secure_boot=unsupported tpm=none\n\
         appliance-agent early: measurements verdict=unverifiable not_passed=[tpm]\n\
         appliance-agent early: vault absent reason=no partition with the vault's GPT type \
         b69992a8-67ec-4659-a0e0-e8f5be18f8bc and label appliance-vault\n\
         appliance-agent early: platform is_vm=false hypervisor=none gpu_passthrough=false\n"
    );
    let log = stderr_text(&output);
    assert!(
        log.contains("step skipped step=\"strip_clipboard_agents\""),
        "{log}"
    );
    for step in [
        "read_boot_state",
        "verify_measurements",
        "unseal_vault",
        "detect_platform",
    ] {
        assert!(
            log.contains(&format!("step finished step=\"{step}\"")),
            "{step}: {log}"
        );
    }
}

#[test]
fn early_continues_after_detection_failure() {
    let state = tempfile::tempdir().expect("create temp dir");

    // An empty root: early must never look for a vault on the machine running the tests.
    let root = tempfile::tempdir().expect("create temp dir");
    let output = agent(&[
        "early",
        "--state-dir",
        &state.path().display().to_string(),
        "--root",
        &root.path().display().to_string(),
        "--cpuid",
        "/nonexistent/cpuid.json",
    ]);

    assert!(output.status.success(), "{}", stderr_text(&output));
    let stdout = stdout_text(&output);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("appliance-agent early: boot "),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("appliance-agent early: measurements verdict="),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("appliance-agent early: vault absent "),
        "{stdout}"
    );
    assert_eq!(lines[3], "appliance-agent early: platform detection failed");
    assert!(stderr_text(&output).contains("/nonexistent/cpuid.json"));
}

#[test]
fn early_fails_when_state_unwritable() {
    let scratch = tempfile::tempdir().expect("create temp dir");
    let blocker = scratch.path().join("not-a-directory");
    fs::write(&blocker, "").expect("write file");
    // A directory below a regular file cannot be created, even by root.
    let state_dir = blocker.join("appliance");

    let output = run_with_probe_args(
        &["early", "--state-dir", &state_dir.display().to_string()],
        &fixture("vm/kvm-q35"),
    );

    assert!(!output.status.success());
    let message = stderr_text(&output);
    assert!(
        message.contains(&state_dir.display().to_string()),
        "{message}"
    );
    assert!(message.contains("--state-dir"), "{message}");
}

#[test]
fn early_masks_agents_in_sysroot() {
    let state = tempfile::tempdir().expect("create temp dir");
    let sysroot = tempfile::tempdir().expect("create temp dir");
    let units = sysroot.path().join("usr/lib/systemd/system");
    fs::create_dir_all(&units).expect("create unit folder");
    fs::write(units.join("spice-vdagentd.socket"), "[Socket]\n").expect("write unit");
    fs::write(units.join("spice-vdagentd.service"), "[Service]\n").expect("write unit");
    fs::write(units.join("qemu-guest-agent.service"), "[Service]\n").expect("write unit");
    let autostart = sysroot.path().join("etc/xdg/autostart");
    fs::create_dir_all(&autostart).expect("create autostart folder");
    fs::write(
        autostart.join("spice-vdagent.desktop"),
        "[Desktop Entry]\nType=Application\nExec=/usr/bin/spice-vdagent\n",
    )
    .expect("write autostart entry");
    let user_units = sysroot.path().join("usr/lib/systemd/user");
    fs::create_dir_all(&user_units).expect("create user unit folder");
    fs::write(user_units.join("spice-vdagent.service"), "[Service]\n").expect("write unit");
    let login_screen = sysroot.path().join("usr/share/gdm/autostart/LoginWindow");
    fs::create_dir_all(&login_screen).expect("create login screen folder");
    fs::write(
        login_screen.join("spice-vdagent.desktop"),
        "[Desktop Entry]\nType=Application\nExec=/usr/bin/spice-vdagent\n",
    )
    .expect("write login screen entry");
    let sysroot_arg = sysroot.path().display().to_string();

    let output = run_with_probe_args(
        &[
            "early",
            "--state-dir",
            &state.path().display().to_string(),
            "--sysroot",
            &sysroot_arg,
        ],
        &fixture("vm/kvm-q35"),
    );

    assert!(output.status.success(), "{}", stderr_text(&output));
    let console = stdout_text(&output);
    for line in [
        "appliance-agent early: clipboard stop and mask spice-vdagentd.socket done",
        "appliance-agent early: clipboard stop and mask spice-vdagentd.service done",
        "appliance-agent early: clipboard mask user unit spice-vdagent.service for every user done",
        "appliance-agent early: clipboard set Hidden=true in /etc/xdg/autostart/spice-vdagent.desktop done",
        "appliance-agent early: clipboard set Hidden=true in /usr/share/gdm/autostart/LoginWindow/spice-vdagent.desktop done",
        "appliance-agent early: clipboard clipboard_agents=4 actions=5 failed=0",
    ] {
        assert!(console.lines().any(|printed| printed == line), "{line}\n{console}");
    }
    for unit in ["spice-vdagentd.socket", "spice-vdagentd.service"] {
        let link = sysroot.path().join("etc/systemd/system").join(unit);
        assert_eq!(
            fs::read_link(&link).expect("mask link"),
            Path::new("/dev/null")
        );
    }
    assert!(!sysroot
        .path()
        .join("etc/systemd/system/qemu-guest-agent.service")
        .exists());
    let entry = fs::read_to_string(autostart.join("spice-vdagent.desktop")).expect("read entry");
    assert!(entry.contains("Hidden=true"), "{entry}");
    assert!(stderr_text(&output).contains("step finished step=\"strip_clipboard_agents\""));
    let recorded: Value = serde_json::from_str(
        &fs::read_to_string(state.path().join("hardening.json")).expect("hardening.json"),
    )
    .expect("valid JSON");
    assert_eq!(recorded["actions"].as_array().expect("actions").len(), 5);
    assert_eq!(
        fs::read_link(
            sysroot
                .path()
                .join("etc/systemd/user/spice-vdagent.service")
        )
        .expect("user unit mask link"),
        Path::new("/dev/null")
    );
    assert_eq!(recorded["actions"][0]["ok"], true);
}
