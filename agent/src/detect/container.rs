//! Container detection, in the order of systemd v256 `detect_container()`.
//!
//! Not covered: the case where this process is PID 1 (the agent never is),
//! and the cgroup-namespace check from which systemd concludes
//! `container-other`, because it needs `statfs()` on the live cgroup mount.

use std::io;

use super::{exists_if_readable, read_line_if_readable, Container, Findings};
use crate::rootfs::RootFs;

const PROBE: &str = "container";
const OSRELEASE: &str = "/proc/sys/kernel/osrelease";

/// Marker files that container managers create, checked in this order.
/// Docker's marker is last, because `/.dockerenv` can end up in images that
/// other managers run.
const MARKER_FILES: &[(&str, Container)] = &[
    ("/run/.containerenv", Container::Podman),
    ("/.dockerenv", Container::Docker),
];

/// Runs the container probes and returns the first decisive result.
pub fn detect(fs: &RootFs, findings: &mut Findings) -> Container {
    // OpenVZ: /proc/vz exists inside containers and on the host, and
    // /proc/bc only on the host.
    if exists_if_readable(fs, findings, PROBE, "/proc/vz")
        && !exists_if_readable(fs, findings, PROBE, "/proc/bc")
    {
        findings.note(PROBE, "/proc/vz", "exists without /proc/bc", "openvz");
        return Container::Openvz;
    }

    // WSL's documented marker. The match is case-sensitive, because Azure
    // and other cloud kernels carry a lowercase "microsoft" in their
    // release string too.
    if let Some(release) = read_line_if_readable(fs, findings, PROBE, OSRELEASE) {
        if release.contains("Microsoft") || release.contains("WSL") {
            findings.note(
                PROBE,
                OSRELEASE,
                &release,
                "contains \"Microsoft\" or \"WSL\", so wsl",
            );
            return Container::Wsl;
        }
    }

    if let Some(container) = detect_proot(fs, findings) {
        return container;
    }

    // Container managers that follow the container interface write their
    // name here or into PID 1's environment.
    for path in ["/run/host/container-manager", "/run/systemd/container"] {
        if let Some(name) = read_line_if_readable(fs, findings, PROBE, path) {
            if !name.is_empty() {
                return from_manager_name(fs, findings, path, &name);
            }
        }
    }
    match fs.read_env_var("/proc/1/environ", "container") {
        // An empty value means that PID 1 runs outside any container.
        Ok(Some(name)) if name.is_empty() => return Container::None,
        Ok(Some(name)) => return from_manager_name(fs, findings, "/proc/1/environ", &name),
        Ok(None) => {}
        // Reading another process's environment needs CAP_SYS_PTRACE, so
        // this fails for unprivileged runs.
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => findings.read_failed(PROBE, "/proc/1/environ", &err),
    }

    detect_marker_files(fs, findings).unwrap_or(Container::None)
}

/// proot runs programs under ptrace without namespaces, so its tracer is
/// this process's tracer.
fn detect_proot(fs: &RootFs, findings: &mut Findings) -> Option<Container> {
    let status = fs.read_to_string("/proc/self/status").ok()?;
    let tracer = status
        .lines()
        .find_map(|line| line.strip_prefix("TracerPid:"))?
        .trim();
    if tracer == "0" || tracer.parse::<u32>().is_err() {
        return None;
    }

    let comm_path = format!("/proc/{tracer}/comm");
    let comm = read_line_if_readable(fs, findings, PROBE, &comm_path)?;
    if comm.starts_with("proot") {
        findings.note(PROBE, &comm_path, &comm, "proot");
        return Some(Container::Proot);
    }
    None
}

fn detect_marker_files(fs: &RootFs, findings: &mut Findings) -> Option<Container> {
    for (path, container) in MARKER_FILES {
        if exists_if_readable(fs, findings, PROBE, path) {
            findings.note(PROBE, path, "exists", container.as_str());
            return Some(*container);
        }
    }
    None
}

fn from_manager_name(fs: &RootFs, findings: &mut Findings, source: &str, name: &str) -> Container {
    // Some images hard-code container=oci, which names a format, not a
    // manager, so the marker files decide.
    let container = if name == "oci" {
        detect_marker_files(fs, findings).unwrap_or(Container::ContainerOther)
    } else {
        Container::from_manager_name(name).unwrap_or(Container::ContainerOther)
    };
    findings.note(PROBE, source, name, container.as_str());
    container
}
