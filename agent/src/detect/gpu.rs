//! PCI GPU scan: which display controllers are real GPUs, which of those
//! have a driver bound, and which are display devices that a hypervisor
//! emulates.
//!
//! Every decision rests on the PCI class, the vendor and the bound driver.
//! Device IDs are never consulted, because every new GPU has a new one.

use std::io;

use serde::{Deserialize, Serialize};

use super::Findings;
use crate::rootfs::RootFs;

const PROBE: &str = "pci";
const PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// PCI base class of display controllers.
const CLASS_DISPLAY: u32 = 0x03;
/// Display subclasses that GPUs use: VGA-compatible (0x00), 3D controller
/// (0x02, most data-centre GPUs) and other display controller (0x80).
const GPU_SUBCLASSES: &[u32] = &[0x00, 0x02, 0x80];

/// Vendors whose display devices only exist as hypervisor emulations.
const EMULATED_DISPLAY_VENDORS: &[(u16, &str)] = &[
    (0x1234, "QEMU/Bochs standard VGA"),
    (0x1af4, "Red Hat virtio"),
    (0x1b36, "Red Hat QEMU"),
    (0x15ad, "VMware SVGA"),
    (0x80ee, "VirtualBox"),
    // QEMU's cirrus-vga is the one Cirrus Logic display still in use.
    (0x1013, "Cirrus Logic (QEMU cirrus-vga)"),
    (0x1414, "Microsoft Hyper-V"),
    (0x1ab8, "Parallels"),
];

/// Vendors whose display controllers only drive a management console,
/// such as the VGA output of a server's baseboard management controller.
const CONSOLE_DISPLAY_VENDORS: &[(u16, &str)] = &[(0x1a03, "ASPEED BMC"), (0x102b, "Matrox")];

/// Drivers that claim a device only to hand it on to a VM or keep it idle,
/// so no GPU work can run on it in this system.
const HOLDING_DRIVERS: &[&str] = &["vfio-pci", "pci-stub"];

/// Classification of a PCI device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A real GPU.
    Gpu,
    /// A display device emulated by the hypervisor.
    EmulatedDisplay,
    /// Anything else, including a GPU's audio function.
    NotGpu,
}

/// One PCI device and the reason for its classification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciDevice {
    /// PCI address such as `0000:07:00.0`.
    pub address: String,
    /// Vendor ID as sysfs prints it (`0x10de`), or `None` when unreadable.
    pub vendor: Option<String>,
    /// Class code as sysfs prints it (`0x030200`), or `None` when unreadable.
    pub class: Option<String>,
    /// Name of the bound driver, or `None` when no driver is bound.
    pub driver: Option<String>,
    pub kind: DeviceKind,
    pub reason: String,
}

/// Result of the PCI GPU scan. Every list contains PCI addresses, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuReport {
    /// Every real GPU, on bare metal or in a VM.
    pub gpus: Vec<String>,
    /// Real GPUs seen inside a VM, which the host passed through. Empty on
    /// bare metal.
    pub passthrough_gpus: Vec<String>,
    /// Real GPUs with a driver bound that can run work, in a VM or not.
    pub usable_gpus: Vec<String>,
    /// Real GPUs with no driver bound, or only a driver that reserves the
    /// device for passthrough (`vfio-pci`, `pci-stub`).
    pub unbound_gpus: Vec<String>,
    /// Display devices that a hypervisor emulates.
    pub emulated_display_devices: Vec<String>,
    /// Every other PCI device.
    pub not_gpus: Vec<String>,
    /// Every PCI device with its classification.
    pub devices: Vec<PciDevice>,
}

/// Scans `/sys/bus/pci/devices`. `in_vm` decides whether real GPUs count as
/// passed through.
pub fn scan(fs: &RootFs, in_vm: bool, findings: &mut Findings) -> GpuReport {
    let mut report = GpuReport::default();

    let addresses = match fs.read_dir(PCI_DEVICES) {
        Ok(addresses) => addresses,
        Err(err) => {
            if err.kind() != io::ErrorKind::NotFound {
                findings.read_failed(PROBE, PCI_DEVICES, &err);
            }
            return report;
        }
    };

    for address in addresses {
        let device = read_device(fs, findings, &address);
        match device.kind {
            DeviceKind::Gpu => {
                report.gpus.push(address.clone());
                if in_vm {
                    report.passthrough_gpus.push(address.clone());
                }
                if is_usable_driver(device.driver.as_deref()) {
                    report.usable_gpus.push(address.clone());
                } else {
                    report.unbound_gpus.push(address.clone());
                }
            }
            DeviceKind::EmulatedDisplay => report.emulated_display_devices.push(address.clone()),
            DeviceKind::NotGpu => report.not_gpus.push(address.clone()),
        }
        report.devices.push(device);
    }

    report
}

fn is_usable_driver(driver: Option<&str>) -> bool {
    driver.is_some_and(|name| !HOLDING_DRIVERS.contains(&name))
}

fn read_device(fs: &RootFs, findings: &mut Findings, address: &str) -> PciDevice {
    let base = format!("{PCI_DEVICES}/{address}");
    let vendor = read_attribute(fs, findings, &format!("{base}/vendor"));
    let class = read_attribute(fs, findings, &format!("{base}/class"));
    let driver = read_driver(fs, findings, &format!("{base}/driver"));

    let (kind, reason) = classify(vendor.as_deref(), class.as_deref(), driver.as_deref());
    PciDevice {
        address: address.to_owned(),
        vendor,
        class,
        driver,
        kind,
        reason,
    }
}

fn read_attribute(fs: &RootFs, findings: &mut Findings, path: &str) -> Option<String> {
    match fs.read_first_line(path) {
        Ok(value) => Some(value.trim().to_owned()),
        Err(err) => {
            if err.kind() != io::ErrorKind::NotFound {
                findings.read_failed(PROBE, path, &err);
            }
            None
        }
    }
}

/// Returns the driver name, the last component of the `driver` link.
fn read_driver(fs: &RootFs, findings: &mut Findings, path: &str) -> Option<String> {
    match fs.read_link(path) {
        Ok(target) => target
            .rsplit('/')
            .find(|part| !part.is_empty())
            .map(str::to_owned),
        Err(err) => {
            if err.kind() != io::ErrorKind::NotFound {
                findings.read_failed(PROBE, path, &err);
            }
            None
        }
    }
}

fn parse_hex(value: &str) -> Option<u32> {
    let digits = value.strip_prefix("0x").unwrap_or(value);
    u32::from_str_radix(digits, 16).ok()
}

fn classify(
    vendor: Option<&str>,
    class: Option<&str>,
    driver: Option<&str>,
) -> (DeviceKind, String) {
    let Some(class_code) = class.and_then(parse_hex) else {
        return (
            DeviceKind::NotGpu,
            "class code missing or not hex".to_owned(),
        );
    };
    let base_class = class_code >> 16;
    let subclass = (class_code >> 8) & 0xff;
    if base_class != CLASS_DISPLAY {
        return (
            DeviceKind::NotGpu,
            format!("class {class_code:#08x} is not a display controller"),
        );
    }

    let Some(vendor_id) = vendor
        .and_then(parse_hex)
        .and_then(|id| u16::try_from(id).ok())
    else {
        return (
            DeviceKind::NotGpu,
            "display controller with an unreadable vendor ID".to_owned(),
        );
    };

    if let Some((_, name)) = EMULATED_DISPLAY_VENDORS
        .iter()
        .find(|(id, _)| *id == vendor_id)
    {
        return (
            DeviceKind::EmulatedDisplay,
            format!("{name} display device, emulated by a hypervisor"),
        );
    }
    if let Some((_, name)) = CONSOLE_DISPLAY_VENDORS
        .iter()
        .find(|(id, _)| *id == vendor_id)
    {
        return (
            DeviceKind::NotGpu,
            format!("{name} console display, not a compute GPU"),
        );
    }
    if !GPU_SUBCLASSES.contains(&subclass) {
        return (
            DeviceKind::NotGpu,
            format!("display subclass {subclass:#04x} is not used by GPUs"),
        );
    }

    let reason = match driver {
        Some(name) if HOLDING_DRIVERS.contains(&name) => {
            format!("GPU (vendor {vendor_id:#06x}) held by {name}, not usable here")
        }
        Some(name) => format!("GPU (vendor {vendor_id:#06x}) with driver {name}"),
        None => format!("GPU (vendor {vendor_id:#06x}) with no driver bound"),
    };
    (DeviceKind::Gpu, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_function_of_gpu_is_not_gpu() {
        let (kind, _) = classify(Some("0x10de"), Some("0x040300"), Some("snd_hda_intel"));
        assert_eq!(kind, DeviceKind::NotGpu);
    }

    #[test]
    fn bmc_vga_is_not_gpu() {
        let (kind, reason) = classify(Some("0x1a03"), Some("0x030000"), Some("ast"));
        assert_eq!(kind, DeviceKind::NotGpu);
        assert!(reason.contains("ASPEED"), "{reason}");
    }

    #[test]
    fn virtio_gpu_is_emulated() {
        let (kind, _) = classify(Some("0x1af4"), Some("0x038000"), Some("virtio-pci"));
        assert_eq!(kind, DeviceKind::EmulatedDisplay);
    }

    #[test]
    fn three_d_controller_is_gpu() {
        let (kind, _) = classify(Some("0x1002"), Some("0x030200"), None);
        assert_eq!(kind, DeviceKind::Gpu);
    }

    #[test]
    fn vfio_held_gpu_is_not_usable() {
        assert!(!is_usable_driver(Some("vfio-pci")));
        assert!(is_usable_driver(Some("amdgpu")));
        assert!(!is_usable_driver(None));
    }
}
