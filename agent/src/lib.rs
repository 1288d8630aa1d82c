//! Agent of the secure AI appliance: platform detection, the initrd steps
//! and the local API.

pub mod api;
pub mod atomic_file;
pub mod auth;
pub mod boot_state;
pub mod cli;
pub mod collect;
pub mod config;
pub mod config_edit;
pub mod detect;
pub mod detect_command;
pub mod early;
pub mod eventlog_command;
pub mod gpu_access;
pub mod hardening;
pub mod inference;
pub mod logging;
pub mod measurements;
pub mod platform;
pub mod rootfs;
pub mod serve;
pub mod token_command;
pub mod vault;
pub mod vm_facts;
