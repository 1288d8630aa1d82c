//! The vault as `serve` manages it: the state from early boot, and opening and closing
//! with the recovery key while the API runs.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;
use tracing::{error, info, warn};

use super::recovery;
use super::secret::Secret;
use super::{system, VaultState, VaultStatus};
use crate::rootfs::RootFs;

/// Reason a vault request did not change the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the vault is already open")]
    AlreadyOpen,
    #[error("the vault is not open")]
    NotOpen,
    #[error("there is no vault: {0}")]
    Absent(String),
    #[error("{0}")]
    BadRecoveryKey(#[from] recovery::RecoveryKeyError),
    #[error("{0}")]
    Failed(String),
    #[error("wrong TPM PIN; the TPM counts wrong PINs towards its dictionary-attack lockout")]
    WrongPin,
    #[error(
        "the TPM is in dictionary-attack lockout after too many wrong PINs; wait for it to \
         expire, or open the vault with the recovery key"
    )]
    TpmLockout,
    #[error("{0}")]
    NotAllowed(String),
}

/// Shared vault state for the API handlers.
pub struct VaultService {
    status: Mutex<VaultStatus>,
    state_dir: PathBuf,
}

impl VaultService {
    /// Loads the state `early` recorded, or a status that says it is missing.
    pub fn load(state_dir: PathBuf) -> Arc<Self> {
        let status = match VaultStatus::read(&state_dir) {
            Ok(status) => {
                info!(state = ?status.state, "vault state from early boot loaded");
                status
            }
            Err(error) => {
                warn!(error = %format!("{error:#}"), "no vault state from early boot");
                VaultStatus::new(
                    VaultState::Error,
                    Some(format!(
                        "the early boot stage recorded no vault state ({error:#}); the vault \
                         was not opened on this boot"
                    )),
                )
            }
        };
        Arc::new(Self {
            status: Mutex::new(status),
            state_dir,
        })
    }

    pub async fn status(&self) -> VaultStatus {
        self.status.lock().await.clone()
    }

    /// Returns the vault's state without waiting, or `None` while it is being changed.
    pub fn state_now(&self) -> Option<VaultState> {
        self.status.try_lock().ok().map(|status| status.state)
    }

    /// Returns whether the vault is open, for callers outside the async runtime.
    pub fn is_open_now(&self) -> bool {
        self.status
            .try_lock()
            .is_ok_and(|status| status.state == VaultState::Open)
    }

    pub async fn is_open(&self) -> bool {
        self.status.lock().await.state == VaultState::Open
    }

    /// Opens the vault with a typed recovery key.
    pub async fn unlock(&self, typed: Secret) -> Result<VaultStatus, VaultError> {
        let mut status = self.status.lock().await;
        match status.state {
            VaultState::Open => return Err(VaultError::AlreadyOpen),
            VaultState::Absent => {
                return Err(VaultError::Absent(
                    status.reason.clone().unwrap_or_default(),
                ))
            }
            VaultState::Locked | VaultState::Error => {}
        }
        Self::require_partition()?;
        let key = recovery::normalize(typed.as_bytes())?;
        drop(typed);
        let previous = status.clone();
        let opened = tokio::task::spawn_blocking(move || {
            system::unlock_with_recovery_key(&RootFs::host(), key, &previous)
        })
        .await
        .map_err(|error| VaultError::Failed(format!("the unlock task failed: {error}")))?;
        match opened {
            Ok(new_status) => {
                info!(keyslot = ?new_status.keyslot, "vault opened with the recovery key");
                *status = new_status;
                self.save(&status);
                Ok(status.clone())
            }
            Err(error) => {
                warn!(error = %format!("{error:#}"), "vault unlock with the recovery key failed");
                Err(VaultError::Failed(format!("{error:#}")))
            }
        }
    }

    /// Opens the vault with the TPM and the PIN of its TPM keyslot.
    pub async fn unlock_with_pin(&self, pin: Secret) -> Result<VaultStatus, VaultError> {
        let mut status = self.status.lock().await;
        if status.state == VaultState::Open {
            return Err(VaultError::AlreadyOpen);
        }
        Self::require_partition()?;
        let previous = status.clone();
        let state_dir = self.state_dir.clone();
        let opened = tokio::task::spawn_blocking(move || {
            system::unlock_with_pin(&RootFs::host(), &state_dir, &pin, &previous)
        })
        .await
        .map_err(|error| VaultError::Failed(format!("the unlock task failed: {error}")))?;
        match opened {
            Ok(new_status) => {
                info!(keyslot = ?new_status.keyslot, "vault opened with the TPM and its PIN");
                *status = new_status;
                self.save(&status);
                Ok(status.clone())
            }
            Err(error) => {
                warn!(%error, "vault unlock with the TPM PIN failed");
                Err(match error {
                    super::tpm::UnsealError::BadPin => VaultError::WrongPin,
                    super::tpm::UnsealError::Lockout => VaultError::TpmLockout,
                    other => VaultError::Failed(other.to_string()),
                })
            }
        }
    }

    /// Seals a new TPM keyslot to this boot (with an optional PIN) after the recovery key
    /// proved the caller may; used after the TPM refused a changed boot that the owner
    /// accepts, to add or remove a PIN, and after the PCR signing key changed.
    pub async fn reseal(
        &self,
        typed_key: Secret,
        pin: Option<Secret>,
        bind_pcr7: bool,
        boot_verified: bool,
    ) -> Result<VaultStatus, VaultError> {
        if !boot_verified {
            return Err(VaultError::NotAllowed(
                "measured-boot verification did not pass on this boot, so the TPM keyslot is \
                 not sealed to it; boot a signed image first"
                    .to_owned(),
            ));
        }
        Self::require_partition()?;
        let key = recovery::normalize(typed_key.as_bytes())?;
        drop(typed_key);
        let mut status = self.status.lock().await;
        let state_dir = self.state_dir.clone();
        let sealed = tokio::task::spawn_blocking(move || {
            system::reseal(&RootFs::host(), &state_dir, &key, pin.as_ref(), bind_pcr7)
        })
        .await
        .map_err(|error| VaultError::Failed(format!("the reseal task failed: {error}")))?;
        match sealed {
            Ok(keyslot) => {
                info!(keyslot, "TPM keyslot sealed to this boot");
                status.reseal_offered = false;
                status.tpm_result = Some(format!("sealed to this boot in keyslot {keyslot}"));
                self.save(&status);
                Ok(status.clone())
            }
            Err(error) => {
                warn!(error = %format!("{error:#}"), "re-sealing the TPM keyslot failed");
                Err(VaultError::Failed(format!("{error:#}")))
            }
        }
    }

    /// Closes the vault: unmount, remove the mapping.
    pub async fn lock(&self) -> Result<VaultStatus, VaultError> {
        let mut status = self.status.lock().await;
        if status.state != VaultState::Open {
            return Err(VaultError::NotOpen);
        }
        let closed = tokio::task::spawn_blocking(system::lock)
            .await
            .map_err(|error| VaultError::Failed(format!("the lock task failed: {error}")))?;
        if let Err(error) = closed {
            error!(error = %format!("{error:#}"), "closing the vault failed");
            return Err(VaultError::Failed(format!("{error:#}")));
        }
        status.state = VaultState::Locked;
        status.reason = Some(
            "locked through the API; unlock with the recovery key or reboot to unlock with the TPM"
                .to_owned(),
        );
        status.mount_point = None;
        status.unlocked_by = None;
        status.keyslot = None;
        info!("vault locked");
        self.save(&status);
        Ok(status.clone())
    }

    /// Fails with [`VaultError::Absent`] when this machine has no vault partition.
    fn require_partition() -> Result<(), VaultError> {
        match super::find_partition(&RootFs::host()) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(VaultError::Absent(format!(
                "no partition with the vault's GPT type {} and label {}",
                super::PARTITION_TYPE,
                super::PARTITION_LABEL
            ))),
            Err(error) => Err(VaultError::Failed(format!("{error:#}"))),
        }
    }

    fn save(&self, status: &VaultStatus) {
        if let Err(error) = status.write(&self.state_dir) {
            warn!(error = %format!("{error:#}"), "could not record the vault state");
        }
    }
}
