//! Read-only view of the filesystem tree that the detection probes read.
//!
//! Probes name files by their absolute path on a live system (`/sys/...`), and
//! the view maps them under a root directory. That lets detection run against
//! a replayed support bundle or a test fixture exactly as it runs against `/`.
//! Overrides make chosen paths absent (`ENOENT`) or unreadable (`EACCES`)
//! without touching the files, which is how tests reproduce an unprivileged
//! run even when they run as root. With recording on, every result is kept so
//! that [`crate::collect`] can write a replayable bundle.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest number of bytes read from one file. Every file the probes read is
/// a short sysfs or procfs attribute, so a larger one is cut off here.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Paths that must look absent or unreadable, in the `fs_overrides.json` format.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsOverrides {
    /// Paths whose reads fail with `EACCES`, as do reads of anything below them.
    #[serde(default)]
    pub unreadable: Vec<String>,
    /// Paths that do not exist, nor does anything below them.
    #[serde(default)]
    pub absent: Vec<String>,
}

impl FsOverrides {
    /// Loads an overrides file, naming the file in the error.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = fs::read_to_string(path).map_err(|err| {
            anyhow::anyhow!(
                "failed to read the filesystem overrides file {}: {err}. \
                 Pass the fs_overrides.json of a collected bundle, or leave out --fs-overrides",
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|err| {
            anyhow::anyhow!(
                "invalid filesystem overrides file {}: {err}. Expected \
                 {{\"unreadable\": [\"/path\", ...], \"absent\": [\"/path\", ...]}}",
                path.display()
            )
        })
    }
}

/// One recorded read result, kept for writing a replay bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A regular file and the bytes read from it.
    File(Vec<u8>),
    /// A symbolic link and its target.
    Link(String),
    /// A directory that was listed or checked for.
    Dir,
    /// A path that was only checked for existence and is not a directory.
    Present,
    /// The path does not exist.
    Absent,
    /// Reading the path failed for another reason than `ENOENT`.
    Unreadable,
}

/// Read-only filesystem view rooted at a directory.
pub struct RootFs {
    root: PathBuf,
    overrides: FsOverrides,
    recording: Option<RefCell<BTreeMap<String, Recorded>>>,
}

impl RootFs {
    /// Creates a view of the live filesystem.
    pub fn host() -> Self {
        Self::new(PathBuf::from("/"), FsOverrides::default())
    }

    /// Creates a view that maps every absolute path under `root`.
    pub fn new(root: PathBuf, overrides: FsOverrides) -> Self {
        Self {
            root,
            overrides,
            recording: None,
        }
    }

    /// Turns on recording of every read result, for [`RootFs::recorded`].
    pub fn with_recording(mut self) -> Self {
        self.recording = Some(RefCell::new(BTreeMap::new()));
        self
    }

    /// Returns the directory that is mapped to `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns the recorded read results by absolute path, or an empty map when
    /// recording is off.
    pub fn recorded(&self) -> BTreeMap<String, Recorded> {
        self.recording
            .as_ref()
            .map(|cell| cell.borrow().clone())
            .unwrap_or_default()
    }

    /// Maps an absolute path such as `/sys/class/dmi/id/sys_vendor` under the root.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Reads a whole file, up to 1 MiB.
    pub fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let result = self.read_without_recording(path);
        self.record_result(path, &result, |bytes| Recorded::File(bytes.clone()));
        result
    }

    /// Reads the first line of a text file without its line ending.
    ///
    /// A NUL byte also ends the line, because device-tree properties are
    /// NUL-terminated strings. Invalid UTF-8 is replaced, not rejected.
    pub fn read_first_line(&self, path: &str) -> io::Result<String> {
        let bytes = self.read(path)?;
        let end = bytes
            .iter()
            .position(|&b| b == b'\n' || b == b'\0')
            .unwrap_or(bytes.len());
        Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
    }

    /// Reads a whole text file, replacing invalid UTF-8.
    pub fn read_to_string(&self, path: &str) -> io::Result<String> {
        self.read(path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Reads one variable from a NUL-separated environment block such as
    /// `/proc/1/environ`. Returns `Ok(None)` when the variable is not set.
    ///
    /// Only that variable is recorded, so a support bundle never contains the
    /// rest of the environment, which may contain secrets.
    pub fn read_env_var(&self, path: &str, name: &str) -> io::Result<Option<String>> {
        let result = self.read_without_recording(path);
        let prefix = format!("{name}=");
        let value = result.map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
                .map(|value| String::from_utf8_lossy(value).into_owned())
        });
        self.record_result(path, &value, |found| {
            let kept = found
                .as_ref()
                .map(|value| format!("{prefix}{value}\0"))
                .unwrap_or_default();
            Recorded::File(kept.into_bytes())
        });
        value
    }

    /// Checks whether a path exists, following symbolic links as `access(F_OK)` does.
    ///
    /// Returns `Ok(false)` for `ENOENT` and an error for anything else, such as
    /// `EACCES` on a directory above the path.
    pub fn exists(&self, path: &str) -> io::Result<bool> {
        let result = self
            .check_overrides(path, false)
            .and_then(|()| fs::metadata(self.host_path(path)));
        match result {
            Ok(metadata) => {
                let kind = if metadata.is_dir() {
                    Recorded::Dir
                } else {
                    Recorded::Present
                };
                self.record(path, kind);
                Ok(true)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                self.record(path, Recorded::Absent);
                Ok(false)
            }
            Err(err) => {
                self.record(path, Recorded::Unreadable);
                Err(err)
            }
        }
    }

    /// Lists the entry names of a directory, sorted.
    pub fn read_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let result = self.check_overrides(path, true).and_then(|()| {
            let mut names = Vec::new();
            for entry in fs::read_dir(self.host_path(path))? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        });
        self.record_result(path, &result, |_| Recorded::Dir);
        result
    }

    /// Reads the target of a symbolic link.
    ///
    /// A regular file in place of the link is read as the link's target text,
    /// because bundles that pass through archives or copies often lose
    /// symbolic links and store them that way.
    pub fn read_link(&self, path: &str) -> io::Result<String> {
        let result = self.check_overrides(path, true).and_then(|()| {
            let host_path = self.host_path(path);
            let metadata = fs::symlink_metadata(&host_path)?;
            if metadata.file_type().is_symlink() {
                Ok(fs::read_link(&host_path)?.to_string_lossy().into_owned())
            } else if metadata.is_file() {
                let text = fs::read_to_string(&host_path)?;
                Ok(text.trim_end().to_owned())
            } else {
                Err(io::Error::from_raw_os_error(libc::EINVAL))
            }
        });
        self.record_result(path, &result, |target| Recorded::Link(target.clone()));
        result
    }

    fn read_without_recording(&self, path: &str) -> io::Result<Vec<u8>> {
        self.check_overrides(path, true)?;
        let file = fs::File::open(self.host_path(path))?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Applies the overrides to one path. `reading` is false for an
    /// existence check, which succeeds on an unreadable path itself because
    /// only reading it fails.
    fn check_overrides(&self, path: &str, reading: bool) -> io::Result<()> {
        let path = Path::new(path);
        for absent in &self.overrides.absent {
            if path.starts_with(absent) {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
        }
        for unreadable in &self.overrides.unreadable {
            let below = path.starts_with(unreadable) && path != Path::new(unreadable);
            if below || (reading && path == Path::new(unreadable)) {
                return Err(io::Error::from_raw_os_error(libc::EACCES));
            }
        }
        Ok(())
    }

    fn record_result<T>(&self, path: &str, result: &io::Result<T>, on_ok: impl Fn(&T) -> Recorded) {
        let recorded = match result {
            Ok(value) => on_ok(value),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Recorded::Absent,
            Err(_) => Recorded::Unreadable,
        };
        self.record(path, recorded);
    }

    fn record(&self, path: &str, recorded: Recorded) {
        let Some(cell) = &self.recording else {
            return;
        };
        let mut map = cell.borrow_mut();
        // A read that returned content is kept over a later existence check
        // of the same path, so the bundle contains the bytes.
        let keep_existing = matches!(
            (map.get(path), &recorded),
            (
                Some(Recorded::File(_) | Recorded::Link(_)),
                Recorded::Present | Recorded::Dir
            )
        );
        if !keep_existing {
            map.insert(path.to_owned(), recorded);
        }
    }
}

/// Formats an I/O error with its errno name, such as `EACCES (Permission denied)`.
pub fn describe_error(err: &io::Error) -> String {
    let name = match err.raw_os_error() {
        Some(libc::EACCES) => Some("EACCES"),
        Some(libc::EPERM) => Some("EPERM"),
        Some(libc::ENOENT) => Some("ENOENT"),
        Some(libc::EIO) => Some("EIO"),
        Some(libc::EINVAL) => Some("EINVAL"),
        _ => None,
    };
    match name {
        Some(name) => format!("{name} ({})", err.kind()),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view_with(overrides: FsOverrides) -> (tempfile::TempDir, RootFs) {
        let dir = tempfile::tempdir().expect("create temp dir");
        let dmi = dir.path().join("sys/class/dmi/id");
        fs::create_dir_all(&dmi).expect("create dmi dir");
        fs::write(dmi.join("sys_vendor"), "QEMU\n").expect("write sys_vendor");
        let fs_view = RootFs::new(dir.path().to_path_buf(), overrides);
        (dir, fs_view)
    }

    #[test]
    fn unreadable_override_fails_with_eacces() {
        let overrides = FsOverrides {
            unreadable: vec!["/sys/class/dmi/id/sys_vendor".into()],
            absent: vec![],
        };
        let (_dir, view) = view_with(overrides);

        let err = view
            .read("/sys/class/dmi/id/sys_vendor")
            .expect_err("read must fail");
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
        assert!(view.exists("/sys/class/dmi/id/sys_vendor").expect("exists"));
    }

    #[test]
    fn unreadable_directory_hides_children() {
        let overrides = FsOverrides {
            unreadable: vec!["/sys/class/dmi".into()],
            absent: vec![],
        };
        let (_dir, view) = view_with(overrides);

        let err = view
            .exists("/sys/class/dmi/id/sys_vendor")
            .expect_err("exists must fail");
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    }

    #[test]
    fn absent_override_hides_existing_tree() {
        let overrides = FsOverrides {
            unreadable: vec![],
            absent: vec!["/sys/class/dmi/id".into()],
        };
        let (_dir, view) = view_with(overrides);

        let err = view
            .read("/sys/class/dmi/id/sys_vendor")
            .expect_err("read must fail");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert!(!view.exists("/sys/class/dmi/id").expect("exists"));
    }

    #[test]
    fn absent_override_matches_whole_components() {
        let overrides = FsOverrides {
            unreadable: vec![],
            absent: vec!["/sys/class/dmi/id/sys".into()],
        };
        let (_dir, view) = view_with(overrides);

        assert_eq!(
            view.read_first_line("/sys/class/dmi/id/sys_vendor")
                .expect("read"),
            "QEMU"
        );
    }

    #[test]
    fn env_var_recording_keeps_only_that_variable() {
        let (dir, view) = view_with(FsOverrides::default());
        let view = view.with_recording();
        fs::create_dir_all(dir.path().join("proc/1")).expect("create proc dir");
        fs::write(
            dir.path().join("proc/1/environ"),
            b"HOME=/\0API_TOKEN=secret\0container=podman\0",
        )
        .expect("write environ");

        let value = view
            .read_env_var("/proc/1/environ", "container")
            .expect("read");

        assert_eq!(value.as_deref(), Some("podman"));
        let recorded = view.recorded();
        assert_eq!(
            recorded.get("/proc/1/environ"),
            Some(&Recorded::File(b"container=podman\0".to_vec()))
        );
    }

    #[test]
    fn link_stored_as_file_reads_as_target() {
        let (dir, view) = view_with(FsOverrides::default());
        let device = dir.path().join("sys/bus/pci/devices/0000:00:02.0");
        fs::create_dir_all(&device).expect("create device dir");
        fs::write(device.join("driver"), "../../drivers/nvidia\n").expect("write driver");

        let target = view
            .read_link("/sys/bus/pci/devices/0000:00:02.0/driver")
            .expect("read link");

        assert_eq!(target, "../../drivers/nvidia");
    }
}
