//! CPUID hypervisor probe.
//!
//! CPUID leaf 1 ECX bit 31 is set by every hypervisor that announces itself,
//! and leaf 0x40000000 returns the hypervisor's 12-byte vendor signature in
//! EBX, ECX and EDX. The values come from the CPU or, for replay and tests,
//! from a `cpuid.json` file.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Findings, Vm};

/// CPUID values that the hypervisor probe needs, in the `cpuid.json` format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuidInfo {
    /// CPU architecture as Rust names it (`x86_64`, `aarch64`, ...). The
    /// other probes also use it, because some of them only apply to some
    /// architectures.
    pub arch: String,
    /// CPUID leaf 1 ECX bit 31.
    #[serde(default)]
    pub hypervisor_bit: bool,
    /// Vendor signature from leaf 0x40000000, without trailing NUL bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_40000000_signature: Option<String>,
    /// Vendor signature from leaf 0x40000100, where hypervisors that
    /// present a Hyper-V interface at 0x40000000 put their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_40000100_signature: Option<String>,
}

/// Signatures from leaf 0x40000000 and the hypervisor each one names, as
/// systemd v256 `src/basic/virt.c` maps them.
const SIGNATURES: &[(&str, Vm)] = &[
    ("XenVMMXenVMM", Vm::Xen),
    ("KVMKVMKVM", Vm::Kvm),
    // QEMU with KVM and Hyper-V enlightenments.
    ("Linux KVM Hv", Vm::Kvm),
    // QEMU without KVM.
    ("TCGTCGTCGTCG", Vm::Qemu),
    ("VMwareVMware", Vm::Vmware),
    ("Microsoft Hv", Vm::Microsoft),
    ("bhyve bhyve ", Vm::Bhyve),
    ("QNXQVMBSQG", Vm::Qnx),
    ("ACRNACRNACRN", Vm::Acrn),
    ("SRESRESRESRE", Vm::Sre),
    ("Apple VZ", Vm::Apple),
];

impl CpuidInfo {
    /// Loads CPUID values from a JSON file, naming the file in the error.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = fs::read_to_string(path).map_err(|err| {
            anyhow::anyhow!(
                "failed to read the CPUID file {}: {err}. Pass the cpuid.json of a \
                 collected bundle, or leave out --cpuid to query the CPU",
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|err| {
            anyhow::anyhow!(
                "invalid CPUID file {}: {err}. Expected {{\"arch\": \"x86_64\", \
                 \"hypervisor_bit\": true, \"leaf_40000000_signature\": \"KVMKVMKVM\"}}",
                path.display()
            )
        })
    }

    /// Queries the CPU this process runs on. On architectures without CPUID
    /// the result only contains the architecture.
    pub fn from_host() -> Self {
        host::query()
    }

    /// True when the architecture has the CPUID instruction.
    pub fn has_cpuid(&self) -> bool {
        matches!(self.arch.as_str(), "x86_64" | "x86")
    }
}

/// Verdict of the CPUID probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuidVerdict {
    /// No hypervisor bit, or no CPUID on this architecture.
    None,
    /// The signature names a hypervisor.
    Found(Vm),
}

/// Maps the CPUID values to a hypervisor. A set hypervisor bit with an
/// unknown or empty signature gives `vm-other`.
pub fn detect(cpuid: &CpuidInfo, findings: &mut Findings) -> CpuidVerdict {
    if !cpuid.has_cpuid() || !cpuid.hypervisor_bit {
        return CpuidVerdict::None;
    }

    let signature = cpuid.leaf_40000000_signature.as_deref().unwrap_or("");
    let vm = SIGNATURES
        .iter()
        .find(|(known, _)| *known == signature)
        .map_or(Vm::VmOther, |(_, vm)| *vm);

    findings.note(
        "cpuid",
        "CPUID leaf 0x40000000",
        signature,
        format!("hypervisor bit set, signature means {vm}"),
    );
    if let Some(second) = &cpuid.leaf_40000100_signature {
        // Recorded for support staff only. systemd v256 does not read this
        // leaf, and the verdict follows systemd.
        findings.note(
            "cpuid",
            "CPUID leaf 0x40000100",
            second,
            "recorded, not used for the verdict",
        );
    }

    CpuidVerdict::Found(vm)
}

#[cfg(target_arch = "x86_64")]
mod host {
    use core::arch::x86_64::{__cpuid, CpuidResult};

    use super::CpuidInfo;

    const HYPERVISOR_BIT: u32 = 1 << 31;

    pub(super) fn query() -> CpuidInfo {
        let leaf1 = cpuid(1);
        let hypervisor_bit = leaf1.ecx & HYPERVISOR_BIT != 0;

        let (leaf_40000000_signature, leaf_40000100_signature) = if hypervisor_bit {
            let base = cpuid(0x4000_0000);
            let alternate = cpuid(0x4000_0100);
            // A hypervisor that implements leaf 0x40000100 reports a maximum
            // leaf in that range in EAX. Other values are whatever the CPU
            // returns for unsupported leaves and carry no signature.
            let alternate_valid = (0x4000_0100..=0x4000_01ff).contains(&alternate.eax);
            (
                Some(signature(&base)),
                alternate_valid.then(|| signature(&alternate)),
            )
        } else {
            (None, None)
        };

        CpuidInfo {
            arch: "x86_64".to_owned(),
            hypervisor_bit,
            leaf_40000000_signature,
            leaf_40000100_signature,
        }
    }

    /// Executes CPUID. Every x86_64 CPU implements the instruction, so
    /// `__cpuid` is safe there; a leaf the CPU lacks returns undefined
    /// values, never a fault.
    fn cpuid(leaf: u32) -> CpuidResult {
        __cpuid(leaf)
    }

    /// Joins EBX, ECX and EDX into the vendor text, dropping trailing NULs
    /// such as the three after `KVMKVMKVM`.
    fn signature(result: &CpuidResult) -> String {
        let mut bytes = Vec::with_capacity(12);
        for register in [result.ebx, result.ecx, result.edx] {
            bytes.extend_from_slice(&register.to_le_bytes());
        }
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod host {
    use super::CpuidInfo;

    pub(super) fn query() -> CpuidInfo {
        CpuidInfo {
            arch: std::env::consts::ARCH.to_owned(),
            hypervisor_bit: false,
            leaf_40000000_signature: None,
            leaf_40000100_signature: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x86(hypervisor_bit: bool, signature: Option<&str>) -> CpuidInfo {
        CpuidInfo {
            arch: "x86_64".into(),
            hypervisor_bit,
            leaf_40000000_signature: signature.map(str::to_owned),
            leaf_40000100_signature: None,
        }
    }

    #[test]
    fn known_signatures_map_to_systemd_names() {
        let cases = [
            ("KVMKVMKVM", Vm::Kvm),
            ("TCGTCGTCGTCG", Vm::Qemu),
            ("VMwareVMware", Vm::Vmware),
            ("Microsoft Hv", Vm::Microsoft),
            ("XenVMMXenVMM", Vm::Xen),
            ("bhyve bhyve ", Vm::Bhyve),
            ("Apple VZ", Vm::Apple),
        ];
        for (signature, expected) in cases {
            let mut findings = Findings::default();
            let verdict = detect(&x86(true, Some(signature)), &mut findings);
            assert_eq!(
                verdict,
                CpuidVerdict::Found(expected),
                "signature {signature:?}"
            );
        }
    }

    #[test]
    fn hypervisor_bit_alone_is_vm_other() {
        let mut findings = Findings::default();
        assert_eq!(
            detect(&x86(true, None), &mut findings),
            CpuidVerdict::Found(Vm::VmOther)
        );
        assert_eq!(
            detect(&x86(true, Some("NewHypervisr")), &mut findings),
            CpuidVerdict::Found(Vm::VmOther)
        );
    }

    #[test]
    fn signature_ignored_without_hypervisor_bit() {
        let mut findings = Findings::default();
        assert_eq!(
            detect(&x86(false, Some("KVMKVMKVM")), &mut findings),
            CpuidVerdict::None
        );
    }

    #[test]
    fn non_x86_has_no_cpuid() {
        let info = CpuidInfo {
            arch: "aarch64".into(),
            hypervisor_bit: true,
            leaf_40000000_signature: Some("KVMKVMKVM".into()),
            leaf_40000100_signature: None,
        };
        let mut findings = Findings::default();
        assert_eq!(detect(&info, &mut findings), CpuidVerdict::None);
    }

    #[test]
    fn unknown_cpuid_field_rejected() {
        let err = serde_json::from_str::<CpuidInfo>(r#"{"arch":"x86_64","hypervisor":true}"#)
            .expect_err("unknown field must fail");
        assert!(err.to_string().contains("hypervisor"), "{err}");
    }
}
