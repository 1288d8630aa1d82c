//! Crash-safe file replacement: a reader, or the next boot after a power
//! loss, sees either the old contents or the whole new contents.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents`, giving the file the permission bits in
/// `mode`.
///
/// Writes a temporary file in the same directory, syncs it, renames it over
/// `path` and then syncs the directory, so the rename itself survives a
/// crash. On failure the temporary file is removed and `path` is unchanged.
pub fn write(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let directory = parent_dir(path);
    let temporary = temporary_path(path);
    let result = write_synced(&temporary, contents, mode)
        .and_then(|()| fs::rename(&temporary, path))
        .and_then(|()| File::open(directory)?.sync_all());
    if result.is_err() {
        // Best effort: the rename either never happened, in which case the
        // file is ours to remove, or it did and the name is already gone.
        let _ = fs::remove_file(&temporary);
    }
    result
}

fn write_synced(temporary: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    // A leftover from a crashed writer of the same process id would make
    // create_new fail, and it contains nothing worth keeping.
    let _ = fs::remove_file(temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(temporary)?;
    // The umask may have cleared bits of `mode`; set them exactly.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Returns the directory that contains `path`, `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Returns a hidden name beside `path` that is unique to this process.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn write_replaces_contents_and_sets_mode() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let path = dir.path().join("tokens.json");
        fs::write(&path, "old").expect("write old file");

        write(&path, b"new", 0o600).expect("atomic write");

        assert_eq!(fs::read_to_string(&path).expect("read"), "new");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["tokens.json"], "temporary file left behind");
    }

    #[test]
    fn failed_write_keeps_old_file() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let path = dir.path().join("target");
        fs::create_dir(&path).expect("create a directory in the way");
        fs::write(path.join("inside"), "kept").expect("write file in directory");

        let err = write(&path, b"new", 0o600).expect_err("rename over a directory must fail");

        assert!(matches!(
            err.kind(),
            io::ErrorKind::IsADirectory | io::ErrorKind::DirectoryNotEmpty
        ));
        assert_eq!(
            fs::read_to_string(path.join("inside")).expect("read"),
            "kept"
        );
        let leftovers = fs::read_dir(dir.path())
            .expect("list dir")
            .filter(|entry| {
                entry
                    .as_ref()
                    .is_ok_and(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
