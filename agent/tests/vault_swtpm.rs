//! The vault against real components on the host: a swtpm per test and LUKS2 headers in
//! image files through libcryptsetup. The host kernel has no device-mapper, so the QEMU
//! boot tests cover activation, the filesystem and mounting. Here keyslots are checked with
//! libcryptsetup's passphrase check and with the stock `cryptsetup` tool.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use appliance_agent::vault::enroll::{self, CutPoint, EnrollContext, Enrolled};
use appliance_agent::vault::luks::{self, DeviceContents, Luks2Device};
use appliance_agent::vault::secret::Secret;
use appliance_agent::vault::token::{EnrollmentState, Luks2Metadata};
use appliance_agent::vault::tpm::{self, SealPolicy, UnsealError, UnsealInputs};
use appliance_agent::vault::unlock::{
    self, KeyslotOpener, RecoveryPrompt, TokenUnsealer, UnlockMethod,
};
use appliance_secureboot::pcrsig::PcrSignatures;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tss_esapi::handles::PcrHandle;
use tss_esapi::Context;

use support::pcr_policy::{context, extend, sign_current_pcr11, signing_key, SigningKey};
use support::swtpm::Swtpm;

fn policy(key: &SigningKey, bind_pcr7: bool) -> SealPolicy {
    SealPolicy {
        signing_key: key.public.clone(),
        signing_key_pem: key.public_pem.clone(),
        bind_pcr7,
    }
}

#[test]
fn unseal_signed_pcr11_and_update() {
    let swtpm = Swtpm::start().expect("swtpm");
    let key = signing_key();
    let mut tpm = context(&swtpm);
    extend(&mut tpm, PcrHandle::Pcr11, b"uki version 1");
    let secret = Secret::random(tpm::SECRET_LEN).expect("random");
    let sealed = tpm::seal(&mut tpm, &policy(&key, false), &secret, None).expect("seal");

    let signatures = sign_current_pcr11(&swtpm, &key);
    let inputs = UnsealInputs {
        signing_key: &key.public,
        signatures: &signatures,
        bind_pcr7: false,
        pin: None,
    };
    let unsealed = tpm::unseal(&mut tpm, &sealed.blob, &inputs).expect("unseal");
    assert_eq!(unsealed, secret);

    // Another PCR 11 value (a new UKI) unseals once it is signed, with no re-sealing.
    extend(&mut tpm, PcrHandle::Pcr11, b"uki version 2");
    let unsigned = tpm::unseal(&mut tpm, &sealed.blob, &inputs).expect_err("old signature only");
    assert!(
        matches!(unsigned, UnsealError::UnsignedPcr11 { entries: 1 }),
        "{unsigned}"
    );
    let new_signatures = sign_current_pcr11(&swtpm, &key);
    let inputs = UnsealInputs {
        signatures: &new_signatures,
        ..inputs
    };
    assert_eq!(
        tpm::unseal(&mut tpm, &sealed.blob, &inputs).expect("unseal"),
        secret
    );
}

#[test]
fn unseal_foreign_key_rejected() {
    let swtpm = Swtpm::start().expect("swtpm");
    let key = signing_key();
    let other = signing_key();
    let mut tpm = context(&swtpm);
    let secret = Secret::random(tpm::SECRET_LEN).expect("random");
    let sealed = tpm::seal(&mut tpm, &policy(&key, false), &secret, None).expect("seal");

    // The attacker's key signs this PCR 11 and is presented as if it were ours.
    let signatures = sign_current_pcr11(&swtpm, &other);
    let inputs = UnsealInputs {
        signing_key: &other.public,
        signatures: &signatures,
        bind_pcr7: false,
        pin: None,
    };
    let error = tpm::unseal(&mut tpm, &sealed.blob, &inputs).expect_err("wrong key");
    assert!(
        matches!(
            error,
            UnsealError::Tpm { .. } | UnsealError::PolicyMismatch { .. }
        ),
        "{error}"
    );
}

#[test]
fn unseal_pcr7_change_rejected() {
    let swtpm = Swtpm::start().expect("swtpm");
    let key = signing_key();
    let mut tpm = context(&swtpm);
    extend(&mut tpm, PcrHandle::Pcr7, b"secure boot db v1");
    let secret = Secret::random(tpm::SECRET_LEN).expect("random");
    let sealed = tpm::seal(&mut tpm, &policy(&key, true), &secret, None).expect("seal");
    let signatures = sign_current_pcr11(&swtpm, &key);
    let inputs = UnsealInputs {
        signing_key: &key.public,
        signatures: &signatures,
        bind_pcr7: true,
        pin: None,
    };
    assert_eq!(
        tpm::unseal(&mut tpm, &sealed.blob, &inputs).expect("unseal"),
        secret
    );

    extend(&mut tpm, PcrHandle::Pcr7, b"a new db key");
    let error = tpm::unseal(&mut tpm, &sealed.blob, &inputs).expect_err("PCR 7 changed");
    assert!(
        matches!(&error, UnsealError::PolicyMismatch { pcrs, .. } if pcrs == "pcr 7"),
        "{error}"
    );
}

#[test]
fn unseal_damaged_blob_reported() {
    let swtpm = Swtpm::start().expect("swtpm");
    let key = signing_key();
    let mut tpm = context(&swtpm);
    let signatures = sign_current_pcr11(&swtpm, &key);
    let inputs = UnsealInputs {
        signing_key: &key.public,
        signatures: &signatures,
        bind_pcr7: false,
        pin: None,
    };
    for blob in [&[][..], &[0x00, 0x40, 1, 2][..], &[0x00, 0x00, 0xff][..]] {
        let error = tpm::unseal(&mut tpm, blob, &inputs).expect_err("damaged");
        assert!(matches!(error, UnsealError::BadBlob(_)), "{error}");
    }
}

/// Creates a sparse image file the size of a small vault partition.
fn vault_image(dir: &Path) -> PathBuf {
    let path = dir.join("vault.img");
    let file = std::fs::File::create(&path).expect("create image");
    file.set_len(64 * 1024 * 1024).expect("size image");
    path
}

struct Enrollment<'a> {
    swtpm: &'a Swtpm,
    key: &'a SigningKey,
    image: PathBuf,
    shown: Vec<Vec<u8>>,
}

impl<'a> Enrollment<'a> {
    fn new(swtpm: &'a Swtpm, key: &'a SigningKey, dir: &Path) -> Self {
        Self {
            swtpm,
            key,
            image: vault_image(dir),
            shown: Vec::new(),
        }
    }

    fn run(&mut self, cut_point: Option<CutPoint>) -> anyhow::Result<Enrolled> {
        let mut tpm = context(self.swtpm);
        let policy = policy(self.key, false);
        let shown = &mut self.shown;
        let mut show = |key: &Secret| shown.push(key.as_bytes().to_vec());
        let mut ctx = EnrollContext {
            device: &self.image,
            mapping: "unused",
            tpm: Some(&mut tpm),
            policy: Some(&policy),
            show_recovery_key: &mut show,
            cut_point,
            wait_at_cut_point: false,
            make_filesystem: false,
        };
        match luks::probe(&self.image)? {
            DeviceContents::Empty => enroll::create(&mut ctx),
            DeviceContents::Luks2 { metadata, .. } => {
                let metadata = Luks2Metadata::from_json(&metadata)?;
                let (id, marker) = metadata.enrollment().expect("unfinished vault");
                let mut unseal_tpm = context(self.swtpm);
                let signatures = sign_current_pcr11(self.swtpm, self.key);
                let mut unseal = |blob: &[u8]| {
                    tpm::unseal(
                        &mut unseal_tpm,
                        blob,
                        &UnsealInputs {
                            signing_key: &self.key.public,
                            signatures: &signatures,
                            bind_pcr7: false,
                            pin: None,
                        },
                    )
                };
                enroll::resume(&mut ctx, id, &marker.clone(), &mut unseal)
            }
            DeviceContents::Foreign { reason } => anyhow::bail!(reason),
        }
    }

    fn metadata(&self) -> Luks2Metadata {
        Luks2Device::load(&self.image)
            .expect("load")
            .metadata()
            .expect("metadata")
    }
}

/// The real unsealer for the flow: swtpm plus the test's signed policy.
struct SwtpmUnsealer<'a> {
    context: Context,
    key: &'a SigningKey,
    signatures: PcrSignatures,
}

impl TokenUnsealer for SwtpmUnsealer<'_> {
    fn unseal(
        &mut self,
        token: &appliance_agent::vault::token::Tpm2Token,
    ) -> Result<Secret, UnsealError> {
        tpm::unseal(
            &mut self.context,
            &token.blob,
            &UnsealInputs {
                signing_key: &self.key.public,
                signatures: &self.signatures,
                bind_pcr7: token.pcrs.contains(&7),
                pin: None,
            },
        )
    }
}

struct ImageOpener(PathBuf);

impl KeyslotOpener for ImageOpener {
    fn open(&mut self, keyslot: u32, passphrase: &[u8]) -> Result<Option<u32>, String> {
        let mut device = Luks2Device::load(&self.0).map_err(|e| e.to_string())?;
        match device.open(None, Some(keyslot), passphrase) {
            Ok(slot) => Ok(Some(slot)),
            Err(error) if error.is_wrong_passphrase() => Ok(None),
            Err(error) => Err(error.to_string()),
        }
    }
}

struct Typed(Vec<Vec<u8>>);

impl RecoveryPrompt for Typed {
    fn ask(&mut self, _reason: &str) -> Option<Secret> {
        (!self.0.is_empty()).then(|| Secret::from_vec(self.0.remove(0)))
    }
}

/// Checks a passphrase with the stock cryptsetup tool, as an owner would on another machine.
fn stock_cryptsetup_opens(image: &Path, passphrase: &[u8]) -> bool {
    use std::io::Write;
    let mut child = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file", "-"])
        .arg(image)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cryptsetup is installed by `make setup`");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(passphrase)
        .expect("write key");
    child.wait().expect("wait").success()
}

#[test]
fn new_vault_opens_tpm_and_recovery() {
    let swtpm = Swtpm::start().expect("swtpm");
    let key = signing_key();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut enrollment = Enrollment::new(&swtpm, &key, dir.path());

    assert_eq!(enrollment.run(None).expect("enroll"), Enrolled::Created);

    assert_eq!(
        enrollment.shown.len(),
        1,
        "the recovery key is shown exactly once"
    );
    let recovery_key = enrollment.shown[0].clone();
    let metadata = enrollment.metadata();
    assert_eq!(metadata.keyslots.len(), 2);
    assert!(metadata.enrollment().is_none());
    assert_eq!(metadata.tpm2_tokens().count(), 1);
    assert_eq!(metadata.recovery_keyslots().len(), 1);
    let (_, token) = metadata.tpm2_tokens().next().expect("tpm token");
    assert_eq!(token.pubkey_pcrs, vec![11]);
    assert_eq!(token.pubkey.as_deref(), Some(key.public_pem.as_slice()));

    // Unattended: the TPM token opens its keyslot, no prompt.
    let mut unsealer = SwtpmUnsealer {
        context: context(&swtpm),
        key: &key,
        signatures: sign_current_pcr11(&swtpm, &key),
    };
    let mut opener = ImageOpener(enrollment.image.clone());
    let report = unlock::unlock(
        &metadata,
        Some(&mut unsealer),
        &mut opener,
        &mut Typed(vec![]),
        3,
    );
    assert!(report.unlocked, "{report:?}");
    assert_eq!(report.method, Some(UnlockMethod::Tpm));
    assert!(!report.recovery_prompted);

    // A boot we did not sign: PCR 11 changes, the TPM refuses, the recovery key opens.
    let mut tpm = context(&swtpm);
    extend(&mut tpm, PcrHandle::Pcr11, b"tampered initrd");
    drop(tpm);
    let mut unsealer = SwtpmUnsealer {
        context: context(&swtpm),
        key: &key,
        signatures: unsealer.signatures,
    };
    let report = unlock::unlock(
        &metadata,
        Some(&mut unsealer),
        &mut opener,
        &mut Typed(vec![b"cbcbcbcb-not-the-key".to_vec(), recovery_key.clone()]),
        3,
    );
    assert!(report.unlocked, "{report:?}");
    assert_eq!(report.method, Some(UnlockMethod::RecoveryKey));
    assert_eq!(report.tpm_result, "policy mismatch (pcr 11)");
    assert!(report.reseal_offered);

    // The stock tool opens the vault with the recovery key and rejects a wrong one.
    assert!(stock_cryptsetup_opens(&enrollment.image, &recovery_key));
    assert!(!stock_cryptsetup_opens(
        &enrollment.image,
        b"cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv"
    ));
}

#[test]
fn enrollment_power_cut_each_point() {
    for cut in [
        CutPoint::AfterFormat,
        CutPoint::AfterKeyslots,
        CutPoint::AfterFilesystem,
        CutPoint::AfterRecoveryKeyShown,
    ] {
        let swtpm = Swtpm::start().expect("swtpm");
        let key = signing_key();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut enrollment = Enrollment::new(&swtpm, &key, dir.path());

        let error = enrollment.run(Some(cut)).expect_err("stopped");
        assert!(error.to_string().contains(cut.name()), "{cut:?}: {error}");
        let marker = enrollment
            .metadata()
            .enrollment()
            .map(|(_, marker)| marker.state);
        match cut {
            CutPoint::AfterRecoveryKeyShown => {
                assert_eq!(marker, Some(EnrollmentState::Formatted));
                assert_eq!(enrollment.shown.len(), 1);
            }
            _ => {
                assert_eq!(marker, Some(EnrollmentState::Formatting), "{cut:?}");
                assert!(
                    enrollment.shown.is_empty(),
                    "{cut:?}: no key before the vault is complete"
                );
            }
        }

        // The next boot finishes or starts over.
        let outcome = enrollment.run(None).expect("next boot");
        let expected = if cut == CutPoint::AfterRecoveryKeyShown {
            Enrolled::Resumed
        } else {
            Enrolled::Restarted
        };
        assert_eq!(outcome, expected, "{cut:?}");
        let metadata = enrollment.metadata();
        assert!(metadata.enrollment().is_none(), "{cut:?}: complete");
        assert_eq!(metadata.keyslots.len(), 2, "{cut:?}");
        // Every key ever shown opens the vault.
        for shown in &enrollment.shown {
            assert!(
                stock_cryptsetup_opens(&enrollment.image, shown),
                "{cut:?}: a shown key does not open the vault"
            );
        }
        if cut == CutPoint::AfterRecoveryKeyShown {
            assert_eq!(enrollment.shown.len(), 2);
            assert_eq!(
                enrollment.shown[0], enrollment.shown[1],
                "the same key is shown again"
            );
        }
    }
}

#[test]
fn probe_foreign_data_not_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = vault_image(dir.path());
    std::fs::write(&image, b"some filesystem that is not ours").expect("write");
    assert!(matches!(
        luks::probe(&image).expect("probe"),
        DeviceContents::Foreign { .. }
    ));
    let empty = dir.path().join("empty.img");
    std::fs::File::create(&empty)
        .expect("create")
        .set_len(1 << 20)
        .expect("size");
    assert_eq!(luks::probe(&empty).expect("probe"), DeviceContents::Empty);
}

fn unseal_token(
    swtpm: &Swtpm,
    key: &SigningKey,
    image: &Path,
    pin: Option<&Secret>,
) -> Result<Secret, UnsealError> {
    let metadata = Luks2Device::load(image)
        .expect("load")
        .metadata()
        .expect("metadata");
    let (_, token) = metadata.tpm2_tokens().next().expect("a TPM token");
    let signatures = sign_current_pcr11(swtpm, key);
    tpm::unseal(
        &mut context(swtpm),
        &token.blob,
        &UnsealInputs {
            signing_key: &key.public,
            signatures: &signatures,
            bind_pcr7: token.pcrs.contains(&7),
            pin,
        },
    )
}

#[test]
fn reseal_replaces_tpm_keyslot() {
    let swtpm = Swtpm::start().expect("swtpm");
    let key = signing_key();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut enrollment = Enrollment::new(&swtpm, &key, dir.path());
    enrollment.run(None).expect("enroll");
    let recovery_key = Secret::from_slice(&enrollment.shown[0]);
    let before = enrollment.metadata();
    let recovery_slot = before.recovery_keyslots()[0];

    // Bind PCR 7 as well, then change PCR 7: the TPM refuses.
    let mut tpm = context(&swtpm);
    let bound = SealPolicy {
        bind_pcr7: true,
        ..policy(&key, false)
    };
    enroll::replace_tpm_keyslot(&enrollment.image, &recovery_key, &mut tpm, &bound, None)
        .expect("bind PCR 7");
    extend(&mut tpm, PcrHandle::Pcr7, b"firmware update");
    let error = unseal_token(&swtpm, &key, &enrollment.image, None).expect_err("PCR 7 changed");
    assert!(
        matches!(error, UnsealError::PolicyMismatch { .. }),
        "{error}"
    );

    // After the recovery key, sealing to this boot works again.
    let keyslot =
        enroll::replace_tpm_keyslot(&enrollment.image, &recovery_key, &mut tpm, &bound, None)
            .expect("reseal");
    let secret = unseal_token(&swtpm, &key, &enrollment.image, None).expect("unseal after reseal");
    let passphrase = BASE64.encode(secret.as_bytes());
    let mut device = Luks2Device::load(&enrollment.image).expect("load");
    assert_eq!(
        device
            .open(None, Some(keyslot), passphrase.as_bytes())
            .expect("opens"),
        keyslot
    );

    let after = enrollment.metadata();
    assert_eq!(after.tpm2_tokens().count(), 1, "old TPM tokens are removed");
    assert_eq!(
        after.keyslots.len(),
        2,
        "one TPM keyslot and the recovery keyslot"
    );
    assert!(after.has_keyslot(recovery_slot));
    assert!(stock_cryptsetup_opens(
        &enrollment.image,
        recovery_key.as_bytes()
    ));

    let wrong = Secret::from_slice(
        b"cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv",
    );
    let error = enroll::replace_tpm_keyslot(&enrollment.image, &wrong, &mut tpm, &bound, None)
        .expect_err("a wrong recovery key changes nothing");
    assert!(error.to_string().contains("does not open"), "{error}");
    assert_eq!(enrollment.metadata(), after);
}

#[test]
fn pin_required_and_locked_out() {
    let swtpm = Swtpm::start().expect("swtpm");
    let key = signing_key();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut enrollment = Enrollment::new(&swtpm, &key, dir.path());
    enrollment.run(None).expect("enroll");
    let recovery_key = Secret::from_slice(&enrollment.shown[0]);
    let pin = Secret::from_slice(b"482916");
    let mut tpm = context(&swtpm);
    enroll::replace_tpm_keyslot(
        &enrollment.image,
        &recovery_key,
        &mut tpm,
        &policy(&key, false),
        Some(&pin),
    )
    .expect("seal with a PIN");
    drop(tpm);

    let metadata = enrollment.metadata();
    assert!(
        metadata.tpm2_tokens().next().expect("token").1.pin,
        "the token records the PIN"
    );
    assert!(unseal_token(&swtpm, &key, &enrollment.image, Some(&pin)).is_ok());
    let missing = unseal_token(&swtpm, &key, &enrollment.image, None).expect_err("no PIN");
    assert!(
        matches!(missing, UnsealError::BadPin | UnsealError::Tpm { .. }),
        "{missing}"
    );

    // Wrong PINs count towards the TPM's dictionary-attack lockout; once it trips, even
    // the right PIN is rejected with a lockout error.
    let wrong = Secret::from_slice(b"000000");
    let mut outcomes = Vec::new();
    for _ in 0..40 {
        let error =
            unseal_token(&swtpm, &key, &enrollment.image, Some(&wrong)).expect_err("wrong PIN");
        let lockout = matches!(error, UnsealError::Lockout);
        outcomes.push(error.to_string());
        if lockout {
            break;
        }
        assert!(matches!(error, UnsealError::BadPin), "{error}");
    }
    assert!(
        outcomes.last().expect("tried").contains("lockout"),
        "{outcomes:?}"
    );
    let locked = unseal_token(&swtpm, &key, &enrollment.image, Some(&pin)).expect_err("locked out");
    assert!(matches!(locked, UnsealError::Lockout), "{locked}");
}
