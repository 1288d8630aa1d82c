//! Event types of TCG event log records.
//!
//! Values and names are those of the TCG PC Client Platform Firmware Profile Specification
//! (PFP), Family "2.0", version 1.05. The types below 0x80000000 date back to the TCG PC Client
//! specifications for TPM 1.2 and keep their values.

use std::fmt;

/// The type of an event log record: what was measured and how to read its event data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventType(u32);

impl EventType {
    /// EV_PREBOOT_CERT (PFP): reserved, not used by current firmware.
    pub const EV_PREBOOT_CERT: Self = Self(0x0000_0000);
    /// EV_POST_CODE (PFP): firmware code, such as POST code or embedded SMM code, in PCR 0.
    pub const EV_POST_CODE: Self = Self(0x0000_0001);
    /// EV_UNUSED (PFP): reserved.
    pub const EV_UNUSED: Self = Self(0x0000_0002);
    /// EV_NO_ACTION (PFP): informative data that is not extended into any PCR, such as the
    /// Spec ID and StartupLocality events. Its digests are zero.
    pub const EV_NO_ACTION: Self = Self(0x0000_0003);
    /// EV_SEPARATOR (PFP): the boundary between pre-OS and OS measurements in PCRs 0 to 7, or
    /// an error.
    pub const EV_SEPARATOR: Self = Self(0x0000_0004);
    /// EV_ACTION (PFP): an action the firmware took, described by an ASCII string.
    pub const EV_ACTION: Self = Self(0x0000_0005);
    /// EV_EVENT_TAG (PFP): tagged events for host software, as TCG_PCClientTaggedEvent
    /// structures. The Linux EFI stub and systemd-stub use it.
    pub const EV_EVENT_TAG: Self = Self(0x0000_0006);
    /// EV_S_CRTM_CONTENTS (PFP): the contents of the static core root of trust for measurement.
    pub const EV_S_CRTM_CONTENTS: Self = Self(0x0000_0007);
    /// EV_S_CRTM_VERSION (PFP): the version string of the static CRTM, in PCR 0.
    pub const EV_S_CRTM_VERSION: Self = Self(0x0000_0008);
    /// EV_CPU_MICROCODE (PFP): CPU microcode, in PCR 1.
    pub const EV_CPU_MICROCODE: Self = Self(0x0000_0009);
    /// EV_PLATFORM_CONFIG_FLAGS (PFP): platform configuration flags, in PCR 1.
    pub const EV_PLATFORM_CONFIG_FLAGS: Self = Self(0x0000_000a);
    /// EV_TABLE_OF_DEVICES (PFP): a table of devices, in PCR 1.
    pub const EV_TABLE_OF_DEVICES: Self = Self(0x0000_000b);
    /// EV_COMPACT_HASH (PFP): a digest that the event data describes.
    pub const EV_COMPACT_HASH: Self = Self(0x0000_000c);
    /// EV_IPL (PFP): deprecated by the PFP for firmware, but boot loaders use it. systemd-stub
    /// logs a NUL-terminated UTF-16 description as event data, GRUB an ASCII string.
    pub const EV_IPL: Self = Self(0x0000_000d);
    /// EV_IPL_PARTITION_DATA (PFP): deprecated.
    pub const EV_IPL_PARTITION_DATA: Self = Self(0x0000_000e);
    /// EV_NONHOST_CODE (PFP): code of a processor other than the host CPU.
    pub const EV_NONHOST_CODE: Self = Self(0x0000_000f);
    /// EV_NONHOST_CONFIG (PFP): configuration of a processor other than the host CPU.
    pub const EV_NONHOST_CONFIG: Self = Self(0x0000_0010);
    /// EV_NONHOST_INFO (PFP): information about a processor other than the host CPU.
    pub const EV_NONHOST_INFO: Self = Self(0x0000_0011);
    /// EV_OMIT_BOOT_DEVICE_EVENTS (PFP): the firmware does not log each boot attempt in PCR 4.
    pub const EV_OMIT_BOOT_DEVICE_EVENTS: Self = Self(0x0000_0012);

    /// EV_EFI_EVENT_BASE (PFP): the base of the UEFI event types. Not an event type itself.
    pub const EV_EFI_EVENT_BASE: Self = Self(0x8000_0000);
    /// EV_EFI_VARIABLE_DRIVER_CONFIG (PFP): a UEFI variable that configures the platform, such as
    /// SecureBoot, PK, KEK, db and dbx in PCR 7.
    pub const EV_EFI_VARIABLE_DRIVER_CONFIG: Self = Self(0x8000_0001);
    /// EV_EFI_VARIABLE_BOOT (PFP): a boot variable, BootOrder or Boot####, in PCR 1.
    pub const EV_EFI_VARIABLE_BOOT: Self = Self(0x8000_0002);
    /// EV_EFI_BOOT_SERVICES_APPLICATION (PFP): a UEFI application loaded from a device, such as
    /// shim, systemd-boot or a UKI, in PCR 4.
    pub const EV_EFI_BOOT_SERVICES_APPLICATION: Self = Self(0x8000_0003);
    /// EV_EFI_BOOT_SERVICES_DRIVER (PFP): a UEFI boot services driver loaded from a device.
    pub const EV_EFI_BOOT_SERVICES_DRIVER: Self = Self(0x8000_0004);
    /// EV_EFI_RUNTIME_SERVICES_DRIVER (PFP): a UEFI runtime services driver loaded from a device.
    pub const EV_EFI_RUNTIME_SERVICES_DRIVER: Self = Self(0x8000_0005);
    /// EV_EFI_GPT_EVENT (PFP): the GPT partition table of the boot disk, in PCR 5.
    pub const EV_EFI_GPT_EVENT: Self = Self(0x8000_0006);
    /// EV_EFI_ACTION (PFP): an action the firmware took, described by an ASCII string such as
    /// "Exit Boot Services Invocation".
    pub const EV_EFI_ACTION: Self = Self(0x8000_0007);
    /// EV_EFI_PLATFORM_FIRMWARE_BLOB (PFP): a firmware volume by address and length.
    pub const EV_EFI_PLATFORM_FIRMWARE_BLOB: Self = Self(0x8000_0008);
    /// EV_EFI_HANDOFF_TABLES (PFP): UEFI configuration tables, such as SMBIOS.
    pub const EV_EFI_HANDOFF_TABLES: Self = Self(0x8000_0009);
    /// EV_EFI_PLATFORM_FIRMWARE_BLOB2 (PFP): a firmware volume with a description.
    pub const EV_EFI_PLATFORM_FIRMWARE_BLOB2: Self = Self(0x8000_000a);
    /// EV_EFI_HANDOFF_TABLES2 (PFP): UEFI configuration tables with a description.
    pub const EV_EFI_HANDOFF_TABLES2: Self = Self(0x8000_000b);
    /// EV_EFI_VARIABLE_BOOT2 (PFP): a boot variable measured with its whole content.
    pub const EV_EFI_VARIABLE_BOOT2: Self = Self(0x8000_000c);
    /// EV_EFI_HCRTM_EVENT (PFP): the measurement of a hardware CRTM, in PCR 0.
    pub const EV_EFI_HCRTM_EVENT: Self = Self(0x8000_0010);
    /// EV_EFI_VARIABLE_AUTHORITY (PFP): the db or MokList entry that authorized a loaded image,
    /// in PCR 7.
    pub const EV_EFI_VARIABLE_AUTHORITY: Self = Self(0x8000_00e0);
    /// EV_EFI_SPDM_FIRMWARE_BLOB (PFP): device firmware measured over SPDM.
    pub const EV_EFI_SPDM_FIRMWARE_BLOB: Self = Self(0x8000_00e1);
    /// EV_EFI_SPDM_FIRMWARE_CONFIG (PFP): device configuration measured over SPDM.
    pub const EV_EFI_SPDM_FIRMWARE_CONFIG: Self = Self(0x8000_00e2);

    /// Every named type, in order of value.
    pub const ALL: [Self; 36] = [
        Self::EV_PREBOOT_CERT,
        Self::EV_POST_CODE,
        Self::EV_UNUSED,
        Self::EV_NO_ACTION,
        Self::EV_SEPARATOR,
        Self::EV_ACTION,
        Self::EV_EVENT_TAG,
        Self::EV_S_CRTM_CONTENTS,
        Self::EV_S_CRTM_VERSION,
        Self::EV_CPU_MICROCODE,
        Self::EV_PLATFORM_CONFIG_FLAGS,
        Self::EV_TABLE_OF_DEVICES,
        Self::EV_COMPACT_HASH,
        Self::EV_IPL,
        Self::EV_IPL_PARTITION_DATA,
        Self::EV_NONHOST_CODE,
        Self::EV_NONHOST_CONFIG,
        Self::EV_NONHOST_INFO,
        Self::EV_OMIT_BOOT_DEVICE_EVENTS,
        Self::EV_EFI_EVENT_BASE,
        Self::EV_EFI_VARIABLE_DRIVER_CONFIG,
        Self::EV_EFI_VARIABLE_BOOT,
        Self::EV_EFI_BOOT_SERVICES_APPLICATION,
        Self::EV_EFI_BOOT_SERVICES_DRIVER,
        Self::EV_EFI_RUNTIME_SERVICES_DRIVER,
        Self::EV_EFI_GPT_EVENT,
        Self::EV_EFI_ACTION,
        Self::EV_EFI_PLATFORM_FIRMWARE_BLOB,
        Self::EV_EFI_HANDOFF_TABLES,
        Self::EV_EFI_PLATFORM_FIRMWARE_BLOB2,
        Self::EV_EFI_HANDOFF_TABLES2,
        Self::EV_EFI_VARIABLE_BOOT2,
        Self::EV_EFI_HCRTM_EVENT,
        Self::EV_EFI_VARIABLE_AUTHORITY,
        Self::EV_EFI_SPDM_FIRMWARE_BLOB,
        Self::EV_EFI_SPDM_FIRMWARE_CONFIG,
    ];

    /// Creates an event type from its value.
    pub const fn new(value: u32) -> Self {
        Self(value)
    }

    /// Returns the value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Returns the PFP name, such as "EV_IPL", or `None` for a value without one.
    pub const fn name(self) -> Option<&'static str> {
        let name = match self {
            Self::EV_PREBOOT_CERT => "EV_PREBOOT_CERT",
            Self::EV_POST_CODE => "EV_POST_CODE",
            Self::EV_UNUSED => "EV_UNUSED",
            Self::EV_NO_ACTION => "EV_NO_ACTION",
            Self::EV_SEPARATOR => "EV_SEPARATOR",
            Self::EV_ACTION => "EV_ACTION",
            Self::EV_EVENT_TAG => "EV_EVENT_TAG",
            Self::EV_S_CRTM_CONTENTS => "EV_S_CRTM_CONTENTS",
            Self::EV_S_CRTM_VERSION => "EV_S_CRTM_VERSION",
            Self::EV_CPU_MICROCODE => "EV_CPU_MICROCODE",
            Self::EV_PLATFORM_CONFIG_FLAGS => "EV_PLATFORM_CONFIG_FLAGS",
            Self::EV_TABLE_OF_DEVICES => "EV_TABLE_OF_DEVICES",
            Self::EV_COMPACT_HASH => "EV_COMPACT_HASH",
            Self::EV_IPL => "EV_IPL",
            Self::EV_IPL_PARTITION_DATA => "EV_IPL_PARTITION_DATA",
            Self::EV_NONHOST_CODE => "EV_NONHOST_CODE",
            Self::EV_NONHOST_CONFIG => "EV_NONHOST_CONFIG",
            Self::EV_NONHOST_INFO => "EV_NONHOST_INFO",
            Self::EV_OMIT_BOOT_DEVICE_EVENTS => "EV_OMIT_BOOT_DEVICE_EVENTS",
            Self::EV_EFI_EVENT_BASE => "EV_EFI_EVENT_BASE",
            Self::EV_EFI_VARIABLE_DRIVER_CONFIG => "EV_EFI_VARIABLE_DRIVER_CONFIG",
            Self::EV_EFI_VARIABLE_BOOT => "EV_EFI_VARIABLE_BOOT",
            Self::EV_EFI_BOOT_SERVICES_APPLICATION => "EV_EFI_BOOT_SERVICES_APPLICATION",
            Self::EV_EFI_BOOT_SERVICES_DRIVER => "EV_EFI_BOOT_SERVICES_DRIVER",
            Self::EV_EFI_RUNTIME_SERVICES_DRIVER => "EV_EFI_RUNTIME_SERVICES_DRIVER",
            Self::EV_EFI_GPT_EVENT => "EV_EFI_GPT_EVENT",
            Self::EV_EFI_ACTION => "EV_EFI_ACTION",
            Self::EV_EFI_PLATFORM_FIRMWARE_BLOB => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
            Self::EV_EFI_HANDOFF_TABLES => "EV_EFI_HANDOFF_TABLES",
            Self::EV_EFI_PLATFORM_FIRMWARE_BLOB2 => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
            Self::EV_EFI_HANDOFF_TABLES2 => "EV_EFI_HANDOFF_TABLES2",
            Self::EV_EFI_VARIABLE_BOOT2 => "EV_EFI_VARIABLE_BOOT2",
            Self::EV_EFI_HCRTM_EVENT => "EV_EFI_HCRTM_EVENT",
            Self::EV_EFI_VARIABLE_AUTHORITY => "EV_EFI_VARIABLE_AUTHORITY",
            Self::EV_EFI_SPDM_FIRMWARE_BLOB => "EV_EFI_SPDM_FIRMWARE_BLOB",
            Self::EV_EFI_SPDM_FIRMWARE_CONFIG => "EV_EFI_SPDM_FIRMWARE_CONFIG",
            _ => return None,
        };
        Some(name)
    }
}

impl fmt::Display for EventType {
    /// Writes the PFP name, or the value in hexadecimal for a type without one, padded to the
    /// requested width.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.pad(name),
            None => f.pad(&format!("{:#010x}", self.0)),
        }
    }
}
