//! The encrypted vault: a LUKS2 partition whose key the TPM releases only on a boot that we
//! signed, with a recovery key for every other case.
//!
//! The early stage (initrd) creates the vault on first boot, unlocks it with the TPM, mounts
//! it under /sysroot and records the outcome in `/run/appliance/vault.json`. After
//! switch-root, `serve` reads that file, reports it at `/api/vault/status`, and can open the
//! vault with the recovery key or close it again.

pub mod enroll;
pub mod luks;
pub mod recovery;
pub mod secret;
pub mod service;
pub mod system;
pub mod token;
pub mod tpm;
pub mod unlock;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::rootfs::RootFs;

/// GPT partition type of the vault (the appliance's own UUID).
pub const PARTITION_TYPE: &str = "b69992a8-67ec-4659-a0e0-e8f5be18f8bc";
/// GPT partition label of the vault.
pub const PARTITION_LABEL: &str = "appliance-vault";
/// Name of the mapping under /dev/mapper.
pub const MAPPING: &str = "appliance-vault";
/// Mount point of the vault in the running system.
pub const MOUNT_POINT: &str = "/var/lib/appliance/vault";
/// File inside the vault with its identifier.
pub const IDENTITY_FILE: &str = "appliance-vault.json";
/// File in the state directory with the vault's state.
pub const STATE_FILE: &str = "vault.json";
/// Prefix of the console lines about the vault.
pub const CONSOLE_PREFIX: &str = "appliance-agent early: vault ";

/// Writes one line to the console, for the operator and the boot tests. Never used for
/// secrets except by [`show_recovery_key`].
pub fn console_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Shows the recovery key on the console (/dev/console when it exists, so that it does not
/// reach the journal through stdout) with instructions.
pub fn show_recovery_key(key: &secret::Secret) {
    let text = String::from_utf8_lossy(key.as_bytes()).into_owned();
    let message = format!(
        "\n{CONSOLE_PREFIX}recovery key (write it down now; it is shown only once and opens \
         the vault when the TPM cannot):\n\n    {text}\n\n"
    );
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/console")
        .and_then(|mut console| console.write_all(message.as_bytes()));
    if written.is_err() {
        let _ = std::io::stderr().write_all(message.as_bytes());
    }
    let mut message = message.into_bytes();
    zeroize::Zeroize::zeroize(&mut message);
    let mut text = text.into_bytes();
    zeroize::Zeroize::zeroize(&mut text);
}

/// Lifecycle state of the vault, as `/api/vault/status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VaultState {
    Open,
    Locked,
    /// No vault partition was found.
    Absent,
    /// The partition contains something the agent will not touch, or an operation failed.
    Error,
}

/// The vault's state, written by `early` and kept up to date by `serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultStatus {
    pub state: VaultState,
    /// Reason the vault is not open, in words an operator can act on.
    pub reason: Option<String>,
    pub device: Option<String>,
    pub mount_point: Option<String>,
    /// "tpm" or "recovery-key" once open.
    pub unlocked_by: Option<String>,
    pub keyslot: Option<u32>,
    pub tpm_result: Option<String>,
    pub tokens: Vec<unlock::TokenAttempt>,
    /// Set when the vault was created on this boot ("created", "resumed", "restarted").
    pub enrollment: Option<String>,
    pub reseal_offered: bool,
    /// The PCR 15 measurement of the opened volume, hex.
    pub pcr15_measurement: Option<String>,
    /// Random identifier written into the vault when it was first opened; it tells two
    /// vaults apart and shows that a reopened vault holds the same files.
    pub vault_id: Option<String>,
}

impl VaultStatus {
    pub fn new(state: VaultState, reason: Option<String>) -> Self {
        Self {
            state,
            reason,
            device: None,
            mount_point: None,
            unlocked_by: None,
            keyslot: None,
            tpm_result: None,
            tokens: Vec::new(),
            enrollment: None,
            reseal_offered: false,
            pcr15_measurement: None,
            vault_id: None,
        }
    }

    pub fn write(&self, state_dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join(STATE_FILE);
        let temporary = state_dir.join(format!(".{STATE_FILE}.tmp"));
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&temporary, &path)?;
        Ok(())
    }

    pub fn read(state_dir: &Path) -> anyhow::Result<Self> {
        let path = state_dir.join(STATE_FILE);
        let bytes = std::fs::read(&path)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map_err(|error| anyhow::anyhow!("{} is not a vault state: {error}", path.display()))
    }
}

/// Finds the vault partition: the one partition whose GPT type is [`PARTITION_TYPE`] and
/// whose label is [`PARTITION_LABEL`], from udev's database. Two candidates are an error,
/// because a disk plugged in by someone else could carry the same label.
pub fn find_partition(fs: &RootFs) -> anyhow::Result<Option<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs.read_dir("/sys/class/block").unwrap_or_default() {
        let name = entry;
        let Ok(dev) = fs.read_to_string(&format!("/sys/class/block/{name}/dev")) else {
            continue;
        };
        let Ok(udev) = fs.read_to_string(&format!("/run/udev/data/b{}", dev.trim())) else {
            continue;
        };
        let property = |key: &str| {
            udev.lines()
                .find_map(|line| line.strip_prefix(&format!("E:{key}=")))
                .map(str::to_owned)
        };
        let type_matches = property("ID_PART_ENTRY_TYPE")
            .is_some_and(|value| value.eq_ignore_ascii_case(PARTITION_TYPE));
        let label_matches = property("ID_PART_ENTRY_NAME").as_deref() == Some(PARTITION_LABEL);
        if type_matches && label_matches {
            found.push(PathBuf::from(format!("/dev/{name}")));
        }
    }
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => anyhow::bail!(
            "{} partitions have the vault's type and label ({}); remove the disks that do not \
             belong to this appliance and reboot",
            found.len(),
            found
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Returns the string systemd-cryptsetup measures for an opened volume.
pub fn measurement_string(uuid: &str) -> String {
    format!("cryptsetup:{MAPPING}:{uuid}")
}

/// Computes the PCR 15 extension for an opened volume: HMAC-SHA256 keyed with the volume
/// key over [`measurement_string`], the construction systemd-cryptsetup uses for
/// `tpm2-measure-pcr=`, so the value identifies the volume without revealing its key.
pub fn pcr15_digest(volume_key: &secret::Secret, uuid: &str) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(volume_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(measurement_string(uuid).as_bytes());
    mac.finalize().into_bytes().into()
}
