//! Xen probe. `/proc/xen` exists in every Xen domain, and the control
//! domain (dom0) is distinguished because it is the host, not a guest.

use std::io;

use super::{exists_if_readable, read_line_if_readable, Findings};
use crate::rootfs::RootFs;

const PROBE: &str = "xen";
const PROC_XEN: &str = "/proc/xen";
const FEATURES: &str = "/sys/hypervisor/properties/features";
const CAPABILITIES: &str = "/proc/xen/capabilities";

/// Bit of the Xen feature mask that marks the hardware domain
/// (`XENFEAT_dom0` in Xen's `public/features.h`).
const XENFEAT_DOM0: u32 = 11;

/// Kind of Xen domain this system runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenDomain {
    /// Not running on Xen, or `/proc/xen` is not there to tell.
    NotXen,
    /// An unprivileged guest.
    DomU,
    /// The control domain, which runs on the hardware.
    Dom0,
}

/// Runs the Xen probe.
pub fn detect(fs: &RootFs, findings: &mut Findings) -> XenDomain {
    if !exists_if_readable(fs, findings, PROBE, PROC_XEN) {
        return XenDomain::NotXen;
    }

    let domain = if is_dom0(fs, findings) {
        XenDomain::Dom0
    } else {
        XenDomain::DomU
    };
    let conclusion = match domain {
        XenDomain::Dom0 => "Xen dom0, the host, which is not counted as a VM",
        _ => "Xen guest (domU)",
    };
    findings.note(PROBE, PROC_XEN, "exists", conclusion);
    domain
}

/// Reads the feature mask first and the capabilities list second. When
/// neither can be read, the domain counts as a guest, so the security
/// notice errs towards the VM warnings.
fn is_dom0(fs: &RootFs, findings: &mut Findings) -> bool {
    if let Some(mask) = read_line_if_readable(fs, findings, PROBE, FEATURES) {
        // The kernel prints the mask in hex without a `0x` prefix.
        match u32::from_str_radix(mask.trim(), 16) {
            Ok(features) => {
                let dom0 = features & (1 << XENFEAT_DOM0) != 0;
                findings.note(PROBE, FEATURES, &mask, format!("XENFEAT_dom0 set: {dom0}"));
                return dom0;
            }
            Err(_) => findings.note(PROBE, FEATURES, &mask, "not a hex feature mask, ignored"),
        }
    }

    match fs.read_first_line(CAPABILITIES) {
        Ok(capabilities) => {
            let dom0 = capabilities.split(',').any(|cap| cap.trim() == "control_d");
            findings.note(
                PROBE,
                CAPABILITIES,
                &capabilities,
                format!("control_d listed: {dom0}"),
            );
            dom0
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => false,
        Err(err) => {
            findings.read_failed(PROBE, CAPABILITIES, &err);
            false
        }
    }
}
