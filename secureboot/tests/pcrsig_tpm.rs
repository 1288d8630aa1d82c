//! Comparison of the software PolicyPCR digest with a TPM: swtpm (libtpms) computes it in a
//! trial session.
//!
//! The test sends raw TPM 2.0 commands over swtpm's Unix socket, so it needs no tpm2-tools.
//! It uses swtpm from PATH or from the appliance's tools tree ($APPLIANCE_CACHE/tools-trixie,
//! by default under /var/cache/appliance), and skips, printing why, when neither has it.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appliance_secureboot::pcrsig::{
    pcr11_selection, policy_pcr11_digest, PolicyDigest, TPM_ALG_SHA256, TPM_CC_POLICY_PCR,
};
use appliance_secureboot::{PcrBank, PcrValue};
use sha2::{Digest, Sha256};

/// TPM_ST_NO_SESSIONS: the tag of a command without an authorization area.
const TPM_ST_NO_SESSIONS: u16 = 0x8001;
const TPM_CC_START_AUTH_SESSION: u32 = 0x0000_0176;
const TPM_CC_POLICY_GET_DIGEST: u32 = 0x0000_0189;
const TPM_CC_FLUSH_CONTEXT: u32 = 0x0000_0165;
/// TPM_RH_NULL: no salt key and no bind object for the session.
const TPM_RH_NULL: u32 = 0x4000_0007;
/// TPM_SE_TRIAL: a session that computes a policy digest without checking anything.
const TPM_SE_TRIAL: u8 = 0x03;
/// TPM_ALG_NULL: no parameter encryption.
const TPM_ALG_NULL: u16 = 0x0010;
/// Maximum time swtpm may take to create its socket, including the setup of the tools tree
/// sandbox.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where swtpm comes from.
enum SwtpmSource {
    Host(PathBuf),
    ToolsTree {
        repo_root: PathBuf,
        tools_tree: PathBuf,
    },
}

/// Finds swtpm, or returns None after printing why the test skips.
fn find_swtpm() -> Option<SwtpmSource> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|directory| directory.join("swtpm"))
            .find(|candidate| candidate.is_file())
    });
    if let Some(path) = on_path {
        return Some(SwtpmSource::Host(path));
    }

    let cache = std::env::var_os("APPLIANCE_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/appliance"), PathBuf::from);
    let tools_tree = cache.join("tools-trixie");
    if tools_tree.join("usr/bin/swtpm").is_file() {
        let repo_root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the crate lives inside the workspace")
            .to_path_buf();
        return Some(SwtpmSource::ToolsTree {
            repo_root,
            tools_tree,
        });
    }

    eprintln!(
        "skipped: swtpm is neither on PATH nor in {}; run `make setup` to build the tools tree",
        tools_tree.display()
    );
    None
}

/// A running swtpm, stopped when dropped.
struct Swtpm {
    child: Child,
    socket: PathBuf,
}

impl Swtpm {
    /// Starts swtpm with its state and socket in `directory`. `--terminate` makes it exit when
    /// the test closes its connection.
    ///
    /// mkosi runs in `directory`, outside the repository, so that it reads none of the image's
    /// configuration, which needs the packages that `make` builds.
    fn start(source: &SwtpmSource, directory: &Path) -> Self {
        let socket = directory.join("swtpm.sock");
        let mut state_option = OsString::from("dir=");
        state_option.push(directory);
        let mut server_option = OsString::from("type=unixio,path=");
        server_option.push(&socket);
        let arguments: Vec<OsString> = vec![
            "socket".into(),
            "--tpm2".into(),
            "--tpmstate".into(),
            state_option,
            "--server".into(),
            server_option,
            "--flags".into(),
            "not-need-init,startup-clear".into(),
            "--terminate".into(),
        ];

        let mut command = match source {
            SwtpmSource::Host(path) => Command::new(path),
            SwtpmSource::ToolsTree {
                repo_root,
                tools_tree,
            } => {
                let mut tools_tree_option = OsString::from("--tools-tree=");
                tools_tree_option.push(tools_tree);
                let mut command = Command::new(repo_root.join("image/mkosi"));
                command
                    .current_dir(directory)
                    .arg(tools_tree_option)
                    .arg("sandbox")
                    .arg("swtpm");
                command
            }
        };
        let log = std::fs::File::create(directory.join("swtpm.log")).expect("create swtpm log");
        let child = command
            .args(&arguments)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicate log file"))
            .stderr(log)
            .spawn()
            .expect("swtpm starts");
        Self { child, socket }
    }

    /// Connects to the TPM, retrying until swtpm has created its socket.
    fn connect(&mut self) -> UnixStream {
        let started = Instant::now();
        loop {
            if let Ok(stream) = UnixStream::connect(&self.socket) {
                return stream;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("swtpm exited with {status} before it accepted a connection");
            }
            assert!(
                started.elapsed() < STARTUP_TIMEOUT,
                "swtpm created no socket at {} within {STARTUP_TIMEOUT:?}",
                self.socket.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        // swtpm exits on its own once the connection closes. Give it a moment, then end it.
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one command without sessions and returns the response parameters, panicking with the
/// response code if it is not TPM_RC_SUCCESS.
fn execute(stream: &mut UnixStream, name: &str, command_code: u32, body: &[u8]) -> Vec<u8> {
    let size = u32::try_from(10 + body.len()).expect("small command");
    let mut command = Vec::with_capacity(10 + body.len());
    command.extend_from_slice(&TPM_ST_NO_SESSIONS.to_be_bytes());
    command.extend_from_slice(&size.to_be_bytes());
    command.extend_from_slice(&command_code.to_be_bytes());
    command.extend_from_slice(body);
    stream.write_all(&command).expect("send TPM command");

    let mut header = [0u8; 10];
    stream
        .read_exact(&mut header)
        .expect("read TPM response header");
    let size = u32::from_be_bytes(header[2..6].try_into().expect("4 bytes"));
    let code = u32::from_be_bytes(header[6..10].try_into().expect("4 bytes"));
    let mut parameters = vec![0u8; usize::try_from(size).expect("small response") - 10];
    stream
        .read_exact(&mut parameters)
        .expect("read TPM response body");
    assert_eq!(code, 0, "{name} failed with TPM response code {code:#x}");
    parameters
}

/// Runs TPM2_PolicyPCR for PCR 11 with `value` in a fresh trial session and returns the TPM's
/// policy digest.
fn tpm_policy_digest(stream: &mut UnixStream, value: &PcrValue) -> Vec<u8> {
    let mut start = Vec::new();
    start.extend_from_slice(&TPM_RH_NULL.to_be_bytes()); // tpmKey
    start.extend_from_slice(&TPM_RH_NULL.to_be_bytes()); // bind
                                                         // nonceCaller: the TPM requires at least 16 bytes.
    start.extend_from_slice(&32u16.to_be_bytes());
    start.extend_from_slice(&[0x5a; 32]);
    start.extend_from_slice(&0u16.to_be_bytes()); // encryptedSalt, empty
    start.push(TPM_SE_TRIAL);
    start.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // symmetric
    start.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes()); // authHash
    let response = execute(
        stream,
        "TPM2_StartAuthSession",
        TPM_CC_START_AUTH_SESSION,
        &start,
    );
    let session: [u8; 4] = response[0..4].try_into().expect("session handle");

    let mut policy_pcr = session.to_vec();
    policy_pcr.extend_from_slice(&32u16.to_be_bytes());
    policy_pcr.extend_from_slice(&Sha256::digest(value.as_bytes()));
    policy_pcr.extend_from_slice(&pcr11_selection(value.bank()));
    execute(stream, "TPM2_PolicyPCR", TPM_CC_POLICY_PCR, &policy_pcr);

    let response = execute(
        stream,
        "TPM2_PolicyGetDigest",
        TPM_CC_POLICY_GET_DIGEST,
        &session,
    );
    execute(stream, "TPM2_FlushContext", TPM_CC_FLUSH_CONTEXT, &session);

    let length = usize::from(u16::from_be_bytes([response[0], response[1]]));
    response[2..2 + length].to_vec()
}

#[test]
fn policy_digest_matches_swtpm() {
    let Some(source) = find_swtpm() else {
        return;
    };
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut swtpm = Swtpm::start(&source, directory.path());
    let mut stream = swtpm.connect();

    for bank in PcrBank::ALL {
        let mut values = vec![PcrValue::zero(bank)];
        let mut measured = PcrValue::zero(bank);
        measured.measure(b"enter-initrd");
        values.push(measured);

        for value in values {
            let expected: PolicyDigest = policy_pcr11_digest(&value);
            let from_tpm = tpm_policy_digest(&mut stream, &value);
            assert_eq!(
                from_tpm,
                expected,
                "{bank} PCR 11 value {}: swtpm and the library differ",
                value.to_hex()
            );
        }
    }

    drop(stream);
    drop(swtpm);
}
