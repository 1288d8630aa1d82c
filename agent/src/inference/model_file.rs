//! Finding the model file to serve and checking it before it is loaded:
//! the GGUF header, and the sha256 digest when the configuration pins one.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use appliance_secureboot::pcr::to_hex;
use sha2::{Digest, Sha256};

use super::gguf::{self, GgufFileError, GgufHeader};
use crate::config::ModelsConfig;

/// Extension of the model files that are served.
pub const MODEL_EXTENSION: &str = "gguf";

/// A model file that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedModel {
    pub path: PathBuf,
    /// File name without the extension, which the API uses as the model id.
    pub id: String,
    pub header: GgufHeader,
    /// The digest the configuration pinned and the file matched.
    pub pinned_sha256: Option<String>,
}

/// Reason no model can be served.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("failed to list the models folder {dir}: {source}. Check that the vault is open and that models.dir is right")]
    ListDir { dir: PathBuf, source: io::Error },

    #[error(
        "no *.{MODEL_EXTENSION} model file in {dir}. Copy a GGUF model there, or set models.dir"
    )]
    NoModel { dir: PathBuf },

    #[error("the model file {path} set in models.default does not exist. Copy it there, or fix models.default")]
    DefaultMissing { path: PathBuf },

    #[error(transparent)]
    Header(#[from] GgufFileError),

    #[error("failed to read {path} to compute its sha256 digest: {source}")]
    ReadDigest { path: PathBuf, source: io::Error },

    #[error("the model file {path} has sha256 {actual}, but models.sha256 pins {expected}. The file was changed or replaced: copy the expected file again, or update models.sha256 if the new file is trusted")]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// Returns the path of the model to serve: `models.default` when set, else
/// the first `*.gguf` file of the folder in byte order of the names.
pub fn find_default(models: &ModelsConfig) -> Result<PathBuf, ModelFileError> {
    if let Some(name) = &models.default {
        let path = models.dir.join(name);
        if !path.is_file() {
            return Err(ModelFileError::DefaultMissing { path });
        }
        return Ok(path);
    }
    list_models(&models.dir)?
        .into_iter()
        .next()
        .ok_or_else(|| ModelFileError::NoModel {
            dir: models.dir.clone(),
        })
}

/// Lists the `*.gguf` regular files of a folder, sorted by name.
pub fn list_models(dir: &Path) -> Result<Vec<PathBuf>, ModelFileError> {
    let list_error = |source| ModelFileError::ListDir {
        dir: dir.to_owned(),
        source,
    };
    let mut models = Vec::new();
    for entry in fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let path = entry.path();
        let is_model = path
            .extension()
            .is_some_and(|extension| extension == MODEL_EXTENSION);
        if is_model && path.is_file() {
            models.push(path);
        }
    }
    models.sort();
    Ok(models)
}

/// Checks a model file: its GGUF header, then its digest when
/// `models.sha256` pins one for its name.
///
/// NOTE: the file is checked and then opened again by the loader, so a
/// process that can write to the models folder could swap it in between.
/// Only root can write to the vault.
pub fn check(path: &Path, models: &ModelsConfig) -> Result<CheckedModel, ModelFileError> {
    let header = gguf::validate_file(path)?;

    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pinned_sha256 = match models.sha256.get(&name) {
        Some(expected) => {
            let expected = expected.to_ascii_lowercase();
            let actual = sha256_file(path)?;
            if actual != expected {
                return Err(ModelFileError::DigestMismatch {
                    path: path.to_owned(),
                    expected,
                    actual,
                });
            }
            Some(actual)
        }
        None => None,
    };

    let id = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or(name);
    Ok(CheckedModel {
        path: path.to_owned(),
        id,
        header,
        pinned_sha256,
    })
}

/// Computes a file's sha256 digest as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelFileError> {
    let read_error = |source| ModelFileError::ReadDigest {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => hasher.update(&buffer[..count]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(read_error(err)),
        }
    }
    Ok(to_hex(&hasher.finalize()))
}
