//! One LUKS2 image with two TPM tokens on one swtpm: one enrolled by the agent, one by
//! systemd-cryptenroll. Both seal under TPM2_PolicyAuthorize to the same PCR signing key over
//! PCR 11, with no literal PCR binding, and either implementation's unlock can be pointed at
//! either token.
//!
//! systemd's side needs systemd 257's `systemd-cryptenroll` on PATH and its `systemd-tpm2`
//! cryptsetup token plugin in libcryptsetup's plugin folder, so this module works only inside
//! the bench tools tree (image/bench-tools), where `make bench-vault` and
//! `make test-vault-interop` run it.

use std::ffi::{c_char, CString};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use appliance_agent::vault::enroll::{self, EnrollContext};
use appliance_agent::vault::luks::Luks2Device;
use appliance_agent::vault::secret::Secret;
use appliance_agent::vault::token::Token;
use appliance_agent::vault::tpm::{self, SealPolicy, UnsealInputs};
use appliance_secureboot::pcrsig::{PcrPublicKey, PcrSignatures};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use libcryptsetup_rs::consts::flags::CryptActivate;
use libcryptsetup_rs::consts::vals::EncryptionFormat;
use libcryptsetup_rs::CryptInit;
use tss_esapi::handles::PcrHandle;

use super::pcr_policy::{context, extend, sign_current_pcr11_json, signing_key, SigningKey};
use super::swtpm::Swtpm;

/// `systemd_tpm2_plugin_params` from systemd 257's src/shared/tpm2-util.h, which
/// systemd-cryptsetup passes to the `systemd-tpm2` token plugin as libcryptsetup's `usrptr`.
/// Without it, as from `cryptsetup open --token-only`, the plugin looks for a TPM only under
/// /sys/class/tpmrm and never reaches a swtpm: `SYSTEMD_TPM2_DEVICE` is not read on that path.
#[repr(C)]
struct SystemdTpm2PluginParams {
    /// Mask of the literal PCRs a token must bind to be tried; all ones tries every token.
    search_pcr_mask: u32,
    /// A TCTI as "driver:configuration", or a device node.
    device: *const c_char,
    /// The signed PCR policies (`tpm2-pcr-signature.json`).
    signature_path: *const c_char,
    pcrlock_path: *const c_char,
}

/// The image, its two tokens and the swtpm they are sealed to.
pub struct DualVault {
    pub swtpm: Swtpm,
    pub key: SigningKey,
    pub image: PathBuf,
    /// The signed PCR 11 policy of the current PCR 11 value.
    pub signature_path: PathBuf,
    /// The token that the agent's enrollment wrote.
    pub agent_token: u32,
    /// The token that systemd-cryptenroll wrote.
    pub systemd_token: u32,
    _dir: tempfile::TempDir,
}

impl DualVault {
    /// Starts a swtpm, extends and signs PCR 11, enrolls the agent's vault and then adds
    /// systemd-cryptenroll's TPM keyslot, unlocking the header with the recovery key.
    pub fn create() -> anyhow::Result<Self> {
        let swtpm = Swtpm::start().context("starting swtpm")?;
        let key = signing_key();
        let dir = tempfile::tempdir()?;
        let signature_path = dir.path().join("tpm2-pcr-signature.json");
        let public_key_path = dir.path().join("tpm2-pcr-public-key.pem");
        let image = dir.path().join("vault.img");
        std::fs::File::create(&image)?.set_len(64 * 1024 * 1024)?;
        std::fs::write(&public_key_path, &key.public_pem)?;

        // swtpm serves one client at a time, so this context is closed before
        // systemd-cryptenroll connects.
        let mut tpm = context(&swtpm);
        extend(&mut tpm, PcrHandle::Pcr11, b"uki version 1");
        let mut recovery_key = None;
        let mut keep_recovery_key =
            |shown: &Secret| recovery_key = Some(Secret::from_slice(shown.as_bytes()));
        let policy = SealPolicy {
            signing_key: key.public.clone(),
            signing_key_pem: key.public_pem.clone(),
            bind_pcr7: false,
        };
        enroll::create(&mut EnrollContext {
            device: &image,
            mapping: "unused",
            tpm: Some(&mut tpm),
            policy: Some(&policy),
            show_recovery_key: &mut keep_recovery_key,
            cut_point: None,
            wait_at_cut_point: false,
            make_filesystem: false,
        })?;
        drop(tpm);
        std::fs::write(&signature_path, sign_current_pcr11_json(&swtpm, &key))?;
        let recovery_key = recovery_key.context("enrollment showed no recovery key")?;
        let agent_token = single_tpm2_token(&image, &[])?;

        let recovery_path = dir.path().join("recovery-key");
        write_private(&recovery_path, recovery_key.as_bytes())?;
        let output = Command::new("systemd-cryptenroll")
            .arg(format!("--unlock-key-file={}", recovery_path.display()))
            .arg(format!("--tpm2-device={}", swtpm.tcti()))
            .arg(format!("--tpm2-public-key={}", public_key_path.display()))
            .arg("--tpm2-public-key-pcrs=11")
            .arg(format!("--tpm2-signature={}", signature_path.display()))
            // No literal PCR binding, like the agent's token; systemd's default is PCR 7.
            .arg("--tpm2-pcrs=")
            .arg(&image)
            .output()
            .context("running systemd-cryptenroll (run this inside the bench tools tree)")?;
        std::fs::remove_file(&recovery_path)?;
        if !output.status.success() {
            bail!(
                "systemd-cryptenroll failed with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let systemd_token = single_tpm2_token(&image, &[agent_token])?;

        Ok(Self {
            swtpm,
            key,
            image,
            signature_path,
            agent_token,
            systemd_token,
            _dir: dir,
        })
    }

    /// Unlocks with the agent's code: reads the header and the signed policies, has the TPM
    /// unseal the token's secret and checks it on the token's keyslot without mapping the
    /// volume. Returns the keyslot.
    pub fn unlock_with_agent(&self, token: u32) -> anyhow::Result<u32> {
        let mut tpm = tpm::open(&self.swtpm.tcti())?;
        let mut device = Luks2Device::load(&self.image)?;
        let metadata = device.metadata()?;
        let Some(Token::Tpm2(tpm2)) = metadata.tokens.get(&token) else {
            bail!("token {token} is not a readable systemd-tpm2 token");
        };
        let signatures = PcrSignatures::parse(&std::fs::read(&self.signature_path)?)?;
        let pem = tpm2
            .pubkey
            .as_deref()
            .with_context(|| format!("token {token} has no tpm2_pubkey"))?;
        let signing_key = PcrPublicKey::from_pem(pem)?;
        let secret = tpm::unseal(
            &mut tpm,
            &tpm2.blob,
            &UnsealInputs {
                signing_key: &signing_key,
                signatures: &signatures,
                bind_pcr7: tpm2.pcrs.contains(&7),
                pin: None,
            },
        )?;
        // The agent and systemd both use the secret's base64 text as the keyslot passphrase.
        let passphrase = Secret::from_vec(BASE64.encode(secret.as_bytes()).into_bytes());
        let keyslot = *tpm2
            .keyslots
            .first()
            .with_context(|| format!("token {token} names no keyslot"))?;
        Ok(device.open(None, Some(keyslot), passphrase.as_bytes())?)
    }

    /// Unlocks with systemd 257's token plugin, as systemd-cryptsetup calls it, but with no
    /// volume name, so libcryptsetup checks the keyslot and maps nothing. Returns the keyslot.
    pub fn unlock_with_systemd(&self, token: u32) -> anyhow::Result<u32> {
        let tcti = CString::new(self.swtpm.tcti())?;
        let signature_path = CString::new(self.signature_path.as_os_str().as_bytes())?;
        let mut params = SystemdTpm2PluginParams {
            search_pcr_mask: u32::MAX,
            device: tcti.as_ptr(),
            signature_path: signature_path.as_ptr(),
            pcrlock_path: std::ptr::null(),
        };
        let mut device = CryptInit::init(&self.image)?;
        device
            .context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)?;
        let keyslot = device.token_handle().activate_by_token(
            None,
            Some(token),
            Some(&mut params),
            CryptActivate::empty(),
        )?;
        Ok(keyslot)
    }

    /// Returns the raw JSON of a token, as the LUKS2 header stores it.
    pub fn token_json(&self, token: u32) -> anyhow::Result<serde_json::Value> {
        let json = Luks2Device::load(&self.image)?.metadata_json()?;
        json["tokens"]
            .get(token.to_string())
            .cloned()
            .with_context(|| format!("no token {token} in the header"))
    }
}

/// Returns the one `systemd-tpm2` token of the image that is not in `known`.
fn single_tpm2_token(image: &Path, known: &[u32]) -> anyhow::Result<u32> {
    let metadata = Luks2Device::load(image)?.metadata()?;
    let new: Vec<u32> = metadata
        .tpm2_tokens()
        .map(|(id, _)| id)
        .filter(|id| !known.contains(id))
        .collect();
    match new.as_slice() {
        [id] => Ok(*id),
        other => bail!("expected one new systemd-tpm2 token, found {other:?}"),
    }
}

/// Writes a file that only its owner can read.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents)
}
