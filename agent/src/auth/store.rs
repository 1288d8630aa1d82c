//! Token store: a JSON file with one record per API token, holding the
//! token's SHA-256 and never the token itself.
//!
//! `serve` and the `token` command share the file. Writers take an
//! exclusive lock on a sibling `.lock` file and replace the store
//! atomically. `serve` reads the file again whenever its inode, size or
//! modification time changes, so a token created or revoked from the shell
//! takes effect on the next request.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tracing::error;
use zeroize::Zeroizing;

use super::token::{self, TokenHash};
use super::{Principal, Scope};
use crate::atomic_file;

/// Format version of the store file. A reader rejects other versions, so an
/// older agent never misreads a newer file.
pub const FORMAT_VERSION: u32 = 1;

/// Permission bits of the store and its lock file: only root reads them.
const FILE_MODE: u32 = 0o600;

/// Permission bits of a directory the store creates for itself.
const DIR_MODE: u32 = 0o700;

/// Maximum length of a token name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// One token as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Public identifier, used to revoke the token and in logs.
    pub id: String,
    /// Name given at creation, such as the client that uses the token.
    pub name: String,
    pub scope: Scope,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// SHA-256 of the token, in hex.
    #[serde(with = "hex::serde")]
    pub sha256: TokenHash,
}

impl TokenRecord {
    fn principal(&self) -> Principal {
        Principal {
            id: self.id.clone(),
            name: self.name.clone(),
            scope: self.scope,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    format_version: u32,
    tokens: Vec<TokenRecord>,
}

/// A token store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to read the token store {path}: {source}. Check its permissions, or point auth.token_store at another file")]
    Read { path: PathBuf, source: io::Error },

    #[error("invalid token store {path}: {message}. Restore it from a backup, or move it away to start with an empty store")]
    Invalid { path: PathBuf, message: String },

    #[error(
        "failed to write the token store {path}: {source}. Check that its directory is writable"
    )]
    Write { path: PathBuf, source: io::Error },

    #[error("failed to lock the token store through {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },

    #[error("failed to get random bytes for a token from the kernel: {0}")]
    Random(getrandom::Error),

    #[error("no token with id {id:?}. Run `appliance-agent token list` to see the ids")]
    UnknownId { id: String },

    #[error("invalid token name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
}

/// Identity of one version of the store file. A rename gives a new inode,
/// and an edit in place changes the size or modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    size: u64,
    modified_seconds: i64,
    modified_nanoseconds: i64,
}

impl FileStamp {
    fn of(metadata: &fs::Metadata) -> Self {
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified_seconds: metadata.mtime(),
            modified_nanoseconds: metadata.mtime_nsec(),
        }
    }
}

/// Result of the last read of the file, keyed by the file's stamp
/// (`None`: the file did not exist).
struct Cached {
    stamp: Option<FileStamp>,
    records: Result<Arc<Vec<TokenRecord>>, String>,
}

/// Token store at one path.
pub struct TokenStore {
    path: PathBuf,
    cache: Mutex<Option<Cached>>,
}

impl TokenStore {
    /// Opens the store at `path`. Nothing is read or created until it is used;
    /// a missing file is an empty store.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            cache: Mutex::new(None),
        }
    }

    /// Returns the path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every record from the file.
    pub fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self.read_file()?.tokens)
    }

    /// Replaces `target`'s records with this store's records of `scope`, and returns how
    /// many were copied. Only hashes are copied, never a token.
    pub fn copy_scope_to(&self, scope: Scope, target: &TokenStore) -> Result<usize, StoreError> {
        let tokens: Vec<TokenRecord> = self
            .list()?
            .into_iter()
            .filter(|record| record.scope == scope)
            .collect();
        let count = tokens.len();
        let _lock = target.lock()?;
        target.write_file(&StoreFile {
            format_version: FORMAT_VERSION,
            tokens,
        })?;
        Ok(count)
    }

    /// Creates a token and returns its record and the token itself, which
    /// exists nowhere else: show it once.
    pub fn create(
        &self,
        name: &str,
        scope: Scope,
    ) -> Result<(TokenRecord, Zeroizing<String>), StoreError> {
        validate_name(name)?;
        let _lock = self.lock()?;
        let mut file = self.read_file()?;
        let (record, token) = new_record(name, scope, &file.tokens)?;
        file.tokens.push(record.clone());
        self.write_file(&file)?;
        Ok((record, token))
    }

    /// Creates a token only when the store has none, as one locked step, so
    /// two processes starting together create one token between them.
    /// Returns `None` when the store already had a token.
    pub fn create_if_empty(
        &self,
        name: &str,
        scope: Scope,
    ) -> Result<Option<(TokenRecord, Zeroizing<String>)>, StoreError> {
        validate_name(name)?;
        let _lock = self.lock()?;
        let mut file = self.read_file()?;
        if !file.tokens.is_empty() {
            return Ok(None);
        }
        let (record, token) = new_record(name, scope, &file.tokens)?;
        file.tokens.push(record.clone());
        self.write_file(&file)?;
        Ok(Some((record, token)))
    }

    /// Removes the token with this id and returns its record.
    pub fn revoke(&self, id: &str) -> Result<TokenRecord, StoreError> {
        let _lock = self.lock()?;
        let mut file = self.read_file()?;
        let Some(index) = file.tokens.iter().position(|record| record.id == id) else {
            return Err(StoreError::UnknownId { id: id.to_owned() });
        };
        let record = file.tokens.remove(index);
        self.write_file(&file)?;
        Ok(record)
    }

    /// Looks up a presented token. Returns `Ok(None)` when no stored token
    /// matches, and an error when the store cannot be read, which callers
    /// treat as a failed authentication.
    pub fn verify(&self, presented: &str) -> Result<Option<Principal>, StoreError> {
        let records = self.current_records()?;
        if !token::is_well_formed(presented) {
            return Ok(None);
        }
        let presented_hash = token::hash(presented);
        // Every record is compared, with no early exit, so the time taken
        // does not tell which position matched.
        let mut matched = None;
        for record in records.iter() {
            if bool::from(record.sha256.ct_eq(&presented_hash)) {
                matched = Some(record);
            }
        }
        Ok(matched.map(TokenRecord::principal))
    }

    /// Returns the records, reading the file again only when it changed.
    fn current_records(&self) -> Result<Arc<Vec<TokenRecord>>, StoreError> {
        let stamp = match fs::metadata(&self.path) {
            Ok(metadata) => Some(FileStamp::of(&metadata)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };

        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| {
            // The cache only contains parsed file contents, which a panic
            // elsewhere cannot leave half-written.
            poisoned.into_inner()
        });
        if let Some(cached) = cache.as_ref().filter(|cached| cached.stamp == stamp) {
            return cached
                .records
                .clone()
                .map_err(|message| StoreError::Invalid {
                    path: self.path.clone(),
                    message,
                });
        }

        let records = match stamp {
            None => Ok(Arc::new(Vec::new())),
            Some(_) => match self.read_file() {
                Ok(file) => Ok(Arc::new(file.tokens)),
                Err(err) => {
                    // Logged once per version of the file, not per request.
                    error!(path = %self.path.display(), error = %err, "token store unusable, every token is rejected");
                    Err(err.to_string())
                }
            },
        };
        *cache = Some(Cached {
            stamp,
            records: records.clone(),
        });
        records.map_err(|message| StoreError::Invalid {
            path: self.path.clone(),
            message,
        })
    }

    fn read_file(&self) -> Result<StoreFile, StoreError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Ok(StoreFile {
                    format_version: FORMAT_VERSION,
                    tokens: Vec::new(),
                })
            }
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let file: StoreFile = serde_json::from_str(&text).map_err(|err| StoreError::Invalid {
            path: self.path.clone(),
            message: err.to_string(),
        })?;
        if file.format_version != FORMAT_VERSION {
            return Err(StoreError::Invalid {
                path: self.path.clone(),
                message: format!(
                    "format version {} is not the version {FORMAT_VERSION} this agent reads",
                    file.format_version
                ),
            });
        }
        Ok(file)
    }

    fn write_file(&self, file: &StoreFile) -> Result<(), StoreError> {
        let mut text = serde_json::to_vec_pretty(file).map_err(|err| StoreError::Write {
            path: self.path.clone(),
            source: io::Error::other(err),
        })?;
        text.push(b'\n');
        atomic_file::write(&self.path, &text, FILE_MODE).map_err(|source| StoreError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Takes the writers' lock, creating the store's directory if needed.
    /// The lock is released when the returned file is dropped.
    fn lock(&self) -> Result<File, StoreError> {
        let lock_path = lock_path(&self.path);
        if let Some(directory) = self.path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(directory)
                .map_err(|source| StoreError::Write {
                    path: self.path.clone(),
                    source,
                })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(&lock_path)
            .map_err(|source| StoreError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        file.lock().map_err(|source| StoreError::Lock {
            path: lock_path,
            source,
        })?;
        Ok(file)
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}

fn validate_name(name: &str) -> Result<(), StoreError> {
    let reason = if name.trim().is_empty() {
        Some("it is empty. Pass a name such as --name laptop")
    } else if name.chars().count() > MAX_NAME_CHARS {
        Some("it is longer than 64 characters")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn new_record(
    name: &str,
    scope: Scope,
    existing: &[TokenRecord],
) -> Result<(TokenRecord, Zeroizing<String>), StoreError> {
    let token = token::generate().map_err(StoreError::Random)?;
    // 48 random bits make a clash unlikely, but a clash would make revoking
    // by id ambiguous, so draw again.
    let id = loop {
        let id = token::generate_id().map_err(StoreError::Random)?;
        if existing.iter().all(|record| record.id != id) {
            break id;
        }
    };
    let record = TokenRecord {
        id,
        name: name.to_owned(),
        scope,
        created_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0),
        sha256: token::hash(&token),
    };
    Ok((record, token))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn store_in(dir: &Path) -> TokenStore {
        TokenStore::new(dir.join("auth/tokens.json"))
    }

    #[test]
    fn created_token_verifies_with_scope() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = store_in(dir.path());

        let (record, token) = store.create("laptop", Scope::Admin).expect("create");
        let principal = store
            .verify(&token)
            .expect("verify")
            .expect("token matches");

        assert_eq!(principal.id, record.id);
        assert_eq!(principal.name, "laptop");
        assert_eq!(principal.scope, Scope::Admin);
    }

    #[test]
    fn store_keeps_only_the_hash() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = store_in(dir.path());

        let (_, token) = store.create("laptop", Scope::Inference).expect("create");
        let text = fs::read_to_string(store.path()).expect("read store");

        assert!(!text.contains(token.as_str()));
        assert!(!text.contains(&token[token::TOKEN_PREFIX.len()..]));
        assert!(text.contains(&hex::encode(token::hash(&token))));
        assert!(text.contains("\"scope\": \"inference\""));
    }

    #[test]
    fn store_file_and_directory_private() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = store_in(dir.path());

        store.create("laptop", Scope::Admin).expect("create");

        let file_mode = fs::metadata(store.path())
            .expect("stat store")
            .permissions();
        assert_eq!(file_mode.mode() & 0o777, 0o600);
        let dir_mode = fs::metadata(dir.path().join("auth"))
            .expect("stat directory")
            .permissions();
        assert_eq!(dir_mode.mode() & 0o777, 0o700);
    }

    #[test]
    fn unknown_and_malformed_tokens_rejected() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = store_in(dir.path());
        store.create("laptop", Scope::Admin).expect("create");
        let other = token::generate().expect("random bytes");

        assert_eq!(store.verify(&other).expect("verify"), None);
        assert_eq!(store.verify("").expect("verify"), None);
        assert_eq!(store.verify("appliance_short").expect("verify"), None);
    }

    #[test]
    fn missing_store_is_empty() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = store_in(dir.path());
        let token = token::generate().expect("random bytes");

        assert_eq!(store.list().expect("list"), Vec::new());
        assert_eq!(store.verify(&token).expect("verify"), None);
        assert!(!store.path().exists(), "reading must not create the store");
    }

    #[test]
    fn revoked_token_stops_verifying() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = store_in(dir.path());
        let (record, token) = store.create("laptop", Scope::Admin).expect("create");
        let (_, kept) = store.create("desktop", Scope::Admin).expect("create");
        assert!(store.verify(&token).expect("verify").is_some());

        let revoked = store.revoke(&record.id).expect("revoke");

        assert_eq!(revoked.id, record.id);
        assert_eq!(store.verify(&token).expect("verify"), None);
        assert!(store.verify(&kept).expect("verify").is_some());
        let names: Vec<String> = store
            .list()
            .expect("list")
            .into_iter()
            .map(|record| record.name)
            .collect();
        assert_eq!(names, ["desktop"]);
    }

    #[test]
    fn revoking_unknown_id_fails() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = store_in(dir.path());
        store.create("laptop", Scope::Admin).expect("create");

        let err = store.revoke("000000000000").expect_err("unknown id");

        assert!(matches!(err, StoreError::UnknownId { .. }), "{err}");
        assert!(err.to_string().contains("000000000000"), "{err}");
    }

    #[test]
    fn change_by_another_writer_seen() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let serving = store_in(dir.path());
        let shell = store_in(dir.path());
        let (_, first) = shell.create("first", Scope::Admin).expect("create");
        assert!(serving.verify(&first).expect("verify").is_some());

        let (_, second) = shell.create("second", Scope::Admin).expect("create");
        shell
            .revoke(&shell.list().expect("list")[0].id)
            .expect("revoke");

        assert!(serving.verify(&second).expect("verify").is_some());
        assert_eq!(serving.verify(&first).expect("verify"), None);
    }

    #[test]
    fn create_if_empty_creates_once() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = store_in(dir.path());

        let created = store
            .create_if_empty("initial admin", Scope::Admin)
            .expect("create");
        let again = store
            .create_if_empty("initial admin", Scope::Admin)
            .expect("create");

        assert!(created.is_some());
        assert!(again.is_none());
        assert_eq!(store.list().expect("list").len(), 1);
    }

    #[test]
    fn invalid_store_rejects_every_token() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = store_in(dir.path());
        let (_, token) = store.create("laptop", Scope::Admin).expect("create");
        fs::write(store.path(), "{ not json").expect("corrupt the store");

        let err = store.verify(&token).expect_err("corrupt store");

        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("tokens.json"), "{err}");
        let err = store
            .create("another", Scope::Admin)
            .expect_err("no write over a corrupt store");
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert_eq!(
            fs::read_to_string(store.path()).expect("read"),
            "{ not json"
        );
    }

    #[test]
    fn newer_format_version_rejected() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = store_in(dir.path());
        fs::create_dir_all(dir.path().join("auth")).expect("create dir");
        fs::write(store.path(), "{\"format_version\": 2, \"tokens\": []}\n").expect("write");

        let err = store.list().expect_err("newer version");

        assert!(err.to_string().contains("format version 2"), "{err}");
    }

    #[test]
    fn invalid_names_rejected() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = store_in(dir.path());

        for name in ["", "   ", "bad\nname", &"x".repeat(65)] {
            let err = store.create(name, Scope::Admin).expect_err("invalid name");
            assert!(matches!(err, StoreError::InvalidName { .. }), "{name:?}");
        }
        assert!(!store.path().exists());
    }
}
