//! PCR signature check of `.pcrsig` documents that `systemd-measure sign` (systemd 257, from
//! the appliance's tools tree) writes with the test key in tests/fixtures/pcrsig-test-key.
//!
//! systemd-measure signs all four banks when given no `--bank`, so this covers the SHA-1,
//! SHA-384 and SHA-512 signatures that the appliance build does not produce. The test skips,
//! printing why, only when the tools tree is absent ($APPLIANCE_CACHE/tools-trixie, by default
//! under /var/cache/appliance).

mod support;

use std::path::{Path, PathBuf};

use appliance_secureboot::pcrsig::{verify_pcrsig, Outcome};
use appliance_secureboot::{PcrBank, Uki};
use serde_json::Value;
use support::tools::{path_option, section_options, tools, Tools};
use support::PeBuilder;

const DEFAULT_PHASES: [&str; 4] = [
    "enter-initrd",
    "enter-initrd:leave-initrd",
    "enter-initrd:leave-initrd:sysinit",
    "enter-initrd:leave-initrd:sysinit:ready",
];

impl Tools {
    /// Runs `systemd-measure sign --json=short` in the tools tree sandbox on section files and
    /// returns its output.
    ///
    /// mkosi runs in `directory`, outside the repository, so that it reads none of the image's
    /// configuration, which needs the packages that `make` builds.
    fn sign(&self, directory: &Path, sections: &[(&str, PathBuf)]) -> Vec<u8> {
        let mut command = self.sandbox_command(directory);
        command
            .arg("/usr/lib/systemd/systemd-measure")
            .arg("sign")
            .arg("--json=short")
            .arg(path_option("--private-key=", &self.test_key("private.pem")))
            .arg(path_option("--public-key=", &self.test_key("public.pem")))
            .args(section_options(sections));

        let output = command.output().expect("image/mkosi starts");
        assert!(
            output.status.success(),
            "systemd-measure sign failed with {}:\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
        );
        output.stdout
    }
}

#[test]
fn systemd_measure_signatures_verify() {
    let Some(tools) = tools() else {
        return;
    };
    let directory = tempfile::tempdir().expect("temporary directory");

    let public_key = std::fs::read(tools.test_key("public.pem")).expect("read the test public key");
    // No "MZ" at the start of .linux: systemd-measure would try to read it as a PE kernel.
    let sections: [(&str, Vec<u8>); 5] = [
        (
            ".linux",
            (0..3000u32)
                .map(|i| u8::try_from(i * 7 % 251).expect("below 251"))
                .collect(),
        ),
        (".osrel", b"ID=appliance-test\nVERSION_ID=1\n".to_vec()),
        (".cmdline", b"console=ttyS0 quiet".to_vec()),
        (".uname", b"6.12.0-pcrsig".to_vec()),
        (".pcrpkey", public_key),
    ];
    let files: Vec<(&str, PathBuf)> = sections
        .iter()
        .map(|(name, content)| {
            let path = directory.path().join(format!("section{name}"));
            std::fs::write(&path, content).expect("write section file");
            (*name, path)
        })
        .collect();

    let pcrsig = tools.sign(directory.path(), &files);
    let document: Value = serde_json::from_slice(&pcrsig).expect("systemd-measure writes JSON");
    for bank in PcrBank::ALL {
        let entries = document[bank.name()].as_array();
        assert_eq!(
            entries.map(Vec::len),
            Some(DEFAULT_PHASES.len()),
            "systemd-measure signed no default phases in bank {bank}: {document}"
        );
    }

    // Reverse file order, so that the measurement order has to come from the section names.
    let mut builder = PeBuilder::new().section(".pcrsig", &pcrsig);
    for (name, content) in sections.iter().rev() {
        builder = builder.section(name, content);
    }
    let image = builder.build();
    let uki = Uki::parse(&image.bytes).expect("test UKI parses");

    let report = verify_pcrsig(&uki, 0).expect("checks run");
    assert!(report.all_verified(), "report:\n{report}");
    assert_eq!(report.checks.len(), 16, "report:\n{report}");
    for check in &report.checks {
        assert!(
            matches!(check.outcome, Outcome::Verified { .. }),
            "{} {}: {:?}",
            check.bank(),
            check.phase,
            check.outcome
        );
    }
    assert!(report.unmatched.is_empty(), "report:\n{report}");
}
