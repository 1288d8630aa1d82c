//! First-boot creation of the vault, safe against a power cut at any point.
//!
//! An `appliance-enrollment` token marks an unfinished vault and records how far creation
//! got. The recovery key is shown only once the header, both keyslots and the filesystem
//! are complete, and the marker is removed only after it was shown. A boot that finds the
//! marker therefore either starts over (nothing was shown and no data was stored) or shows
//! the same recovery key again, unsealed from the TPM copy in the marker. No boot ever
//! shows a key that does not open the vault.

use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tracing::{info, warn};

use super::luks::{self, Luks2Device, VOLUME_KEY_LEN};
use super::recovery;
use super::secret::Secret;
use super::token::{recovery_token_json, EnrollmentState, EnrollmentToken, Tpm2Token};
use super::tpm::{self, SealPolicy, SECRET_LEN};

/// LUKS2 label of the vault.
pub const LUKS_LABEL: &str = "appliance-vault";
/// Label of the ext4 filesystem inside.
pub const FS_LABEL: &str = "vault";

/// Points where enrollment can be stopped on purpose, so the boot tests can cut the power
/// there. Each is reached after the step it names was written to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutPoint {
    AfterFormat,
    AfterKeyslots,
    AfterFilesystem,
    AfterRecoveryKeyShown,
}

impl CutPoint {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "after-format" => Some(Self::AfterFormat),
            "after-keyslots" => Some(Self::AfterKeyslots),
            "after-filesystem" => Some(Self::AfterFilesystem),
            "after-recovery-key-shown" => Some(Self::AfterRecoveryKeyShown),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::AfterFormat => "after-format",
            Self::AfterKeyslots => "after-keyslots",
            Self::AfterFilesystem => "after-filesystem",
            Self::AfterRecoveryKeyShown => "after-recovery-key-shown",
        }
    }
}

/// Inputs of enrollment: the device, the TPM and the console.
pub struct EnrollContext<'a> {
    pub device: &'a Path,
    /// Name of the temporary mapping used to create the filesystem.
    pub mapping: &'a str,
    /// `None` without a TPM: the vault then has only the recovery keyslot.
    pub tpm: Option<&'a mut tss_esapi::Context>,
    pub policy: Option<&'a SealPolicy>,
    /// Writes the recovery key for the operator (the console).
    pub show_recovery_key: &'a mut dyn FnMut(&Secret),
    /// Stops at this point, for the power-cut tests.
    pub cut_point: Option<CutPoint>,
    /// At the cut point, wait for the power to be cut (a boot test) instead of returning
    /// [`CutPointReached`] (a host test, which then inspects the disk).
    pub wait_at_cut_point: bool,
    /// Creates the filesystem; false in host tests, where device-mapper is missing.
    pub make_filesystem: bool,
}

/// Outcome of enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    Created,
    /// A marker from an interrupted boot was found and enrollment finished.
    Resumed,
    /// A marker from an interrupted boot was found; the half-made header was wiped and
    /// the vault created again.
    Restarted,
    /// A marker from a boot interrupted after the recovery key was shown was found, but the
    /// key could not be shown again (the TPM did not release its copy, or there was no TPM).
    /// The vault is complete.
    RecoveryKeyNotShownAgain,
}

/// Creates the vault on an empty partition.
pub fn create(ctx: &mut EnrollContext<'_>) -> anyhow::Result<Enrolled> {
    let volume_key = Secret::random(VOLUME_KEY_LEN)?;
    let mut device = Luks2Device::format(ctx.device, &volume_key, LUKS_LABEL)?;
    let marker = device.add_token(
        &EnrollmentToken {
            state: EnrollmentState::Formatting,
            sealed_recovery_key: None,
        }
        .to_json(),
    )?;
    info!(device = %ctx.device.display(), "vault header written");
    stop_if(ctx, CutPoint::AfterFormat)?;

    let recovery_key = recovery::generate()?;
    if let (Some(tpm), Some(policy)) = (ctx.tpm.as_deref_mut(), ctx.policy) {
        let keyslot = add_tpm_keyslot(&mut device, &volume_key, tpm, policy, None)?.0;
        info!(keyslot, "TPM keyslot added");
    } else {
        warn!("no TPM: the vault gets only a recovery keyslot and needs the recovery key on every boot");
    }
    let recovery_slot = device.add_keyslot(&volume_key, recovery_key.as_bytes())?;
    device.add_token(&recovery_token_json(recovery_slot))?;
    info!(keyslot = recovery_slot, "recovery keyslot added");
    stop_if(ctx, CutPoint::AfterKeyslots)?;

    if ctx.make_filesystem {
        make_filesystem(&mut device, ctx.mapping, &volume_key)?;
    }
    drop(volume_key);
    stop_if(ctx, CutPoint::AfterFilesystem)?;

    let sealed_recovery_key = match (ctx.tpm.as_deref_mut(), ctx.policy) {
        (Some(tpm), Some(policy)) => Some(tpm::seal(tpm, policy, &recovery_key, None)?.blob),
        _ => None,
    };
    device.replace_token(
        marker,
        &EnrollmentToken {
            state: EnrollmentState::Formatted,
            sealed_recovery_key,
        }
        .to_json(),
    )?;
    (ctx.show_recovery_key)(&recovery_key);
    stop_if(ctx, CutPoint::AfterRecoveryKeyShown)?;
    device.remove_token(marker)?;
    info!("vault created");
    Ok(Enrolled::Created)
}

/// Finishes or restarts an enrollment that a power cut interrupted.
pub fn resume(
    ctx: &mut EnrollContext<'_>,
    marker_id: u32,
    marker: &EnrollmentToken,
    unseal: &mut dyn FnMut(&[u8]) -> Result<Secret, tpm::UnsealError>,
) -> anyhow::Result<Enrolled> {
    match (marker.state, &marker.sealed_recovery_key) {
        (EnrollmentState::Formatted, Some(sealed)) => match unseal(sealed) {
            Ok(recovery_key) => {
                warn!("the vault was created on a boot that did not finish; showing its recovery key again");
                (ctx.show_recovery_key)(&recovery_key);
                let mut device = Luks2Device::load(ctx.device)?;
                device.remove_token(marker_id)?;
                info!("vault creation finished");
                Ok(Enrolled::Resumed)
            }
            Err(error) => {
                // The vault is complete and the key was shown on the earlier boot; only the
                // repeat is missing. Keep the marker so a later boot shows the key again.
                warn!(
                    %error,
                    "the vault's creation was interrupted after its recovery key was shown, and \
                     the TPM does not release the copy needed to show it again; the key shown \
                     on that earlier boot opens the vault"
                );
                Ok(Enrolled::RecoveryKeyNotShownAgain)
            }
        },
        (EnrollmentState::Formatted, None) => {
            // No TPM held a copy, so the key cannot be shown again, and it may have been
            // shown already: keep the vault rather than void a key someone wrote down.
            warn!(
                "the vault's creation was interrupted around the moment its recovery key was \
                 shown, and without a TPM the key cannot be shown again; the vault is kept"
            );
            Luks2Device::load(ctx.device)?.remove_token(marker_id)?;
            Ok(Enrolled::RecoveryKeyNotShownAgain)
        }
        (EnrollmentState::Formatting, _) => {
            // Before the recovery key was shown nothing could have been stored: start over.
            warn!(state = ?marker.state, "the vault's creation was interrupted before it finished; creating it again");
            luks::wipe_header(ctx.device)?;
            create(ctx)?;
            Ok(Enrolled::Restarted)
        }
    }
}

/// Seals a new TPM keyslot to the current boot (and `pin`, if given) and removes the old
/// TPM keyslots and tokens, after `recovery_key` proved the caller may do so.
///
/// The new keyslot and token are written before the old ones are removed, so a power cut
/// leaves at least one working TPM keyslot besides the recovery keyslot. Returns the new
/// keyslot.
pub fn replace_tpm_keyslot(
    device_path: &Path,
    recovery_key: &Secret,
    tpm: &mut tss_esapi::Context,
    policy: &SealPolicy,
    pin: Option<&Secret>,
) -> anyhow::Result<u32> {
    let mut device = Luks2Device::load(device_path)?;
    let metadata = device.metadata()?;
    let mut recovery_slots = metadata.recovery_keyslots();
    if recovery_slots.is_empty() {
        recovery_slots = metadata.keyslots.clone();
    }
    let volume_key = recovery_slots
        .iter()
        .find_map(|slot| device.volume_key(Some(*slot), recovery_key.as_bytes()).ok())
        .ok_or_else(|| anyhow::anyhow!("the recovery key does not open the vault"))?;

    let (keyslot, new_token) = add_tpm_keyslot(&mut device, &volume_key, tpm, policy, pin)?;
    drop(volume_key);
    info!(
        keyslot,
        pin = pin.is_some(),
        "TPM keyslot sealed to this boot"
    );

    for (id, old) in metadata.tpm2_tokens() {
        if id == new_token {
            continue;
        }
        device.remove_token(id)?;
        for slot in &old.keyslots {
            if !recovery_slots.contains(slot) && *slot != keyslot && metadata.has_keyslot(*slot) {
                device.destroy_keyslot(*slot)?;
                info!(keyslot = slot, "old TPM keyslot removed");
            }
        }
    }
    Ok(keyslot)
}

/// Seals a new random secret to `policy` (and `pin`), adds a keyslot it opens and the
/// `systemd-tpm2` token that holds it. Returns the keyslot and the token number.
fn add_tpm_keyslot(
    device: &mut Luks2Device,
    volume_key: &Secret,
    tpm: &mut tss_esapi::Context,
    policy: &SealPolicy,
    pin: Option<&Secret>,
) -> anyhow::Result<(u32, u32)> {
    let secret = Secret::random(SECRET_LEN)?;
    let sealed = tpm::seal(tpm, policy, &secret, pin)?;
    let passphrase = Secret::from_vec(BASE64.encode(secret.as_bytes()).into_bytes());
    let keyslot = device.add_keyslot(volume_key, passphrase.as_bytes())?;
    let token = Tpm2Token {
        keyslots: vec![keyslot],
        blob: sealed.blob,
        pcrs: if policy.bind_pcr7 {
            vec![7]
        } else {
            Vec::new()
        },
        pcr_bank: "sha256".to_owned(),
        primary_alg: "ecc".to_owned(),
        policy_hash: sealed.policy_hash,
        pin: pin.is_some(),
        pubkey: Some(policy.signing_key_pem.clone()),
        pubkey_pcrs: vec![11],
    };
    let token_id = device.add_token(&token.to_json())?;
    Ok((keyslot, token_id))
}

fn make_filesystem(
    device: &mut Luks2Device,
    mapping: &str,
    volume_key: &Secret,
) -> anyhow::Result<()> {
    device.open_with_volume_key(mapping, volume_key)?;
    let mapped = format!("/dev/mapper/{mapping}");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", FS_LABEL, &mapped])
        .status();
    let closed = luks::close(mapping);
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => anyhow::bail!("mkfs.ext4 {mapped} failed with {status}"),
        Err(error) => anyhow::bail!("could not run mkfs.ext4 (is e2fsprogs installed?): {error}"),
    }
    closed?;
    info!("vault filesystem created");
    Ok(())
}

/// Returned when enrollment stopped at the configured cut point.
#[derive(Debug, thiserror::Error)]
#[error("vault creation stopped at the cut point {0}")]
pub struct CutPointReached(pub &'static str);

/// Stops at a cut point: the boot test watching the console kills the machine here.
fn stop_if(ctx: &EnrollContext<'_>, reached: CutPoint) -> Result<(), CutPointReached> {
    if ctx.cut_point != Some(reached) {
        return Ok(());
    }
    if !ctx.wait_at_cut_point {
        return Err(CutPointReached(reached.name()));
    }
    let line = format!(
        "{}paused {} for a power-cut test",
        super::CONSOLE_PREFIX,
        reached.name()
    );
    super::console_line(&line);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
