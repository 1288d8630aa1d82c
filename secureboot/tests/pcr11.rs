//! PCR 11 prediction on synthetic UKIs, checked against hand-computed digests.

mod support;

use appliance_secureboot::{
    predict_pcr11, Error, Pcr11Options, PcrBank, PhasePath, ProfileScope, Uki, UnifiedSection,
};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use support::{hand_pcr11, words, PeBuilder, SECTION_VIRTUAL_SIZE};

const LINUX: &[u8] = b"MZ fake kernel image";
const INITRD: &[u8] = b"070701 fake cpio archive";
const CMDLINE: &[u8] = b"console=ttyS0 rd.systemd.unit=initrd.target";
const OSREL: &[u8] = b"ID=debian\nVERSION_ID=13\n";

fn options(banks: &[PcrBank], phases: &[&str]) -> Pcr11Options {
    Pcr11Options {
        banks: banks.to_vec(),
        phase_paths: phases
            .iter()
            .map(|path| path.parse().expect("valid phase path"))
            .collect(),
        profile: 0,
    }
}

fn predict_hex(bytes: &[u8], options: &Pcr11Options) -> Vec<(String, String, String)> {
    let uki = Uki::parse(bytes).expect("synthetic UKI parses");
    let prediction = predict_pcr11(&uki, options).expect("prediction succeeds");
    prediction
        .banks
        .iter()
        .flat_map(|bank| {
            bank.phases.iter().map(|phase| {
                (
                    bank.bank.name().to_owned(),
                    phase.phase.to_string(),
                    phase.value.to_hex(),
                )
            })
        })
        .collect()
}

fn sha256_after(bytes: &[u8], phase: &str) -> String {
    let result = predict_hex(bytes, &options(&[PcrBank::Sha256], &[phase]));
    assert_eq!(result.len(), 1);
    result[0].2.clone()
}

#[test]
fn linux_only_default_phases() {
    let image = PeBuilder::new().section(".linux", LINUX).build();

    let result = predict_hex(
        &image.bytes,
        &Pcr11Options {
            banks: vec![PcrBank::Sha256],
            ..Pcr11Options::default()
        },
    );

    let expected_phases = [
        "enter-initrd",
        "enter-initrd:leave-initrd",
        "enter-initrd:leave-initrd:sysinit",
        "enter-initrd:leave-initrd:sysinit:ready",
    ];
    assert_eq!(result.len(), expected_phases.len());
    for ((bank, phase, hash), expected_phase) in result.iter().zip(expected_phases) {
        assert_eq!(bank, "sha256");
        assert_eq!(phase, expected_phase);
        let expected = hand_pcr11::<Sha256>(&[(".linux", LINUX)], &words(expected_phase));
        assert_eq!(hash, &expected, "phase {expected_phase}");
    }
}

#[test]
fn all_banks_match_hand_computation() {
    let image = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".initrd", INITRD)
        .build();
    let sections: [(&str, &[u8]); 2] = [(".linux", LINUX), (".initrd", INITRD)];
    let phase = "enter-initrd:leave-initrd";

    let result = predict_hex(&image.bytes, &options(&PcrBank::ALL, &[phase]));

    let expected = [
        ("sha1", hand_pcr11::<Sha1>(&sections, &words(phase))),
        ("sha256", hand_pcr11::<Sha256>(&sections, &words(phase))),
        ("sha384", hand_pcr11::<Sha384>(&sections, &words(phase))),
        ("sha512", hand_pcr11::<Sha512>(&sections, &words(phase))),
    ];
    assert_eq!(result.len(), expected.len());
    for ((bank, _, hash), (expected_bank, expected_hash)) in result.iter().zip(&expected) {
        assert_eq!(bank, expected_bank);
        assert_eq!(hash, expected_hash, "bank {bank}");
    }
}

#[test]
fn measurement_order_ignores_file_order() {
    let shuffled = PeBuilder::new()
        .section(".initrd", INITRD)
        .section(".cmdline", CMDLINE)
        .section(".osrel", OSREL)
        .section(".linux", LINUX)
        .build();
    let canonical_layout = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".osrel", OSREL)
        .section(".cmdline", CMDLINE)
        .section(".initrd", INITRD)
        .build();

    let expected = hand_pcr11::<Sha256>(
        &[
            (".linux", LINUX),
            (".osrel", OSREL),
            (".cmdline", CMDLINE),
            (".initrd", INITRD),
        ],
        &["enter-initrd"],
    );
    assert_eq!(sha256_after(&shuffled.bytes, "enter-initrd"), expected);
    assert_eq!(
        sha256_after(&canonical_layout.bytes, "enter-initrd"),
        expected
    );
}

#[test]
fn every_measured_section_in_order() {
    // File order reversed against the measurement order, with every measured kind present.
    // The .profile section makes the sections after it profile 0, which profile 0 measures
    // together with the base sections before it.
    let contents: Vec<(&str, Vec<u8>)> = UnifiedSection::ALL
        .iter()
        .filter(|kind| kind.is_measured() && **kind != UnifiedSection::Dtbauto)
        .map(|kind| (kind.name(), format!("content of {kind}").into_bytes()))
        .collect();
    let mut builder = PeBuilder::new();
    for (name, data) in contents.iter().rev() {
        builder = builder.section(name, data);
    }
    let image = builder.build();

    let expected_sections: Vec<(&str, &[u8])> = contents
        .iter()
        .map(|(name, data)| (*name, data.as_slice()))
        .collect();
    let expected = hand_pcr11::<Sha256>(&expected_sections, &["enter-initrd"]);
    assert_eq!(sha256_after(&image.bytes, "enter-initrd"), expected);

    let uki = Uki::parse(&image.bytes).expect("parses");
    let measured: Vec<&str> = uki
        .measured_sections(0)
        .expect("measured sections")
        .iter()
        .map(|entry| entry.kind.name())
        .collect();
    assert_eq!(
        measured,
        [
            ".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname",
            ".sbat", ".pcrpkey", ".profile", ".hwids",
        ]
    );
}

#[test]
fn virtual_size_trims_alignment_padding() {
    // The builder fills the rest of the 0x200-byte raw block with 0xcc.
    let image = PeBuilder::new().section(".linux", LINUX).build();
    let uki = Uki::parse(&image.bytes).expect("parses");
    let linux = &uki.sections()[0];
    assert_eq!(linux.size_of_raw_data, 0x200);
    assert_eq!(linux.virtual_size as usize, LINUX.len());
    assert_eq!(uki.image().section_data(linux).to_vec(), LINUX);

    let expected = hand_pcr11::<Sha256>(&[(".linux", LINUX)], &["enter-initrd"]);
    assert_eq!(sha256_after(&image.bytes, "enter-initrd"), expected);
}

#[test]
fn virtual_size_past_raw_data_zero_fills() {
    let virtual_size = 0x1000 + 7;
    let image = PeBuilder::new()
        .section_with_virtual_size(b".linux", LINUX, virtual_size)
        .build();
    // The loader copies the whole raw block, including the builder's 0xcc alignment padding,
    // because VirtualSize exceeds SizeOfRawData. Only the rest is zero-filled.
    let mut loaded = LINUX.to_vec();
    loaded.resize(0x200, 0xcc);
    loaded.resize(virtual_size as usize, 0);

    let uki = Uki::parse(&image.bytes).expect("parses");
    let data = uki.image().section_data(&uki.sections()[0]);
    assert_eq!(data.file_data, &loaded[..0x200]);
    assert_eq!(data.zero_fill, u64::from(virtual_size) - 0x200);
    assert_eq!(data.to_vec(), loaded);

    let expected = hand_pcr11::<Sha256>(&[(".linux", &loaded)], &["enter-initrd"]);
    assert_eq!(sha256_after(&image.bytes, "enter-initrd"), expected);
}

#[test]
fn zero_fill_larger_than_chunk() {
    // More than the 64 KiB chunk that the library hashes zero fill in.
    let virtual_size = 200 * 1024 + 3;
    let image = PeBuilder::new()
        .section_with_virtual_size(b".linux", LINUX, virtual_size)
        .build();
    let mut loaded = LINUX.to_vec();
    loaded.resize(0x200, 0xcc);
    loaded.resize(virtual_size as usize, 0);

    for bank in PcrBank::ALL {
        let result = predict_hex(&image.bytes, &options(&[bank], &["ready"]));
        let expected = match bank {
            PcrBank::Sha1 => hand_pcr11::<Sha1>(&[(".linux", &loaded)], &["ready"]),
            PcrBank::Sha256 => hand_pcr11::<Sha256>(&[(".linux", &loaded)], &["ready"]),
            PcrBank::Sha384 => hand_pcr11::<Sha384>(&[(".linux", &loaded)], &["ready"]),
            PcrBank::Sha512 => hand_pcr11::<Sha512>(&[(".linux", &loaded)], &["ready"]),
        };
        assert_eq!(result[0].2, expected, "bank {bank}");
    }
}

#[test]
fn empty_section_not_measured() {
    let image = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".cmdline", b"")
        .build();

    let expected = hand_pcr11::<Sha256>(&[(".linux", LINUX)], &["enter-initrd"]);
    assert_eq!(sha256_after(&image.bytes, "enter-initrd"), expected);
}

#[test]
fn pcrsig_and_plain_sections_not_measured() {
    let image = PeBuilder::new()
        .section(".text", b"stub code")
        .section(".sdmagic", b"#### LoaderInfo: systemd-stub ####")
        .section(".linux", LINUX)
        .section(".pcrsig", b"{\"sha256\":[]}")
        .section(".pcrsig", b"a second signature section is allowed")
        .section(".reloc", b"relocations")
        .build();

    let expected = hand_pcr11::<Sha256>(&[(".linux", LINUX)], &["enter-initrd"]);
    assert_eq!(sha256_after(&image.bytes, "enter-initrd"), expected);
}

#[test]
fn name_bytes_after_nul_ignored() {
    // systemd-stub compares names up to the first NUL byte.
    let virtual_size = u32::try_from(LINUX.len()).expect("short test data");
    let image = PeBuilder::new()
        .section_with_virtual_size(b".linux\0X", LINUX, virtual_size)
        .build();

    let expected = hand_pcr11::<Sha256>(&[(".linux", LINUX)], &["enter-initrd"]);
    assert_eq!(sha256_after(&image.bytes, "enter-initrd"), expected);
}

#[test]
fn similar_names_not_measured() {
    let image = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".initrd2", b"not an initrd")
        .section(".cmdlin", b"not a command line")
        .build();

    let expected = hand_pcr11::<Sha256>(&[(".linux", LINUX)], &["enter-initrd"]);
    assert_eq!(sha256_after(&image.bytes, "enter-initrd"), expected);
}

#[test]
fn pe32_image_predicts() {
    let image = PeBuilder::new().pe32().section(".linux", LINUX).build();

    let expected = hand_pcr11::<Sha256>(&[(".linux", LINUX)], &["enter-initrd"]);
    assert_eq!(sha256_after(&image.bytes, "enter-initrd"), expected);
}

#[test]
fn profile_sections_override_base() {
    let image = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".cmdline", b"base command line")
        .section(".profile", b"ID=default")
        .section(".cmdline", b"profile 0 command line")
        .section(".profile", b"ID=rescue")
        .section(".osrel", b"profile 1 os-release")
        .build();
    let uki = Uki::parse(&image.bytes).expect("parses");
    assert_eq!(uki.profile_count(), 2);

    let profile_0 = hand_pcr11::<Sha256>(
        &[
            (".linux", LINUX),
            (".cmdline", b"profile 0 command line"),
            (".profile", b"ID=default"),
        ],
        &["enter-initrd"],
    );
    let profile_1 = hand_pcr11::<Sha256>(
        &[
            (".linux", LINUX),
            (".osrel", b"profile 1 os-release"),
            (".cmdline", b"base command line"),
            (".profile", b"ID=rescue"),
        ],
        &["enter-initrd"],
    );
    for (profile, expected) in [(0, profile_0), (1, profile_1)] {
        let options = Pcr11Options {
            profile,
            ..options(&[PcrBank::Sha256], &["enter-initrd"])
        };
        let result = predict_hex(&image.bytes, &options);
        assert_eq!(result[0].2, expected, "profile {profile}");
    }

    let scopes: Vec<(&str, ProfileScope)> = uki
        .measured_sections(1)
        .expect("profile 1 exists")
        .iter()
        .map(|entry| (entry.kind.name(), entry.scope))
        .collect();
    assert_eq!(
        scopes,
        [
            (".linux", ProfileScope::Base),
            (".osrel", ProfileScope::Profile(1)),
            (".cmdline", ProfileScope::Base),
            (".profile", ProfileScope::Profile(1)),
        ]
    );
}

#[test]
fn empty_profile_section_hides_base() {
    // systemd-stub replaces the base entry with the profile's, and then skips it as empty.
    let image = PeBuilder::new()
        .section(".linux", LINUX)
        .section(".cmdline", b"base command line")
        .section(".profile", b"ID=no-cmdline")
        .section(".cmdline", b"")
        .build();

    let expected = hand_pcr11::<Sha256>(
        &[(".linux", LINUX), (".profile", b"ID=no-cmdline")],
        &["enter-initrd"],
    );
    assert_eq!(sha256_after(&image.bytes, "enter-initrd"), expected);
}

#[test]
fn phase_paths_sorted_and_deduplicated() {
    let image = PeBuilder::new().section(".linux", LINUX).build();
    let result = predict_hex(
        &image.bytes,
        &options(
            &[PcrBank::Sha256, PcrBank::Sha1, PcrBank::Sha256],
            &[
                "sysinit",
                "enter-initrd",
                "::enter-initrd:",
                "enter-initrd:leave-initrd",
            ],
        ),
    );

    let listed: Vec<(&str, &str)> = result
        .iter()
        .map(|(bank, phase, _)| (bank.as_str(), phase.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("sha1", "enter-initrd"),
            ("sha1", "enter-initrd:leave-initrd"),
            ("sha1", "sysinit"),
            ("sha256", "enter-initrd"),
            ("sha256", "enter-initrd:leave-initrd"),
            ("sha256", "sysinit"),
        ]
    );
}

#[test]
fn shutdown_phases_extend_in_order() {
    let image = PeBuilder::new().section(".linux", LINUX).build();
    let path = "enter-initrd:leave-initrd:sysinit:ready:shutdown:final";

    let expected = hand_pcr11::<Sha256>(&[(".linux", LINUX)], &words(path));
    assert_eq!(sha256_after(&image.bytes, path), expected);
}

#[test]
fn after_sections_precedes_phases() {
    let image = PeBuilder::new().section(".linux", LINUX).build();
    let uki = Uki::parse(&image.bytes).expect("parses");
    let prediction =
        predict_pcr11(&uki, &options(&[PcrBank::Sha256], &[])).expect("prediction succeeds");

    assert_eq!(prediction.banks.len(), 1);
    assert!(prediction.banks[0].phases.is_empty());
    assert_eq!(
        prediction.banks[0].after_sections.to_hex(),
        hand_pcr11::<Sha256>(&[(".linux", LINUX)], &[])
    );
}

#[test]
fn json_has_systemd_measure_shape() {
    let image = PeBuilder::new().section(".linux", LINUX).build();
    let uki = Uki::parse(&image.bytes).expect("parses");
    let prediction = predict_pcr11(
        &uki,
        &options(&[PcrBank::Sha256, PcrBank::Sha1], &["enter-initrd"]),
    )
    .expect("prediction succeeds");

    let expected = format!(
        concat!(
            r#"{{"sha1":[{{"phase":"enter-initrd","pcr":11,"hash":"{}"}}],"#,
            r#""sha256":[{{"phase":"enter-initrd","pcr":11,"hash":"{}"}}]}}"#
        ),
        hand_pcr11::<Sha1>(&[(".linux", LINUX)], &["enter-initrd"]),
        hand_pcr11::<Sha256>(&[(".linux", LINUX)], &["enter-initrd"]),
    );
    assert_eq!(prediction.to_json().expect("serializes"), expected);
}

#[test]
fn bank_names_parse_case_insensitively() {
    let cases = [
        ("sha1", PcrBank::Sha1),
        ("SHA256", PcrBank::Sha256),
        ("Sha384", PcrBank::Sha384),
        ("sha512", PcrBank::Sha512),
    ];
    for (name, bank) in cases {
        assert_eq!(name.parse::<PcrBank>().expect("known bank"), bank, "{name}");
    }
}

#[test]
fn phase_path_normalizes_colons() {
    let path: PhasePath = "::enter-initrd::leave-initrd:".parse().expect("valid");
    assert_eq!(path.as_str(), "enter-initrd:leave-initrd");
    assert_eq!(
        path.words().collect::<Vec<_>>(),
        ["enter-initrd", "leave-initrd"]
    );
}

#[test]
fn measured_sections_report_sizes() {
    let virtual_size = 0x2345;
    let image = PeBuilder::new()
        .section(".osrel", OSREL)
        .section_with_virtual_size(b".linux", LINUX, virtual_size)
        .build();
    let uki = Uki::parse(&image.bytes).expect("parses");
    let measured = uki.measured_sections(0).expect("measured sections");

    assert_eq!(measured.len(), 2);
    assert_eq!(measured[0].kind, UnifiedSection::Linux);
    assert_eq!(measured[0].section.index, 1);
    assert_eq!(measured[0].data.len(), u64::from(virtual_size));
    assert_eq!(measured[1].kind, UnifiedSection::Osrel);
    assert_eq!(measured[1].section.index, 0);
    assert_eq!(measured[1].data.len(), OSREL.len() as u64);
}

#[test]
fn zero_virtual_size_linux_is_missing() {
    let mut image = PeBuilder::new().section(".linux", LINUX).build();
    image.set_section_field(0, SECTION_VIRTUAL_SIZE, 0);
    let uki = Uki::parse(&image.bytes).expect("parses");

    let error = uki.measured_sections(0).expect_err("no measurable .linux");
    assert!(
        matches!(error, Error::MissingLinux { profile: 0 }),
        "{error:?}"
    );
}
