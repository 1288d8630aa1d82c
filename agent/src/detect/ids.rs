//! Virtualization identifiers, spelled as `systemd-detect-virt` prints them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Hypervisor that runs this system, or `None` on bare metal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vm {
    None,
    Kvm,
    Amazon,
    Qemu,
    Bochs,
    Xen,
    Uml,
    Vmware,
    Oracle,
    Microsoft,
    Zvm,
    Parallels,
    Bhyve,
    Qnx,
    Acrn,
    Powervm,
    Apple,
    Sre,
    Google,
    /// Some hypervisor is present, but none that a probe can name.
    VmOther,
}

impl Vm {
    /// Returns the identifier that `systemd-detect-virt` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Vm::None => "none",
            Vm::Kvm => "kvm",
            Vm::Amazon => "amazon",
            Vm::Qemu => "qemu",
            Vm::Bochs => "bochs",
            Vm::Xen => "xen",
            Vm::Uml => "uml",
            Vm::Vmware => "vmware",
            Vm::Oracle => "oracle",
            Vm::Microsoft => "microsoft",
            Vm::Zvm => "zvm",
            Vm::Parallels => "parallels",
            Vm::Bhyve => "bhyve",
            Vm::Qnx => "qnx",
            Vm::Acrn => "acrn",
            Vm::Powervm => "powervm",
            Vm::Apple => "apple",
            Vm::Sre => "sre",
            Vm::Google => "google",
            Vm::VmOther => "vm-other",
        }
    }
}

impl fmt::Display for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Container manager that runs this system, or `None` outside a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Container {
    None,
    SystemdNspawn,
    LxcLibvirt,
    Lxc,
    Openvz,
    Docker,
    Podman,
    Rkt,
    Wsl,
    Proot,
    Pouch,
    /// Some container manager is present, but none that a probe can name.
    ContainerOther,
}

impl Container {
    /// Returns the identifier that `systemd-detect-virt` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Container::None => "none",
            Container::SystemdNspawn => "systemd-nspawn",
            Container::LxcLibvirt => "lxc-libvirt",
            Container::Lxc => "lxc",
            Container::Openvz => "openvz",
            Container::Docker => "docker",
            Container::Podman => "podman",
            Container::Rkt => "rkt",
            Container::Wsl => "wsl",
            Container::Proot => "proot",
            Container::Pouch => "pouch",
            Container::ContainerOther => "container-other",
        }
    }

    /// Parses a container manager name as container managers write it to
    /// `$container`. Returns `None` for names outside the known set.
    pub fn from_manager_name(name: &str) -> Option<Self> {
        let container = match name {
            "systemd-nspawn" => Container::SystemdNspawn,
            "lxc-libvirt" => Container::LxcLibvirt,
            "lxc" => Container::Lxc,
            "openvz" => Container::Openvz,
            "docker" => Container::Docker,
            "podman" => Container::Podman,
            "rkt" => Container::Rkt,
            "wsl" => Container::Wsl,
            "proot" => Container::Proot,
            "pouch" => Container::Pouch,
            _ => return None,
        };
        Some(container)
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_match_display() {
        for vm in [Vm::None, Vm::Kvm, Vm::VmOther, Vm::Microsoft, Vm::Powervm] {
            let json = serde_json::to_string(&vm).expect("serialize");
            assert_eq!(json, format!("\"{vm}\""));
        }
        for container in [
            Container::SystemdNspawn,
            Container::LxcLibvirt,
            Container::ContainerOther,
        ] {
            let json = serde_json::to_string(&container).expect("serialize");
            assert_eq!(json, format!("\"{container}\""));
        }
    }
}
