//! Access to the appliance's mkosi tools tree (systemd 257) and to the UKI that `make image`
//! builds, for the tests that compare this crate with systemd-measure.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Sections that systemd-measure 257 measures under their own name, as --NAME=PATH options.
///
/// `.hwids` and `.dtbauto` are missing because systemd-measure 257 measures its `--hwids=`
/// file under the name `.dtbauto` and its `--dtbauto=` file under `.hwids`, so it cannot check
/// either. `.pcrsig` is missing because it is not measured.
pub const MEASURED: [&str; 11] = [
    ".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname", ".sbat",
    ".pcrpkey", ".profile",
];

/// Repository and tools tree paths.
pub struct Tools {
    pub repo_root: PathBuf,
    pub tools_tree: PathBuf,
}

/// Returns the tools tree ($APPLIANCE_CACHE/tools-trixie, by default under
/// /var/cache/appliance), or None after printing why the test skips.
pub fn tools() -> Option<Tools> {
    let cache = std::env::var_os("APPLIANCE_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/appliance"), PathBuf::from);
    let tools_tree = cache.join("tools-trixie");
    let measure = tools_tree.join("usr/lib/systemd/systemd-measure");
    if !measure.is_file() {
        eprintln!(
            "skipped: {} not found, so the tools tree is absent; run `make setup` to build it",
            measure.display()
        );
        return None;
    }
    Some(Tools {
        repo_root: repo_root(),
        tools_tree,
    })
}

/// Returns the workspace root, the parent of this crate's directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives inside the workspace")
        .to_path_buf()
}

impl Tools {
    /// Returns the path of `file` in tests/fixtures/pcrsig-test-key, the RSA test key pair.
    pub fn test_key(&self, file: &str) -> PathBuf {
        self.repo_root
            .join("secureboot/tests/fixtures/pcrsig-test-key")
            .join(file)
    }

    /// Returns an `image/mkosi --tools-tree=TREE sandbox` command that runs in
    /// `working_directory`, ready for the arguments of the command to run in the sandbox.
    pub fn sandbox_command(&self, working_directory: &Path) -> Command {
        let mut command = Command::new(self.repo_root.join("image/mkosi"));
        command
            .current_dir(working_directory)
            .arg(path_option("--tools-tree=", &self.tools_tree))
            .arg("sandbox");
        command
    }
}

/// Returns `prefix` followed by `path`, such as `--private-key=/path/to/key.pem`.
pub fn path_option(prefix: &str, path: &Path) -> OsString {
    let mut option = OsString::from(prefix);
    option.push(path);
    option
}

/// Returns one systemd-measure `--NAME=PATH` option for each section name and file.
pub fn section_options(sections: &[(&str, PathBuf)]) -> Vec<OsString> {
    sections
        .iter()
        .map(|(name, path)| {
            let option = name
                .strip_prefix('.')
                .expect("section names start with a dot");
            path_option(&format!("--{option}="), path)
        })
        .collect()
}

/// Copies a file that an image build may be rewriting, retrying until its modification time
/// and length are the same before and after a copy.
pub fn copy_stable(source: &Path, destination: &Path) {
    const ATTEMPTS: u32 = 10;
    let version = |path: &Path| -> std::io::Result<(SystemTime, u64)> {
        let metadata = std::fs::metadata(path)?;
        Ok((metadata.modified()?, metadata.len()))
    };

    let mut last_outcome = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            std::thread::sleep(Duration::from_secs(3));
        }
        let before = version(source);
        let copied = std::fs::copy(source, destination);
        let after = version(source);
        match (before, copied, after) {
            (Ok(before), Ok(length), Ok(after)) if before == after && length == after.1 => return,
            outcome => last_outcome = format!("{outcome:?}"),
        }
    }
    panic!(
        "{} changed during each of {ATTEMPTS} copies (last: {last_outcome}); wait for the image \
         build to finish",
        source.display()
    );
}

/// Returns the path of build/image/appliance.efi, or None after printing why the test skips.
pub fn appliance_uki(repo_root: &Path) -> Option<PathBuf> {
    let source = repo_root.join("build/image/appliance.efi");
    if !source.is_file() {
        eprintln!(
            "skipped: {} not found; build the image with `make image` first",
            source.display()
        );
        return None;
    }
    Some(source)
}
