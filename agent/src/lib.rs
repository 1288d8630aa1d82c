//! Agent of the secure AI appliance: platform detection, the initrd steps
//! and the local API.

pub mod detect;
pub mod rootfs;
