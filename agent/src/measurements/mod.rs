//! Measured-boot verification: the TPM's PCRs of this boot,
//! checked against the firmware event log, systemd's own measurement log
//! and the signed PCR 11 policy that the UKI carries.
//!
//! `early` runs the checks in the initrd and writes the report to /run;
//! `serve` returns it at `GET /api/boot/measurements`.

pub mod pcrs;
pub mod tpm;
pub mod userspace_log;
pub mod verify;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::rootfs::RootFs;
use verify::{Check, CheckStatus};

/// Path of the firmware's TCG event log in securityfs.
pub const FIRMWARE_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";

/// File name of the report inside the state directory.
pub const REPORT_FILE: &str = "measurements.json";

/// Event logs are tens of KiB; this bound only stops a runaway read.
const MAX_LOG_BYTES: u64 = 16 << 20;

/// Overall result of the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check passed.
    Verified,
    /// At least one check failed: the boot is not the one we signed.
    Failed,
    /// No check failed, but at least one lacked its inputs (no TPM, no log).
    Unverifiable,
}

/// Report of the early stage's checks, as `GET /api/boot/measurements` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasurementReport {
    pub verdict: Verdict,
    pub bank: String,
    pub checks: Vec<Check>,
}

impl MeasurementReport {
    /// Combines checks: any failure fails the boot, and any unverifiable
    /// check keeps it from counting as verified.
    pub fn from_checks(checks: Vec<Check>) -> Self {
        let verdict = if checks
            .iter()
            .any(|check| check.status == CheckStatus::Failed)
        {
            Verdict::Failed
        } else if checks
            .iter()
            .any(|check| check.status == CheckStatus::Unverifiable)
        {
            Verdict::Unverifiable
        } else {
            Verdict::Verified
        };
        Self {
            verdict,
            bank: verify::BANK.to_string(),
            checks,
        }
    }
}

/// Runs every check against the TPM and logs under `fs`'s root.
pub fn run_checks(fs: &RootFs) -> MeasurementReport {
    let tpm = read_tpm_pcrs(fs);
    if tpm.is_empty() {
        let check = Check {
            name: "tpm".to_owned(),
            status: CheckStatus::Unverifiable,
            summary: "no TPM 2.0 PCR values in /sys/class/tpm/tpm0/pcr-sha256; \
                      without a TPM this boot cannot be verified"
                .to_owned(),
            mismatches: Vec::new(),
        };
        return MeasurementReport::from_checks(vec![check]);
    }

    let firmware_log = read_optional(&fs.host_path(FIRMWARE_LOG));
    let userspace = match read_optional(&fs.host_path(userspace_log::USERSPACE_LOG)) {
        Some(bytes) => userspace_log::parse(&bytes).unwrap_or_else(|err| {
            tracing::error!(error = %err, "ignoring systemd's measurement log");
            Vec::new()
        }),
        None => Vec::new(),
    };

    let signature = read_optional(&fs.host_path(verify::PCR_SIGNATURE_FILE));
    let public_key = read_optional(&fs.host_path(verify::PCR_PUBLIC_KEY_FILE));
    let pcr11_events = verify::pcr_events(firmware_log.as_deref(), &userspace, pcrs::PCR_UKI);

    MeasurementReport::from_checks(vec![
        verify::check_event_log(firmware_log.as_deref(), &userspace, &tpm),
        verify::check_signed_policy(
            signature.as_deref(),
            public_key.as_deref(),
            &tpm,
            pcr11_events,
        ),
        verify::check_pcr15_unused(&tpm),
    ])
}

/// Reads the sha256 PCRs from the TPM through tss-esapi when `fs` is the
/// running system and it has a TPM. A bundle or fixture tree under another
/// root has no TPM, so its sysfs copy is read instead. sysfs is also the
/// fallback when the TPM does not respond, and the error is logged.
fn read_tpm_pcrs(fs: &RootFs) -> std::collections::BTreeMap<u32, Vec<u8>> {
    if fs.root() == Path::new("/") && fs.exists("/dev/tpmrm0").unwrap_or(false) {
        match tpm::read_sha256_bank(tpm::DEVICE_TCTI) {
            Ok(values) => return values,
            Err(err) => tracing::error!(
                error = %format!("{err:#}"),
                "cannot read PCRs through the TPM, falling back to sysfs"
            ),
        }
    }
    match pcrs::read_bank(fs, "sha256") {
        Ok(values) => values,
        Err(err) => {
            tracing::error!(error = %err, "cannot read PCR values from sysfs");
            Default::default()
        }
    }
}

/// Reads a whole file; `None` when it does not exist. Other errors are
/// logged and also give `None`, which makes the dependent check
/// unverifiable rather than passed.
fn read_optional(path: &Path) -> Option<Vec<u8>> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::error!(path = %path.display(), error = %err, "cannot open measurement log");
            return None;
        }
    };
    let mut bytes = Vec::new();
    match file.take(MAX_LOG_BYTES).read_to_end(&mut bytes) {
        Ok(_) => Some(bytes),
        Err(err) => {
            tracing::error!(path = %path.display(), error = %err, "cannot read measurement log");
            None
        }
    }
}

/// Returns the path of the report inside a state directory.
pub fn report_file(state_dir: &Path) -> PathBuf {
    state_dir.join(REPORT_FILE)
}

/// Writes the report atomically (temporary file, then rename).
pub fn write_report(state_dir: &Path, report: &MeasurementReport) -> anyhow::Result<PathBuf> {
    let path = report_file(state_dir);
    fs::create_dir_all(state_dir).with_context(|| {
        format!(
            "failed to create the state directory {}. Pass a writable --state-dir",
            state_dir.display()
        )
    })?;
    let temporary = state_dir.join(format!(".{REPORT_FILE}.tmp"));
    let json =
        serde_json::to_vec_pretty(report).context("failed to encode the measurement report")?;
    fs::write(&temporary, json)
        .with_context(|| format!("failed to write {}", temporary.display()))?;
    fs::rename(&temporary, &path).with_context(|| {
        format!(
            "failed to rename {} to {}",
            temporary.display(),
            path.display()
        )
    })?;
    Ok(path)
}

/// Reads the report that `early` wrote.
pub fn read_report(state_dir: &Path) -> anyhow::Result<MeasurementReport> {
    let path = report_file(state_dir);
    let bytes = fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a valid report", path.display()))
}
