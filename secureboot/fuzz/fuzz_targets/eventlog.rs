//! Parses arbitrary bytes as a TCG event log, and runs the replay, the event descriptions and
//! a comparison on every log that parses, as the agent's eventlog command does.

#![no_main]

use appliance_secureboot::eventlog::{compare, EventLog, HashAlgorithm, RecordedPcr};
use appliance_secureboot::PcrIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(log) = EventLog::parse(data) else {
        return;
    };
    let replay = log.replay();
    for record in log.records() {
        let _ = record.description();
    }

    // Compare every PCR the log mentions, plus PCR 0 and a DRTM PCR, in every known bank.
    let mut pcrs: Vec<PcrIndex> = log.records().iter().map(|record| record.pcr).collect();
    pcrs.extend([PcrIndex::new(0), PcrIndex::new(17)]);
    pcrs.sort_unstable();
    pcrs.dedup();
    let recorded: Vec<RecordedPcr> = HashAlgorithm::KNOWN
        .into_iter()
        .flat_map(|algorithm| {
            pcrs.iter().map(move |&pcr| RecordedPcr {
                algorithm,
                pcr,
                value: vec![0; algorithm.standard_digest_len().unwrap_or(0)],
            })
        })
        .collect();
    let results = compare(&log, &replay, &recorded);
    assert_eq!(results.len(), recorded.len());
});
