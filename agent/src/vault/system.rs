//! The vault on the running machine: the real TPM, libcryptsetup mappings and mounts.
//! `early` uses it before switch-root, `serve` after.

use std::io::Write;
use std::path::{Path, PathBuf};

use appliance_secureboot::pcrsig::{PcrPublicKey, PcrSignatures};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use tracing::{error, info, warn};
use tss_esapi::handles::PcrHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::structures::{Digest, DigestValues};

use super::enroll::{self, CutPoint, EnrollContext};
use super::luks::{self, DeviceContents, Luks2Device};
use super::secret::Secret;
use super::token::{Luks2Metadata, Tpm2Token};
use super::tpm::{self, SealPolicy, UnsealError, UnsealInputs};
use super::unlock::{self, KeyslotOpener, RecoveryPrompt, TokenUnsealer};
use super::{
    find_partition, pcr15_digest, VaultState, VaultStatus, CONSOLE_PREFIX, MAPPING, MOUNT_POINT,
};
use crate::measurements::tpm::DEVICE_TCTI;
use crate::measurements::userspace_log::USERSPACE_LOG;
use crate::measurements::verify::{PCR_PUBLIC_KEY_FILE, PCR_SIGNATURE_FILE};
use crate::rootfs::RootFs;

/// Credential that stops vault creation at a cut point, for the power-cut boot tests.
pub const CUT_POINT_CREDENTIAL: &str = "appliance.vault-test-cut";

/// The inputs of the TPM path that come with the booted UKI.
pub struct SignedPolicy {
    pub key: PcrPublicKey,
    pub key_pem: Vec<u8>,
    pub signatures: PcrSignatures,
}

/// Names of the copies the early stage keeps in the state directory, because /.extra
/// exists only in the initrd and `serve` needs them to unseal with a PIN or to reseal.
const KEPT_PUBLIC_KEY: &str = "tpm2-pcr-public-key.pem";
const KEPT_SIGNATURE: &str = "tpm2-pcr-signature.json";

impl SignedPolicy {
    /// Reads the PCR public key and signatures that systemd-stub placed in /.extra.
    pub fn load(fs: &RootFs) -> Result<Self, String> {
        Self::load_files(
            &fs.host_path(PCR_PUBLIC_KEY_FILE),
            &fs.host_path(PCR_SIGNATURE_FILE),
        )
    }

    /// Reads the copies that [`SignedPolicy::keep`] wrote into `state_dir`.
    pub fn load_kept(state_dir: &Path) -> Result<Self, String> {
        Self::load_files(
            &state_dir.join(KEPT_PUBLIC_KEY),
            &state_dir.join(KEPT_SIGNATURE),
        )
    }

    fn load_files(key_path: &Path, signature_path: &Path) -> Result<Self, String> {
        let key_pem =
            std::fs::read(key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
        let key =
            PcrPublicKey::from_pem(&key_pem).map_err(|e| format!("{}: {e}", key_path.display()))?;
        let signatures = std::fs::read(signature_path)
            .map_err(|e| format!("{}: {e}", signature_path.display()))
            .and_then(|json| {
                PcrSignatures::parse(&json)
                    .map_err(|e| format!("{}: {e}", signature_path.display()))
            })?;
        Ok(Self {
            key,
            key_pem,
            signatures,
        })
    }

    /// Copies /.extra's public key and signatures into `state_dir` for `serve`.
    pub fn keep(fs: &RootFs, state_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        std::fs::copy(
            fs.host_path(PCR_PUBLIC_KEY_FILE),
            state_dir.join(KEPT_PUBLIC_KEY),
        )?;
        std::fs::copy(
            fs.host_path(PCR_SIGNATURE_FILE),
            state_dir.join(KEPT_SIGNATURE),
        )?;
        Ok(())
    }
}

/// Unseals TPM tokens with the real TPM and the UKI's signed policy.
struct TpmUnsealer<'a> {
    context: Option<tss_esapi::Context>,
    policy: Option<&'a SignedPolicy>,
    /// The PIN for tokens that need one; `None` in the unattended early stage.
    pin: Option<&'a Secret>,
}

impl TokenUnsealer for TpmUnsealer<'_> {
    fn unseal(&mut self, token: &Tpm2Token) -> Result<Secret, UnsealError> {
        let Some(context) = self.context.as_mut() else {
            return Err(UnsealError::NoTpm(format!(
                "{DEVICE_TCTI} could not be opened"
            )));
        };
        let Some(policy) = self.policy else {
            return Err(UnsealError::PolicyMismatch {
                pcrs: "pcr 11".to_owned(),
                detail: format!(
                    "the booted UKI carries no signed PCR policy ({PCR_SIGNATURE_FILE}, \
                     {PCR_PUBLIC_KEY_FILE})"
                ),
            });
        };
        if token.pin && self.pin.is_none() {
            return Err(UnsealError::PinRequired);
        }
        if let Some(pem) = &token.pubkey {
            if pem != &policy.key_pem {
                return Err(UnsealError::PolicyMismatch {
                    pcrs: "pcr 11".to_owned(),
                    detail: "the token trusts another PCR signing key than the booted UKI's"
                        .to_owned(),
                });
            }
        }
        tpm::unseal(
            context,
            &token.blob,
            &UnsealInputs {
                signing_key: &policy.key,
                signatures: &policy.signatures,
                bind_pcr7: token.pcrs.contains(&7),
                pin: if token.pin { self.pin } else { None },
            },
        )
    }
}

/// Opens keyslots of the vault device and maps the volume on success.
struct MappingOpener {
    device: PathBuf,
    mapping: String,
    /// PCR 15 extension of the opened volume, computed while the volume key is at hand.
    measurement: Option<[u8; 32]>,
}

impl KeyslotOpener for MappingOpener {
    fn open(&mut self, keyslot: u32, passphrase: &[u8]) -> Result<Option<u32>, String> {
        let mut device = Luks2Device::load(&self.device).map_err(|e| e.to_string())?;
        let volume_key = match device.volume_key(Some(keyslot), passphrase) {
            Ok(key) => key,
            Err(error) if error.is_wrong_passphrase() => return Ok(None),
            Err(error) => return Err(error.to_string()),
        };
        let uuid = device.uuid().map_err(|e| e.to_string())?;
        device
            .open_with_volume_key(&self.mapping, &volume_key)
            .map_err(|e| e.to_string())?;
        self.measurement = Some(pcr15_digest(&volume_key, &uuid));
        Ok(Some(keyslot))
    }
}

/// A prompt that returns no key: the early stage does not block the boot waiting for a
/// person.
struct Unattended;

impl RecoveryPrompt for Unattended {
    fn ask(&mut self, _reason: &str) -> Option<Secret> {
        None
    }
}

/// One typed recovery key (from the API or the console).
struct GivenKey(Option<Secret>);

impl RecoveryPrompt for GivenKey {
    fn ask(&mut self, _reason: &str) -> Option<Secret> {
        self.0.take()
    }
}

/// Inputs of the early stage's vault step: the file system view, the mount target and
/// the boot's verdict.
pub struct EarlyVault<'a> {
    pub fs: &'a RootFs,
    /// The real root as the initrd mounts it ("/sysroot").
    pub sysroot: &'a Path,
    /// Whether measured-boot verification failed; the TPM is then not asked at all.
    pub measurements_failed: bool,
    pub cut_point: Option<CutPoint>,
}

/// Creates the vault on first boot and opens it with the TPM. Returns a status in every
/// case, with the reason when the vault is not open, so the caller can go on booting.
pub fn early_unlock(vault: &EarlyVault<'_>) -> VaultStatus {
    let device = match find_partition(vault.fs) {
        Ok(Some(device)) => device,
        Ok(None) => {
            return VaultStatus::new(
                VaultState::Absent,
                Some(format!(
                    "no partition with the vault's GPT type {} and label {}",
                    super::PARTITION_TYPE,
                    super::PARTITION_LABEL
                )),
            )
        }
        Err(error) => return VaultStatus::new(VaultState::Error, Some(format!("{error:#}"))),
    };
    let mut status = match open_or_create(vault, &device) {
        Ok(status) => status,
        Err(error) => {
            error!(error = %format!("{error:#}"), "vault step failed");
            VaultStatus::new(VaultState::Error, Some(format!("{error:#}")))
        }
    };
    status.device = Some(device.display().to_string());
    status
}

fn open_tpm() -> Option<tss_esapi::Context> {
    if !Path::new("/dev/tpmrm0").exists() {
        return None;
    }
    match tpm::open(DEVICE_TCTI) {
        Ok(context) => Some(context),
        Err(error) => {
            warn!(%error, "the TPM device exists but could not be opened");
            None
        }
    }
}

fn open_or_create(vault: &EarlyVault<'_>, device: &Path) -> anyhow::Result<VaultStatus> {
    let policy = match SignedPolicy::load(vault.fs) {
        Ok(policy) => Some(policy),
        Err(reason) => {
            warn!(
                reason,
                "no signed PCR policy: the TPM cannot unlock the vault on this boot"
            );
            None
        }
    };
    let mut context = open_tpm();
    let mut enrollment = None;

    let contents = luks::probe(device)?;
    if let DeviceContents::Foreign { reason } = &contents {
        anyhow::bail!(
            "the vault partition {} holds {reason}; the agent does not format over data. \
             Back it up and zero its first 16 MiB to have a new vault created",
            device.display()
        );
    }
    let marker = match &contents {
        DeviceContents::Luks2 { metadata, .. } => Luks2Metadata::from_json(metadata)?
            .enrollment()
            .map(|(id, marker)| (id, marker.clone())),
        _ => None,
    };
    if contents == DeviceContents::Empty || marker.is_some() {
        if vault.measurements_failed {
            anyhow::bail!(
                "measured-boot verification failed, so no vault is created on this boot; \
                 boot the signed image"
            );
        }
        let seal_policy = policy.as_ref().map(|policy| SealPolicy {
            signing_key: policy.key.clone(),
            signing_key_pem: policy.key_pem.clone(),
            bind_pcr7: false,
        });
        let mut show = |key: &Secret| super::show_recovery_key(key);
        let mut ctx = EnrollContext {
            device,
            mapping: MAPPING,
            tpm: if seal_policy.is_some() {
                context.as_mut()
            } else {
                None
            },
            policy: seal_policy.as_ref(),
            show_recovery_key: &mut show,
            cut_point: vault.cut_point,
            wait_at_cut_point: true,
            make_filesystem: true,
        };
        let outcome = match marker {
            None => enroll::create(&mut ctx)?,
            Some((id, marker)) => {
                let mut unseal_context = open_tpm();
                let mut unseal = |blob: &[u8]| match (unseal_context.as_mut(), policy.as_ref()) {
                    (Some(context), Some(policy)) => tpm::unseal(
                        context,
                        blob,
                        &UnsealInputs {
                            signing_key: &policy.key,
                            signatures: &policy.signatures,
                            bind_pcr7: false,
                            pin: None,
                        },
                    ),
                    _ => Err(UnsealError::NoTpm("no TPM or no signed policy".to_owned())),
                };
                enroll::resume(&mut ctx, id, &marker, &mut unseal)?
            }
        };
        let word = match outcome {
            enroll::Enrolled::Created => "created",
            enroll::Enrolled::Resumed => "resumed",
            enroll::Enrolled::Restarted => "restarted",
            enroll::Enrolled::RecoveryKeyNotShownAgain => "recovery-key-not-shown-again",
        };
        super::console_line(&format!("{CONSOLE_PREFIX}{word}"));
        enrollment = Some(word.to_owned());
    }

    let metadata = Luks2Device::load(device)?.metadata()?;
    let mut unsealer = TpmUnsealer {
        context: if vault.measurements_failed {
            None
        } else {
            context.take()
        },
        policy: policy.as_ref(),
        pin: None,
    };
    let mut opener = MappingOpener {
        device: device.to_owned(),
        mapping: MAPPING.to_owned(),
        measurement: None,
    };
    let tpm_usable = unsealer.context.is_some();
    let mut report = unlock::unlock(
        &metadata,
        tpm_usable.then_some(&mut unsealer as &mut dyn TokenUnsealer),
        &mut opener,
        &mut Unattended,
        1,
    );
    if vault.measurements_failed {
        report.tpm_result = "not asked: measured-boot verification failed".to_owned();
        report.locked_reason = Some(
            "measured-boot verification failed (see /api/boot/measurements), so the TPM was \
             not asked; unlock with the recovery key (POST /api/vault/unlock)"
                .to_owned(),
        );
    }
    let mut status = status_from_report(&report);
    status.enrollment = enrollment;
    if report.unlocked {
        let target = vault.sysroot.join(MOUNT_POINT.trim_start_matches('/'));
        finish_open(&mut status, &target, opener.measurement)?;
    }
    Ok(status)
}

fn status_from_report(report: &unlock::UnlockReport) -> VaultStatus {
    let mut status = VaultStatus::new(
        if report.unlocked {
            VaultState::Open
        } else {
            VaultState::Locked
        },
        report.locked_reason.clone(),
    );
    status.unlocked_by = report.method.map(|method| match method {
        unlock::UnlockMethod::Tpm => "tpm".to_owned(),
        unlock::UnlockMethod::RecoveryKey => "recovery-key".to_owned(),
    });
    status.keyslot = report.keyslot;
    status.tpm_result = Some(report.tpm_result.clone());
    status.tokens = report.tokens.clone();
    status.reseal_offered = report.reseal_offered;
    status
}

/// Mounts the mapped volume and measures it into PCR 15.
fn finish_open(
    status: &mut VaultStatus,
    target: &Path,
    measurement: Option<[u8; 32]>,
) -> anyhow::Result<()> {
    if let Err(error) = mount_vault(target) {
        let _ = luks::close(MAPPING);
        return Err(error);
    }
    status.mount_point = Some(MOUNT_POINT.to_owned());
    match vault_identity(target) {
        Ok(id) => status.vault_id = Some(id),
        Err(error) => {
            warn!(error = %format!("{error:#}"), "could not read or write the vault's identifier")
        }
    }
    if let Some(digest) = measurement {
        match extend_pcr15(&digest) {
            Ok(()) => status.pcr15_measurement = Some(super::token::encode_hex(&digest)),
            Err(error) => {
                warn!(error = %format!("{error:#}"), "could not measure the vault into PCR 15")
            }
        }
    }
    info!(mount_point = MOUNT_POINT, "vault open");
    Ok(())
}

fn mount_vault(target: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(target)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", target.display()))?;
    let source = format!("/dev/mapper/{MAPPING}");
    mount(
        Some(source.as_str()),
        target,
        Some("ext4"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| anyhow::anyhow!("mounting {source} on {} failed: {e}", target.display()))?;
    // Only root reads the vault; the filesystem root is created 0755 by mkfs.
    std::fs::set_permissions(target, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(())
}

/// Reads the vault's identifier, writing a new one on the first open of a new vault.
fn vault_identity(mount_point: &Path) -> anyhow::Result<String> {
    let path = mount_point.join(super::IDENTITY_FILE);
    if let Ok(bytes) = std::fs::read(&path) {
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        return value["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("{} has no \"id\"", path.display()));
    }
    let mut random = [0u8; 16];
    getrandom::fill(&mut random)?;
    let id = super::token::encode_hex(&random);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    let temporary = mount_point.join(format!(".{}.tmp", super::IDENTITY_FILE));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(
        serde_json::json!({"id": id, "created": created})
            .to_string()
            .as_bytes(),
    )?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(mount_point)?.sync_all()?;
    Ok(id)
}

/// Extends PCR 15 (sha256) and records the event in systemd's userspace log, so a later
/// replay of that log still matches the TPM.
fn extend_pcr15(digest: &[u8; 32]) -> anyhow::Result<()> {
    let mut context = tpm::open(DEVICE_TCTI)?;
    let mut digests = DigestValues::new();
    digests.set(HashingAlgorithm::Sha256, Digest::try_from(digest.to_vec())?);
    context.execute_with_nullauth_session(|ctx| ctx.pcr_extend(PcrHandle::Pcr15, digests))?;
    let record = serde_json::json!({
        "pcr": 15,
        "digests": [{"hashAlg": "sha256", "digest": super::token::encode_hex(digest)}],
        "content_type": "systemd",
        "content": {"eventType": "volume-key", "string": format!("cryptsetup:{MAPPING}")},
    });
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(USERSPACE_LOG)?;
    log.write_all(format!("\u{1e}{record}\n").as_bytes())?;
    Ok(())
}

/// Opens the vault with a recovery key in the running system.
pub fn unlock_with_recovery_key(
    fs: &RootFs,
    key: Secret,
    previous: &VaultStatus,
) -> anyhow::Result<VaultStatus> {
    let device = find_partition(fs)?.ok_or_else(|| anyhow::anyhow!("no vault partition"))?;
    let metadata = Luks2Device::load(&device)?.metadata()?;
    let mut opener = MappingOpener {
        device: device.clone(),
        mapping: MAPPING.to_owned(),
        measurement: None,
    };
    let report = unlock::unlock(&metadata, None, &mut opener, &mut GivenKey(Some(key)), 1);
    if !report.unlocked {
        anyhow::bail!(report
            .locked_reason
            .unwrap_or_else(|| "the recovery key does not open the vault".to_owned()));
    }
    let mut status = status_from_report(&report);
    status.device = Some(device.display().to_string());
    // The TPM was tried at boot; its result stays the one to report.
    status.tpm_result = previous.tpm_result.clone();
    status.tokens = previous.tokens.clone();
    status.reseal_offered = previous
        .tpm_result
        .as_deref()
        .is_some_and(|result| result.starts_with("policy mismatch"));
    finish_open(&mut status, Path::new(MOUNT_POINT), opener.measurement)?;
    Ok(status)
}

/// Opens the vault with the TPM and the PIN of a PIN-protected TPM keyslot.
pub fn unlock_with_pin(
    fs: &RootFs,
    state_dir: &Path,
    pin: &Secret,
    previous: &VaultStatus,
) -> Result<VaultStatus, UnsealError> {
    let failed = |detail: String| UnsealError::NoTpm(detail);
    let device = find_partition(fs)
        .map_err(|e| failed(format!("{e:#}")))?
        .ok_or_else(|| failed("no vault partition".to_owned()))?;
    let policy =
        SignedPolicy::load_kept(state_dir).map_err(|reason| UnsealError::PolicyMismatch {
            pcrs: "pcr 11".to_owned(),
            detail: format!("the early stage kept no signed PCR policy ({reason})"),
        })?;
    let metadata = Luks2Device::load(&device)
        .and_then(|mut device| device.metadata())
        .map_err(|e| failed(e.to_string()))?;
    let mut unsealer = TpmUnsealer {
        context: open_tpm(),
        policy: Some(&policy),
        pin: Some(pin),
    };
    if unsealer.context.is_none() {
        return Err(UnsealError::NoTpm(format!(
            "{DEVICE_TCTI} could not be opened"
        )));
    }
    let mut opener = MappingOpener {
        device: device.clone(),
        mapping: MAPPING.to_owned(),
        measurement: None,
    };
    let mut last_error = None;
    let mut recording = RecordingUnsealer {
        inner: &mut unsealer,
        last_error: &mut last_error,
    };
    let report = unlock::unlock(
        &metadata,
        Some(&mut recording),
        &mut opener,
        &mut Unattended,
        0,
    );
    if !report.unlocked {
        return Err(last_error.unwrap_or(UnsealError::PolicyMismatch {
            pcrs: "pcr 11".to_owned(),
            detail: report.tpm_result,
        }));
    }
    let mut status = status_from_report(&report);
    status.device = Some(device.display().to_string());
    status.vault_id = previous.vault_id.clone();
    finish_open(&mut status, Path::new(MOUNT_POINT), opener.measurement)
        .map_err(|e| failed(format!("{e:#}")))?;
    Ok(status)
}

/// Keeps the last unseal error, so a caller can tell a wrong PIN from a lockout.
struct RecordingUnsealer<'a, 'b> {
    inner: &'a mut TpmUnsealer<'b>,
    last_error: &'a mut Option<UnsealError>,
}

impl TokenUnsealer for RecordingUnsealer<'_, '_> {
    fn unseal(&mut self, token: &Tpm2Token) -> Result<Secret, UnsealError> {
        self.inner.unseal(token).inspect_err(|error| {
            let copy = match error {
                UnsealError::BadPin => UnsealError::BadPin,
                UnsealError::Lockout => UnsealError::Lockout,
                other => UnsealError::PolicyMismatch {
                    pcrs: "tpm".to_owned(),
                    detail: other.to_string(),
                },
            };
            *self.last_error = Some(copy);
        })
    }
}

/// Seals a new TPM keyslot to this boot, optionally with a PIN, replacing the old TPM
/// keyslots. The recovery key authorizes it.
pub fn reseal(
    fs: &RootFs,
    state_dir: &Path,
    recovery_key: &Secret,
    pin: Option<&Secret>,
    bind_pcr7: bool,
) -> anyhow::Result<u32> {
    let device = find_partition(fs)?.ok_or_else(|| anyhow::anyhow!("no vault partition"))?;
    let policy = SignedPolicy::load_kept(state_dir).map_err(|reason| {
        anyhow::anyhow!(
            "the early stage kept no signed PCR policy, so nothing can be sealed ({reason})"
        )
    })?;
    let mut context = open_tpm().ok_or_else(|| anyhow::anyhow!("no TPM device ({DEVICE_TCTI})"))?;
    let seal_policy = SealPolicy {
        signing_key: policy.key.clone(),
        signing_key_pem: policy.key_pem.clone(),
        bind_pcr7,
    };
    enroll::replace_tpm_keyslot(&device, recovery_key, &mut context, &seal_policy, pin)
}

/// Unmounts and unmaps the vault. The kernel drops the volume key with the mapping.
pub fn lock() -> anyhow::Result<()> {
    // A stopped inference engine unmaps its model a moment later, on its own thread.
    let mut attempt = 0;
    loop {
        match umount2(MOUNT_POINT, MntFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => break,
            Err(nix::errno::Errno::EBUSY) if attempt < UNMOUNT_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(error) => anyhow::bail!(
                "unmounting {MOUNT_POINT} failed: {error}; stop what still uses files in the \
                 vault and try again"
            ),
        }
    }
    luks::close(MAPPING)?;
    Ok(())
}

/// Attempts, half a second apart, to unmount a vault that is still busy.
const UNMOUNT_ATTEMPTS: u32 = 20;
