//! Processes as `/proc` describes them, read through a [`RootFs`].

use crate::rootfs::RootFs;

/// One process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub parent_pid: u32,
    /// Real user id.
    pub uid: u32,
    /// Name from `/proc/PID/comm`: the executable's or script's file name,
    /// cut to 15 bytes by the kernel.
    pub name: String,
    /// Arguments from `/proc/PID/cmdline`, the program included.
    pub arguments: Vec<String>,
}

impl Process {
    /// Returns true when any argument equals `flag`.
    pub fn has_argument(&self, flag: &str) -> bool {
        self.arguments.iter().any(|argument| argument == flag)
    }
}

/// Lists the running processes under `/proc`. A process that exits while
/// it is being read is left out, and so is a zombie, which has exited and
/// only waits for its parent to collect its status.
pub fn list(fs: &RootFs) -> Vec<Process> {
    let Ok(entries) = fs.read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| entry.parse::<u32>().ok())
        .filter(|pid| !is_zombie(fs, *pid))
        .filter_map(|pid| read(fs, pid))
        .collect()
}

fn is_zombie(fs: &RootFs, pid: u32) -> bool {
    fs.read_to_string(&format!("/proc/{pid}/status"))
        .is_ok_and(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("State:"))
                .is_some_and(|state| state.trim_start().starts_with('Z'))
        })
}

/// Reads one process, or `None` when it is gone or unreadable.
pub fn read(fs: &RootFs, pid: u32) -> Option<Process> {
    let name = fs.read_first_line(&format!("/proc/{pid}/comm")).ok()?;
    let status = fs.read_to_string(&format!("/proc/{pid}/status")).ok()?;
    let cmdline = fs.read(&format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<u32>().ok())
    };
    Some(Process {
        pid,
        parent_pid: field("PPid:").unwrap_or(0),
        uid: field("Uid:").unwrap_or(0),
        name,
        arguments: split_cmdline(&cmdline),
    })
}

/// Splits a NUL-separated `cmdline`. A file saved with spaces in place of
/// NULs, as in test fixtures, is split on whitespace.
fn split_cmdline(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    if text.contains('\0') {
        text.split('\0')
            .filter(|argument| !argument.is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        text.split_whitespace().map(str::to_owned).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_split_on_nul_or_spaces() {
        assert_eq!(
            split_cmdline(b"/usr/bin/vmtoolsd\0-n\0vmusr\0"),
            ["/usr/bin/vmtoolsd", "-n", "vmusr"]
        );
        assert_eq!(
            split_cmdline(b"/usr/bin/qemu-ga --method=virtio-serial "),
            ["/usr/bin/qemu-ga", "--method=virtio-serial"]
        );
    }
}
