//! Agent of the secure AI appliance: platform detection, the initrd steps
//! and the local API.

pub mod api;
pub mod boot_state;
pub mod cli;
pub mod collect;
pub mod config;
pub mod detect;
pub mod detect_command;
pub mod early;
pub mod eventlog_command;
pub mod inference;
pub mod logging;
pub mod measurements;
pub mod platform;
pub mod rootfs;
pub mod serve;
