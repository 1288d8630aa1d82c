//! Malformed and unsupported UKIs: each yields its own error, and no input panics.

mod support;

use appliance_secureboot::{
    predict_pcr11, read_image, Error, Pcr11Options, PcrBank, PhasePath, ProfileScope, Uki,
};
use support::{
    put_u16, put_u32, BuiltPe, PeBuilder, PE_OFFSET, SECTION_POINTER_TO_RAW_DATA,
    SECTION_SIZE_OF_RAW_DATA, SECTION_VIRTUAL_ADDRESS, SECTION_VIRTUAL_SIZE,
};

const LINUX: &[u8] = b"MZ fake kernel image";
const INITRD: &[u8] = b"070701 fake cpio archive";

fn two_section_image() -> BuiltPe {
    PeBuilder::new()
        .section(".linux", LINUX)
        .section(".initrd", INITRD)
        .build()
}

fn parse_error(bytes: &[u8]) -> Error {
    Uki::parse(bytes).expect_err("image must be rejected")
}

fn measure_error(bytes: &[u8], profile: u32) -> Error {
    let uki = Uki::parse(bytes).expect("layout is valid");
    uki.measured_sections(profile)
        .expect_err("measurement must be rejected")
}

#[test]
fn empty_file_is_truncated() {
    let error = parse_error(&[]);
    assert!(
        matches!(
            error,
            Error::Truncated {
                structure: "DOS magic",
                start: 0,
                end: 2,
                file_len: 0
            }
        ),
        "{error:?}"
    );
}

#[test]
fn cut_headers_are_truncated() {
    let image = two_section_image();
    let cases = [
        (40, "DOS header"),
        (PE_OFFSET + 10, "PE signature and COFF header"),
        (image.optional_header_offset + 100, "optional header"),
        (image.section_table_offset + 50, "section table"),
    ];
    for (length, expected_structure) in cases {
        let error = parse_error(&image.bytes[..length]);
        match error {
            Error::Truncated {
                structure,
                file_len,
                ..
            } => {
                assert_eq!(structure, expected_structure, "cut at {length}");
                assert_eq!(file_len, length as u64, "cut at {length}");
            }
            other => panic!("cut at {length}: expected Truncated, got {other:?}"),
        }
    }
}

#[test]
fn wrong_dos_magic() {
    let mut image = two_section_image();
    image.bytes[0..2].copy_from_slice(b"ZM");

    let error = parse_error(&image.bytes);
    assert!(
        matches!(
            error,
            Error::DosMagic {
                found: [b'Z', b'M']
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("not a PE/EFI image"), "{error}");
}

#[test]
fn pe_offset_inside_dos_header() {
    let mut image = two_section_image();
    put_u32(&mut image.bytes, 0x3c, 0x20);

    let error = parse_error(&image.bytes);
    assert!(
        matches!(error, Error::PeHeaderOffset { offset: 0x20 }),
        "{error:?}"
    );
}

#[test]
fn wrong_pe_signature() {
    let mut image = two_section_image();
    image.bytes[PE_OFFSET + 3] = 1;

    let error = parse_error(&image.bytes);
    assert!(
        matches!(
            error,
            Error::PeMagic {
                offset,
                found: [b'P', b'E', 0, 1]
            } if offset == PE_OFFSET as u64
        ),
        "{error:?}"
    );
}

#[test]
fn missing_optional_header() {
    let mut image = two_section_image();
    put_u16(&mut image.bytes, PE_OFFSET + 4 + 16, 0);

    let error = parse_error(&image.bytes);
    assert!(matches!(error, Error::MissingOptionalHeader), "{error:?}");
}

#[test]
fn wrong_optional_header_magic() {
    let mut image = two_section_image();
    put_u16(&mut image.bytes, image.optional_header_offset, 0x30b);

    let error = parse_error(&image.bytes);
    assert!(
        matches!(error, Error::OptionalHeaderMagic { found: 0x30b, .. }),
        "{error:?}"
    );
}

#[test]
fn optional_header_too_small() {
    // PE32+ needs 112 bytes before the data directories.
    let mut image = two_section_image();
    put_u16(&mut image.bytes, PE_OFFSET + 4 + 16, 100);

    let error = parse_error(&image.bytes);
    assert!(
        matches!(
            error,
            Error::OptionalHeaderSize {
                declared: 100,
                needed: 112
            }
        ),
        "{error:?}"
    );
}

#[test]
fn too_many_data_directories() {
    let mut image = two_section_image();
    put_u32(&mut image.bytes, image.optional_header_offset + 108, 17);

    let error = parse_error(&image.bytes);
    assert!(
        matches!(
            error,
            Error::OptionalHeaderSize {
                declared: 240,
                needed: 248
            }
        ),
        "{error:?}"
    );
}

#[test]
fn data_directories_past_declared_size() {
    // 16 directories need 240 bytes, but the COFF header declares 200.
    let mut image = two_section_image();
    put_u16(&mut image.bytes, PE_OFFSET + 4 + 16, 200);

    let error = parse_error(&image.bytes);
    assert!(
        matches!(
            error,
            Error::OptionalHeaderSize {
                declared: 200,
                needed: 240
            }
        ),
        "{error:?}"
    );
}

#[test]
fn section_past_end_of_file() {
    let mut image = two_section_image();
    let file_len = u32::try_from(image.bytes.len()).expect("small image");
    image.set_section_field(1, SECTION_POINTER_TO_RAW_DATA, file_len - 0x100);

    let error = parse_error(&image.bytes);
    match error {
        Error::SectionPastEnd {
            ref name,
            index,
            start,
            end,
            file_len: reported_len,
        } => {
            assert_eq!(name, ".initrd");
            assert_eq!(index, 1);
            assert_eq!(start, u64::from(file_len - 0x100));
            assert_eq!(end, u64::from(file_len + 0x100));
            assert_eq!(reported_len, u64::from(file_len));
        }
        other => panic!("expected SectionPastEnd, got {other:?}"),
    }
    assert!(error.to_string().contains(".initrd"), "{error}");
}

#[test]
fn truncated_last_section_past_end() {
    let image = two_section_image();
    let cut = &image.bytes[..image.bytes.len() - 1];

    let error = parse_error(cut);
    assert!(
        matches!(error, Error::SectionPastEnd { index: 1, .. }),
        "{error:?}"
    );
}

#[test]
fn huge_size_of_raw_data_past_end() {
    let mut image = two_section_image();
    image.set_section_field(0, SECTION_SIZE_OF_RAW_DATA, u32::MAX);

    let error = parse_error(&image.bytes);
    assert!(
        matches!(error, Error::SectionPastEnd { index: 0, .. }),
        "{error:?}"
    );
}

#[test]
fn sections_overlap_in_file() {
    let mut image = two_section_image();
    let first_pointer = u32::from_le_bytes(
        image.bytes[image.section_header(0) + SECTION_POINTER_TO_RAW_DATA..][..4]
            .try_into()
            .expect("4 bytes"),
    );
    image.set_section_field(1, SECTION_POINTER_TO_RAW_DATA, first_pointer + 0x100);

    let error = parse_error(&image.bytes);
    match error {
        Error::SectionsOverlapInFile {
            ref first,
            first_index,
            ref second,
            second_index,
            overlap_start,
            overlap_end,
        } => {
            assert_eq!(first, ".linux");
            assert_eq!(first_index, 0);
            assert_eq!(second, ".initrd");
            assert_eq!(second_index, 1);
            assert_eq!(overlap_start, u64::from(first_pointer + 0x100));
            assert_eq!(overlap_end, u64::from(first_pointer + 0x200));
        }
        other => panic!("expected SectionsOverlapInFile, got {other:?}"),
    }
}

#[test]
fn sections_overlap_in_memory() {
    let mut image = two_section_image();
    image.set_section_field(1, SECTION_VIRTUAL_ADDRESS, 0x1000 + 4);

    let error = parse_error(&image.bytes);
    assert!(
        matches!(
            error,
            Error::SectionsOverlapInMemory {
                first_index: 0,
                second_index: 1,
                overlap_start: 0x1004,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn contained_section_overlaps() {
    // The second section lies inside the first in memory, and the third follows the first.
    let mut image = PeBuilder::new()
        .section(".linux", &[1; 0x3000])
        .section(".osrel", b"os-release")
        .section(".initrd", INITRD)
        .build();
    image.set_section_field(1, SECTION_VIRTUAL_ADDRESS, 0x1100);
    image.set_section_field(1, SECTION_VIRTUAL_SIZE, 0x10);

    let error = parse_error(&image.bytes);
    assert!(
        matches!(
            error,
            Error::SectionsOverlapInMemory {
                first_index: 0,
                second_index: 1,
                overlap_start: 0x1100,
                overlap_end: 0x1110,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn huge_virtual_size() {
    let mut image = two_section_image();
    image.set_section_field(1, SECTION_VIRTUAL_SIZE, 0xffff_fff0);

    let error = parse_error(&image.bytes);
    match error {
        Error::VirtualSizeTooLarge {
            ref name,
            index,
            virtual_size,
            ..
        } => {
            assert_eq!(name, ".initrd");
            assert_eq!(index, 1);
            assert_eq!(virtual_size, 0xffff_fff0);
        }
        other => panic!("expected VirtualSizeTooLarge, got {other:?}"),
    }
    assert!(error.to_string().contains("SizeOfImage"), "{error}");
}

#[test]
fn duplicate_linux_in_base() {
    let image = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".initrd", INITRD)
        .section(".linux", b"a second kernel")
        .build();

    let error = measure_error(&image.bytes, 0);
    assert!(
        matches!(
            error,
            Error::DuplicateSection {
                name: ".linux",
                scope: ProfileScope::Base,
                first_index: 0,
                second_index: 2
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("base sections"), "{error}");
}

#[test]
fn duplicate_cmdline_in_profile() {
    let image = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".profile", b"ID=default")
        .section(".cmdline", b"one")
        .section(".cmdline", b"two")
        .build();

    let error = measure_error(&image.bytes, 0);
    assert!(
        matches!(
            error,
            Error::DuplicateSection {
                name: ".cmdline",
                scope: ProfileScope::Profile(0),
                first_index: 2,
                second_index: 3
            }
        ),
        "{error:?}"
    );
}

#[test]
fn same_section_in_two_profiles_allowed() {
    let image = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".profile", b"ID=one")
        .section(".cmdline", b"one")
        .section(".profile", b"ID=two")
        .section(".cmdline", b"two")
        .build();
    let uki = Uki::parse(&image.bytes).expect("parses");

    assert!(uki.measured_sections(0).is_ok());
    assert!(uki.measured_sections(1).is_ok());
}

#[test]
fn dtbauto_is_unpredictable() {
    let image = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".dtbauto", b"device tree one")
        .section(".dtbauto", b"device tree two")
        .build();

    let error = measure_error(&image.bytes, 0);
    assert!(
        matches!(
            error,
            Error::UnpredictableSection {
                name: ".dtbauto",
                index: 1
            }
        ),
        "{error:?}"
    );
}

#[test]
fn missing_linux() {
    let image = PeBuilder::new()
        .section(".cmdline", b"console=ttyS0")
        .build();

    let error = measure_error(&image.bytes, 0);
    assert!(
        matches!(error, Error::MissingLinux { profile: 0 }),
        "{error:?}"
    );
}

#[test]
fn image_without_sections_has_no_linux() {
    let image = PeBuilder::new().build();

    let error = measure_error(&image.bytes, 0);
    assert!(
        matches!(error, Error::MissingLinux { profile: 0 }),
        "{error:?}"
    );
}

#[test]
fn profile_not_found() {
    let without_profiles = PeBuilder::new().section(".linux", LINUX).build();
    let error = measure_error(&without_profiles.bytes, 1);
    assert!(
        matches!(
            error,
            Error::ProfileNotFound {
                requested: 1,
                available: 0
            }
        ),
        "{error:?}"
    );

    let with_two = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".profile", b"ID=one")
        .section(".profile", b"ID=two")
        .build();
    let error = measure_error(&with_two.bytes, 2);
    assert!(
        matches!(
            error,
            Error::ProfileNotFound {
                requested: 2,
                available: 2
            }
        ),
        "{error:?}"
    );
}

#[test]
fn prediction_propagates_measurement_error() {
    let image = PeBuilder::new().section(".osrel", b"ID=debian").build();
    let uki = Uki::parse(&image.bytes).expect("parses");

    let error = predict_pcr11(&uki, &Pcr11Options::default()).expect_err("no .linux");
    assert!(
        matches!(error, Error::MissingLinux { profile: 0 }),
        "{error:?}"
    );
}

#[test]
fn unknown_bank() {
    let error = "md5".parse::<PcrBank>().expect_err("md5 is no PCR bank");
    assert!(
        matches!(error, Error::UnknownBank(ref name) if name == "md5"),
        "{error:?}"
    );
}

#[test]
fn unknown_phase_word() {
    let error = "enter-initrd:leave-initdr"
        .parse::<PhasePath>()
        .expect_err("typo in phase word");
    assert!(
        matches!(error, Error::UnknownPhase { ref word, .. } if word == "leave-initdr"),
        "{error:?}"
    );
}

#[test]
fn empty_phase_path() {
    for path in ["", ":", "::"] {
        let error = path.parse::<PhasePath>().expect_err("no phase words");
        assert!(
            matches!(error, Error::EmptyPhasePath(_)),
            "{path:?}: {error:?}"
        );
    }
}

#[test]
fn missing_file_read_error() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("absent.efi");

    let error = read_image(&path).expect_err("file does not exist");
    match &error {
        Error::Read {
            path: reported,
            source,
        } => {
            assert_eq!(reported, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Read, got {other:?}"),
    }
}

#[test]
fn every_prefix_fails_without_panic() {
    let image = two_section_image();
    for length in 0..image.bytes.len() {
        let result = Uki::parse(&image.bytes[..length]);
        assert!(result.is_err(), "prefix of {length} bytes was accepted");
    }
}

#[test]
fn corrupted_headers_never_panic() {
    // Corrupts header bytes pseudo-randomly but deterministically. Each result may be Ok or
    // Err, but parsing and predicting must return.
    let image = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".profile", b"ID=one")
        .section(".initrd", INITRD)
        .build();
    let headers_end = image.section_header(3);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let options = Pcr11Options {
        banks: vec![PcrBank::Sha256],
        ..Pcr11Options::default()
    };

    for _ in 0..3000 {
        let mut bytes = image.bytes.clone();
        for _ in 0..4 {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let offset = usize::try_from(state % headers_end as u64).expect("offset fits");
            bytes[offset] = state.to_le_bytes()[4];
        }
        if let Ok(uki) = Uki::parse(&bytes) {
            let _ = predict_pcr11(&uki, &options);
        }
    }
}

#[test]
fn invalid_long_name_reference() {
    // A name starting with "/" refers to the COFF string table, and "x" is no offset.
    let image = PeBuilder::new()
        .section(".linux", LINUX)
        .section("/x", b"odd name")
        .build();

    let error = parse_error(&image.bytes);
    assert!(
        matches!(
            error,
            Error::Parse {
                structure: "section table",
                ..
            }
        ),
        "{error:?}"
    );
}
