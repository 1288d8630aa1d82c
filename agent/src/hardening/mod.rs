//! Channels between a VM and its host: clipboard agents, which are disabled,
//! and guest agents and shared folders, which are reported.
//!
//! Disabling a clipboard agent covers every way it comes back. Its units
//! are stopped and masked, the socket unit too, because a listening socket
//! starts the daemon again on the next connection. Its processes end, a
//! respawning parent before its child. Its XDG autostart entry is hidden,
//! because the session agent starts again at every login.
//! `serve` repeats the check, because agents can also be started by hand.
//!
//! Guest agents that let the host run commands or copy files
//! (qemu-guest-agent, VBoxService, vmtoolsd, the Hyper-V daemons) and
//! host-shared folders are reported, not disabled: a hypervisor may rely on
//! a guest agent for a clean shutdown, and unmounting a folder could break
//! what uses it. The security notice names them.

pub mod autostart;
pub mod control;
pub mod processes;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use self::control::HostControl;
use self::processes::Process;
use crate::atomic_file;
use crate::rootfs::RootFs;

/// Rule that matches the processes of an agent.
#[derive(Clone, Copy, Debug)]
enum ProcessMatch {
    /// `comm` equals this name.
    Name(&'static str),
    /// `comm` equals the name and one argument equals one of the flags.
    NameWithArgument(&'static str, &'static [&'static str]),
    /// `comm` equals the name and the arguments select the `vmusr` service.
    NameWithVmusr(&'static str),
    /// `comm` equals the name and the arguments do not select `vmusr`.
    NameWithoutVmusr(&'static str),
}

impl ProcessMatch {
    fn matches(self, process: &Process) -> bool {
        match self {
            ProcessMatch::Name(name) => process.name == name,
            ProcessMatch::NameWithArgument(name, flags) => {
                process.name == name && flags.iter().any(|flag| process.has_argument(flag))
            }
            ProcessMatch::NameWithVmusr(name) => process.name == name && runs_vmusr(process),
            ProcessMatch::NameWithoutVmusr(name) => process.name == name && !runs_vmusr(process),
        }
    }
}

/// Returns true when vmtoolsd runs its per-user service: `-n vmusr`,
/// `-nvmusr`, `--name vmusr` or `--name=vmusr`.
fn runs_vmusr(process: &Process) -> bool {
    let arguments = &process.arguments;
    arguments.iter().enumerate().any(|(index, argument)| {
        let next_is_vmusr = arguments.get(index + 1).is_some_and(|next| next == "vmusr");
        argument == "-nvmusr"
            || argument == "--name=vmusr"
            || ((argument == "-n" || argument == "--name") && next_is_vmusr)
    })
}

/// Whether a finding is disabled or only reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Shares the clipboard with the host: disabled.
    ClipboardAgent,
    /// Lets the host run commands or copy files: reported.
    HostChannel,
}

/// One agent that the check looks for.
#[derive(Debug)]
struct AgentSpec {
    /// Short identifier, used in the report.
    id: &'static str,
    description: &'static str,
    category: Category,
    process: ProcessMatch,
    /// Units in the order they are stopped: a socket before its service.
    units: &'static [&'static str],
    /// systemd user units, masked for every user.
    user_units: &'static [&'static str],
    autostart: &'static [&'static str],
}

/// Every agent checked, with the unit, process and autostart names their
/// Debian packages install (spice-vdagent, open-vm-tools(-desktop),
/// virtualbox-guest-utils/-x11, qemu-guest-agent, hyperv-daemons).
const AGENTS: &[AgentSpec] = &[
    AgentSpec {
        id: "spice-vdagentd",
        description: "spice-vdagentd (system daemon)",
        category: Category::ClipboardAgent,
        process: ProcessMatch::Name("spice-vdagentd"),
        units: &["spice-vdagentd.socket", "spice-vdagentd.service"],
        user_units: &[],
        autostart: &[],
    },
    AgentSpec {
        id: "spice-vdagent",
        description: "spice-vdagent (session agent)",
        category: Category::ClipboardAgent,
        process: ProcessMatch::Name("spice-vdagent"),
        units: &[],
        user_units: &["spice-vdagent.service"],
        autostart: &["spice-vdagent.desktop"],
    },
    AgentSpec {
        id: "vmware-user",
        description: "vmware-user (VMware copy and paste)",
        category: Category::ClipboardAgent,
        process: ProcessMatch::Name("vmware-user"),
        units: &[],
        user_units: &[],
        autostart: &["vmware-user.desktop"],
    },
    AgentSpec {
        // comm is cut to 15 bytes: vmware-user-suid-wrapper.
        id: "vmware-user-suid-wrapper",
        description: "vmware-user-suid-wrapper (starts VMware copy and paste)",
        category: Category::ClipboardAgent,
        process: ProcessMatch::Name("vmware-user-sui"),
        units: &[],
        user_units: &[],
        autostart: &["vmware-user.desktop"],
    },
    AgentSpec {
        id: "vmtoolsd-vmusr",
        description: "vmtoolsd -n vmusr (VMware per-user agent: copy and paste, drag and drop)",
        category: Category::ClipboardAgent,
        process: ProcessMatch::NameWithVmusr("vmtoolsd"),
        units: &[],
        user_units: &[],
        autostart: &["vmware-user.desktop"],
    },
    AgentSpec {
        id: "vboxclient-clipboard",
        description: "VBoxClient --clipboard (VirtualBox shared clipboard)",
        category: Category::ClipboardAgent,
        process: ProcessMatch::NameWithArgument("VBoxClient", &["--clipboard"]),
        units: &[],
        user_units: &[],
        autostart: &["vboxclient.desktop"],
    },
    AgentSpec {
        id: "qemu-guest-agent",
        description: "qemu-guest-agent (the host can run commands and read or write files through guest-exec and guest-file-*)",
        category: Category::HostChannel,
        process: ProcessMatch::Name("qemu-ga"),
        units: &["qemu-guest-agent.service"],
        user_units: &[],
        autostart: &[],
    },
    AgentSpec {
        id: "vboxservice",
        description: "VBoxService (VirtualBox guest control: the host can run commands and copy files)",
        category: Category::HostChannel,
        process: ProcessMatch::Name("VBoxService"),
        units: &["virtualbox-guest-utils.service", "vboxadd-service.service"],
        user_units: &[],
        autostart: &[],
    },
    AgentSpec {
        id: "vmtoolsd",
        description: "vmtoolsd (VMware guest operations: the host can run programs and copy files)",
        category: Category::HostChannel,
        process: ProcessMatch::NameWithoutVmusr("vmtoolsd"),
        units: &["open-vm-tools.service", "vmtoolsd.service"],
        user_units: &[],
        autostart: &[],
    },
    AgentSpec {
        id: "hv-kvp-daemon",
        description: "hv_kvp_daemon (Hyper-V key-value exchange with the host)",
        category: Category::HostChannel,
        process: ProcessMatch::Name("hv_kvp_daemon"),
        units: &["hv-kvp-daemon.service", "hyperv-daemons.hv-kvp-daemon.service"],
        user_units: &[],
        autostart: &[],
    },
    AgentSpec {
        id: "hv-fcopy-daemon",
        description: "hv_fcopy_daemon (Hyper-V file copy: the host can write files into the guest)",
        category: Category::HostChannel,
        // comm is cut to 15 bytes: hv_fcopy_uio_daemon.
        process: ProcessMatch::Name("hv_fcopy_daemon"),
        units: &["hv-fcopy-daemon.service", "hyperv-daemons.hv-fcopy-daemon.service"],
        user_units: &[],
        autostart: &[],
    },
    AgentSpec {
        id: "hv-fcopy-uio-daemon",
        description: "hv_fcopy_uio_daemon (Hyper-V file copy: the host can write files into the guest)",
        category: Category::HostChannel,
        process: ProcessMatch::Name("hv_fcopy_uio_da"),
        units: &[],
        user_units: &[],
        autostart: &[],
    },
];

/// File system types of folders a hypervisor shares with its guest.
const SHARED_FOLDER_TYPES: &[&str] = &["9p", "virtiofs", "vboxsf", "vmhgfs", "fuse.vmhgfs-fuse"];

/// An agent found running, installed as a unit, or set to autostart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Identifier of the agent, such as `spice-vdagentd`.
    pub agent: String,
    pub category: Category,
    /// Description for people.
    pub what: String,
    /// Process id, for a running process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Owner of the process, when the account is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// systemd unit or autostart entry, for a finding that is not a process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A host folder mounted in the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFolder {
    pub mount_point: String,
    pub fs_type: String,
    /// Mount source: the share's tag or name.
    pub source: String,
}

/// One thing done to disable an agent, and whether it worked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// Description of the step, such as `stop and mask spice-vdagentd.socket`.
    pub action: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Result of one check: what was found and what was done.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub clipboard_agents: Vec<Finding>,
    pub host_channels: Vec<Finding>,
    pub shared_folders: Vec<SharedFolder>,
    pub actions: Vec<Action>,
}

impl Report {
    /// Adds the findings and actions of a later check that are not in this
    /// report yet, so the report lists everything seen since start.
    pub fn merge(&mut self, later: Report) {
        merge_unique(&mut self.clipboard_agents, later.clipboard_agents);
        merge_unique(&mut self.host_channels, later.host_channels);
        merge_unique(&mut self.shared_folders, later.shared_folders);
        self.actions.extend(later.actions);
        // Bounded, because a stubborn agent adds actions on every check.
        let excess = self.actions.len().saturating_sub(MAX_REPORTED_ACTIONS);
        self.actions.drain(..excess);
    }
}

/// Most actions the cumulative report keeps, the newest ones.
const MAX_REPORTED_ACTIONS: usize = 200;

fn merge_unique<T: PartialEq>(into: &mut Vec<T>, items: Vec<T>) {
    for item in items {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

/// File in the state directory where `early` records what it did, for
/// `serve` to report after switch-root.
pub const REPORT_FILE: &str = "hardening.json";

/// Writes `report` atomically to [`REPORT_FILE`] in `state_dir`.
pub fn write_report(state_dir: &Path, report: &Report) -> anyhow::Result<PathBuf> {
    let path = state_dir.join(REPORT_FILE);
    let mut text = serde_json::to_vec_pretty(report)?;
    text.push(b'\n');
    fs::create_dir_all(state_dir).with_context(|| {
        format!(
            "failed to create the state directory {}",
            state_dir.display()
        )
    })?;
    atomic_file::write(&path, &text, 0o644)
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

/// Reads the report that `early` wrote to `state_dir`.
pub fn read_report(state_dir: &Path) -> anyhow::Result<Report> {
    let path = state_dir.join(REPORT_FILE);
    let text =
        fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("invalid report in {}", path.display()))
}

/// File system views the check reads and writes.
pub struct Target<'a> {
    /// View with `/proc` of the processes to check.
    pub proc_fs: &'a RootFs,
    /// View of the root file system: `/etc`, home directories, and
    /// `/proc/mounts` is read from `proc_fs`.
    pub files_fs: &'a RootFs,
}

/// Finds every agent, disables the clipboard agents and reports the rest.
pub fn check(target: &Target<'_>, control: &mut dyn HostControl) -> Report {
    let processes = processes::list(target.proc_fs);
    let users = autostart::users(target.files_fs);
    let mut report = Report {
        shared_folders: shared_folders(target.proc_fs),
        ..Report::default()
    };

    for spec in AGENTS {
        let running: Vec<&Process> = processes
            .iter()
            .filter(|process| spec.process.matches(process))
            .collect();
        let mut findings: Vec<Finding> = running
            .iter()
            .map(|process| Finding {
                agent: spec.id.to_owned(),
                category: spec.category,
                what: describe(spec, process, &users),
                pid: Some(process.pid),
                user: autostart::user_by_uid(&users, process.uid).map(|user| user.name.clone()),
                source: None,
            })
            .collect();

        let mut units_to_disable = Vec::new();
        for unit in spec.units {
            match control.unit(unit) {
                Ok(Some(info)) => {
                    if !info.is_disabled() {
                        units_to_disable.push(*unit);
                        if running.is_empty() {
                            findings.push(unit_finding(spec, unit));
                        }
                    }
                }
                Ok(None) => {}
                Err(err) => tracing::debug!(unit, error = %err, "unit state unknown"),
            }
        }
        let user_units_to_mask: Vec<&str> = spec
            .user_units
            .iter()
            .copied()
            .filter(|unit| control::user_unit_enabled(target.files_fs, unit))
            .collect();
        if running.is_empty() {
            for unit in &user_units_to_mask {
                findings.push(unit_finding(spec, &format!("user unit {unit}")));
            }
        }
        let autostart_active: Vec<&str> = spec
            .autostart
            .iter()
            .copied()
            .filter(|name| autostart::is_active(target.files_fs, name, &users))
            .collect();
        if running.is_empty() {
            for name in &autostart_active {
                findings.push(Finding {
                    source: Some(format!("{}/{name}", autostart::SYSTEM_AUTOSTART)),
                    ..unit_finding(spec, name)
                });
            }
        }

        match spec.category {
            Category::HostChannel => report.host_channels.extend(findings),
            Category::ClipboardAgent => {
                report.clipboard_agents.extend(findings);
                for unit in units_to_disable {
                    report.actions.push(record(
                        format!("stop and mask {unit}"),
                        control.stop_and_mask(unit),
                    ));
                }
                for unit in user_units_to_mask {
                    report.actions.push(record(
                        format!("mask user unit {unit} for every user"),
                        control::mask_user_unit(target.files_fs, unit),
                    ));
                }
                for name in autostart_active {
                    for result in autostart::hide(target.files_fs, name, &users) {
                        report.actions.push(match result {
                            Ok(done) => record(done, Ok(())),
                            Err(err) => record(format!("hide autostart entry {name}"), Err(err)),
                        });
                    }
                }
                for process in parents_first(&running) {
                    report.actions.push(record(
                        format!("terminate pid {} ({})", process.pid, process.name),
                        control.terminate(process),
                    ));
                }
            }
        }
    }
    report
}

fn unit_finding(spec: &AgentSpec, source: &str) -> Finding {
    Finding {
        agent: spec.id.to_owned(),
        category: spec.category,
        what: spec.description.to_owned(),
        pid: None,
        user: None,
        source: Some(source.to_owned()),
    }
}

fn describe(spec: &AgentSpec, process: &Process, users: &[autostart::User]) -> String {
    match autostart::user_by_uid(users, process.uid) {
        Some(user) if spec.description.ends_with(')') => format!(
            "{}, user {})",
            spec.description.trim_end_matches(')'),
            user.name
        ),
        _ => spec.description.to_owned(),
    }
}

fn record(action: String, result: Result<(), String>) -> Action {
    match &result {
        Ok(()) => tracing::info!(action = %action, "host channel hardening"),
        Err(err) => tracing::warn!(action = %action, error = %err, "host channel hardening failed"),
    }
    Action {
        action,
        ok: result.is_ok(),
        error: result.err(),
    }
}

/// Orders processes so that one whose parent is also in the list comes
/// after that parent: a parent that respawns its child must end first.
fn parents_first<'a>(processes: &[&'a Process]) -> Vec<&'a Process> {
    let depth = |process: &Process| {
        let mut depth = 0;
        let mut parent = process.parent_pid;
        while let Some(next) = processes.iter().find(|candidate| candidate.pid == parent) {
            depth += 1;
            parent = next.parent_pid;
            if depth > processes.len() {
                break;
            }
        }
        depth
    };
    let mut ordered: Vec<&Process> = processes.to_vec();
    ordered.sort_by_key(|process| (depth(process), process.pid));
    ordered
}

/// Lists host-shared folders from `/proc/mounts`.
pub fn shared_folders(fs: &RootFs) -> Vec<SharedFolder> {
    let Ok(text) = fs.read_to_string("/proc/mounts") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (source, mount_point, fs_type) = (fields.first()?, fields.get(1)?, fields.get(2)?);
            SHARED_FOLDER_TYPES.contains(fs_type).then(|| SharedFolder {
                mount_point: unescape_mount_field(mount_point),
                fs_type: (*fs_type).to_owned(),
                source: unescape_mount_field(source),
            })
        })
        .collect()
}

/// Decodes the octal escapes (`\040` for a space) that `/proc/mounts`
/// uses for whitespace and backslashes in its fields.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[index], octal) {
            (b'\\', Some(value)) => {
                decoded.push(value);
                index += 4;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, parent_pid: u32, name: &str, arguments: &[&str]) -> Process {
        Process {
            pid,
            parent_pid,
            uid: 0,
            name: name.to_owned(),
            arguments: arguments
                .iter()
                .map(|argument| argument.to_string())
                .collect(),
        }
    }

    #[test]
    fn vmusr_forms_recognised() {
        for arguments in [
            &["vmtoolsd", "-n", "vmusr"][..],
            &["vmtoolsd", "-nvmusr"],
            &["vmtoolsd", "--name=vmusr"],
            &["vmtoolsd", "--name", "vmusr"],
        ] {
            assert!(
                runs_vmusr(&process(5, 1, "vmtoolsd", arguments)),
                "{arguments:?}"
            );
        }
        assert!(!runs_vmusr(&process(5, 1, "vmtoolsd", &["vmtoolsd"])));
        assert!(!runs_vmusr(&process(
            5,
            1,
            "vmtoolsd",
            &["vmtoolsd", "-n", "vmsvc"]
        )));
    }

    #[test]
    fn parent_ordered_before_child() {
        let child = process(30, 20, "VBoxClient", &["--clipboard"]);
        let parent = process(20, 1, "VBoxClient", &["--clipboard"]);
        let other = process(10, 1, "VBoxClient", &["--clipboard"]);

        let ordered = parents_first(&[&child, &parent, &other]);

        let pids: Vec<u32> = ordered.iter().map(|process| process.pid).collect();
        assert_eq!(pids, [10, 20, 30]);
    }

    #[test]
    fn mount_fields_unescaped() {
        assert_eq!(
            unescape_mount_field("/mnt/host\\040share"),
            "/mnt/host share"
        );
        assert_eq!(unescape_mount_field("plain"), "plain");
        assert_eq!(unescape_mount_field("end\\"), "end\\");
    }

    #[test]
    fn merge_keeps_unique_findings() {
        let finding = Finding {
            agent: "qemu-guest-agent".to_owned(),
            category: Category::HostChannel,
            what: "qemu-ga".to_owned(),
            pid: Some(640),
            user: None,
            source: None,
        };
        let mut report = Report {
            host_channels: vec![finding.clone()],
            ..Report::default()
        };

        report.merge(Report {
            host_channels: vec![finding],
            actions: vec![record("x".to_owned(), Ok(()))],
            ..Report::default()
        });

        assert_eq!(report.host_channels.len(), 1);
        assert_eq!(report.actions.len(), 1);
    }
}
