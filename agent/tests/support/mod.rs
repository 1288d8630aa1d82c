//! Helpers shared by the integration tests: loading fixture folders and
//! running detection on them.

#![allow(dead_code)]

pub mod gguf_writer;
pub mod pcr_policy;
pub mod swtpm;
pub mod vault_interop;

use std::path::{Path, PathBuf};

use appliance_agent::detect::{self, CpuidInfo, Detection};
use appliance_agent::rootfs::{FsOverrides, RootFs};

/// Returns the path of a folder under `tests/fixtures`.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// Builds the filesystem view of a fixture folder: `root/` with the
/// folder's `fs_overrides.json` when it has one.
pub fn fixture_fs(dir: &Path) -> RootFs {
    let overrides_path = dir.join("fs_overrides.json");
    let overrides = if overrides_path.exists() {
        FsOverrides::load(&overrides_path).expect("valid fs_overrides.json")
    } else {
        FsOverrides::default()
    };
    RootFs::new(dir.join("root"), overrides)
}

/// Runs detection on a fixture folder with its `cpuid.json`.
pub fn detect_fixture(dir: &Path) -> Detection {
    let cpuid = CpuidInfo::load(&dir.join("cpuid.json")).expect("valid cpuid.json");
    detect::run(&fixture_fs(dir), &cpuid)
}
