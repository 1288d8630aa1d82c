//! The vault's LUKS2 header and mapping, through libcryptsetup.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use libcryptsetup_rs::consts::flags::{CryptActivate, CryptDeactivate, CryptPbkdf, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat};
use libcryptsetup_rs::{CryptDevice, CryptInit, CryptPbkdfType, Either, LibcryptErr, TokenInput};
use serde_json::Value;

use super::secret::Secret;
use super::token::Luks2Metadata;

/// Volume key size: AES-256 in XTS mode takes two 256-bit keys.
pub const VOLUME_KEY_LEN: usize = 64;
/// LUKS2 header plus keyslot area that libcryptsetup writes by default; wiping it destroys
/// every keyslot.
const HEADER_AREA: u64 = 16 * 1024 * 1024;
/// LUKS1 and LUKS2 headers start with this magic.
const LUKS_MAGIC: &[u8; 6] = b"LUKS\xba\xbe";

/// Contents of the vault partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceContents {
    /// Only zeros where a header would be: a vault that was never created.
    Empty,
    /// A LUKS2 header.
    Luks2 { uuid: String, metadata: Value },
    /// Anything else. The agent never formats over it.
    Foreign { reason: String },
}

/// A libcryptsetup failure with the operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} on {device}: {source}")]
pub struct LuksError {
    pub operation: &'static str,
    pub device: String,
    #[source]
    pub source: LibcryptErr,
}

impl LuksError {
    /// Returns whether libcryptsetup rejected a passphrase (EPERM).
    pub fn is_wrong_passphrase(&self) -> bool {
        matches!(&self.source, LibcryptErr::IOError(error) if error.kind() == std::io::ErrorKind::PermissionDenied)
    }
}

/// One LUKS2 device (a partition, a loop device or, in tests, an image file).
pub struct Luks2Device {
    path: PathBuf,
    device: CryptDevice,
}

impl Luks2Device {
    fn init(path: &Path) -> Result<CryptDevice, LuksError> {
        CryptInit::init(path).map_err(|source| LuksError {
            operation: "opening the device",
            device: path.display().to_string(),
            source,
        })
    }

    /// Opens an existing LUKS2 header.
    pub fn load(path: &Path) -> Result<Self, LuksError> {
        let mut device = Self::init(path)?;
        device
            .context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)
            .map_err(|source| LuksError {
                operation: "reading the LUKS2 header",
                device: path.display().to_string(),
                source,
            })?;
        let mut this = Self {
            path: path.to_owned(),
            device,
        };
        this.use_fast_pbkdf();
        Ok(this)
    }

    /// Writes a new LUKS2 header (AES-256-XTS) with the given volume key and no keyslot.
    pub fn format(path: &Path, volume_key: &Secret, label: &str) -> Result<Self, LuksError> {
        let device = Self::init(path)?;
        let mut this = Self {
            path: path.to_owned(),
            device,
        };
        this.use_fast_pbkdf();
        let result = this.device.context_handle().format::<()>(
            EncryptionFormat::Luks2,
            ("aes", "xts-plain64"),
            None,
            Either::Left(volume_key.as_bytes()),
            None,
        );
        let path_text = this.path.display().to_string();
        result.map_err(|source| LuksError {
            operation: "writing the LUKS2 header",
            device: path_text.clone(),
            source,
        })?;
        this.device
            .context_handle()
            .set_label(Some(label), None)
            .map_err(|source| LuksError {
                operation: "setting the LUKS2 label",
                device: path_text,
                source,
            })?;
        Ok(this)
    }

    /// Keyslots opened by high-entropy secrets (a TPM secret, a recovery key) need no
    /// memory-hard KDF, so they use PBKDF2 with few iterations, as systemd-cryptenroll does;
    /// guessing 256 random bits is out of reach whatever the KDF costs.
    fn use_fast_pbkdf(&mut self) {
        let pbkdf = CryptPbkdfType {
            type_: CryptKdf::Pbkdf2,
            hash: Some("sha512".to_owned()),
            time_ms: 0,
            iterations: 1000,
            max_memory_kb: 0,
            parallel_threads: 0,
            flags: CryptPbkdf::NO_BENCHMARK,
        };
        if let Err(error) = self.device.settings_handle().set_pbkdf_type(&pbkdf) {
            tracing::warn!(%error, "could not select PBKDF2 for new keyslots; libcryptsetup's default KDF applies");
        }
    }

    pub fn uuid(&mut self) -> Result<String, LuksError> {
        let path = self.path.display().to_string();
        self.device
            .status_handle()
            .get_uuid()
            .map(|uuid| uuid.to_string())
            .map_err(|source| LuksError {
                operation: "reading the UUID",
                device: path,
                source,
            })
    }

    /// Returns the JSON metadata area, as `cryptsetup luksDump --dump-json-metadata` prints it.
    pub fn metadata_json(&mut self) -> Result<Value, LuksError> {
        let path = self.path.display().to_string();
        self.device
            .status_handle()
            .dump_json()
            .map_err(|source| LuksError {
                operation: "reading the LUKS2 metadata",
                device: path,
                source,
            })
    }

    pub fn metadata(&mut self) -> Result<Luks2Metadata, LuksError> {
        let json = self.metadata_json()?;
        Luks2Metadata::from_json(&json).map_err(|error| LuksError {
            operation: "parsing the LUKS2 metadata",
            device: self.path.display().to_string(),
            source: LibcryptErr::Other(error.to_string()),
        })
    }

    /// Adds a keyslot opened by `passphrase` for the given volume key.
    pub fn add_keyslot(
        &mut self,
        volume_key: &Secret,
        passphrase: &[u8],
    ) -> Result<u32, LuksError> {
        let path = self.path.display().to_string();
        self.device
            .keyslot_handle()
            .add_by_key(
                None,
                Some(Either::Left(volume_key.as_bytes())),
                passphrase,
                CryptVolumeKey::empty(),
            )
            .map_err(|source| LuksError {
                operation: "adding a keyslot",
                device: path,
                source,
            })
    }

    pub fn destroy_keyslot(&mut self, keyslot: u32) -> Result<(), LuksError> {
        let path = self.path.display().to_string();
        self.device
            .keyslot_handle()
            .destroy(keyslot)
            .map_err(|source| LuksError {
                operation: "removing a keyslot",
                device: path,
                source,
            })
    }

    /// Adds a token and returns its number.
    pub fn add_token(&mut self, json: &Value) -> Result<u32, LuksError> {
        let path = self.path.display().to_string();
        self.device
            .token_handle()
            .json_set(TokenInput::AddToken(json))
            .map_err(|source| LuksError {
                operation: "adding a token",
                device: path,
                source,
            })
    }

    pub fn replace_token(&mut self, token: u32, json: &Value) -> Result<(), LuksError> {
        let path = self.path.display().to_string();
        self.device
            .token_handle()
            .json_set(TokenInput::ReplaceToken(token, json))
            .map(|_| ())
            .map_err(|source| LuksError {
                operation: "replacing a token",
                device: path,
                source,
            })
    }

    pub fn remove_token(&mut self, token: u32) -> Result<(), LuksError> {
        let path = self.path.display().to_string();
        self.device
            .token_handle()
            .json_set(TokenInput::RemoveToken(token))
            .map(|_| ())
            .map_err(|source| LuksError {
                operation: "removing a token",
                device: path,
                source,
            })
    }

    /// Checks `passphrase` against `keyslot` (any keyslot for `None`) and returns the
    /// keyslot it opened. With `name`, also maps the volume as /dev/mapper/NAME.
    pub fn open(
        &mut self,
        name: Option<&str>,
        keyslot: Option<u32>,
        passphrase: &[u8],
    ) -> Result<u32, LuksError> {
        let path = self.path.display().to_string();
        self.device
            .activate_handle()
            .activate_by_passphrase(name, keyslot, passphrase, CryptActivate::empty())
            .map_err(|source| LuksError {
                operation: if name.is_some() {
                    "activating the vault"
                } else {
                    "checking a passphrase"
                },
                device: path,
                source,
            })
    }

    /// Maps the volume with its volume key, which needs no keyslot.
    pub fn open_with_volume_key(
        &mut self,
        name: &str,
        volume_key: &Secret,
    ) -> Result<(), LuksError> {
        let path = self.path.display().to_string();
        self.device
            .activate_handle()
            .activate_by_volume_key(
                Some(name),
                Some(volume_key.as_bytes()),
                CryptActivate::empty(),
            )
            .map_err(|source| LuksError {
                operation: "activating the vault with its volume key",
                device: path,
                source,
            })
    }

    /// Returns the volume key that `passphrase` unlocks.
    pub fn volume_key(
        &mut self,
        keyslot: Option<u32>,
        passphrase: &[u8],
    ) -> Result<Secret, LuksError> {
        let path = self.path.display().to_string();
        let mut key = Secret::zeroed(VOLUME_KEY_LEN);
        let (_, len) = self
            .device
            .volume_key_handle()
            .get(keyslot, key.as_mut_bytes(), Some(passphrase))
            .map_err(|source| LuksError {
                operation: "reading the volume key",
                device: path,
                source,
            })?;
        if len != VOLUME_KEY_LEN {
            return Ok(Secret::from_slice(
                &key.as_bytes()[..len.min(VOLUME_KEY_LEN)],
            ));
        }
        Ok(key)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes the mapping /dev/mapper/NAME.
pub fn close(name: &str) -> Result<(), LuksError> {
    let mut device =
        CryptInit::init_by_name_and_header(name, None).map_err(|source| LuksError {
            operation: "looking up the mapping",
            device: format!("/dev/mapper/{name}"),
            source,
        })?;
    device
        .activate_handle()
        .deactivate(name, CryptDeactivate::empty())
        .map_err(|source| LuksError {
            operation: "removing the mapping",
            device: format!("/dev/mapper/{name}"),
            source,
        })
}

/// Reads what the partition at `path` holds, without changing it.
pub fn probe(path: &Path) -> Result<DeviceContents, std::io::Error> {
    let mut file = File::open(path)?;
    let mut start = vec![0u8; 4096];
    let read = read_up_to(&mut file, &mut start)?;
    start.truncate(read);
    if start.starts_with(LUKS_MAGIC) {
        return Ok(match Luks2Device::load(path) {
            Ok(mut device) => {
                let uuid = device.uuid().unwrap_or_default();
                match device.metadata_json() {
                    Ok(metadata) => DeviceContents::Luks2 { uuid, metadata },
                    Err(error) => DeviceContents::Foreign {
                        reason: format!("a LUKS header whose metadata does not read: {error}"),
                    },
                }
            }
            Err(error) => DeviceContents::Foreign {
                reason: format!("a LUKS header that libcryptsetup cannot load as LUKS2: {error}"),
            },
        });
    }
    if start.iter().all(|byte| *byte == 0) {
        return Ok(DeviceContents::Empty);
    }
    Ok(DeviceContents::Foreign {
        reason: "data that is not a LUKS2 header (the first 4 KiB are not all zero)".to_owned(),
    })
}

fn read_up_to(file: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let n = file.read(&mut buffer[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Overwrites the LUKS2 header area with zeros, which makes every keyslot unusable. Used
/// only on a vault whose enrollment never finished, before any data was stored in it.
pub fn wipe_header(path: &Path) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    let zeros = vec![0u8; 1024 * 1024];
    file.seek(SeekFrom::Start(0))?;
    let mut written = 0;
    while written < HEADER_AREA {
        file.write_all(&zeros)?;
        written += zeros.len() as u64;
    }
    file.sync_all()
}
