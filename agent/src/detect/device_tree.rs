//! Device-tree probe for architectures that boot with a flattened device
//! tree (ARM, POWER, RISC-V), where there is no CPUID to ask.

use std::io;

use super::{exists_if_readable, Findings, Vm};
use crate::rootfs::RootFs;

const PROBE: &str = "device-tree";
const HYPERVISOR_COMPATIBLE: &str = "/proc/device-tree/hypervisor/compatible";
const DEVICE_TREE: &str = "/proc/device-tree";
const ROOT_COMPATIBLE: &str = "/proc/device-tree/compatible";

/// True when the probe runs on this architecture.
pub fn applies_to(arch: &str) -> bool {
    matches!(
        arch,
        "arm" | "aarch64" | "powerpc" | "powerpc64" | "riscv32" | "riscv64"
    )
}

/// Reads the hypervisor node first. Without one, it looks for PowerVM's
/// partition properties and for QEMU's firmware configuration device.
pub fn detect(fs: &RootFs, findings: &mut Findings) -> Vm {
    match fs.read_first_line(HYPERVISOR_COMPATIBLE) {
        Ok(compatible) => {
            let vm = from_hypervisor_compatible(&compatible);
            findings.note(PROBE, HYPERVISOR_COMPATIBLE, &compatible, vm.as_str());
            vm
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            detect_without_hypervisor_node(fs, findings)
        }
        Err(err) => {
            findings.read_failed(PROBE, HYPERVISOR_COMPATIBLE, &err);
            Vm::None
        }
    }
}

fn from_hypervisor_compatible(compatible: &str) -> Vm {
    if compatible == "linux,kvm" {
        Vm::Kvm
    } else if compatible.contains("xen") {
        Vm::Xen
    } else if compatible.contains("vmware") {
        Vm::Vmware
    } else {
        Vm::VmOther
    }
}

fn detect_without_hypervisor_node(fs: &RootFs, findings: &mut Findings) -> Vm {
    // A PowerVM LPAR managed by an HMC has both properties. QEMU's pseries
    // machine also sets the partition name, but it has a graphics node.
    let partition = exists_if_readable(fs, findings, PROBE, "/proc/device-tree/ibm,partition-name");
    let hmc_managed = exists_if_readable(fs, findings, PROBE, "/proc/device-tree/hmc-managed?");
    let qemu_graphics = exists_if_readable(
        fs,
        findings,
        PROBE,
        "/proc/device-tree/chosen/qemu,graphic-width",
    );
    if partition && hmc_managed && !qemu_graphics {
        findings.note(
            PROBE,
            DEVICE_TREE,
            "ibm,partition-name and hmc-managed? present",
            "powervm",
        );
        return Vm::Powervm;
    }

    let entries = match fs.read_dir(DEVICE_TREE) {
        Ok(entries) => entries,
        Err(err) => {
            if err.kind() != io::ErrorKind::NotFound {
                findings.read_failed(PROBE, DEVICE_TREE, &err);
            }
            return Vm::None;
        }
    };
    if let Some(entry) = entries.iter().find(|name| name.contains("fw-cfg")) {
        findings.note(
            PROBE,
            DEVICE_TREE,
            entry,
            "QEMU firmware configuration node, so qemu",
        );
        return Vm::Qemu;
    }

    match fs.read_first_line(ROOT_COMPATIBLE) {
        Ok(compatible) if compatible == "qemu,pseries" => {
            findings.note(PROBE, ROOT_COMPATIBLE, &compatible, "qemu");
            Vm::Qemu
        }
        Ok(_) => Vm::None,
        Err(err) => {
            if err.kind() != io::ErrorKind::NotFound {
                findings.read_failed(PROBE, ROOT_COMPATIBLE, &err);
            }
            Vm::None
        }
    }
}
