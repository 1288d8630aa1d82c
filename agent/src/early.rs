//! `early`: the steps that run in the initrd before switch-root.
//!
//! Each step is a named function so the boot log shows which one ran, was
//! skipped or failed. Platform detection never stops the boot, because the
//! appliance must stay reachable to show what went wrong. Failing to record
//! the platform is an error, because `serve` would then run without the
//! initrd's view of the platform.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::boot_state;
use crate::cli::EarlyArgs;
use crate::detect::{self, Detection};
use crate::hardening::{self, control::SysrootControl};
use crate::measurements::{self, verify::CheckStatus};
use crate::platform::{self, PlatformState, FORMAT_VERSION};
use crate::rootfs::{FsOverrides, RootFs};
use crate::vault;

/// Prefix of the line that boot tests look for on the serial console.
pub const CONSOLE_PREFIX: &str = "appliance-agent early: platform ";

/// Prefix of the console lines with the measured-boot verdict.
pub const MEASUREMENTS_CONSOLE_PREFIX: &str = "appliance-agent early: measurements ";

/// Prefix of the console line with Secure Boot and TPM state.
pub const BOOT_CONSOLE_PREFIX: &str = "appliance-agent early: boot ";

/// Prefix of the console lines of the clipboard agent step.
pub const HARDENING_CONSOLE_PREFIX: &str = "appliance-agent early: clipboard ";

/// Outcome of one step.
#[derive(Debug, PartialEq, Eq)]
enum StepOutcome {
    Done,
    Skipped(&'static str),
}

/// Runs every step in order.
pub fn run(args: &EarlyArgs) -> anyhow::Result<()> {
    info!(state_dir = %args.state_dir.display(), "early boot steps started");

    run_step("read_boot_state", || read_boot_state(args))?;
    run_step("verify_measurements", || verify_measurements(args))?;
    run_step("unseal_vault", || unseal_vault(args))?;
    run_step("detect_platform", || detect_platform(args))?;
    run_step("strip_clipboard_agents", || strip_clipboard_agents(args))?;

    info!("early boot steps finished");
    Ok(())
}

fn run_step(name: &str, step: impl FnOnce() -> anyhow::Result<StepOutcome>) -> anyhow::Result<()> {
    info!(step = name, "step started");
    match step() {
        Ok(StepOutcome::Done) => info!(step = name, "step finished"),
        Ok(StepOutcome::Skipped(reason)) => warn!(step = name, reason, "step skipped"),
        Err(err) => {
            tracing::error!(step = name, error = %format!("{err:#}"), "step failed");
            return Err(err.context(format!("early boot step {name} failed")));
        }
    }
    Ok(())
}

/// Reports Secure Boot and TPM state on the console, the first thing an
/// operator needs when a later step refuses to unseal the vault.
fn read_boot_state(args: &EarlyArgs) -> anyhow::Result<StepOutcome> {
    let fs = args.probe.root_fs()?;
    let state = boot_state::read(&fs);
    info!(
        secure_boot = ?state.secure_boot,
        tpm_present = state.tpm.present,
        "boot state read"
    );
    print_line(&format!("{BOOT_CONSOLE_PREFIX}{}", state.summary()));
    Ok(StepOutcome::Done)
}

/// Checks the TPM's PCRs against the event logs and records the result.
/// A failed check does not stop the boot: the appliance comes up locked and
/// reports why, which an operator can only read if it boots.
fn verify_measurements(args: &EarlyArgs) -> anyhow::Result<StepOutcome> {
    let fs = args.probe.root_fs()?;
    let report = measurements::run_checks(&fs);

    for check in &report.checks {
        match check.status {
            CheckStatus::Passed => {
                info!(check = %check.name, summary = %check.summary, "measurement check passed")
            }
            CheckStatus::Unverifiable => {
                warn!(check = %check.name, summary = %check.summary, "measurement check unverifiable")
            }
            CheckStatus::Failed => {
                tracing::error!(check = %check.name, summary = %check.summary, "measurement check failed")
            }
        }
        for mismatch in &check.mismatches {
            print_line(&format!(
                "{MEASUREMENTS_CONSOLE_PREFIX}{} PCR {} ({}) expected {} actual {}",
                check.name, mismatch.pcr, mismatch.bank, mismatch.expected, mismatch.actual
            ));
            for event in &mismatch.events {
                print_line(&format!("{MEASUREMENTS_CONSOLE_PREFIX}  {event}"));
            }
        }
    }
    let verdict = serde_json::to_value(report.verdict)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|check| check.status != CheckStatus::Passed)
        .map(|check| check.name.as_str())
        .collect();
    print_line(&format!(
        "{MEASUREMENTS_CONSOLE_PREFIX}verdict={verdict} not_passed=[{}]",
        failed.join(",")
    ));

    let path = measurements::write_report(&args.state_dir, &report)?;
    info!(path = %path.display(), verdict, "measurement report written");
    Ok(StepOutcome::Done)
}

/// Creates the vault on first boot, opens it with the TPM and mounts it under /sysroot.
/// A vault that stays closed does not stop the boot: `serve` reports why and accepts the
/// recovery key.
fn unseal_vault(args: &EarlyArgs) -> anyhow::Result<StepOutcome> {
    let fs = args.probe.root_fs()?;
    let measurements_failed = measurements::read_report(&args.state_dir)
        .map(|report| report.verdict == measurements::Verdict::Failed)
        .unwrap_or(false);
    let cut_point = read_credential(vault::system::CUT_POINT_CREDENTIAL)
        .and_then(|text| vault::enroll::CutPoint::parse(&text));
    if let Err(error) = vault::system::SignedPolicy::keep(&fs, &args.state_dir) {
        warn!(%error, "could not keep the signed PCR policy for serve; PIN unlock and re-sealing will not work");
    }
    let status = vault::system::early_unlock(&vault::system::EarlyVault {
        fs: &fs,
        sysroot: &args.sysroot,
        measurements_failed,
        cut_point,
    });
    let line = match status.state {
        vault::VaultState::Open => format!(
            "{}open by={} keyslot={}",
            vault::CONSOLE_PREFIX,
            status.unlocked_by.as_deref().unwrap_or("?"),
            status
                .keyslot
                .map(|slot| slot.to_string())
                .unwrap_or_default()
        ),
        _ => format!(
            "{}{} reason={}",
            vault::CONSOLE_PREFIX,
            serde_json::to_value(status.state)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default(),
            status.reason.as_deref().unwrap_or("")
        ),
    };
    print_line(&line);
    status.write(&args.state_dir)?;
    Ok(StepOutcome::Done)
}

/// Reads a system credential passed to this service (ImportCredential=).
fn read_credential(name: &str) -> Option<String> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    std::fs::read_to_string(std::path::Path::new(&dir).join(name)).ok()
}

/// Masks the units and hides the autostart entries of clipboard agents on
/// the root file system at `--sysroot`, in a VM, so that none starts after
/// switch-root. `serve` then ends any that runs anyway.
fn strip_clipboard_agents(args: &EarlyArgs) -> anyhow::Result<StepOutcome> {
    let is_vm = match platform::read(&args.state_dir) {
        Ok(state) => state.detection.is_vm(),
        Err(_) => {
            return Ok(StepOutcome::Skipped(
                "no platform state to tell whether this is a VM",
            ))
        }
    };
    if !is_vm {
        return Ok(StepOutcome::Skipped("not a VM"));
    }
    if !args.sysroot.join("etc").is_dir() {
        return Ok(StepOutcome::Skipped(
            "no root file system mounted at the sysroot",
        ));
    }

    let proc_fs = args.probe.root_fs()?;
    let files_fs = RootFs::new(args.sysroot.clone(), FsOverrides::default());
    let mut control = SysrootControl::new(args.sysroot.clone());
    let report = hardening::check(
        &hardening::Target {
            proc_fs: &proc_fs,
            files_fs: &files_fs,
        },
        &mut control,
    );
    for action in &report.actions {
        let outcome = match &action.error {
            None => "done".to_owned(),
            Some(err) => format!("failed: {err}"),
        };
        print_line(&format!(
            "{HARDENING_CONSOLE_PREFIX}{} {outcome}",
            action.action
        ));
    }
    print_line(&format!(
        "{HARDENING_CONSOLE_PREFIX}clipboard_agents={} actions={} failed={}",
        report.clipboard_agents.len(),
        report.actions.len(),
        report.actions.iter().filter(|action| !action.ok).count()
    ));
    let path = hardening::write_report(&args.state_dir, &report)?;
    info!(path = %path.display(), "clipboard agent report written");
    Ok(StepOutcome::Done)
}

/// Runs detection, logs what it found, prints the console line and writes
/// the platform state.
fn detect_platform(args: &EarlyArgs) -> anyhow::Result<StepOutcome> {
    let detection = match detect(args) {
        Ok(detection) => Some(detection),
        Err(err) => {
            // Only invalid --root, --cpuid or --fs-overrides options end up
            // here. The boot goes on and `serve` detects again.
            tracing::error!(error = %format!("{err:#}"), "platform detection failed, boot continues");
            None
        }
    };
    let Some(detection) = detection else {
        print_line(&format!("{CONSOLE_PREFIX}detection failed"));
        return Ok(StepOutcome::Skipped("platform detection failed"));
    };

    log_detection(&detection);
    print_line(&console_line(&detection));

    let state = PlatformState {
        format_version: FORMAT_VERSION,
        detected_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0),
        detection,
    };
    let path = platform::write(&args.state_dir, &state)?;
    info!(path = %path.display(), "platform state written");
    Ok(StepOutcome::Done)
}

fn detect(args: &EarlyArgs) -> anyhow::Result<Detection> {
    let fs = args.probe.root_fs()?;
    let cpuid = args.probe.cpuid()?;
    Ok(detect::run(&fs, &cpuid))
}

/// Logs the hypervisor and GPU findings and every file that was skipped.
pub fn log_detection(detection: &Detection) {
    info!(
        vm = %detection.vm,
        container = %detection.container,
        is_virtualized = detection.is_virtualized,
        "virtualization detected"
    );
    for evidence in &detection.evidence {
        info!(
            probe = %evidence.probe,
            source = %evidence.source,
            observed = %evidence.observed,
            conclusion = %evidence.conclusion,
            "detection evidence"
        );
    }
    for error in &detection.read_errors {
        warn!(probe = %error.probe, path = %error.path, error = %error.error, "file skipped by detection");
    }

    let gpu = &detection.gpu;
    info!(
        gpus = ?gpu.gpus,
        passthrough_gpus = ?gpu.passthrough_gpus,
        usable_gpus = ?gpu.usable_gpus,
        unbound_gpus = ?gpu.unbound_gpus,
        emulated_display_devices = ?gpu.emulated_display_devices,
        "GPUs detected"
    );
}

/// Returns the line for the serial console, without the newline.
pub fn console_line(detection: &Detection) -> String {
    format!(
        "{CONSOLE_PREFIX}is_vm={} hypervisor={} gpu_passthrough={}",
        detection.is_vm(),
        detection.vm,
        detection.gpu_passthrough_usable()
    )
}

fn print_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // The console lines are informational, so a closed stdout is not an error.
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        warn!("failed to print a console line to stdout");
    }
}
