//! Short descriptions decoded from event data.

#[path = "support/eventlog_writer.rs"]
mod eventlog_writer;

use appliance_secureboot::eventlog::EventLog;
use eventlog_writer::*;

const SYSTEMD_UKI_PROFILE_TAG: u32 = 0x13ae_d6db;
const LINUX_INITRD_TAG: u32 = 0x8f3b_22ec;

/// Returns the description of a single event of `event_type` with `data`.
fn describe(event_type: u32, data: &[u8]) -> Option<String> {
    let bytes = LogWriter::crypto_agile(&[(SHA256, 32)])
        .measure(4, event_type, data)
        .build();
    let log = EventLog::parse(&bytes).expect("valid log");
    log.records()[1].description()
}

fn tagged(id: u32, data: &[u8]) -> Vec<u8> {
    let mut event = id.to_le_bytes().to_vec();
    event.extend_from_slice(&to_u32(data.len()).to_le_bytes());
    event.extend_from_slice(data);
    event
}

fn image_load_event(device_path: &[u8]) -> Vec<u8> {
    let mut event = Vec::new();
    event.extend_from_slice(&0x7e00_0000u64.to_le_bytes()); // image address
    event.extend_from_slice(&0x5000u64.to_le_bytes()); // image length
    event.extend_from_slice(&0u64.to_le_bytes()); // link-time address
    event.extend_from_slice(&(device_path.len() as u64).to_le_bytes());
    event.extend_from_slice(device_path);
    event
}

fn device_path_node(node_type: u8, subtype: u8, data: &[u8]) -> Vec<u8> {
    let mut node = vec![node_type, subtype];
    let length = u16::try_from(data.len() + 4).expect("node fits its u16 length");
    node.extend_from_slice(&length.to_le_bytes());
    node.extend_from_slice(data);
    node
}

fn variable_event(name: &str, name_units: u64, value: &[u8]) -> Vec<u8> {
    let mut event = vec![0x61; 16]; // vendor GUID
    event.extend_from_slice(&name_units.to_le_bytes());
    event.extend_from_slice(&(value.len() as u64).to_le_bytes());
    event.extend(name.encode_utf16().flat_map(u16::to_le_bytes));
    event.extend_from_slice(value);
    event
}

#[test]
fn ipl_utf16_string() {
    assert_eq!(
        describe(EV_IPL, &utf16z(".linux")).as_deref(),
        Some(".linux")
    );
}

#[test]
fn ipl_ascii_string() {
    let data = b"grub_cmd: linux /vmlinuz root=/dev/vda2\0";

    assert_eq!(
        describe(EV_IPL, data).as_deref(),
        Some("grub_cmd: linux /vmlinuz root=/dev/vda2")
    );
}

#[test]
fn ipl_binary_data_undecoded() {
    assert_eq!(describe(EV_IPL, &[0x01, 0x02, 0x03, 0x00]), None);
    assert_eq!(describe(EV_IPL, &[]), None);
}

#[test]
fn efi_action_string() {
    assert_eq!(
        describe(EV_EFI_ACTION, b"Exit Boot Services Invocation").as_deref(),
        Some("Exit Boot Services Invocation")
    );
}

#[test]
fn systemd_tagged_event() {
    let data = tagged(SYSTEMD_UKI_PROFILE_TAG, &utf16z("profile 1"));

    assert_eq!(
        describe(EV_EVENT_TAG, &data).as_deref(),
        Some("systemd-stub UKI profile: profile 1")
    );
}

#[test]
fn linux_tagged_event() {
    let data = tagged(LINUX_INITRD_TAG, b"Linux initrd\0");

    assert_eq!(
        describe(EV_EVENT_TAG, &data).as_deref(),
        Some("Linux initrd: Linux initrd")
    );
}

#[test]
fn several_tagged_events() {
    let mut data = tagged(LINUX_INITRD_TAG, b"Linux initrd\0");
    data.extend(tagged(0x1234, &[0x01, 0x02, 0xff]));

    assert_eq!(
        describe(EV_EVENT_TAG, &data).as_deref(),
        Some("Linux initrd: Linux initrd; tag 0x00001234, 3 bytes")
    );
}

#[test]
fn tagged_event_past_end_undecoded() {
    let mut data = tagged(SYSTEMD_UKI_PROFILE_TAG, &utf16z("profile 1"));
    data[4] = 0xff;

    assert_eq!(describe(EV_EVENT_TAG, &data), None);
    assert_eq!(describe(EV_EVENT_TAG, &[1, 2, 3]), None);
}

#[test]
fn control_characters_escaped() {
    assert_eq!(describe(EV_IPL, b"a\tb\n").as_deref(), Some("a\\tb\\n"));
}

#[test]
fn long_text_cut() {
    let data = "x".repeat(300);

    let description = describe(EV_IPL, data.as_bytes()).expect("text");

    assert_eq!(description, format!("{}…", "x".repeat(120)));
}

#[test]
fn image_load_file_path() {
    let mut path = device_path_node(1, 1, &[0, 0]);
    path.extend(device_path_node(4, 4, &utf16z("\\EFI\\BOOT\\BOOTX64.EFI")));
    path.extend(device_path_node(0x7f, 0xff, &[]));

    let description = describe(EV_EFI_BOOT_SERVICES_APPLICATION, &image_load_event(&path));

    assert_eq!(
        description.as_deref(),
        Some("file \\EFI\\BOOT\\BOOTX64.EFI")
    );
}

#[test]
fn image_load_corrupt_path_undecoded() {
    let short_node = [4, 4, 2, 0, 0x41, 0];
    let long_node = [4, 4, 0xff, 0, 0x41, 0];

    assert_eq!(
        describe(
            EV_EFI_BOOT_SERVICES_APPLICATION,
            &image_load_event(&short_node)
        ),
        None
    );
    assert_eq!(
        describe(
            EV_EFI_BOOT_SERVICES_APPLICATION,
            &image_load_event(&long_node)
        ),
        None
    );
    let mut huge_length = image_load_event(&[]);
    huge_length[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(
        describe(EV_EFI_BOOT_SERVICES_APPLICATION, &huge_length),
        None
    );
}

#[test]
fn variable_name() {
    let data = variable_event("SecureBoot", 10, &[1]);

    assert_eq!(
        describe(EV_EFI_VARIABLE_DRIVER_CONFIG, &data).as_deref(),
        Some("variable SecureBoot")
    );
}

#[test]
fn variable_name_past_end_undecoded() {
    let data = variable_event("SecureBoot", u64::MAX / 2, &[1]);

    assert_eq!(describe(EV_EFI_VARIABLE_DRIVER_CONFIG, &data), None);
}

#[test]
fn separator_value() {
    assert_eq!(
        describe(EV_SEPARATOR, &[0; 4]).as_deref(),
        Some("separator 0x00000000")
    );
}

#[test]
fn spec_id_event() {
    let bytes = LogWriter::crypto_agile(&[(SHA256, 32)]).build();

    let log = EventLog::parse(&bytes).expect("valid log");

    assert_eq!(
        log.records()[0].description().as_deref(),
        Some("Spec ID Event03 header")
    );
}
