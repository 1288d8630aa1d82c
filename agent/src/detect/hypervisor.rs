//! Probe of `/sys/hypervisor/type`, which the kernel fills in for Xen and
//! for a few other hypervisors.

use super::{read_line_if_readable, Findings, Vm};
use crate::rootfs::RootFs;

const PROBE: &str = "sys-hypervisor";
const TYPE_FILE: &str = "/sys/hypervisor/type";

/// Returns `xen` for Xen, `vm-other` for any other type, and `none` when the
/// file is absent or unreadable.
pub fn detect(fs: &RootFs, findings: &mut Findings) -> Vm {
    let Some(kind) = read_line_if_readable(fs, findings, PROBE, TYPE_FILE) else {
        return Vm::None;
    };

    let vm = if kind == "xen" { Vm::Xen } else { Vm::VmOther };
    findings.note(PROBE, TYPE_FILE, &kind, vm.as_str());
    vm
}
