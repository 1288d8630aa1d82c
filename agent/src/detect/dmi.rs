//! DMI (SMBIOS) probe: vendor strings in `/sys/class/dmi/id` and the
//! "system is a virtual machine" bit of the SMBIOS BIOS table.

use std::io;

use super::{read_line_if_readable, Findings, Vm};
use crate::rootfs::RootFs;

const PROBE: &str = "dmi";

/// DMI attributes in the order they are checked. `product_name` comes
/// before `sys_vendor` so that a `KVM` product name wins over a `QEMU`
/// vendor, and `product_version` is last because only Hyper-V puts its
/// name there.
const VENDOR_FILES: &[&str] = &[
    "/sys/class/dmi/id/product_name",
    "/sys/class/dmi/id/sys_vendor",
    "/sys/class/dmi/id/board_vendor",
    "/sys/class/dmi/id/bios_vendor",
    "/sys/class/dmi/id/product_version",
];

/// Prefixes of DMI strings and the hypervisor each one names, in
/// systemd v256 `src/basic/virt.c` order. The first match wins.
const VENDOR_PREFIXES: &[(&str, Vm)] = &[
    ("KVM", Vm::Kvm),
    // OpenStack and KubeVirt guests on architectures without CPUID.
    ("OpenStack", Vm::Kvm),
    ("KubeVirt", Vm::Kvm),
    ("Amazon EC2", Vm::Amazon),
    ("QEMU", Vm::Qemu),
    ("VMware", Vm::Vmware),
    ("VMW", Vm::Vmware),
    ("innotek GmbH", Vm::Oracle),
    ("VirtualBox", Vm::Oracle),
    // VirtualBox guests that copy the host's other DMI strings keep this
    // board vendor.
    ("Oracle Corporation", Vm::Oracle),
    ("Xen", Vm::Xen),
    ("Bochs", Vm::Bochs),
    ("Parallels", Vm::Parallels),
    ("BHYVE", Vm::Bhyve),
    ("Hyper-V", Vm::Microsoft),
    ("Apple Virtualization", Vm::Apple),
    ("Google Compute Engine", Vm::Google),
];

/// SMBIOS type 0 (BIOS information) structure as the kernel exports it.
const SMBIOS_BIOS_TABLE: &str = "/sys/firmware/dmi/entries/0-0/raw";

/// Offset of BIOS Characteristics Extension Byte 2 in the type 0 structure.
/// Bit 4 of that byte marks a virtual machine, as systemd v256 reads it.
const EXTENSION_BYTE_2: usize = 0x13;
const VIRTUAL_MACHINE_BIT: u8 = 1 << 4;

/// State of the SMBIOS virtual machine bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SmbiosVmBit {
    Set,
    Unset,
    /// The table could not be read or is too short to have the bit.
    Unknown,
}

/// True when the DMI probe runs on this architecture. systemd v256 reads
/// DMI only where firmware provides it to Linux this way.
pub fn applies_to(arch: &str) -> bool {
    matches!(arch, "x86_64" | "x86" | "arm" | "aarch64" | "loongarch64")
}

/// Runs the DMI probe, including the Amazon EC2 bare-metal rules.
pub fn detect(fs: &RootFs, findings: &mut Findings) -> Vm {
    let vendor = detect_vendor(fs, findings);

    if vendor == Vm::Amazon {
        return resolve_amazon(fs, findings);
    }

    if vendor == Vm::None && read_smbios_vm_bit(fs, findings) == SmbiosVmBit::Set {
        findings.note(
            PROBE,
            SMBIOS_BIOS_TABLE,
            "virtual machine bit set",
            "vm-other, because no vendor string names the hypervisor",
        );
        return Vm::VmOther;
    }

    vendor
}

fn detect_vendor(fs: &RootFs, findings: &mut Findings) -> Vm {
    for path in VENDOR_FILES {
        let Some(value) = read_line_if_readable(fs, findings, PROBE, path) else {
            continue;
        };
        let matched = VENDOR_PREFIXES
            .iter()
            .find(|(prefix, _)| value.starts_with(prefix));
        if let Some((prefix, vm)) = matched {
            findings.note(
                PROBE,
                path,
                &value,
                format!("starts with {prefix:?}, so {vm}"),
            );
            return *vm;
        }
    }
    Vm::None
}

/// Tells an EC2 virtual machine from an EC2 bare-metal instance, whose DMI
/// vendor strings are the same.
fn resolve_amazon(fs: &RootFs, findings: &mut Findings) -> Vm {
    match read_smbios_vm_bit(fs, findings) {
        SmbiosVmBit::Set => {
            findings.note(
                PROBE,
                SMBIOS_BIOS_TABLE,
                "virtual machine bit set",
                "amazon",
            );
            Vm::Amazon
        }
        SmbiosVmBit::Unset => {
            findings.note(
                PROBE,
                SMBIOS_BIOS_TABLE,
                "virtual machine bit clear",
                "bare metal",
            );
            Vm::None
        }
        SmbiosVmBit::Unknown => resolve_amazon_by_product_name(fs, findings),
    }
}

/// Falls back to the instance type in `product_name`, which unprivileged
/// users can read: bare-metal types end in `.metal` or `.metal-<size>`.
fn resolve_amazon_by_product_name(fs: &RootFs, findings: &mut Findings) -> Vm {
    const PRODUCT_NAME: &str = "/sys/class/dmi/id/product_name";

    let product = match fs.read_first_line(PRODUCT_NAME) {
        Ok(product) => product,
        Err(err) => {
            // EC2 runs far more VMs than bare-metal instances, so an
            // unknown instance type counts as a VM.
            if err.kind() != io::ErrorKind::NotFound {
                findings.read_failed(PROBE, PRODUCT_NAME, &err);
            }
            findings.note(
                PROBE,
                PRODUCT_NAME,
                "unavailable",
                "amazon, the more common EC2 case",
            );
            return Vm::Amazon;
        }
    };

    if is_metal_instance_type(&product) {
        findings.note(
            PROBE,
            PRODUCT_NAME,
            &product,
            "EC2 bare-metal instance type, so none",
        );
        Vm::None
    } else {
        findings.note(
            PROBE,
            PRODUCT_NAME,
            &product,
            "EC2 virtual instance type, so amazon",
        );
        Vm::Amazon
    }
}

/// True for `c5.metal` and `c7i.metal-24xl`, false for `c5.large` and
/// for names that only contain `.metal` in the middle of a word.
fn is_metal_instance_type(product: &str) -> bool {
    let Some(index) = product.find(".metal") else {
        return false;
    };
    let rest = &product[index + ".metal".len()..];
    rest.is_empty() || rest.starts_with('-')
}

fn read_smbios_vm_bit(fs: &RootFs, findings: &mut Findings) -> SmbiosVmBit {
    let table = match fs.read(SMBIOS_BIOS_TABLE) {
        Ok(table) => table,
        Err(err) => {
            // The raw table is readable by root only, so unprivileged runs
            // take this path and fall back to the vendor strings.
            if err.kind() != io::ErrorKind::NotFound {
                findings.read_failed(PROBE, SMBIOS_BIOS_TABLE, &err);
            }
            return SmbiosVmBit::Unknown;
        }
    };

    // Byte 1 is the formatted length of the structure. A structure shorter
    // than 0x14 bytes has no extension byte 2.
    let declared_length = table.get(1).copied().unwrap_or(0);
    let Some(&byte) = table.get(EXTENSION_BYTE_2) else {
        return SmbiosVmBit::Unknown;
    };
    if usize::from(declared_length) <= EXTENSION_BYTE_2 {
        return SmbiosVmBit::Unknown;
    }

    if byte & VIRTUAL_MACHINE_BIT != 0 {
        SmbiosVmBit::Set
    } else {
        SmbiosVmBit::Unset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metal_instance_types() {
        assert!(is_metal_instance_type("c5.metal"));
        assert!(is_metal_instance_type("c7i.metal-24xl"));
        assert!(is_metal_instance_type("m7i.metal-48xl"));
        assert!(!is_metal_instance_type("c5.large"));
        assert!(!is_metal_instance_type("x.metallic"));
        assert!(!is_metal_instance_type(""));
    }
}
