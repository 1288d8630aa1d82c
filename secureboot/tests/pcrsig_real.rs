//! PCR signature check of the appliance UKI that `make image` builds.
//!
//! mkosi signs the UKI's expected PCR 11 values with `systemd-measure sign` (systemd 257). If
//! every default phase verifies, this crate's PCR 11 prediction equals the one systemd-measure
//! signed. The test skips, printing why, when build/image/appliance.efi is absent.

mod support;

use appliance_secureboot::pcrsig::{verify_pcrsig, Outcome};
use appliance_secureboot::{PcrBank, Uki};
use support::tools::{appliance_uki, copy_stable, repo_root};

const DEFAULT_PHASES: [&str; 4] = [
    "enter-initrd",
    "enter-initrd:leave-initrd",
    "enter-initrd:leave-initrd:sysinit",
    "enter-initrd:leave-initrd:sysinit:ready",
];

#[test]
fn appliance_uki_signatures_verify() {
    let Some(source) = appliance_uki(&repo_root()) else {
        return;
    };

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
