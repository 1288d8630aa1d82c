//! Detection of virtualization and of GPUs passed through to a VM.
//!
//! Every probe reads through a [`RootFs`], so detection runs the same against
//! `/`, a test fixture or a replayed support bundle. Probes never fail the
//! whole detection: a file that cannot be read is listed in
//! [`Detection::read_errors`] and the probe continues as if it had found nothing.

pub mod container;
pub mod cpuid;
pub mod device_tree;
pub mod dmi;
pub mod gpu;
pub mod hypervisor;
pub mod ids;
pub mod uml;
pub mod vm;
pub mod xen;
pub mod zvm;

use std::io;

use serde::{Deserialize, Serialize};

use crate::rootfs::{describe_error, RootFs};

pub use cpuid::CpuidInfo;
pub use gpu::GpuReport;
pub use ids::{Container, Vm};

/// Result of one detection run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    /// Hypervisor identifier, as `systemd-detect-virt --vm` prints it.
    pub vm: Vm,
    /// Container identifier, as `systemd-detect-virt --container` prints it.
    pub container: Container,
    /// True when either a hypervisor or a container manager was found.
    pub is_virtualized: bool,
    /// Output of plain `systemd-detect-virt`, which is the container when
    /// there is one and otherwise the hypervisor.
    pub virtualization: String,
    /// Probe results that decided the verdict or that a reader may need to
    /// check it.
    pub evidence: Vec<Evidence>,
    /// Files that exist but could not be read, and so were skipped.
    pub read_errors: Vec<ReadError>,
    /// PCI display controllers and the GPU sets derived from them.
    pub gpu: GpuReport,
}

impl Detection {
    /// True when a hypervisor was found.
    pub fn is_vm(&self) -> bool {
        self.vm != Vm::None
    }

    /// True when a GPU passed through to this VM has a driver bound, so
    /// the system can run work on it. Always false on bare metal.
    pub fn gpu_passthrough_usable(&self) -> bool {
        // In a VM every real GPU is a passed-through one, so the usable
        // GPUs are usable passed-through GPUs.
        self.is_vm() && !self.gpu.usable_gpus.is_empty()
    }
}

/// One probe result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Probe name, such as `dmi` or `cpuid`.
    pub probe: String,
    /// File path or CPUID leaf that was read.
    pub source: String,
    /// Value that was read.
    pub observed: String,
    /// Conclusion the probe drew from the value.
    pub conclusion: String,
}

/// A file that exists but could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadError {
    /// Probe that tried to read the file.
    pub probe: String,
    /// Absolute path as seen by the probe.
    pub path: String,
    /// Errno name and description.
    pub error: String,
}

/// Evidence and read errors collected while the probes run.
#[derive(Debug, Default)]
pub struct Findings {
    pub evidence: Vec<Evidence>,
    pub read_errors: Vec<ReadError>,
}

impl Findings {
    /// Records a probe result.
    pub fn note(
        &mut self,
        probe: &str,
        source: &str,
        observed: &str,
        conclusion: impl Into<String>,
    ) {
        self.evidence.push(Evidence {
            probe: probe.to_owned(),
            source: source.to_owned(),
            observed: observed.to_owned(),
            conclusion: conclusion.into(),
        });
    }

    /// Records a file that could not be read.
    pub fn read_failed(&mut self, probe: &str, path: &str, err: &io::Error) {
        self.read_errors.push(ReadError {
            probe: probe.to_owned(),
            path: path.to_owned(),
            error: describe_error(err),
        });
    }
}

/// Reads the first line of a file, or returns `None` when the file is
/// absent or unreadable. Read errors other than `ENOENT` are recorded.
pub(crate) fn read_line_if_readable(
    fs: &RootFs,
    findings: &mut Findings,
    probe: &str,
    path: &str,
) -> Option<String> {
    match fs.read_first_line(path) {
        Ok(line) => Some(line),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => {
            findings.read_failed(probe, path, &err);
            None
        }
    }
}

/// Checks a path for existence, treating errors other than `ENOENT` as
/// absence after recording them.
pub(crate) fn exists_if_readable(
    fs: &RootFs,
    findings: &mut Findings,
    probe: &str,
    path: &str,
) -> bool {
    match fs.exists(path) {
        Ok(exists) => exists,
        Err(err) => {
            findings.read_failed(probe, path, &err);
            false
        }
    }
}

/// Runs every probe: containers, then the hypervisor, then PCI GPUs.
pub fn run(fs: &RootFs, cpuid: &CpuidInfo) -> Detection {
    let mut findings = Findings::default();

    let container = container::detect(fs, &mut findings);
    let vm = vm::detect(fs, cpuid, &mut findings);
    let gpu = gpu::scan(fs, vm != Vm::None, &mut findings);

    let virtualization = if container != Container::None {
        container.as_str()
    } else {
        vm.as_str()
    };

    Detection {
        vm,
        container,
        is_virtualized: vm != Vm::None || container != Container::None,
        virtualization: virtualization.to_owned(),
        evidence: findings.evidence,
        read_errors: findings.read_errors,
        gpu,
    }
}
