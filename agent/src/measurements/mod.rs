//! Measured-boot verification: what the TPM's PCRs say about this boot,
//! checked against the firmware event log, systemd's own measurement log
//! and the signed PCR 11 policy that the UKI carries.

pub mod pcrs;
pub mod userspace_log;
pub mod verify;
