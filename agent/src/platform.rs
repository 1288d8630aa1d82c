//! Platform state that `early` writes in the initrd and `serve` reads after
//! switch-root. It lives under /run, which systemd carries over switch-root.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::detect::Detection;

/// File name of the state inside the state directory.
pub const PLATFORM_FILE: &str = "platform.json";

/// Format version of [`PlatformState`]. A reader rejects other versions,
/// so an older agent never misreads a newer file.
pub const FORMAT_VERSION: u32 = 1;

/// Contents of `platform.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformState {
    pub format_version: u32,
    /// Seconds since the Unix epoch when detection ran.
    pub detected_at: u64,
    pub detection: Detection,
}

/// Returns the path of `platform.json` inside a state directory.
pub fn platform_file(state_dir: &Path) -> PathBuf {
    state_dir.join(PLATFORM_FILE)
}

/// Writes the state file atomically, so a reader sees either the old file or
/// the whole new one.
pub fn write(state_dir: &Path, state: &PlatformState) -> anyhow::Result<PathBuf> {
    let path = platform_file(state_dir);
    fs::create_dir_all(state_dir).with_context(|| {
        format!(
            "failed to create the state directory {}. Check that it is writable or pass another --state-dir",
            state_dir.display()
        )
    })?;

    let mut text =
        serde_json::to_vec_pretty(state).context("failed to encode the platform state")?;
    text.push(b'\n');

    atomic_file::write(&path, &text, 0o644).with_context(|| {
        format!(
            "failed to write the platform state {}. Check that the directory is writable or pass another --state-dir",
            path.display()
        )
    })?;
    Ok(path)
}

/// Reads the state file. The error names the file and why it was rejected.
pub fn read(state_dir: &Path) -> anyhow::Result<PlatformState> {
    let path = platform_file(state_dir);
    let text =
        fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))?;
    let state: PlatformState = serde_json::from_str(&text)
        .with_context(|| format!("invalid platform state in {}", path.display()))?;
    if state.format_version != FORMAT_VERSION {
        anyhow::bail!(
            "platform state {} has format version {}, but this agent reads version {FORMAT_VERSION}",
            path.display(),
            state.format_version
        );
    }
    Ok(state)
}
