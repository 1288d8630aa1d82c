//! Response of `GET /api/vm/status`: where the appliance runs and what that
//! means for the confidentiality of its data.

use serde::{Deserialize, Serialize};

use crate::detect::{Container, Detection};
use crate::hardening;
use crate::vm_facts::{self, Sizing, TpmVendor};

/// Body of `GET /api/vm/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmStatus {
    /// True when a hypervisor was detected.
    pub is_vm: bool,
    /// Hypervisor identifier as `systemd-detect-virt` prints it, `vm-other`
    /// for an unnamed one, and `none` on bare metal.
    pub hypervisor: String,
    /// True when a GPU passed through to this VM has a driver bound.
    /// Always false on bare metal.
    pub gpu_passthrough: bool,
    /// Whether GPU work is allowed. In a VM this is `vm.gpu_passthrough`
    /// from the configuration. On bare metal the setting does not apply, and
    /// this is true when a GPU with a driver is present, because the GPU is
    /// then used.
    pub vm_gpu_enabled: bool,
    pub security_notice: SecurityNotice,
    /// Clipboard agents, host channels and shared folders found since
    /// `serve` started, and what was done about them.
    pub hardening: hardening::Report,
    pub tpm: TpmVendor,
    pub sizing: Sizing,
}

/// Facts beyond detection that the status reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmFacts {
    pub hardening: hardening::Report,
    pub tpm: TpmVendor,
    pub sizing: Sizing,
}

impl Default for VmFacts {
    fn default() -> Self {
        Self {
            hardening: hardening::Report::default(),
            tpm: vm_facts::judge_tpm(None, false),
            sizing: Sizing {
                vcpus: 0,
                memory_mib: 0,
                warnings: Vec::new(),
            },
        }
    }
}

/// Notice that the user interface shows next to the platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityNotice {
    pub level: NoticeLevel,
    pub title: String,
    /// Full sentences, one risk or fact each.
    pub details: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeLevel {
    Info,
    Warning,
}

const HOST_READS_MEMORY: &str = "The host OS and hypervisor can read all VM memory, so decrypted data in RAM is visible to the host even though LUKS encryption protects the data at rest.";
const SNAPSHOTS: &str =
    "VM snapshots may capture decrypted secrets if the vault is open when the snapshot is taken.";
const CLIPBOARD: &str = "Disable clipboard sharing in the hypervisor, because clipboard agents may share data with the host.";
const TIMING: &str = "Co-located VMs may observe timing patterns from inference.";
const VIRTUAL_TPM: &str = "The TPM may be emulated by the hypervisor (vTPM), which gives weaker trust than a hardware TPM.";
const GPU_DMA: &str =
    "GPU memory is visible to the host through DMA, because a GPU is passed through to this VM.";
const BARE_METAL: &str = "The appliance runs on bare metal with full hardware isolation, so no hypervisor can read its memory.";

/// Builds the response from the detection result, the value of
/// `vm.gpu_passthrough` in effect and the other facts.
pub fn build(detection: &Detection, vm_gpu_setting: bool, facts: &VmFacts) -> VmStatus {
    let is_vm = detection.is_vm();
    let vm_gpu_enabled = if is_vm {
        vm_gpu_setting
    } else {
        !detection.gpu.usable_gpus.is_empty()
    };

    VmStatus {
        is_vm,
        hypervisor: detection.vm.as_str().to_owned(),
        gpu_passthrough: detection.gpu_passthrough_usable(),
        vm_gpu_enabled,
        security_notice: notice(detection, facts),
        hardening: facts.hardening.clone(),
        tpm: facts.tpm.clone(),
        sizing: facts.sizing.clone(),
    }
}

const GPU_MEMORY_VISIBLE: &str = "GPU memory is visible to the host: the hypervisor can read it through DMA, and it may contain model weights, intermediate results and generated outputs.";
const GPU_DMA_BYPASS: &str = "GPU DMA can bypass some VM memory isolation boundaries, a hardware-level concern that no software can fully mitigate.";
const GPU_DRIVER_BUGS: &str =
    "Bugs in the host kernel's GPU drivers could be exploited through the passed-through device.";

/// Builds the notice shown when GPU passthrough is turned on in a VM.
pub fn gpu_passthrough_notice(detection: &Detection) -> SecurityNotice {
    SecurityNotice {
        level: NoticeLevel::Warning,
        title: format!(
            "GPU passthrough enabled in a Virtual Machine ({})",
            detection.vm
        ),
        details: [GPU_MEMORY_VISIBLE, GPU_DMA_BYPASS, GPU_DRIVER_BUGS]
            .map(str::to_owned)
            .to_vec(),
    }
}

fn notice(detection: &Detection, facts: &VmFacts) -> SecurityNotice {
    if detection.is_vm() {
        let mut details: Vec<String> =
            [HOST_READS_MEMORY, SNAPSHOTS, CLIPBOARD, TIMING, VIRTUAL_TPM]
                .map(str::to_owned)
                .to_vec();
        if !detection.gpu.passthrough_gpus.is_empty() {
            details.push(GPU_DMA.to_owned());
        }
        details.extend(fact_sentences(facts));
        if detection.container != Container::None {
            details.push(container_sentence(detection.container));
        }
        return SecurityNotice {
            level: NoticeLevel::Warning,
            title: format!("Running in a Virtual Machine ({})", detection.vm),
            details,
        };
    }

    if detection.container != Container::None {
        return SecurityNotice {
            level: NoticeLevel::Warning,
            title: format!("Running in a container ({})", detection.container),
            details: vec![container_sentence(detection.container)],
        };
    }

    SecurityNotice {
        level: NoticeLevel::Info,
        title: "Running on bare metal".to_owned(),
        details: vec![BARE_METAL.to_owned()],
    }
}

/// Writes the findings that raise the host's reach as sentences: host
/// channels, shared folders, a virtual TPM and sizing below the guide.
fn fact_sentences(facts: &VmFacts) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut channels: Vec<&str> = Vec::new();
    for finding in &facts.hardening.host_channels {
        if !channels.contains(&finding.what.as_str()) {
            channels.push(&finding.what);
        }
    }
    for channel in channels {
        sentences.push(format!(
            "The host can reach into this VM through {channel}, which the appliance reports but does not disable."
        ));
    }
    for folder in &facts.hardening.shared_folders {
        sentences.push(format!(
            "A host folder is mounted at {} ({}), so keep appliance data out of it, or remove the share in the hypervisor.",
            folder.mount_point, folder.fs_type
        ));
    }
    if let (true, Some(manufacturer)) = (facts.tpm.looks_virtual, &facts.tpm.manufacturer) {
        sentences.push(format!(
            "The TPM is virtual (manufacturer {manufacturer}), so its sealing is only as trustworthy as the host."
        ));
    }
    sentences.extend(facts.sizing.warnings.iter().cloned());
    sentences
}

fn container_sentence(container: Container) -> String {
    format!(
        "The appliance runs inside a {container} container, so the container host can read its memory and files."
    )
}
