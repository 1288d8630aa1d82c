//! Configuration of `serve`: the YAML file and the `appliance.listen`
//! systemd credential.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth;

/// Name of the systemd credential with extra listen addresses. The unit
/// imports it with `ImportCredential=`, and systemd only takes such
/// credentials from SMBIOS when it runs in a VM.
pub const LISTEN_CREDENTIAL: &str = "appliance.listen";

/// Port of the default listen address.
pub const DEFAULT_PORT: u16 = 8480;

/// Folder of the model files inside the vault.
pub const DEFAULT_MODELS_DIR: &str = "/var/lib/appliance/vault/models";

/// Context window, in tokens, of the loaded model.
pub const DEFAULT_CONTEXT_TOKENS: u32 = 4096;

/// Smallest context window that holds a chat template and a short answer.
pub const MIN_CONTEXT_TOKENS: u32 = 64;

/// Requests that may wait for the engine while it runs another one.
pub const DEFAULT_QUEUE_SIZE: u32 = 8;

/// Contents of `appliance.yaml`. Every key is optional.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Socket addresses the API listens on.
    pub listen: Vec<SocketAddr>,
    /// Host names the API accepts besides 127.0.0.1, localhost, [::1] and
    /// the listen addresses, without a port.
    pub allowed_hosts: Vec<String>,
    pub auth: AuthConfig,
    pub vm: VmConfig,
    pub models: ModelsConfig,
    pub inference: InferenceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))],
            allowed_hosts: Vec::new(),
            auth: AuthConfig::default(),
            vm: VmConfig::default(),
            models: ModelsConfig::default(),
            inference: InferenceConfig::default(),
        }
    }
}

/// Where the model files are and which one to serve.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Folder with the GGUF model files.
    pub dir: PathBuf,
    /// File name, inside `dir`, of the model to load. When unset, the
    /// first `*.gguf` file in byte order of the names.
    pub default: Option<String>,
    /// Expected sha256 digest (64 hex digits) per model file name. A
    /// listed file whose digest differs is not loaded.
    pub sha256: BTreeMap<String, String>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(DEFAULT_MODELS_DIR),
            default: None,
            sha256: BTreeMap::new(),
        }
    }
}

/// Settings of the inference engine.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// CPU threads for generation. When unset, the number of physical cores.
    pub threads: Option<u32>,
    /// Context window in tokens: prompt and completion together.
    pub context_tokens: u32,
    /// Requests that may wait while the engine runs one; more get HTTP 429.
    pub queue_size: u32,
    /// Model layers to offload to the GPU when the GPU may be used. When
    /// unset, all of them.
    pub gpu_layers: Option<u32>,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            threads: None,
            context_tokens: DEFAULT_CONTEXT_TOKENS,
            queue_size: DEFAULT_QUEUE_SIZE,
            gpu_layers: None,
        }
    }
}

/// Settings of the API's authentication.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// File that contains the hashes of the API tokens.
    pub token_store: PathBuf,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_store: PathBuf::from(auth::DEFAULT_TOKEN_STORE),
        }
    }
}

/// Settings that only apply inside a VM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmConfig {
    /// Use a GPU passed through to the VM. Off by default, because the host
    /// can read GPU memory through DMA.
    pub gpu_passthrough: bool,
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read the configuration file {path}: {source}. Check its permissions, or remove it to use the defaults")]
    Read { path: PathBuf, source: io::Error },

    #[error("invalid configuration file {path}: {message}. {fix}")]
    Invalid {
        path: PathBuf,
        message: String,
        fix: String,
    },
}

/// Loads the configuration. A missing file gives the defaults.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    parse(path, &text)
}

/// Parses configuration text. `path` only names the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    // A file with only comments, or only `null`, is an empty document,
    // which means the defaults.
    let is_empty_document = text
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'));
    let is_null_document = matches!(serde_norway::from_str(text), Ok(serde_norway::Value::Null));
    if is_empty_document || is_null_document {
        return Ok(Config::default());
    }

    let config: Config = serde_norway::from_str(text).map_err(|err| {
        let message = err.to_string();
        let fix = fix_for(&message);
        ConfigError::Invalid {
            path: path.to_owned(),
            message,
            fix,
        }
    })?;

    if config.listen.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            message: "listen: the list is empty".to_owned(),
            fix: format!(
                "Add at least one address, such as listen: [\"127.0.0.1:{DEFAULT_PORT}\"]"
            ),
        });
    }
    for name in &config.allowed_hosts {
        if let Err(reason) = auth::hosts::validate_name(name) {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: format!("allowed_hosts: invalid host name {name:?}: {reason}"),
                fix: "List bare host names or addresses, such as allowed_hosts: [\"appliance.local\"]"
                    .to_owned(),
            });
        }
    }
    if !config.auth.token_store.is_absolute() {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            message: format!(
                "auth.token_store: {} is not an absolute path",
                config.auth.token_store.display()
            ),
            fix: format!(
                "Set it to an absolute path, such as {}",
                auth::DEFAULT_TOKEN_STORE
            ),
        });
    }
    check_models(&config.models).map_err(|(message, fix)| ConfigError::Invalid {
        path: path.to_owned(),
        message,
        fix,
    })?;
    check_inference(&config.inference).map_err(|(message, fix)| ConfigError::Invalid {
        path: path.to_owned(),
        message,
        fix,
    })?;
    Ok(config)
}

/// Checks the values of `models` that the YAML types alone do not bound.
/// Returns the message and the fix.
fn check_models(models: &ModelsConfig) -> Result<(), (String, String)> {
    if !models.dir.is_absolute() {
        return Err((
            format!("models.dir: {:?} is not an absolute path", models.dir),
            format!("Set models.dir to an absolute path, such as {DEFAULT_MODELS_DIR}"),
        ));
    }
    if let Some(name) = &models.default {
        if !is_plain_file_name(name) {
            return Err((
                format!("models.default: {name:?} is not a file name"),
                "Set models.default to the name of a file in models.dir, without a folder"
                    .to_owned(),
            ));
        }
    }
    for (name, digest) in &models.sha256 {
        if !is_plain_file_name(name) {
            return Err((
                format!("models.sha256: {name:?} is not a file name"),
                "Key each digest by the name of a file in models.dir, without a folder".to_owned(),
            ));
        }
        if digest.len() != 64 || !digest.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err((
                format!("models.sha256.{name}: {digest:?} is not a sha256 digest"),
                "Write the 64 hexadecimal digits that sha256sum prints".to_owned(),
            ));
        }
    }
    Ok(())
}

/// Checks the values of `inference`. Returns the message and the fix.
fn check_inference(inference: &InferenceConfig) -> Result<(), (String, String)> {
    if inference.threads == Some(0) {
        return Err((
            "inference.threads: 0 threads".to_owned(),
            "Set inference.threads to 1 or more, or remove it to use one per physical core"
                .to_owned(),
        ));
    }
    if inference.context_tokens < MIN_CONTEXT_TOKENS {
        return Err((
            format!(
                "inference.context_tokens: {} is below the minimum of {MIN_CONTEXT_TOKENS}",
                inference.context_tokens
            ),
            format!("Set inference.context_tokens to {MIN_CONTEXT_TOKENS} or more, such as {DEFAULT_CONTEXT_TOKENS}"),
        ));
    }
    Ok(())
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Picks the advice for a parse error. serde_norway starts the message with
/// the path of the offending field, such as `vm.gpu_passthrough: ...`.
fn fix_for(message: &str) -> String {
    if message.contains("unknown field") {
        "Remove the key or fix its spelling. Allowed keys are listen, allowed_hosts, \
         auth.token_store, vm.gpu_passthrough, models.dir, models.default, models.sha256, \
         inference.threads, inference.context_tokens, inference.queue_size and \
         inference.gpu_layers"
            .to_owned()
    } else if message.starts_with("allowed_hosts") {
        "Set allowed_hosts to a list of host names, such as [\"appliance.local\"]".to_owned()
    } else if message.starts_with("auth") {
        format!(
            "Set auth to a mapping, such as auth: {{ token_store: {} }}",
            auth::DEFAULT_TOKEN_STORE
        )
    } else if message.starts_with("models.sha256") {
        "Set models.sha256 to a mapping of file names to sha256 digests".to_owned()
    } else if message.starts_with("models") {
        "Set models to a mapping, such as models: { dir: /var/lib/appliance/vault/models }"
            .to_owned()
    } else if message.starts_with("inference.") {
        "Set each inference key to a whole number of 0 or more".to_owned()
    } else if message.starts_with("inference") {
        "Set inference to a mapping, such as inference: { threads: 4 }".to_owned()
    } else if message.starts_with("vm.gpu_passthrough") {
        "Set vm.gpu_passthrough to true or false".to_owned()
    } else if message.starts_with("listen") {
        format!("Set listen to a list of IP:port socket addresses, such as [\"127.0.0.1:{DEFAULT_PORT}\"]")
    } else if message.starts_with("vm") {
        "Set vm to a mapping, such as vm: { gpu_passthrough: false }".to_owned()
    } else if message.starts_with("invalid type") {
        format!("Write a YAML mapping with the keys listen, vm, models and inference, such as listen: [\"127.0.0.1:{DEFAULT_PORT}\"]")
    } else {
        "Fix the YAML syntax at the line and column shown".to_owned()
    }
}

/// A listen-address credential that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("failed to read the credential {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    #[error("invalid socket address {token:?} in the credential {path}. Use IP:port entries separated by commas or spaces, such as 127.0.0.1:8480,[::1]:8480")]
    InvalidAddress { path: PathBuf, token: String },
}

/// Reads extra listen addresses from the `appliance.listen` credential in
/// `credentials_dir` (`$CREDENTIALS_DIRECTORY`). A missing credential gives
/// an empty list.
pub fn listen_credential(credentials_dir: &Path) -> Result<Vec<SocketAddr>, CredentialError> {
    let path = credentials_dir.join(LISTEN_CREDENTIAL);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CredentialError::Read { path, source }),
    };
    parse_address_list(&text).map_err(|token| CredentialError::InvalidAddress { path, token })
}

/// Parses comma- or whitespace-separated socket addresses. Returns the
/// first invalid entry as the error.
pub fn parse_address_list(text: &str) -> Result<Vec<SocketAddr>, String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|token| !token.is_empty())
        .map(|token| token.parse::<SocketAddr>().map_err(|_| token.to_owned()))
        .collect()
}

/// Joins the configured and credential addresses, dropping duplicates and
/// any address that a wildcard address of the same family and port covers.
/// Linux rejects binding 127.0.0.1:P once 0.0.0.0:P is bound, and the
/// wildcard listener already accepts those connections.
pub fn merge_listen(configured: &[SocketAddr], extra: &[SocketAddr]) -> Vec<SocketAddr> {
    let all: Vec<SocketAddr> = configured.iter().chain(extra).copied().collect();
    let covered = |address: &SocketAddr| {
        !address.ip().is_unspecified()
            && all.iter().any(|other| {
                other.ip().is_unspecified()
                    && other.port() == address.port()
                    && other.is_ipv4() == address.is_ipv4()
            })
    };
    let mut merged: Vec<SocketAddr> = Vec::with_capacity(all.len());
    for address in &all {
        if !merged.contains(address) && !covered(address) {
            merged.push(*address);
        }
    }
    merged
}
