//! Parses arbitrary bytes as a UKI, selects the measured sections of the first profiles, and
//! predicts PCR 11 when the measured content is small.

#![no_main]

use appliance_secureboot::{predict_pcr11, Pcr11Options, PcrBank, Uki};
use libfuzzer_sys::fuzz_target;

/// Largest measured content to hash. A section's VirtualSize can ask for up to 4 GiB of zero
/// fill, and hashing that much would take seconds per input (an estimate), time that the
/// fuzzer should spend on the parsers.
const MAX_HASHED_BYTES: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(uki) = Uki::parse(data) else {
        return;
    };
    let profiles = u32::try_from(uki.profile_count())
        .unwrap_or(u32::MAX)
        .min(3);
    for profile in 0..=profiles {
        let Ok(measured) = uki.measured_sections(profile) else {
            continue;
        };
        let hashed: u64 = measured.iter().map(|entry| entry.data.len()).sum();
        if hashed > MAX_HASHED_BYTES {
            continue;
        }
        let options = Pcr11Options {
            banks: vec![PcrBank::Sha256],
            profile,
            ..Pcr11Options::default()
        };
        let prediction = predict_pcr11(&uki, &options).expect("measured sections were selected");
        assert_eq!(prediction.banks.len(), 1);
    }
});
