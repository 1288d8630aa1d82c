//! Firmware and TPM facts of the running boot: whether UEFI Secure Boot is
//! enforcing and whether a TPM 2.0 is reachable. Measured-boot checks build
//! on both, and operators read them from `GET /api/boot/status`.

use serde::Serialize;
use tracing::warn;

use crate::rootfs::{describe_error, RootFs};

/// efivarfs names carry the vendor GUID; these variables belong to the UEFI
/// global namespace (EFI_GLOBAL_VARIABLE, UEFI 2.10 section 3.3).
const SECURE_BOOT_VAR: &str =
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";
const SETUP_MODE_VAR: &str =
    "/sys/firmware/efi/efivars/SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// Secure Boot as the firmware reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecureBoot {
    /// SecureBoot=1 and SetupMode=0: the firmware checks every image it loads.
    Enforcing,
    /// SecureBoot=0, or the firmware is in setup mode and accepts any key.
    Disabled,
    /// Setup mode: no platform key enrolled, so nothing is checked.
    SetupMode,
    /// UEFI boot, but the variables cannot be read (efivarfs not mounted).
    Unknown,
    /// Legacy BIOS boot: no UEFI, so no Secure Boot.
    Unsupported,
}

/// TPM as the kernel exposes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tpm {
    pub present: bool,
    /// Major version from sysfs ("2" for TPM 2.0), when the kernel reports it.
    pub version: Option<String>,
    /// Resource-manager device node, the one TPM clients open.
    pub device: Option<String>,
}

/// Firmware and TPM facts of this boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootState {
    pub secure_boot: SecureBoot,
    pub tpm: Tpm,
}

/// Reads the boot state under `fs`'s root.
pub fn read(fs: &RootFs) -> BootState {
    BootState {
        secure_boot: read_secure_boot(fs),
        tpm: read_tpm(fs),
    }
}

/// Reads a boolean EFI variable: an efivarfs file is a 4-byte attribute
/// word followed by the value. A missing variable is normal (SetupMode on
/// some firmware). Any other failure is logged, because it makes Secure Boot
/// look unknown.
fn efi_bool(fs: &RootFs, path: &str) -> Option<bool> {
    match fs.read(path) {
        Ok(data) => {
            let value = data.get(4).map(|value| *value == 1);
            if value.is_none() {
                warn!(
                    path,
                    length = data.len(),
                    "EFI variable shorter than its 4-byte attribute header"
                );
            }
            value
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            warn!(path, error = %describe_error(&err), "cannot read EFI variable");
            None
        }
    }
}

fn read_secure_boot(fs: &RootFs) -> SecureBoot {
    if !fs.exists("/sys/firmware/efi").unwrap_or(false) {
        return SecureBoot::Unsupported;
    }
    match (efi_bool(fs, SECURE_BOOT_VAR), efi_bool(fs, SETUP_MODE_VAR)) {
        (_, Some(true)) => SecureBoot::SetupMode,
        (Some(true), _) => SecureBoot::Enforcing,
        (Some(false), _) => SecureBoot::Disabled,
        (None, _) => {
            warn!(
                path = SECURE_BOOT_VAR,
                efivarfs_mounted = efivarfs_mounted(fs),
                "UEFI boot but the SecureBoot variable is missing; mount efivarfs at /sys/firmware/efi/efivars"
            );
            SecureBoot::Unknown
        }
    }
}

/// Returns whether /proc/self/mountinfo lists efivarfs at /sys/firmware/efi/efivars.
fn efivarfs_mounted(fs: &RootFs) -> bool {
    fs.read_to_string("/proc/self/mountinfo")
        .map(|mountinfo| {
            mountinfo.lines().any(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                fields.get(4) == Some(&"/sys/firmware/efi/efivars") && line.contains(" - efivarfs ")
            })
        })
        .unwrap_or(false)
}

fn read_tpm(fs: &RootFs) -> Tpm {
    let present = fs.exists("/sys/class/tpm/tpm0").unwrap_or(false);
    let version = fs
        .read_first_line("/sys/class/tpm/tpm0/tpm_version_major")
        .ok()
        .map(|line| line.trim().to_owned());
    let device = ["/dev/tpmrm0"]
        .into_iter()
        .find(|path| fs.exists(path).unwrap_or(false))
        .map(str::to_owned);
    Tpm {
        present,
        version,
        device,
    }
}

impl BootState {
    /// One-line summary for the console, e.g. `secure_boot=enforcing tpm=2.0`.
    pub fn summary(&self) -> String {
        let secure_boot = match self.secure_boot {
            SecureBoot::Enforcing => "enforcing",
            SecureBoot::Disabled => "disabled",
            SecureBoot::SetupMode => "setup_mode",
            SecureBoot::Unknown => "unknown",
            SecureBoot::Unsupported => "unsupported",
        };
        let tpm = match (&self.tpm.present, &self.tpm.version) {
            (false, _) => "none".to_owned(),
            (true, Some(version)) => format!("{version}.0"),
            (true, None) => "present".to_owned(),
        };
        format!("secure_boot={secure_boot} tpm={tpm}")
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::rootfs::FsOverrides;

    fn write(root: &Path, path: &str, data: &[u8]) {
        let full = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(full, data).expect("write");
    }

    fn root_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, RootFs) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, data) in files {
            write(dir.path(), path, data);
        }
        let fs = RootFs::new(dir.path().to_path_buf(), FsOverrides::default());
        (dir, fs)
    }

    #[test]
    fn secure_boot_enforcing() {
        let (_dir, fs) = root_with(&[
            (SECURE_BOOT_VAR, &[6, 0, 0, 0, 1]),
            (SETUP_MODE_VAR, &[6, 0, 0, 0, 0]),
        ]);
        assert_eq!(read_secure_boot(&fs), SecureBoot::Enforcing);
    }

    #[test]
    fn secure_boot_setup_mode_wins() {
        let (_dir, fs) = root_with(&[
            (SECURE_BOOT_VAR, &[6, 0, 0, 0, 1]),
            (SETUP_MODE_VAR, &[6, 0, 0, 0, 1]),
        ]);
        assert_eq!(read_secure_boot(&fs), SecureBoot::SetupMode);
    }

    #[test]
    fn secure_boot_disabled() {
        let (_dir, fs) = root_with(&[(SECURE_BOOT_VAR, &[6, 0, 0, 0, 0])]);
        assert_eq!(read_secure_boot(&fs), SecureBoot::Disabled);
    }

    #[test]
    fn secure_boot_unknown_without_efivarfs() {
        let (_dir, fs) = root_with(&[("/sys/firmware/efi/fw_platform_size", b"64\n")]);
        assert_eq!(read_secure_boot(&fs), SecureBoot::Unknown);
    }

    #[test]
    fn secure_boot_legacy_bios() {
        let (_dir, fs) = root_with(&[("/sys/class/dmi/id/sys_vendor", b"x\n")]);
        assert_eq!(read_secure_boot(&fs), SecureBoot::Unsupported);
    }

    #[test]
    fn tpm_two_present() {
        let (_dir, fs) = root_with(&[
            ("/sys/class/tpm/tpm0/tpm_version_major", b"2\n"),
            ("/dev/tpmrm0", b""),
        ]);
        let tpm = read_tpm(&fs);
        assert!(tpm.present);
        assert_eq!(tpm.version.as_deref(), Some("2"));
        assert_eq!(tpm.device.as_deref(), Some("/dev/tpmrm0"));
    }

    #[test]
    fn tpm_absent() {
        let (_dir, fs) = root_with(&[("/sys/class/dmi/id/sys_vendor", b"x\n")]);
        let tpm = read_tpm(&fs);
        assert!(!tpm.present);
        assert_eq!(tpm.device, None);
    }
}
