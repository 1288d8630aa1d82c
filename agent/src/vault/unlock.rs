//! The unlock order: every TPM token first, then the recovery key.
//!
//! The flow only decides; the TPM, the keyslots and the operator are behind traits, so the
//! same code runs against swtpm and libcryptsetup in the appliance and against a simulated
//! TPM in the tests of recorded field cases.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::recovery;
use super::secret::Secret;
use super::token::{Luks2Metadata, Tpm2Token};
use super::tpm::UnsealError;

/// Unseals the secret of a TPM token.
pub trait TokenUnsealer {
    /// Returns `Err(UnsealError::NoTpm)` when there is no TPM at all; the flow then stops
    /// trying TPM tokens instead of retrying each one.
    fn unseal(&mut self, token: &Tpm2Token) -> Result<Secret, UnsealError>;
}

/// Opens keyslots with passphrases.
pub trait KeyslotOpener {
    /// Tries `passphrase` on `keyslot` and returns the keyslot it opened. `Ok(None)` means
    /// the passphrase is wrong.
    fn open(&mut self, keyslot: u32, passphrase: &[u8]) -> Result<Option<u32>, String>;
}

/// Asks the operator for the recovery key.
pub trait RecoveryPrompt {
    /// Returns the typed key, or `None` when no one can answer now (an unattended boot).
    /// `reason` says why the key is needed.
    fn ask(&mut self, reason: &str) -> Option<Secret>;
}

/// How the vault was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnlockMethod {
    Tpm,
    RecoveryKey,
}

/// Outcome of one TPM token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAttempt {
    pub token: u32,
    pub result: String,
}

/// The outcome of one run of the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnlockReport {
    pub unlocked: bool,
    pub keyslot: Option<u32>,
    pub method: Option<UnlockMethod>,
    /// The TPM's part in one phrase: "unsealed", "no TPM device", "policy mismatch (pcr 0)"...
    pub tpm_result: String,
    pub tokens: Vec<TokenAttempt>,
    pub recovery_prompted: bool,
    /// True when the recovery key opened the vault after a TPM token failed its policy, so
    /// re-sealing to this boot's state is worth offering. Never done before the recovery
    /// key was proven.
    pub reseal_offered: bool,
    /// Reason the vault is still locked, when it is.
    pub locked_reason: Option<String>,
}

/// Tries each TPM token (unless `unsealer` is `None`: no TPM), then asks for the recovery
/// key up to `recovery_attempts` times.
pub fn unlock(
    metadata: &Luks2Metadata,
    unsealer: Option<&mut dyn TokenUnsealer>,
    opener: &mut dyn KeyslotOpener,
    prompt: &mut dyn RecoveryPrompt,
    recovery_attempts: u32,
) -> UnlockReport {
    let mut report = UnlockReport {
        unlocked: false,
        keyslot: None,
        method: None,
        tpm_result: String::new(),
        tokens: Vec::new(),
        recovery_prompted: false,
        reseal_offered: false,
        locked_reason: None,
    };
    let mut policy_failed = false;

    match unsealer {
        None => report.tpm_result = "no TPM device".to_owned(),
        Some(unsealer) => {
            for (id, token) in metadata.tpm2_tokens() {
                let keyslots: Vec<u32> = token
                    .keyslots
                    .iter()
                    .copied()
                    .filter(|slot| metadata.has_keyslot(*slot))
                    .collect();
                if keyslots.is_empty() {
                    report.tokens.push(TokenAttempt {
                        token: id,
                        result: "skipped: the token belongs to no existing keyslot".to_owned(),
                    });
                    continue;
                }
                let secret = match unsealer.unseal(token) {
                    Ok(secret) => secret,
                    Err(error) => {
                        let no_tpm = matches!(error, UnsealError::NoTpm(_));
                        policy_failed |= matches!(
                            error,
                            UnsealError::PolicyMismatch { .. } | UnsealError::UnsignedPcr11 { .. }
                        );
                        report.tokens.push(TokenAttempt {
                            token: id,
                            result: error.to_string(),
                        });
                        if report.tpm_result.is_empty() {
                            report.tpm_result = short_result(&error);
                        }
                        if no_tpm {
                            // Without a device every other token fails the same way.
                            break;
                        }
                        continue;
                    }
                };
                let passphrase = Secret::from_vec(BASE64.encode(secret.as_bytes()).into_bytes());
                drop(secret);
                match open_any(opener, &keyslots, &passphrase) {
                    Ok(Some(slot)) => {
                        report.tokens.push(TokenAttempt {
                            token: id,
                            result: "unsealed".to_owned(),
                        });
                        report.tpm_result = "unsealed".to_owned();
                        report.unlocked = true;
                        report.keyslot = Some(slot);
                        report.method = Some(UnlockMethod::Tpm);
                        return report;
                    }
                    Ok(None) => {
                        let result = "unsealed, but the secret opens none of the token's keyslots";
                        report.tokens.push(TokenAttempt {
                            token: id,
                            result: result.to_owned(),
                        });
                        if report.tpm_result.is_empty() {
                            report.tpm_result = result.to_owned();
                        }
                    }
                    Err(error) => report.tokens.push(TokenAttempt {
                        token: id,
                        result: error,
                    }),
                }
            }
            if report.tpm_result.is_empty() {
                report.tpm_result = "no TPM token".to_owned();
            }
        }
    }

    let reason = format!("the TPM did not unlock the vault ({})", report.tpm_result);
    let mut recovery_slots = metadata.recovery_keyslots();
    recovery_slots.retain(|slot| metadata.has_keyslot(*slot));
    if recovery_slots.is_empty() {
        // A header made by other tools may lack the marker token: try every keyslot.
        recovery_slots = metadata.keyslots.clone();
    }
    for _ in 0..recovery_attempts {
        report.recovery_prompted = true;
        let Some(typed) = prompt.ask(&reason) else {
            break;
        };
        let key = match recovery::normalize(typed.as_bytes()) {
            Ok(key) => key,
            Err(error) => {
                report.locked_reason = Some(error.to_string());
                continue;
            }
        };
        match open_any(opener, &recovery_slots, &key) {
            Ok(Some(slot)) => {
                report.unlocked = true;
                report.keyslot = Some(slot);
                report.method = Some(UnlockMethod::RecoveryKey);
                report.reseal_offered = policy_failed;
                report.locked_reason = None;
                return report;
            }
            Ok(None) => {
                report.locked_reason = Some("the recovery key does not open the vault".to_owned());
            }
            Err(error) => report.locked_reason = Some(error),
        }
    }
    if report.locked_reason.is_none() {
        report.locked_reason = Some(format!(
            "{reason}; unlock it with the recovery key (POST /api/vault/unlock)"
        ));
    }
    report
}

fn open_any(
    opener: &mut dyn KeyslotOpener,
    keyslots: &[u32],
    passphrase: &Secret,
) -> Result<Option<u32>, String> {
    let mut last_error = None;
    for slot in keyslots {
        match opener.open(*slot, passphrase.as_bytes()) {
            Ok(Some(opened)) => return Ok(Some(opened)),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
    }
    match last_error {
        Some(error) => Err(error),
        None => Ok(None),
    }
}

fn short_result(error: &UnsealError) -> String {
    match error {
        UnsealError::NoTpm(_) => "no TPM device".to_owned(),
        UnsealError::UnsignedPcr11 { .. } => "policy mismatch (pcr 11)".to_owned(),
        UnsealError::PolicyMismatch { pcrs, .. } => format!("policy mismatch ({pcrs})"),
        UnsealError::Lockout => "TPM dictionary-attack lockout".to_owned(),
        UnsealError::BadPin => "wrong TPM PIN".to_owned(),
        UnsealError::PinRequired => "TPM PIN required".to_owned(),
        UnsealError::BadBlob(_) => "damaged TPM token".to_owned(),
        UnsealError::Tpm { step, .. } => format!("TPM error during {step}"),
    }
}
