//! Hypervisor detection: runs the probes in the order of systemd v256
//! `detect_vm()` in `src/basic/virt.c`, so the result is the identifier
//! `systemd-detect-virt --vm` prints on the same system.
//!
//! The order matters because hypervisors imitate each other. Parallels and
//! VirtualBox present KVM's CPUID signature, EC2 bare-metal instances carry
//! the same DMI strings as EC2 VMs, and QEMU presents Hyper-V's signature
//! when it offers Hyper-V enlightenments.

use super::cpuid::{self, CpuidVerdict};
use super::xen::{self, XenDomain};
use super::{device_tree, dmi, hypervisor, uml, zvm, CpuidInfo, Findings, Vm};
use crate::rootfs::RootFs;

/// DMI results that win over CPUID, because these vendors run on KVM or
/// imitate its signature, or (Xen) hide behind Hyper-V's signature.
const DMI_BEFORE_CPUID: &[Vm] = &[Vm::Oracle, Vm::Xen, Vm::Amazon, Vm::Parallels, Vm::Google];

/// Hints that only decide the result when nothing names the hypervisor.
#[derive(Default)]
struct Fallback {
    /// CPUID returned Hyper-V's signature, which QEMU also presents.
    hyperv: bool,
    /// Some probe saw a hypervisor without a name.
    other: bool,
}

impl Fallback {
    fn resolve(&self, found: Vm) -> Vm {
        match found {
            Vm::None if self.hyperv => Vm::Microsoft,
            Vm::None if self.other => Vm::VmOther,
            found => found,
        }
    }
}

/// Runs the hypervisor probes and returns the first decisive result.
pub fn detect(fs: &RootFs, cpuid_info: &CpuidInfo, findings: &mut Findings) -> Vm {
    let arch = cpuid_info.arch.as_str();
    let mut fallback = Fallback::default();

    // 1. DMI vendors that imitate other hypervisors.
    let dmi = if dmi::applies_to(arch) {
        dmi::detect(fs, findings)
    } else {
        Vm::None
    };
    if DMI_BEFORE_CPUID.contains(&dmi) {
        return dmi;
    }

    // 2. User-Mode Linux runs nested inside other systems.
    let found = uml::detect(fs, findings);
    if found != Vm::None {
        return found;
    }

    // 3. Xen PV guests do not override CPUID when nested in another
    // hypervisor. A dom0 is the host, but it may itself run nested in a
    // hypervisor that CPUID names, so the verdict waits for CPUID.
    let xen_domain = xen::detect(fs, findings);
    if xen_domain == XenDomain::DomU {
        return Vm::Xen;
    }

    // 4. CPUID names the hypervisor even where DMI strings are overwritten.
    match cpuid::detect(cpuid_info, findings) {
        CpuidVerdict::Found(Vm::Microsoft) => fallback.hyperv = true,
        CpuidVerdict::Found(Vm::VmOther) => fallback.other = true,
        CpuidVerdict::Found(vm) => return vm,
        CpuidVerdict::None => {}
    }

    if xen_domain == XenDomain::Dom0 {
        return fallback.resolve(Vm::None);
    }

    // 5. The remaining DMI vendors.
    match dmi {
        Vm::None => {}
        Vm::VmOther => fallback.other = true,
        vm => return vm,
    }

    // 6. The kernel's hypervisor type.
    match hypervisor::detect(fs, findings) {
        Vm::None => {}
        Vm::VmOther => fallback.other = true,
        vm => return vm,
    }

    // 7. Device tree, on architectures without CPUID or DMI.
    if device_tree::applies_to(arch) {
        match device_tree::detect(fs, findings) {
            Vm::None => {}
            Vm::VmOther => fallback.other = true,
            vm => return vm,
        }
    }

    // 8. IBM Z.
    let found = if zvm::applies_to(arch) {
        zvm::detect(fs, findings)
    } else {
        Vm::None
    };

    fallback.resolve(found)
}
