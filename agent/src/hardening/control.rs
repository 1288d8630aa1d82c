//! The operations that disable an agent: on the running system through
//! systemctl and signals, or in the initrd on the root file system that is
//! about to become `/`.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::processes::{self, Process};
use crate::rootfs::RootFs;

/// State of a systemd unit, with fields named as `systemctl show` names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitInfo {
    pub active_state: String,
    pub unit_file_state: String,
}

impl UnitInfo {
    /// Returns true when the unit is masked and not running.
    pub fn is_disabled(&self) -> bool {
        self.unit_file_state == "masked"
            && matches!(self.active_state.as_str(), "inactive" | "failed")
    }
}

/// Operations on units and processes that the hardening step uses.
pub trait HostControl {
    /// Returns the unit's state, or `None` when no such unit is installed.
    fn unit(&mut self, name: &str) -> Result<Option<UnitInfo>, String>;

    /// Stops the unit and masks it, so neither a socket, a dependency nor a
    /// reboot starts it again.
    fn stop_and_mask(&mut self, name: &str) -> Result<(), String>;

    /// Ends the process: SIGTERM, then SIGKILL if it is still running.
    fn terminate(&mut self, process: &Process) -> Result<(), String>;
}

/// How long a process gets to exit after SIGTERM before SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// The running system: systemctl for units, pidfds for signals.
pub struct SystemControl {
    proc_fs: RootFs,
}

impl Default for SystemControl {
    fn default() -> Self {
        Self {
            proc_fs: RootFs::host(),
        }
    }
}

impl HostControl for SystemControl {
    fn unit(&mut self, name: &str) -> Result<Option<UnitInfo>, String> {
        let output = Command::new("systemctl")
            .args([
                "show",
                "--property=LoadState,ActiveState,UnitFileState",
                "--",
            ])
            .arg(name)
            .output()
            .map_err(|err| format!("failed to run systemctl: {err}"))?;
        if !output.status.success() {
            return Err(format!(
                "systemctl show {name} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let field = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or("")
                .to_owned()
        };
        // A masked unit without a unit file has LoadState=masked.
        if field("LoadState") == "not-found" {
            return Ok(None);
        }
        Ok(Some(UnitInfo {
            active_state: field("ActiveState"),
            unit_file_state: field("UnitFileState"),
        }))
    }

    fn stop_and_mask(&mut self, name: &str) -> Result<(), String> {
        let output = Command::new("systemctl")
            .args(["mask", "--now", "--"])
            .arg(name)
            .output()
            .map_err(|err| format!("failed to run systemctl: {err}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "systemctl mask --now {name} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    fn terminate(&mut self, process: &Process) -> Result<(), String> {
        terminate_process(&self.proc_fs, process)
    }
}

/// Sends SIGTERM through a pidfd, and SIGKILL when the process has not
/// exited after [`TERMINATE_GRACE`]. The pidfd pins the process, so a pid
/// reused by another program after the name check is never signalled.
fn terminate_process(proc_fs: &RootFs, process: &Process) -> Result<(), String> {
    let pid = libc::pid_t::try_from(process.pid)
        .map_err(|_| format!("pid {} out of range", process.pid))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it reads no memory of ours.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ESRCH) => Ok(()),
            _ => Err(format!("pidfd_open({pid}) failed: {err}")),
        };
    }
    let raw = i32::try_from(raw).map_err(|_| "pidfd out of range".to_owned())?;
    // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };

    // The pid was read from /proc earlier, so check that it is still the
    // same program now that the pidfd pins it.
    match processes::read(proc_fs, process.pid) {
        Some(current) if current.name == process.name => {}
        _ => return Ok(()),
    }

    send_signal(&pidfd, libc::SIGTERM)?;
    if wait_for_exit(&pidfd, TERMINATE_GRACE) {
        return Ok(());
    }
    send_signal(&pidfd, libc::SIGKILL)?;
    if wait_for_exit(&pidfd, TERMINATE_GRACE) {
        Ok(())
    } else {
        Err(format!("pid {pid} did not exit after SIGKILL"))
    }
}

fn send_signal(pidfd: &OwnedFd, signal: libc::c_int) -> Result<(), String> {
    // SAFETY: pidfd_send_signal takes a descriptor we own, a signal number,
    // a null siginfo pointer (allowed by the syscall) and zero flags.
    let result = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if result == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // Already gone.
        Some(libc::ESRCH) => Ok(()),
        _ => Err(format!("failed to send signal {signal}: {err}")),
    }
}

/// Returns true when the process exits within `timeout`. A pidfd becomes
/// readable when its process exits.
fn wait_for_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut poll_fd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let milliseconds = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll reads and writes exactly the one pollfd passed in.
    let ready = unsafe { libc::poll(&mut poll_fd, 1, milliseconds) };
    ready > 0
}

/// The root file system mounted at `/sysroot` in the initrd, before
/// switch-root. Masking writes `/etc/systemd/system/UNIT -> /dev/null`
/// there, which systemd reads when it starts from that root. No agent
/// process runs yet, so there is nothing to end.
pub struct SysrootControl {
    sysroot: PathBuf,
}

impl SysrootControl {
    pub fn new(sysroot: PathBuf) -> Self {
        Self { sysroot }
    }

    fn mask_path(&self, name: &str) -> PathBuf {
        self.sysroot.join("etc/systemd/system").join(name)
    }
}

/// Folders that may contain unit files, relative to the root.
const UNIT_DIRECTORIES: [&str; 4] = [
    "etc/systemd/system",
    "run/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];

impl HostControl for SysrootControl {
    fn unit(&mut self, name: &str) -> Result<Option<UnitInfo>, String> {
        if is_masked(&self.mask_path(name)) {
            return Ok(Some(UnitInfo {
                active_state: "inactive".to_owned(),
                unit_file_state: "masked".to_owned(),
            }));
        }
        let installed = UNIT_DIRECTORIES
            .iter()
            .any(|directory| self.sysroot.join(directory).join(name).exists());
        Ok(installed.then(|| UnitInfo {
            active_state: "inactive".to_owned(),
            unit_file_state: "enabled".to_owned(),
        }))
    }

    fn stop_and_mask(&mut self, name: &str) -> Result<(), String> {
        mask_by_link(&self.mask_path(name))
    }

    fn terminate(&mut self, process: &Process) -> Result<(), String> {
        Err(format!(
            "pid {} ({}) runs in the initrd, where agents are not ended",
            process.pid, process.name
        ))
    }
}

fn is_masked(path: &Path) -> bool {
    fs::read_link(path).is_ok_and(|target| target == Path::new("/dev/null"))
}

/// Masks a unit the way `systemctl mask` does: a link to /dev/null at
/// `path` in an /etc unit folder. An existing link is replaced; a unit file
/// of the administrator's own is left alone and reported.
fn mask_by_link(path: &Path) -> Result<(), String> {
    if let Ok(metadata) = fs::symlink_metadata(path) {
        if !metadata.file_type().is_symlink() {
            return Err(format!(
                "{} is a unit file of its own, not a link; remove it so the unit can be masked",
                path.display()
            ));
        }
        fs::remove_file(path)
            .map_err(|err| format!("failed to remove {}: {err}", path.display()))?;
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|err| format!("failed to create {}: {err}", parent.display()))?;
    }
    symlink("/dev/null", path).map_err(|err| format!("failed to mask {}: {err}", path.display()))
}

/// Folders that may contain systemd user units, relative to the root.
const USER_UNIT_DIRECTORIES: [&str; 3] = [
    "etc/systemd/user",
    "usr/lib/systemd/user",
    "lib/systemd/user",
];

/// Returns true when the user unit `name` is installed and not masked for
/// every user.
pub fn user_unit_enabled(fs: &RootFs, name: &str) -> bool {
    let installed = USER_UNIT_DIRECTORIES
        .iter()
        .any(|directory| fs.host_path(directory).join(name).exists());
    installed && !is_masked(&fs.host_path("/etc/systemd/user").join(name))
}

/// Masks the user unit `name` for every user, as `systemctl --global mask`
/// does; the running instances are ended as processes.
pub fn mask_user_unit(fs: &RootFs, name: &str) -> Result<(), String> {
    mask_by_link(&fs.host_path("/etc/systemd/user").join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysroot_mask_links_to_dev_null() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let units = dir.path().join("usr/lib/systemd/system");
        fs::create_dir_all(&units).expect("create unit dir");
        fs::write(units.join("spice-vdagentd.socket"), "[Socket]\n").expect("write unit");
        let mut control = SysrootControl::new(dir.path().to_path_buf());

        let before = control.unit("spice-vdagentd.socket").expect("unit");
        control
            .stop_and_mask("spice-vdagentd.socket")
            .expect("mask");
        let after = control.unit("spice-vdagentd.socket").expect("unit");

        assert_eq!(before.map(|unit| unit.is_disabled()), Some(false));
        assert_eq!(after.map(|unit| unit.is_disabled()), Some(true));
        let link = dir.path().join("etc/systemd/system/spice-vdagentd.socket");
        assert_eq!(fs::read_link(link).expect("link"), Path::new("/dev/null"));
        assert_eq!(control.unit("absent.service").expect("unit"), None);
    }

    #[test]
    fn sysroot_override_file_not_replaced() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let units = dir.path().join("etc/systemd/system");
        fs::create_dir_all(&units).expect("create unit dir");
        fs::write(units.join("spice-vdagentd.service"), "[Service]\n").expect("write unit");
        let mut control = SysrootControl::new(dir.path().to_path_buf());

        let err = control
            .stop_and_mask("spice-vdagentd.service")
            .expect_err("own unit file");

        assert!(err.contains("remove it"), "{err}");
        assert_eq!(
            fs::read_to_string(units.join("spice-vdagentd.service")).expect("read"),
            "[Service]\n"
        );
    }

    #[test]
    fn terminate_ends_own_child() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("start sleep");
        let fs = RootFs::host();
        let process = processes::read(&fs, child.id()).expect("read child");

        terminate_process(&fs, &process).expect("terminate");

        let status = child.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
    }
}
