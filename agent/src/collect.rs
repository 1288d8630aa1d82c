//! Support bundle: the files the probes read, copied so that detection can
//! be replayed elsewhere with `detect --root DIR/root --cpuid DIR/cpuid.json
//! --fs-overrides DIR/fs_overrides.json`.
//!
//! Layout: `root/` keeps every file under its absolute path, `cpuid.json`
//! contains the CPUID values, `fs_overrides.json` lists the paths that were
//! absent or unreadable, and `detection.json` is the result at collection
//! time. Symbolic links are stored as text files holding the link target,
//! which [`RootFs::read_link`] reads back.

use std::fs;
use std::path::Path;

use anyhow::Context;

use crate::detect::{CpuidInfo, Detection};
use crate::rootfs::{FsOverrides, Recorded, RootFs};

/// Writes the bundle from a [`RootFs`] that had recording on.
pub fn write_bundle(
    dir: &Path,
    fs_view: &RootFs,
    cpuid: &CpuidInfo,
    detection: &Detection,
) -> anyhow::Result<()> {
    prepare_empty_dir(dir)?;

    let root = dir.join("root");
    fs::create_dir_all(&root).with_context(|| format!("failed to create {}", root.display()))?;

    let mut overrides = FsOverrides::default();
    for (path, recorded) in fs_view.recorded() {
        let target = root.join(path.trim_start_matches('/'));
        match recorded {
            Recorded::File(bytes) => write_file(&target, &bytes)?,
            Recorded::Link(link_target) => {
                write_file(&target, format!("{link_target}\n").as_bytes())?
            }
            Recorded::Dir => {
                fs::create_dir_all(&target)
                    .with_context(|| format!("failed to create {}", target.display()))?;
            }
            Recorded::Present => {
                if !target.exists() {
                    write_file(&target, b"")?;
                }
            }
            Recorded::Absent => overrides.absent.push(path),
            Recorded::Unreadable => overrides.unreadable.push(path),
        }
    }

    write_json(&dir.join("cpuid.json"), cpuid)?;
    write_json(&dir.join("fs_overrides.json"), &overrides)?;
    write_json(&dir.join("detection.json"), detection)?;
    Ok(())
}

fn prepare_empty_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let mut entries = fs::read_dir(dir)
            .with_context(|| format!("failed to list the bundle directory {}", dir.display()))?;
        if entries.next().is_some() {
            anyhow::bail!(
                "bundle directory {} is not empty. Pass a new or empty directory to --collect",
                dir.display()
            );
        }
        return Ok(());
    }
    fs::create_dir_all(dir).with_context(|| {
        format!(
            "failed to create the bundle directory {}. Pass a writable location to --collect",
            dir.display()
        )
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("failed to write {}", path.display()))
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_file(path, text.as_bytes())
}
