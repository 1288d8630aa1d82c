//! Facts about the VM that bear on its trust and sizing: who made the TPM,
//! and how many vCPUs and how much memory the VM has.

use serde::{Deserialize, Serialize};
use tss_esapi::constants::PropertyTag;
use tss_esapi::{Context, TctiNameConf};

use crate::rootfs::RootFs;

/// Minimum vCPUs recommended for the appliance in a VM; 8 or more let
/// inference and diffusion run at the same time.
pub const MIN_VCPUS: u32 = 4;

/// Minimum memory recommended for the appliance in a VM, 16 GiB, in MiB.
/// 7B models want 24 GiB and 13B models 32 GiB or more.
pub const MIN_MEMORY_MIB: u64 = 16 * 1024;

/// The TPM's vendor and whether it looks emulated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmVendor {
    /// TPM_PT_MANUFACTURER as its four ASCII characters, trailing spaces
    /// removed, such as `IBM` or `INTC`; `None` when no TPM could be read.
    pub manufacturer: Option<String>,
    /// True when the manufacturer is one that only virtual or software TPMs
    /// report.
    pub looks_virtual: bool,
    /// Reason for the value of `looks_virtual`.
    pub basis: String,
}

/// Reads TPM_PT_MANUFACTURER through the TPM at `tcti`.
pub fn read_tpm_manufacturer(tcti: &str) -> Result<String, String> {
    let name: TctiNameConf = tcti
        .parse()
        .map_err(|err| format!("invalid TCTI {tcti:?}: {err}"))?;
    let mut context = Context::new(name)
        .map_err(|err| format!("failed to open the TPM through {tcti}: {err}"))?;
    let value = context
        .get_tpm_property(PropertyTag::Manufacturer)
        .map_err(|err| format!("failed to read TPM_PT_MANUFACTURER through {tcti}: {err}"))?
        .ok_or_else(|| format!("the TPM behind {tcti} has no TPM_PT_MANUFACTURER"))?;
    Ok(manufacturer_text(value))
}

/// Decodes the big-endian vendor id, such as 0x49424D00 for "IBM".
pub fn manufacturer_text(value: u32) -> String {
    value
        .to_be_bytes()
        .iter()
        .filter(|byte| byte.is_ascii_graphic())
        .map(|&byte| char::from(byte))
        .collect()
}

/// Judges whether a TPM vendor id belongs to a virtual TPM. IBM is the vendor id of libtpms, which swtpm
/// and so QEMU's vTPM use; GOOG, AMZN and VMW come from the vTPMs of Google
/// Cloud, AWS Nitro and VMware. Microsoft's id MSFT is the Hyper-V and Azure
/// vTPM inside a VM, but a Pluton chip on bare metal.
pub fn judge_tpm(manufacturer: Option<String>, is_vm: bool) -> TpmVendor {
    let Some(vendor) = manufacturer else {
        return TpmVendor {
            manufacturer: None,
            looks_virtual: false,
            basis: "no TPM manufacturer could be read".to_owned(),
        };
    };
    let (looks_virtual, basis) = match vendor.as_str() {
        "IBM" => (true, "IBM is the vendor id of libtpms, the software TPM behind swtpm and QEMU's vTPM"),
        "GOOG" => (true, "GOOG is the vendor id of Google Cloud's vTPM"),
        "AMZN" => (true, "AMZN is the vendor id of the AWS Nitro vTPM"),
        "VMW" => (true, "VMW is the vendor id of VMware's vTPM"),
        "MSFT" if is_vm => (true, "MSFT inside a VM is the Hyper-V or Azure vTPM"),
        "MSFT" => (false, "MSFT on bare metal is a Microsoft Pluton TPM"),
        _ if is_vm => (false, "the vendor id is a hardware TPM maker's, but inside a VM the hypervisor may still pass it through or emulate it"),
        _ => (false, "the vendor id is a hardware TPM maker's"),
    };
    TpmVendor {
        manufacturer: Some(vendor),
        looks_virtual,
        basis: basis.to_owned(),
    }
}

/// vCPUs and memory, with warnings where they fall below the minimums.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizing {
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Full sentences; empty when the sizing meets the guide.
    pub warnings: Vec<String>,
}

/// Counts vCPUs in `/proc/cpuinfo` and memory in `/proc/meminfo`, and
/// compares them with the minimums, in a VM only.
pub fn read_sizing(fs: &RootFs, is_vm: bool) -> Sizing {
    let vcpus = fs
        .read_to_string("/proc/cpuinfo")
        .map(|text| {
            let count = text
                .lines()
                .filter(|line| {
                    line.split(':')
                        .next()
                        .is_some_and(|key| key.trim() == "processor")
                })
                .count();
            u32::try_from(count).unwrap_or(u32::MAX)
        })
        .unwrap_or(0);
    let memory_mib = fs
        .read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024);

    // TODO: also warn when memory is below what the installed models need,
    // once the model store reports their sizes.
    let mut warnings = Vec::new();
    if is_vm && vcpus > 0 && vcpus < MIN_VCPUS {
        warnings.push(format!(
            "The VM has {vcpus} vCPUs; allocate at least {MIN_VCPUS}, and 8 or more for inference and diffusion at the same time."
        ));
    }
    // MemTotal excludes memory the kernel reserved at boot, so a VM given
    // exactly 16 GiB reports somewhat less; allow 5 percent.
    if is_vm && memory_mib > 0 && memory_mib < MIN_MEMORY_MIB * 95 / 100 {
        warnings.push(format!(
            "The VM has {} GiB of memory; allocate at least 16 GB, 24 GB for 7B models and 32 GB or more for 13B models.",
            memory_mib / 1024
        ));
    }
    Sizing {
        vcpus,
        memory_mib,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn manufacturer_decoded() {
        assert_eq!(manufacturer_text(0x4942_4D00), "IBM");
        assert_eq!(manufacturer_text(0x494E_5443), "INTC");
        assert_eq!(manufacturer_text(0x4D53_4654), "MSFT");
        assert_eq!(manufacturer_text(0x414D_4420), "AMD");
    }

    #[test]
    fn virtual_vendors_judged() {
        for (vendor, is_vm, expected) in [
            ("IBM", true, true),
            ("IBM", false, true),
            ("MSFT", true, true),
            ("MSFT", false, false),
            ("GOOG", true, true),
            ("INTC", true, false),
            ("IFX", false, false),
        ] {
            let judged = judge_tpm(Some(vendor.to_owned()), is_vm);
            assert_eq!(judged.looks_virtual, expected, "{vendor} in VM {is_vm}");
            assert!(!judged.basis.is_empty());
        }
        assert!(!judge_tpm(None, true).looks_virtual);
    }

    fn sizing_of(cpus: usize, mem_kib: u64, is_vm: bool) -> Sizing {
        let dir = tempfile::tempdir().expect("create temp dir");
        fs::create_dir_all(dir.path().join("proc")).expect("create proc");
        let cpuinfo: String = (0..cpus)
            .map(|index| format!("processor\t: {index}\nmodel name\t: QEMU\n\n"))
            .collect();
        fs::write(dir.path().join("proc/cpuinfo"), cpuinfo).expect("write cpuinfo");
        fs::write(
            dir.path().join("proc/meminfo"),
            format!("MemTotal:       {mem_kib} kB\nMemFree: 1 kB\n"),
        )
        .expect("write meminfo");
        read_sizing(
            &RootFs::new(dir.path().to_path_buf(), Default::default()),
            is_vm,
        )
    }

    #[test]
    fn small_vm_warned() {
        let sizing = sizing_of(2, 2 * 1024 * 1024, true);

        assert_eq!(sizing.vcpus, 2);
        assert_eq!(sizing.memory_mib, 2048);
        assert_eq!(sizing.warnings.len(), 2, "{:?}", sizing.warnings);
        assert!(sizing.warnings[0].contains("2 vCPUs"));
        assert!(sizing.warnings[1].contains("at least 16 GB"));
    }

    #[test]
    fn recommended_vm_not_warned() {
        // 16 GiB as a guest kernel reports it, less its reserved memory.
        let sizing = sizing_of(8, 16_300_000, true);

        assert!(sizing.warnings.is_empty(), "{:?}", sizing.warnings);
    }

    #[test]
    fn bare_metal_not_warned() {
        assert!(sizing_of(2, 1024 * 1024, false).warnings.is_empty());
    }
}
