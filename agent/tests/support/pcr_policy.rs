//! A PCR signing key made with openssl, PCR extends and PCR 11 policies signed with that key,
//! as the image build signs the values it predicts.

use std::process::{Command, Stdio};
use std::str::FromStr;

use appliance_agent::measurements::tpm as pcr_read;
use appliance_secureboot::pcrsig::{policy_pcr11_digest, PcrPublicKey, PcrSignatures};
use appliance_secureboot::signer::{PemFileSigner, PolicySigner};
use appliance_secureboot::{PcrBank, PcrValue};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tss_esapi::handles::PcrHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::structures::{Digest, DigestValues};
use tss_esapi::{Context, TctiNameConf};

use super::swtpm::Swtpm;

/// A PCR signing key pair made with openssl for one test.
pub struct SigningKey {
    pub signer: PemFileSigner,
    pub public: PcrPublicKey,
    pub public_pem: Vec<u8>,
    _dir: tempfile::TempDir,
}

pub fn signing_key() -> SigningKey {
    let dir = tempfile::tempdir().expect("tempdir");
    let private = dir.path().join("pcr.key");
    let public = dir.path().join("pcr.pub");
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public));
    let public_pem = std::fs::read(&public).expect("public key");
    SigningKey {
        signer: PemFileSigner::open(&private).expect("signer"),
        public: PcrPublicKey::from_pem(&public_pem).expect("public key parses"),
        public_pem,
        _dir: dir,
    }
}

pub fn run(command: &mut Command) {
    let output = command.stdout(Stdio::null()).output().expect("run tool");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn context(swtpm: &Swtpm) -> Context {
    Context::new(TctiNameConf::from_str(&swtpm.tcti()).expect("tcti")).expect("open swtpm")
}

pub fn extend(context: &mut Context, pcr: PcrHandle, data: &[u8]) {
    let mut digests = DigestValues::new();
    digests.set(
        HashingAlgorithm::Sha256,
        Digest::try_from(Sha256::digest(data).to_vec()).expect("digest"),
    );
    context
        .execute_with_nullauth_session(|ctx| ctx.pcr_extend(pcr, digests))
        .expect("extend");
}

/// Signs the PolicyPCR digest of the TPM's current PCR 11, as the image build signs the
/// values it predicts, and returns the `.pcrsig` document.
pub fn sign_current_pcr11(swtpm: &Swtpm, key: &SigningKey) -> PcrSignatures {
    PcrSignatures::parse(sign_current_pcr11_json(swtpm, key).as_bytes()).expect("pcrsig parses")
}

/// Returns the `.pcrsig` document of [`sign_current_pcr11`] as JSON text, the format of
/// systemd's `tpm2-pcr-signature.json`.
pub fn sign_current_pcr11_json(swtpm: &Swtpm, key: &SigningKey) -> String {
    let values = pcr_read::read_sha256_bank(&swtpm.tcti()).expect("read PCRs");
    let value = PcrValue::from_bytes(PcrBank::Sha256, &values[&11]).expect("sha256 value");
    let policy = policy_pcr11_digest(&value);
    let signature = key.signer.sign(PcrBank::Sha256, &policy).expect("sign");
    let document = serde_json::json!({
        "sha256": [{
            "pcrs": [11],
            "pkfp": hex(key.public.fingerprint()),
            "pol": hex(&policy),
            "sig": BASE64.encode(signature),
        }]
    });
    document.to_string()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
