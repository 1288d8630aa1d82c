//! Comparison with `systemd-measure calculate` from the appliance's tools tree (systemd 257).
//!
//! Each test writes the loaded content of a UKI's measured sections to files, runs
//! systemd-measure on them inside the tools tree sandbox, and expects
//! `appliance-secureboot pcr11 --json` on the UKI itself to print the same bytes. The tests skip,
//! printing why, only when the tools tree is absent ($APPLIANCE_CACHE/tools-trixie, by default
//! under /var/cache/appliance).

mod support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::tools::{section_options, tools, Tools, MEASURED};
use support::{loaded_sections, PeBuilder};

const ALL_BANKS: [&str; 4] = ["sha1", "sha256", "sha384", "sha512"];

impl Tools {
    /// Runs a command inside the tools tree sandbox and returns its stdout. Host paths such as
    /// the temporary directories stay accessible there. Panics with stderr if it fails.
    fn sandbox(&self, command: &[OsString]) -> String {
        let output = self
            .sandbox_command(&self.repo_root)
            .args(command)
            .output()
            .expect("image/mkosi starts");
        expect_success(&output, &format!("sandbox command {command:?}"));
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Runs `systemd-measure calculate --json=short` on section files.
    fn systemd_measure(
        &self,
        sections: &[(&str, PathBuf)],
        banks: &[&str],
        phases: &[&str],
    ) -> String {
        let mut command: Vec<OsString> = vec![
            "/usr/lib/systemd/systemd-measure".into(),
            "calculate".into(),
            "--json=short".into(),
        ];
        command.extend(section_options(sections));
        command.extend(
            banks
                .iter()
                .map(|bank| OsString::from(format!("--bank={bank}"))),
        );
        command.extend(
            phases
                .iter()
                .map(|phase| OsString::from(format!("--phase={phase}"))),
        );
        self.sandbox(&command)
    }

    /// Builds a UKI with the tools tree's ukify.
    fn ukify_build(&self, arguments: &[OsString]) {
        // mkosi 25.3's sandbox verb inserts "--" before an argument named "build" (one of its
        // own verbs), so the ukify verb is passed inside the shell script. /usr/bin/python3
        // and an empty PYTHONPATH keep the host's Python and mkosi's modules out of ukify.
        let mut command: Vec<OsString> = vec![
            "sh".into(),
            "-c".into(),
            "unset PYTHONPATH; exec /usr/bin/python3 /usr/bin/ukify build \"$@\"".into(),
            "ukify".into(),
        ];
        command.extend(arguments.iter().cloned());
        self.sandbox(&command);
    }
}

fn expect_success(output: &Output, description: &str) {
    assert!(
        output.status.success(),
        "{description} failed with {}:\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// Runs `appliance-secureboot pcr11 --json` and returns its stdout.
fn predict(uki: &Path, banks: &[&str], phases: &[&str], profile: u32) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_appliance-secureboot"));
    command
        .arg("pcr11")
        .arg(uki)
        .arg("--json")
        .arg("--profile")
        .arg(profile.to_string());
    for bank in banks {
        command.arg("--bank").arg(bank);
    }
    for phase in phases {
        command.arg("--phase").arg(phase);
    }
    let output = command.output().expect("appliance-secureboot starts");
    expect_success(&output, "appliance-secureboot pcr11");
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Writes each (name, content) pair to a file in `directory` and returns the paths.
fn write_sections<'a>(
    directory: &Path,
    sections: &[(&'a str, Vec<u8>)],
) -> Vec<(&'a str, PathBuf)> {
    sections
        .iter()
        .map(|(name, content)| {
            let path = directory.join(format!("section{name}"));
            std::fs::write(&path, content).expect("write section file");
            (*name, path)
        })
        .collect()
}

/// Returns the non-empty measured sections of a UKI without profiles, read without the library.
fn measured_sections_of(uki: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut measured = Vec::new();
    for (name, content) in loaded_sections(uki) {
        if content.is_empty() {
            continue;
        }
        if let Some(known) = MEASURED.iter().find(|known| **known == name) {
            assert!(
                !measured.iter().any(|(seen, _)| seen == known),
                "the test UKI contains {name} twice"
            );
            measured.push((*known, content));
        }
    }
    measured
}

/// Compares both tools on a UKI file without profiles.
fn compare(tools: &Tools, uki: &Path, banks: &[&str], phases: &[&str]) {
    let bytes = std::fs::read(uki).expect("read UKI");
    let sections = measured_sections_of(&bytes);
    let names: Vec<&str> = sections.iter().map(|(name, _)| *name).collect();
    assert!(
        names.contains(&".linux"),
        "no .linux section in {}",
        uki.display()
    );

    let directory = uki.parent().expect("UKI in a directory").join("sections");
    std::fs::create_dir_all(&directory).expect("create section directory");
    let files = write_sections(&directory, &sections);

    let expected = tools.systemd_measure(&files, banks, phases);
    let actual = predict(uki, banks, phases, 0);
    assert_eq!(
        actual,
        expected,
        "appliance-secureboot and systemd-measure differ on {} (sections {names:?})",
        uki.display()
    );
}

#[test]
fn real_appliance_uki() {
    let Some(tools) = tools() else {
        return;
    };
    let source = tools.repo_root.join("build/image/appliance.efi");
    // `make test` builds the image before the unit tests; a bare `cargo test`
    // may run without one.
    if !source.is_file() {
        eprintln!(
            "skipped: {} not found; build the image with `make image` first",
            source.display()
        );
        return;
    }

    let directory = tempfile::tempdir().expect("temporary directory");
    let uki = directory.path().join("appliance.efi");
    copy_stable(&source, &uki);

    // Only two banks, because the debug build took about 8 s each for sha384 and sha512 on
    // this 75 MB UKI (2-core x86-64 VM). The other tests cover all four banks.
    compare(&tools, &uki, &["sha1", "sha256"], &[]);
}

/// Copies a file that an image build may be rewriting, retrying until no change overlaps the
/// copy.
fn copy_stable(source: &Path, destination: &Path) {
    const ATTEMPTS: u32 = 10;
    let mut last_outcome = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
        let before = file_version(source);
        let copied = std::fs::copy(source, destination);
        let after = file_version(source);
        match (before, copied, after) {
            (Ok(before), Ok(length), Ok(after)) if before == after && length == after.1 => return,
            outcome => last_outcome = format!("{outcome:?}"),
        }
    }
    panic!(
        "{} changed during each of {ATTEMPTS} copies (last: {last_outcome}); wait for the image \
         build to finish",
        source.display()
    );
}

/// Returns the modification time and length of a file.
fn file_version(path: &Path) -> std::io::Result<(std::time::SystemTime, u64)> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.modified()?, metadata.len()))
}

#[test]
fn ukify_uki_with_splash_and_dtb() {
    let Some(tools) = tools() else {
        return;
    };
    let directory = tempfile::tempdir().expect("temporary directory");
    let root = directory.path();

    // ukify appends the UKI sections to any stub, so a synthetic stub with spare header room
    // serves. ukify replaces the stub's .sbat with a merged one, and decoding it needs
    // NUL-padded text.
    let stub = PeBuilder::new()
        .padding(0)
        .spare_section_headers(16)
        .section(".text", &[0xc3; 64])
        .section(
            ".sbat",
            b"sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n",
        )
        .section(".sdmagic", b"#### LoaderInfo: test stub ####")
        .build();
    let inputs: [(&str, Vec<u8>); 9] = [
        ("stub.efi", stub.bytes),
        ("linux", pattern(3000, 1)),
        ("initrd", pattern(5000, 2)),
        ("ucode", pattern(77, 3)),
        ("cmdline", b"console=ttyS0 rd.systemd.unit=initrd.target".to_vec()),
        ("os-release", b"ID=appliance-test\nVERSION_ID=1\n".to_vec()),
        ("splash.bmp", [b"BM".as_slice(), &pattern(698, 4)].concat()),
        ("test.dtb", [[0xd0, 0x0d, 0xfe, 0xed].as_slice(), &pattern(296, 5)].concat()),
        ("pcrpkey.pem", b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n".to_vec()),
    ];
    for (name, content) in &inputs {
        std::fs::write(root.join(name), content).expect("write ukify input");
    }

    let uki = root.join("ukify.efi");
    let path_option = |option: &str, name: &str| {
        let mut argument = OsString::from(format!("--{option}="));
        argument.push(root.join(name));
        argument
    };
    let at_path_option = |option: &str, name: &str| {
        let mut argument = OsString::from(format!("--{option}=@"));
        argument.push(root.join(name));
        argument
    };
    tools.ukify_build(&[
        path_option("stub", "stub.efi"),
        path_option("linux", "linux"),
        path_option("initrd", "initrd"),
        path_option("microcode", "ucode"),
        at_path_option("cmdline", "cmdline"),
        at_path_option("os-release", "os-release"),
        path_option("splash", "splash.bmp"),
        path_option("devicetree", "test.dtb"),
        path_option("pcrpkey", "pcrpkey.pem"),
        // ukify cannot read a release from the fake kernel.
        "--uname=6.12.0-test".into(),
        path_option("output", "ukify.efi"),
    ]);

    // The UKI must carry the inputs unchanged, or the comparison would not test them.
    let loaded = loaded_sections(&std::fs::read(&uki).expect("read UKI"));
    for (section, input) in [
        (".linux", "linux"),
        (".initrd", "initrd"),
        (".ucode", "ucode"),
        (".cmdline", "cmdline"),
        (".osrel", "os-release"),
        (".splash", "splash.bmp"),
        (".dtb", "test.dtb"),
        (".pcrpkey", "pcrpkey.pem"),
    ] {
        let content = loaded
            .iter()
            .find(|(name, _)| name == section)
            .map(|(_, content)| content)
            .unwrap_or_else(|| panic!("ukify wrote no {section} section"));
        let expected = &inputs
            .iter()
            .find(|(name, _)| *name == input)
            .expect("input exists")
            .1;
        assert_eq!(content, expected, "{section} differs from its input");
    }

    let phases = [
        "enter-initrd",
        "enter-initrd:leave-initrd:sysinit:ready:shutdown:final",
        "enter-initrd:leave-initrd:sysinit:ready",
    ];
    compare(&tools, &uki, &ALL_BANKS, &phases);
}

#[test]
fn reordered_sections() {
    let Some(tools) = tools() else {
        return;
    };
    let directory = tempfile::tempdir().expect("temporary directory");

    // File order far from the measurement order, non-UKI sections in between, 0xcc alignment
    // padding past VirtualSize, and a .linux section whose VirtualSize exceeds its raw data,
    // so it is zero-filled after the whole raw block.
    let linux = pattern(1500, 6);
    let linux_virtual_size = u32::try_from(linux.len()).expect("small") + 0x1800;
    let image = PeBuilder::new()
        .section(".text", &[0xc3; 32])
        .section(".initrd", &pattern(4000, 7))
        .section(".dtb", &pattern(120, 8))
        .section(".pcrpkey", b"public key")
        .section(".reloc", &[0; 12])
        .section(".cmdline", b"quiet")
        .section_with_virtual_size(b".linux", &linux, linux_virtual_size)
        .section(".splash", &pattern(333, 9))
        .section(".osrel", b"ID=reordered\n")
        .section(
            ".sbat",
            b"sbat,1,SBAT Version,sbat,1,https://example.invalid\n",
        )
        .section(".ucode", &pattern(64, 10))
        .section(".uname", b"6.12.0-reordered")
        .build();
    let uki = directory.path().join("reordered.efi");
    std::fs::write(&uki, &image.bytes).expect("write UKI");

    compare(&tools, &uki, &ALL_BANKS, &[]);
}

#[test]
fn profiles_of_multi_profile_uki() {
    let Some(tools) = tools() else {
        return;
    };
    let directory = tempfile::tempdir().expect("temporary directory");

    let linux = pattern(2000, 11);
    let image = PeBuilder::new()
        .section(".linux", &linux)
        .section(".osrel", b"ID=base\n")
        .section(".cmdline", b"base command line")
        .section(".profile", b"ID=default\nTITLE=Default\n")
        .section(".cmdline", b"profile 0 command line")
        .section(".profile", b"ID=rescue\nTITLE=Rescue\n")
        .section(".initrd", &pattern(900, 12))
        .section(".osrel", b"ID=rescue-os\n")
        .build();
    let uki = directory.path().join("profiles.efi");
    std::fs::write(&uki, &image.bytes).expect("write UKI");

    // What systemd-stub measures per profile: the base sections, replaced by the profile's.
    let profiles: [Vec<(&str, Vec<u8>)>; 2] = [
        vec![
            (".linux", linux.clone()),
            (".osrel", b"ID=base\n".to_vec()),
            (".cmdline", b"profile 0 command line".to_vec()),
            (".profile", b"ID=default\nTITLE=Default\n".to_vec()),
        ],
        vec![
            (".linux", linux.clone()),
            (".osrel", b"ID=rescue-os\n".to_vec()),
            (".cmdline", b"base command line".to_vec()),
            (".initrd", pattern(900, 12)),
            (".profile", b"ID=rescue\nTITLE=Rescue\n".to_vec()),
        ],
    ];
    for (profile, sections) in (0u32..).zip(&profiles) {
        let section_directory = directory.path().join(format!("profile-{profile}"));
        std::fs::create_dir_all(&section_directory).expect("create section directory");
        let files = write_sections(&section_directory, sections);

        let expected = tools.systemd_measure(&files, &["sha256"], &[]);
        let actual = predict(&uki, &["sha256"], &[], profile);
        assert_eq!(actual, expected, "profile {profile} differs");
    }
}

/// Returns deterministic test content that differs per seed.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|index| u8::try_from(index % 251).expect("below 251") ^ seed.wrapping_mul(37))
        .collect()
}
