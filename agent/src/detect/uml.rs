//! User-Mode Linux probe. UML runs as a process inside another system,
//! so it is checked before the probes that would see the outer hypervisor.

use super::{Findings, Vm};
use crate::rootfs::RootFs;

const PROBE: &str = "uml";
const CPUINFO: &str = "/proc/cpuinfo";

/// Returns `uml` when the first `vendor_id` line of `/proc/cpuinfo` names
/// User Mode Linux.
pub fn detect(fs: &RootFs, findings: &mut Findings) -> Vm {
    let cpuinfo = match fs.read_to_string(CPUINFO) {
        Ok(text) => text,
        Err(err) => {
            if err.kind() != std::io::ErrorKind::NotFound {
                findings.read_failed(PROBE, CPUINFO, &err);
            }
            return Vm::None;
        }
    };

    let vendor = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("vendor_id\t: "));
    match vendor {
        Some(vendor) if vendor.starts_with("User Mode Linux") => {
            findings.note(PROBE, CPUINFO, vendor, "uml");
            Vm::Uml
        }
        _ => Vm::None,
    }
}
