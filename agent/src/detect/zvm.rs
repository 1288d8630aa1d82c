//! IBM Z probe: `/proc/sysinfo` names the control program of the LPAR guest.

use super::{Findings, Vm};
use crate::rootfs::RootFs;

const PROBE: &str = "zvm";
const SYSINFO: &str = "/proc/sysinfo";
const FIELD: &str = "VM00 Control Program";

/// True when the probe runs on this architecture.
pub fn applies_to(arch: &str) -> bool {
    arch == "s390x"
}

/// Returns `zvm` for z/VM, `kvm` for any other control program, and `none`
/// when no control program is listed.
pub fn detect(fs: &RootFs, findings: &mut Findings) -> Vm {
    let sysinfo = match fs.read_to_string(SYSINFO) {
        Ok(text) => text,
        Err(err) => {
            if err.kind() != std::io::ErrorKind::NotFound {
                findings.read_failed(PROBE, SYSINFO, &err);
            }
            return Vm::None;
        }
    };

    let program = sysinfo
        .lines()
        .find_map(|line| line.strip_prefix(FIELD)?.trim_start().strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next());
    let Some(program) = program else {
        return Vm::None;
    };

    // KVM on IBM Z names itself here, for example as "KVM/Linux".
    let vm = if program == "z/VM" { Vm::Zvm } else { Vm::Kvm };
    findings.note(PROBE, SYSINFO, program, vm.as_str());
    vm
}
