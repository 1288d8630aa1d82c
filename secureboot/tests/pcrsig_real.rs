//! PCR signature check of the appliance UKI that `make image` builds.
//!
//! mkosi signs the UKI's expected PCR 11 values with `systemd-measure sign` (systemd 257). If
//! every default phase verifies, this crate's PCR 11 prediction equals the one systemd-measure
//! signed. The test skips, printing why, when build/image/appliance.efi is absent.

use std::path::Path;
use std::time::{Duration, SystemTime};

use appliance_secureboot::pcrsig::{verify_pcrsig, Outcome};
use appliance_secureboot::{PcrBank, Uki};

const DEFAULT_PHASES: [&str; 4] = [
    "enter-initrd",
    "enter-initrd:leave-initrd",
    "enter-initrd:leave-initrd:sysinit",
    "enter-initrd:leave-initrd:sysinit:ready",
];

#[test]
fn appliance_uki_signatures_verify() {
    let repo_root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives inside the workspace");
    let source = repo_root.join("build/image/appliance.efi");
    if !source.is_file() {
        eprintln!(
            "skipped: {} not found; build the image with `make image` first",
            source.display()
        );
        return;
    }

    // The image build may rewrite the UKI at any time, so the test reads a private copy.
    let directory = tempfile::tempdir().expect("temporary directory");
    let copy = directory.path().join("appliance.efi");
    copy_stable(&source, &copy);
    let bytes = std::fs::read(&copy).expect("read the copied UKI");
    let uki = Uki::parse(&bytes).expect("the appliance UKI parses");

    let report = verify_pcrsig(&uki, 0).expect("the UKI has .pcrsig and .pcrpkey");
    println!("{report}");

    assert!(report.all_verified(), "report:\n{report}");
    let sha256_phases: Vec<&str> = report
        .checks
        .iter()
        .filter(|check| check.bank() == PcrBank::Sha256)
        .map(|check| check.phase.as_str())
        .collect();
    assert_eq!(sha256_phases, DEFAULT_PHASES);
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

/// Copies a file that an image build may be rewriting, retrying until its modification time
/// and length are the same before and after a copy.
fn copy_stable(source: &Path, destination: &Path) {
    const ATTEMPTS: u32 = 10;
    let version = |path: &Path| -> std::io::Result<(SystemTime, u64)> {
        let metadata = std::fs::metadata(path)?;
        Ok((metadata.modified()?, metadata.len()))
    };

    let mut last_outcome = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            std::thread::sleep(Duration::from_secs(3));
        }
        let before = version(source);
        let copied = std::fs::copy(source, destination);
        let after = version(source);
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
