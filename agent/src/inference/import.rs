//! Import of model files from a disk that the hypervisor attaches, so a
//! VM's vault gets its first model without a network.
//!
//! The disk is a plain tar archive (ustar) of `*.gguf` files written to a
//! block device, attached as a virtio disk with the serial
//! `appliance-models`, which udev links as [`IMPORT_DEVICE`]. `make run`
//! attaches one with SmolLM2-135M-Instruct. The import runs only while the
//! models folder has no model, and each file must pass the same checks as
//! any model (GGUF header, pinned digest) before it stays.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use tracing::{info, warn};

use super::model_file::{self, ModelFileError, MODEL_EXTENSION};
use crate::config::ModelsConfig;

/// udev's link for a virtio disk with the serial `appliance-models`.
pub const IMPORT_DEVICE: &str = "/dev/disk/by-id/virtio-appliance-models";

/// Result of an import attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    /// No import disk is attached.
    NoDevice,
    /// The models folder already has a model, so nothing was read.
    ModelsPresent,
    /// These files were imported.
    Imported(Vec<PathBuf>),
}

/// An import that failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("failed to create the models folder {dir}: {source}. Check that the vault is open")]
    CreateDir { dir: PathBuf, source: io::Error },

    #[error("failed to read the model import disk {device}: {source}")]
    Read { device: PathBuf, source: io::Error },

    #[error("failed to write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },

    #[error(
        "the import disk {device} contains no *.{MODEL_EXTENSION} file that passed the checks"
    )]
    NothingImported { device: PathBuf },

    #[error(transparent)]
    Models(#[from] ModelFileError),
}

/// Copies the `*.gguf` files of the tar archive on `device` into the
/// models folder, when the folder has no model yet.
pub fn import_models(device: &Path, models: &ModelsConfig) -> Result<ImportOutcome, ImportError> {
    if !device.exists() {
        return Ok(ImportOutcome::NoDevice);
    }
    match fs::create_dir(&models.dir) {
        Ok(()) => info!(dir = %models.dir.display(), "models folder created"),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(ImportError::CreateDir {
                dir: models.dir.clone(),
                source,
            })
        }
    }
    if !model_file::list_models(&models.dir)?.is_empty() {
        return Ok(ImportOutcome::ModelsPresent);
    }

    info!(device = %device.display(), dir = %models.dir.display(), "importing models from the import disk");
    let read_error = |source| ImportError::Read {
        device: device.to_owned(),
        source,
    };
    let file = File::open(device).map_err(read_error)?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut imported = Vec::new();
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let Some(name) = model_name(&entry) else {
            continue;
        };
        let size = entry.header().size().unwrap_or(0);
        info!(file = %name, bytes = size, "importing model file");
        if let Some(path) = import_entry(&mut entry, &name, models)? {
            imported.push(path);
        }
    }

    if imported.is_empty() {
        return Err(ImportError::NothingImported {
            device: device.to_owned(),
        });
    }
    Ok(ImportOutcome::Imported(imported))
}

/// Returns the entry's file name when it is a regular `*.gguf` file
/// directly in the archive's top folder. Others are logged and skipped.
fn model_name<R: io::Read>(entry: &tar::Entry<R>) -> Option<String> {
    let path = entry.path().ok()?.into_owned();
    let mut components = path.components().filter(|c| *c != Component::CurDir);
    let name = match (components.next(), components.next()) {
        (Some(Component::Normal(name)), None) => name.to_str()?.to_owned(),
        _ => {
            warn!(path = %path.display(), "skipping an import entry that is not a plain file name");
            return None;
        }
    };
    let is_model = !name.starts_with('.')
        && Path::new(&name)
            .extension()
            .is_some_and(|extension| extension == MODEL_EXTENSION);
    if !entry.header().entry_type().is_file() || !is_model {
        warn!(path = %name, "skipping an import entry that is not a *.gguf file");
        return None;
    }
    Some(name)
}

/// Writes one entry under a temporary name, checks it, and renames it into
/// place. Returns `None` when the file failed its checks.
fn import_entry<R: io::Read>(
    entry: &mut tar::Entry<R>,
    name: &str,
    models: &ModelsConfig,
) -> Result<Option<PathBuf>, ImportError> {
    let partial = models.dir.join(format!(".{name}.partial"));
    let target = models.dir.join(name);
    let write_error = |path: &Path, source| ImportError::Write {
        path: path.to_owned(),
        source,
    };

    // A leftover from an interrupted import is replaced.
    let _ = fs::remove_file(&partial);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|source| write_error(&partial, source))?;
    io::copy(entry, &mut file).map_err(|source| write_error(&partial, source))?;
    file.sync_all()
        .map_err(|source| write_error(&partial, source))?;
    drop(file);
    fs::rename(&partial, &target).map_err(|source| write_error(&target, source))?;
    // The rename lasts across a power loss only once the folder is synced.
    File::open(&models.dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| write_error(&models.dir, source))?;

    match model_file::check(&target, models) {
        Ok(checked) => {
            info!(
                path = %target.display(),
                architecture = %checked.header.architecture,
                "model imported"
            );
            Ok(Some(target))
        }
        Err(err) => {
            warn!(path = %target.display(), error = %err, "imported file failed its checks and was removed");
            let _ = fs::remove_file(&target);
            Ok(None)
        }
    }
}
