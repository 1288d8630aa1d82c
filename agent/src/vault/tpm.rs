//! Sealing and unsealing the vault's keyslot secret with the TPM.
//!
//! The secret is sealed under TPM2_PolicyAuthorize to the PCR signing key: any PCR 11 value
//! for which the UKI carries a signed PolicyPCR digest unseals it, so a signed update needs
//! no re-enrollment. PCR 7 (Secure Boot state and keys) can be bound as a literal value on
//! top, and a PIN adds TPM2_PolicyAuthValue. The policy steps are the ones systemd-cryptenroll
//! uses for `--tpm2-public-key` with `--tpm2-pcrs=7`, in the same order.
//!
//! The sealed object's parent is a primary key created from the TCG's ECC P-256 storage key
//! (SRK) template in the owner hierarchy. The same template always yields the same key, so
//! nothing is stored in the TPM.

use std::str::FromStr;

use appliance_secureboot::pcr::PcrBank;
use appliance_secureboot::pcrsig::{PcrPublicKey, PcrSignatures};
use sha2::{Digest as _, Sha256};
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::constants::{SessionType, StructureTag};
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Auth, Digest, EccPoint, KeyedHashScheme, Name, Nonce, PcrSelectionListBuilder, PcrSlot,
    Private, Public, PublicBuffer, PublicBuilder, PublicEccParametersBuilder, PublicKeyRsa,
    PublicKeyedHashParameters, PublicRsaParametersBuilder, RsaExponent, RsaScheme, RsaSignature,
    SensitiveData, Signature, SymmetricDefinition, SymmetricDefinitionObject, VerifiedTicket,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::tss2_esys::{TPM2B_DIGEST, TPMT_TK_VERIFIED};
use tss_esapi::{Context, TctiNameConf};

use super::secret::Secret;

/// Length of the secret sealed in the TPM. The keyslot passphrase is its base64 form.
pub const SECRET_LEN: usize = 32;

/// TPM_RH_NULL, the hierarchy of a ticket that vouches for nothing.
const TPM_RH_NULL: u32 = 0x4000_0007;

/// Binding of a sealed object: the signing key and, optionally, PCR 7.
#[derive(Debug, Clone)]
pub struct SealPolicy {
    /// The key whose signatures over PolicyPCR digests of PCR 11 authorize an unseal.
    pub signing_key: PcrPublicKey,
    /// The same key as PEM, stored in the token ("tpm2_pubkey").
    pub signing_key_pem: Vec<u8>,
    /// Also bind PCR 7's current value.
    pub bind_pcr7: bool,
}

/// A sealed object as the token stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlob {
    /// TPM2B_PRIVATE followed by TPM2B_PUBLIC, as systemd's "tpm2-blob" stores them.
    pub blob: Vec<u8>,
    /// The sealed object's authPolicy.
    pub policy_hash: Vec<u8>,
}

/// Reason the TPM did not release the secret.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error("no TPM device: {0}")]
    NoTpm(String),
    #[error(
        "policy mismatch (pcr 11): this boot's PCR 11 value is signed by none of the {entries} \
         sha256 policies in the UKI's .pcrsig section, so this is not a boot we signed"
    )]
    UnsignedPcr11 { entries: usize },
    #[error("policy mismatch ({pcrs}): {detail}")]
    PolicyMismatch { pcrs: String, detail: String },
    #[error(
        "the TPM is in dictionary-attack lockout after too many wrong PINs; wait for the \
         lockout to expire (or clear it with the lockout authorization) and try again"
    )]
    Lockout,
    #[error("wrong TPM PIN; the TPM counts this failure towards its dictionary-attack lockout")]
    BadPin,
    #[error(
        "the TPM keyslot needs its PIN; enter it with POST /api/vault/unlock {{\"pin\": ...}}"
    )]
    PinRequired,
    #[error("the sealed object in the token is damaged: {0}")]
    BadBlob(String),
    #[error("TPM error during {step}: {error}")]
    Tpm {
        step: &'static str,
        error: tss_esapi::Error,
    },
}

fn tpm_step(step: &'static str) -> impl FnOnce(tss_esapi::Error) -> UnsealError {
    move |error| match error_kind(&error) {
        Some(Tss2ResponseCodeKind::Lockout) => UnsealError::Lockout,
        _ => UnsealError::Tpm { step, error },
    }
}

fn error_kind(error: &tss_esapi::Error) -> Option<Tss2ResponseCodeKind> {
    match error {
        tss_esapi::Error::Tss2Error(code) => code.kind(),
        tss_esapi::Error::WrapperError(_) => None,
    }
}

/// Opens the TPM reached through `tcti`.
pub fn open(tcti: &str) -> Result<Context, UnsealError> {
    let name = TctiNameConf::from_str(tcti)
        .map_err(|error| UnsealError::NoTpm(format!("invalid TCTI {tcti:?}: {error}")))?;
    Context::new(name).map_err(|error| UnsealError::NoTpm(format!("{tcti}: {error}")))
}

/// Seals `secret` to `policy`. The TPM must be in the state the policy binds (PCR 7).
pub fn seal(
    context: &mut Context,
    policy: &SealPolicy,
    secret: &Secret,
    pin: Option<&Secret>,
) -> Result<SealedBlob, UnsealError> {
    let primary = create_primary(context)?;
    let result = seal_under(context, primary, policy, secret, pin);
    flush(context, primary.into());
    result
}

fn seal_under(
    context: &mut Context,
    primary: KeyHandle,
    policy: &SealPolicy,
    secret: &Secret,
    pin: Option<&Secret>,
) -> Result<SealedBlob, UnsealError> {
    let signing_key = load_signing_key(context, &policy.signing_key, ExponentEncoding::TpmDefault)?;
    let key_name = context.tr_get_name(signing_key.into());
    flush(context, signing_key.into());
    let key_name = key_name.map_err(tpm_step("reading the signing key's name"))?;

    let trial = start_session(context, SessionType::Trial, None)?;
    let digest = apply_trial_policy(context, trial, &key_name, policy.bind_pcr7, pin.is_some());
    flush(context, SessionHandleObject::from(trial).0);
    let policy_digest = digest?;

    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        // Without a PIN nothing but the policy authorizes use, and a failed policy is not a
        // guess at a secret, so dictionary-attack protection only applies with a PIN.
        .with_no_da(pin.is_none())
        .with_user_with_auth(false)
        .build()
        .map_err(tpm_step("building the sealed object's attributes"))?;
    let public = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_auth_policy(policy_digest.clone())
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
        .map_err(tpm_step("building the sealed object's template"))?;
    let data = SensitiveData::try_from(secret.as_bytes().to_vec())
        .map_err(tpm_step("preparing the secret"))?;
    let auth = pin_auth(pin)?;
    let created = context
        .execute_with_nullauth_session(|ctx| {
            ctx.create(primary, public, auth, Some(data), None, None)
        })
        .map_err(tpm_step("creating the sealed object"))?;

    let mut blob = Vec::new();
    let private = created.out_private.value();
    let private_len = u16::try_from(private.len())
        .map_err(|_| UnsealError::BadBlob("TPM2B_PRIVATE larger than 64 KiB".to_owned()))?;
    blob.extend_from_slice(&private_len.to_be_bytes());
    blob.extend_from_slice(private);
    let public = PublicBuffer::try_from(created.out_public)
        .and_then(|buffer| buffer.marshall())
        .map_err(tpm_step("encoding the sealed object's public area"))?;
    blob.extend_from_slice(&public);
    Ok(SealedBlob {
        blob,
        policy_hash: policy_digest.value().to_vec(),
    })
}

/// Inputs of an unseal besides the TPM and the blob.
pub struct UnsealInputs<'a> {
    pub signing_key: &'a PcrPublicKey,
    /// The signed PCR 11 policies of the running UKI (`/.extra/tpm2-pcr-signature.json`).
    pub signatures: &'a PcrSignatures,
    pub bind_pcr7: bool,
    pub pin: Option<&'a Secret>,
}

/// Unseals the secret in `blob` if this boot satisfies its policy.
pub fn unseal(
    context: &mut Context,
    blob: &[u8],
    inputs: &UnsealInputs<'_>,
) -> Result<Secret, UnsealError> {
    let (private, public) = split_blob(blob)?;
    let primary = create_primary(context)?;
    let mut attempt = 1;
    let result = loop {
        let result = unseal_under(context, primary, private.clone(), public.clone(), inputs);
        // The TPM rejects the unseal when any PCR was extended between PolicyPCR and
        // Unseal, which happens during boot (IMA extends PCR 10 for every file it
        // measures). A new session reads the new values, so the attempt is repeated.
        match &result {
            Err(UnsealError::Tpm { error, .. })
                if error_kind(error) == Some(Tss2ResponseCodeKind::PcrChanged)
                    && attempt < PCR_CHANGED_ATTEMPTS =>
            {
                tracing::debug!(attempt, "a PCR changed during the unseal; trying again");
                attempt += 1;
            }
            _ => break result,
        }
    };
    flush(context, primary.into());
    result
}

/// Attempts when PCRs keep changing under an unseal.
const PCR_CHANGED_ATTEMPTS: u32 = 10;

fn unseal_under(
    context: &mut Context,
    primary: KeyHandle,
    private: Private,
    public: Public,
    inputs: &UnsealInputs<'_>,
) -> Result<Secret, UnsealError> {
    let sealed_policy = public.auth_policy().clone();
    let sealed = context
        .execute_with_nullauth_session(|ctx| ctx.load(primary, private, public))
        .map_err(tpm_step("loading the sealed object"))?;
    // The session is salted with the primary key and encrypts the response, so the secret
    // does not cross the bus to a discrete TPM in clear text.
    let session = match start_session(context, SessionType::Policy, Some(primary)) {
        Ok(session) => session,
        Err(error) => {
            flush(context, sealed.into());
            return Err(error);
        }
    };
    let result = satisfy_policy_and_unseal(context, session, sealed, &sealed_policy, inputs);
    flush(context, SessionHandleObject::from(session).0);
    flush(context, sealed.into());
    result
}

fn satisfy_policy_and_unseal(
    context: &mut Context,
    session: AuthSession,
    sealed: KeyHandle,
    sealed_policy: &Digest,
    inputs: &UnsealInputs<'_>,
) -> Result<Secret, UnsealError> {
    let policy_session =
        PolicySession::try_from(session).map_err(tpm_step("starting the policy session"))?;
    // PolicyAuthorize binds the sealed object to the signing key's name, a hash of the key's
    // TPM public area. systemd 257 writes the RSA exponent 65537 there as it is, the agent
    // as 0 (the TPM's notation for 65537), so one key has two names and two policies. Each
    // encoding is tried until the session's digest equals the sealed object's policy.
    let encodings = ExponentEncoding::candidates(inputs.signing_key);
    for (attempt, encoding) in encodings.iter().enumerate() {
        if attempt > 0 {
            context
                .policy_restart(policy_session)
                .map_err(tpm_step("PolicyRestart"))?;
        }
        satisfy_policy(context, policy_session, sealed, inputs, *encoding)?;
        let digest = context
            .policy_get_digest(policy_session)
            .map_err(tpm_step("reading the policy digest"))?;
        if digest == *sealed_policy {
            break;
        }
        // When no encoding matches, Unseal below fails with the TPM's policy error.
    }

    let data = context
        .execute_with_session(Some(session), |ctx| ctx.unseal(sealed.into()))
        .map_err(|error| match error_kind(&error) {
            Some(Tss2ResponseCodeKind::PolicyFail) if inputs.bind_pcr7 => {
                UnsealError::PolicyMismatch {
                    pcrs: "pcr 7".to_owned(),
                    detail: "PCR 7 (Secure Boot state and keys) differs from the value the \
                             secret was sealed to"
                        .to_owned(),
                }
            }
            Some(Tss2ResponseCodeKind::AuthFail | Tss2ResponseCodeKind::BadAuth) => {
                UnsealError::BadPin
            }
            Some(Tss2ResponseCodeKind::Lockout) => UnsealError::Lockout,
            _ => UnsealError::Tpm {
                step: "Unseal",
                error,
            },
        })?;
    Ok(Secret::from_vec(data.value().to_vec()))
}

/// Runs the policy commands of an unseal in `policy_session`: PolicyPCR 11, PolicyAuthorize
/// with the signature of this PCR 11 value, then PCR 7 and the PIN where the token binds them.
fn satisfy_policy(
    context: &mut Context,
    policy_session: PolicySession,
    sealed: KeyHandle,
    inputs: &UnsealInputs<'_>,
    encoding: ExponentEncoding,
) -> Result<(), UnsealError> {
    context
        .policy_pcr(
            policy_session,
            Digest::default(),
            pcr_selection(PcrSlot::Slot11)?,
        )
        .map_err(tpm_step("PolicyPCR 11"))?;
    let approved = context
        .policy_get_digest(policy_session)
        .map_err(tpm_step("reading the policy digest"))?;

    let entries = inputs.signatures.entries(PcrBank::Sha256);
    let fingerprint = inputs.signing_key.fingerprint();
    let entry = entries
        .iter()
        .filter(|entry| entry.key_fingerprint.as_slice() == fingerprint.as_slice())
        .find(|entry| entry.policy.as_slice() == approved.value())
        .ok_or(UnsealError::UnsignedPcr11 {
            entries: entries.len(),
        })?;

    let signing_key = load_signing_key(context, inputs.signing_key, encoding)?;
    let result = (|| {
        let key_name = context
            .tr_get_name(signing_key.into())
            .map_err(tpm_step("reading the signing key's name"))?;
        // TPM2_PolicyAuthorize checks a signature over H(approvedPolicy || policyRef); the
        // policyRef is empty.
        let signed_digest = Digest::try_from(Sha256::digest(approved.value()).to_vec())
            .map_err(tpm_step("hashing the approved policy"))?;
        let signature = PublicKeyRsa::try_from(entry.signature.clone())
            .and_then(|signature| RsaSignature::create(HashingAlgorithm::Sha256, signature))
            .map_err(tpm_step("reading the policy signature"))?;
        let ticket = context
            .verify_signature(signing_key, signed_digest, Signature::RsaSsa(signature))
            .map_err(|error| UnsealError::PolicyMismatch {
                pcrs: "pcr 11".to_owned(),
                detail: format!("the TPM rejected the policy signature: {error}"),
            })?;
        context
            .policy_authorize(
                policy_session,
                approved.clone(),
                Nonce::default(),
                &key_name,
                ticket,
            )
            .map_err(tpm_step("PolicyAuthorize"))
    })();
    flush(context, signing_key.into());
    result?;

    if inputs.bind_pcr7 {
        context
            .policy_pcr(
                policy_session,
                Digest::default(),
                pcr_selection(PcrSlot::Slot7)?,
            )
            .map_err(tpm_step("PolicyPCR 7"))?;
    }
    if let Some(pin) = inputs.pin {
        context
            .policy_auth_value(policy_session)
            .map_err(tpm_step("PolicyAuthValue"))?;
        let auth = pin_auth(Some(pin))?.unwrap_or_default();
        context
            .tr_set_auth(sealed.into(), auth)
            .map_err(tpm_step("setting the PIN"))?;
    }
    Ok(())
}

fn apply_trial_policy(
    context: &mut Context,
    session: AuthSession,
    key_name: &Name,
    bind_pcr7: bool,
    with_pin: bool,
) -> Result<Digest, UnsealError> {
    let policy_session =
        PolicySession::try_from(session).map_err(tpm_step("starting the trial session"))?;
    // A trial session skips the ticket check, so a null ticket computes the digest.
    let null_ticket = VerifiedTicket::try_from(TPMT_TK_VERIFIED {
        tag: StructureTag::Verified.into(),
        hierarchy: TPM_RH_NULL,
        digest: TPM2B_DIGEST::default(),
    })
    .map_err(tpm_step("building a null ticket"))?;
    context
        .policy_authorize(
            policy_session,
            Digest::default(),
            Nonce::default(),
            key_name,
            null_ticket,
        )
        .map_err(tpm_step("trial PolicyAuthorize"))?;
    if bind_pcr7 {
        context
            .policy_pcr(
                policy_session,
                Digest::default(),
                pcr_selection(PcrSlot::Slot7)?,
            )
            .map_err(tpm_step("trial PolicyPCR 7"))?;
    }
    if with_pin {
        context
            .policy_auth_value(policy_session)
            .map_err(tpm_step("trial PolicyAuthValue"))?;
    }
    context
        .policy_get_digest(policy_session)
        .map_err(tpm_step("reading the trial policy digest"))
}

/// Creates the TCG storage primary key (ECC P-256, AES-128-CFB).
///
/// NOTE: systemd 257 cannot load objects sealed under this key. For a token without
/// "tpm2_srk" it derives the parent from its legacy template, which lacks noDA, so its
/// parent is another key and systemd-cryptsetup cannot unseal the agent's tokens. The agent
/// does unseal systemd's tokens when systemd created the persistent SRK (0x81000001) itself,
/// because it uses this same template.
fn create_primary(context: &mut Context) -> Result<KeyHandle, UnsealError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(tpm_step("building the primary key's attributes"))?;
    let parameters = PublicEccParametersBuilder::new_restricted_decryption_key(
        SymmetricDefinitionObject::AES_128_CFB,
        EccCurve::NistP256,
    )
    .build()
    .map_err(tpm_step("building the primary key's parameters"))?;
    let public = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(tpm_step("building the primary key's template"))?;
    context
        .execute_with_nullauth_session(|ctx| {
            ctx.create_primary(Hierarchy::Owner, public, None, None, None, None)
        })
        .map(|result| result.key_handle)
        .map_err(tpm_step("creating the storage primary key"))
}

/// The form of the PCR signing key's RSA exponent in the public area that the TPM loads. The
/// key's name, and so every PolicyAuthorize digest, is computed from that area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExponentEncoding {
    /// 65537 written as 0, as the agent seals.
    TpmDefault,
    /// The exponent as it is, as systemd 257 seals (`tpm2_tpm2b_public_from_openssl_pkey`).
    Literal,
}

impl ExponentEncoding {
    /// Returns the encodings that give `key` distinct names, the agent's own first.
    fn candidates(key: &PcrPublicKey) -> &'static [Self] {
        if key.exponent() == Some(65537) {
            &[Self::TpmDefault, Self::Literal]
        } else {
            &[Self::Literal]
        }
    }
}

fn load_signing_key(
    context: &mut Context,
    key: &PcrPublicKey,
    encoding: ExponentEncoding,
) -> Result<KeyHandle, UnsealError> {
    let bits = match key.bits() {
        2048 => RsaKeyBits::Rsa2048,
        3072 => RsaKeyBits::Rsa3072,
        4096 => RsaKeyBits::Rsa4096,
        other => {
            return Err(UnsealError::BadBlob(format!(
                "the PCR signing key has {other} bits; the TPM accepts RSA 2048, 3072 or 4096"
            )))
        }
    };
    let exponent = match key.exponent() {
        Some(65537) if encoding == ExponentEncoding::TpmDefault => 0,
        Some(other) => other,
        None => {
            return Err(UnsealError::BadBlob(
                "the PCR signing key's exponent does not fit 32 bits".to_owned(),
            ))
        }
    };
    let attributes = ObjectAttributesBuilder::new()
        .with_decrypt(true)
        .with_sign_encrypt(true)
        .with_user_with_auth(true)
        .build()
        .map_err(tpm_step("building the signing key's attributes"))?;
    let parameters = PublicRsaParametersBuilder::new()
        .with_scheme(RsaScheme::Null)
        .with_key_bits(bits)
        .with_exponent(RsaExponent::create(exponent).map_err(tpm_step("reading the exponent"))?)
        .with_is_signing_key(true)
        .with_is_decryption_key(true)
        .with_restricted(false)
        .build()
        .map_err(tpm_step("building the signing key's parameters"))?;
    let public = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Rsa)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_rsa_parameters(parameters)
        .with_rsa_unique_identifier(
            PublicKeyRsa::try_from(key.modulus()).map_err(tpm_step("reading the modulus"))?,
        )
        .build()
        .map_err(tpm_step("building the signing key's public area"))?;
    context
        .load_external_public(public, Hierarchy::Owner)
        .map_err(tpm_step("loading the PCR signing key"))
}

fn start_session(
    context: &mut Context,
    kind: SessionType,
    salt_key: Option<KeyHandle>,
) -> Result<AuthSession, UnsealError> {
    let session = context
        .start_auth_session(
            salt_key,
            None,
            None,
            kind,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(tpm_step("starting a session"))?
        .ok_or(UnsealError::Tpm {
            step: "starting a session",
            error: tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::WrongValueFromTpm),
        })?;
    if salt_key.is_some() {
        let (attributes, mask) = SessionAttributesBuilder::new()
            .with_continue_session(true)
            .with_encrypt(true)
            .build();
        context
            .tr_sess_set_attributes(session, attributes, mask)
            .map_err(tpm_step("setting the session's attributes"))?;
    }
    Ok(session)
}

fn pcr_selection(slot: PcrSlot) -> Result<tss_esapi::structures::PcrSelectionList, UnsealError> {
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &[slot])
        .build()
        .map_err(tpm_step("building a PCR selection"))
}

fn pin_auth(pin: Option<&Secret>) -> Result<Option<Auth>, UnsealError> {
    let Some(pin) = pin else {
        return Ok(None);
    };
    // The auth value is the PIN's SHA-256, so every PIN has the same length in the TPM.
    Auth::try_from(Sha256::digest(pin.as_bytes()).to_vec())
        .map(Some)
        .map_err(tpm_step("preparing the PIN"))
}

fn split_blob(blob: &[u8]) -> Result<(Private, Public), UnsealError> {
    let damaged = |what: &str| UnsealError::BadBlob(format!("{what}; re-enroll the TPM keyslot"));
    if blob.len() < 2 {
        return Err(damaged("the blob is shorter than a TPM2B_PRIVATE size"));
    }
    let private_len = usize::from(u16::from_be_bytes([blob[0], blob[1]]));
    let private_end = 2 + private_len;
    let private = blob
        .get(2..private_end)
        .ok_or_else(|| damaged("the TPM2B_PRIVATE runs past the end of the blob"))?;
    let private = Private::try_from(private.to_vec())
        .map_err(|_| damaged("the TPM2B_PRIVATE is too large"))?;
    let public = PublicBuffer::unmarshall(&blob[private_end..])
        .and_then(Public::try_from)
        .map_err(|error| damaged(&format!("the TPM2B_PUBLIC does not parse ({error})")))?;
    Ok((private, public))
}

/// Flushes a transient object or session; a failure only leaks a slot until the context
/// closes, so it is logged and ignored.
fn flush(context: &mut Context, handle: ObjectHandle) {
    if let Err(error) = context.flush_context(handle) {
        tracing::debug!(%error, "flushing a TPM handle failed");
    }
}

/// Converts a session into the object handle that FlushContext takes.
struct SessionHandleObject(ObjectHandle);

impl From<AuthSession> for SessionHandleObject {
    fn from(session: AuthSession) -> Self {
        let handle: tss_esapi::handles::SessionHandle = session.into();
        Self(ObjectHandle::from(handle))
    }
}

/// Reads the PCR signing key's name as the TPM computes it, for tests that check the policy
/// digest against a computation by hand.
pub fn signing_key_name(context: &mut Context, key: &PcrPublicKey) -> Result<Name, UnsealError> {
    let handle = load_signing_key(context, key, ExponentEncoding::TpmDefault)?;
    let name = context.tr_get_name(handle.into());
    flush(context, handle.into());
    name.map_err(tpm_step("reading the signing key's name"))
}
