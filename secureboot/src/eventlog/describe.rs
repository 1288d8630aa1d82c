//! Short descriptions decoded from the event data of known event types.
//!
//! The decoders read untrusted bytes: each one checks every length against the data it has and
//! returns `None` for data it cannot read.

use super::event_type::EventType;
use super::parse::{SPEC_ID_SIGNATURE, STARTUP_LOCALITY_SIGNATURE};
use super::EventRecord;

/// Characters kept from a description. Kernel command lines run to kilobytes, and a
/// description only has to identify the event.
const MAX_DESCRIPTION_CHARS: usize = 120;

/// Tag IDs of EV_EVENT_TAG events from the Linux EFI stub (drivers/firmware/efi/libstub/
/// efistub.h) and from systemd (src/fundamental/tpm2-pcr.h, systemd 257), with their names.
const KNOWN_TAGS: [(u32, &str); 7] = [
    (0x8f3b_22ec, "Linux initrd"),
    (0x8f3b_22ed, "Linux load options"),
    (0xf5bc_582a, "systemd-boot loader.conf"),
    (0x6c46_f751, "systemd-stub devicetree add-on"),
    (0x49df_fe0f, "systemd-stub initrd add-on"),
    (0xdac0_8e1a, "systemd-stub microcode add-on"),
    (0x13ae_d6db, "systemd-stub UKI profile"),
];

pub(super) fn describe(record: &EventRecord<'_>) -> Option<String> {
    let data = record.data;
    let description = match record.event_type {
        EventType::EV_NO_ACTION => no_action(data),
        EventType::EV_SEPARATOR => separator(data),
        EventType::EV_EVENT_TAG => tagged_events(data),
        EventType::EV_EFI_VARIABLE_DRIVER_CONFIG
        | EventType::EV_EFI_VARIABLE_BOOT
        | EventType::EV_EFI_VARIABLE_BOOT2
        | EventType::EV_EFI_VARIABLE_AUTHORITY => variable(data),
        EventType::EV_EFI_BOOT_SERVICES_APPLICATION
        | EventType::EV_EFI_BOOT_SERVICES_DRIVER
        | EventType::EV_EFI_RUNTIME_SERVICES_DRIVER => image_load(data),
        EventType::EV_EFI_PLATFORM_FIRMWARE_BLOB => firmware_blob(data),
        // EV_IPL, EV_S_CRTM_VERSION, EV_ACTION, EV_EFI_ACTION and others carry plain strings.
        _ => text(data),
    }?;
    Some(shorten(&description))
}

fn no_action(data: &[u8]) -> Option<String> {
    if data.starts_with(SPEC_ID_SIGNATURE) {
        return Some("Spec ID Event03 header".to_owned());
    }
    if let Some(rest) = data.strip_prefix(STARTUP_LOCALITY_SIGNATURE) {
        return match rest {
            [locality] => Some(format!("StartupLocality {locality}")),
            _ => None,
        };
    }
    // Other EV_NO_ACTION events, such as "SP800-155 Event", also start with a NUL-terminated
    // ASCII signature.
    let end = data.iter().position(|&byte| byte == 0)?;
    ascii(&data[..end])
}

fn separator(data: &[u8]) -> Option<String> {
    let value = u32_at(data, 0).filter(|_| data.len() == 4)?;
    Some(format!("separator {value:#010x}"))
}

/// Decodes a list of TCG_PCClientTaggedEvent structures: u32 tag ID, u32 data size, data.
fn tagged_events(data: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    let mut rest = data;
    let mut length = 0;
    while !rest.is_empty() && length < MAX_DESCRIPTION_CHARS {
        let id = u32_at(rest, 0)?;
        let size = usize::try_from(u32_at(rest, 4)?).ok()?;
        let body = rest.get(8..8usize.checked_add(size)?)?;
        rest = &rest[8 + size..];

        let name = KNOWN_TAGS
            .iter()
            .find(|(known, _)| *known == id)
            .map_or_else(|| format!("tag {id:#010x}"), |(_, name)| (*name).to_owned());
        let part = match text(body) {
            Some(text) => format!("{name}: {text}"),
            None => format!("{name}, {size} bytes"),
        };
        length += part.len();
        parts.push(part);
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("; "))
}

/// Reads the name of a UEFI_VARIABLE_DATA structure: a 16-byte vendor GUID, u64 name length
/// in UTF-16 code units, u64 data length, the name, the data.
fn variable(data: &[u8]) -> Option<String> {
    let name_units = usize::try_from(u64_at(data, 16)?).ok()?;
    let name_end = name_units.checked_mul(2)?.checked_add(32)?;
    let name = utf16_units(data.get(32..name_end)?)?;
    Some(format!("variable {}", String::from_utf16(&name).ok()?))
}

/// Reads the file path of a UEFI_IMAGE_LOAD_EVENT: u64 image address, u64 image length, u64
/// link-time address, u64 device path length, the device path.
fn image_load(data: &[u8]) -> Option<String> {
    let path_len = usize::try_from(u64_at(data, 24)?).ok()?;
    let mut nodes = data.get(32..32usize.checked_add(path_len)?)?;

    // Device path nodes are u8 type, u8 subtype, u16 length (including these 4 bytes), data.
    // Media (4) / file path (4) nodes hold a NUL-terminated UTF-16 path. Like systemd-pcrlock,
    // keep the last one, which names the file inside the partition.
    let mut file = None;
    while let [node_type, subtype, length_low, length_high, ..] = *nodes {
        if node_type == 0x7f {
            break;
        }
        let length = usize::from(u16::from_le_bytes([length_low, length_high]));
        if length < 4 {
            return None;
        }
        let node = nodes.get(4..length)?;
        if (node_type, subtype) == (4, 4) {
            file = Some(utf16(node)?);
        }
        nodes = &nodes[length..];
    }
    file.map(|path| format!("file {path}"))
}

/// Reads a UEFI_PLATFORM_FIRMWARE_BLOB: u64 base address, u64 length.
fn firmware_blob(data: &[u8]) -> Option<String> {
    if data.len() != 16 {
        return None;
    }
    let base = u64_at(data, 0)?;
    let length = u64_at(data, 8)?;
    Some(format!("firmware blob at {base:#x}, {length} bytes"))
}

/// Decodes event data that is a string: printable ASCII, or UTF-16LE as UEFI writes strings,
/// each with or without NUL terminators.
fn text(data: &[u8]) -> Option<String> {
    ascii(data).or_else(|| utf16(data))
}

fn ascii(data: &[u8]) -> Option<String> {
    let end = data.iter().rposition(|&byte| byte != 0)? + 1;
    let bytes = &data[..end];
    let printable = bytes
        .iter()
        .all(|&byte| byte.is_ascii_graphic() || byte.is_ascii_whitespace());
    printable.then(|| bytes.iter().map(|&byte| char::from(byte)).collect())
}

fn utf16(data: &[u8]) -> Option<String> {
    let mut units = utf16_units(data)?;
    let terminated = units.last() == Some(&0);
    while units.last() == Some(&0) {
        units.pop();
    }
    let text = String::from_utf16(&units).ok()?;
    // Binary data often decodes as UTF-16 by chance, mostly to CJK characters. Accept only text
    // without control characters that is NUL-terminated, as UEFI writes strings, or ASCII.
    let plausible = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_control() && !c.is_ascii_whitespace())
        && (terminated || text.is_ascii());
    plausible.then_some(text)
}

fn utf16_units(data: &[u8]) -> Option<Vec<u16>> {
    if !data.len().is_multiple_of(2) {
        return None;
    }
    Some(
        data.chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect(),
    )
}

/// Escapes control characters and cuts the text to [`MAX_DESCRIPTION_CHARS`].
fn shorten(text: &str) -> String {
    let mut short = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == MAX_DESCRIPTION_CHARS {
            short.push('…');
            break;
        }
        if c.is_control() {
            short.extend(c.escape_default());
        } else {
            short.push(c);
        }
    }
    short
}

fn u32_at(data: &[u8], offset: usize) -> Option<u32> {
    let bytes = data.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn u64_at(data: &[u8], offset: usize) -> Option<u64> {
    let bytes = data.get(offset..offset.checked_add(8)?)?;
    let mut array = [0; 8];
    array.copy_from_slice(bytes);
    Some(u64::from_le_bytes(array))
}
