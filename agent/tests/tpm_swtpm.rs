//! PCR reads through tss-esapi against a real software TPM (swtpm). Each
//! test starts its own swtpm on free loopback ports in a temporary state
//! directory, because swtpm serves one client at a time.

mod support;

use std::str::FromStr;

use appliance_agent::measurements::tpm;
use sha2::{Digest as _, Sha256};
use tss_esapi::handles::PcrHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::structures::{Digest, DigestValues};
use tss_esapi::{Context, TctiNameConf};

use support::swtpm::{free_port_pair, Swtpm};

#[test]
fn fresh_tpm_pcrs_read() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };

    let values = tpm::read_sha256_bank(&swtpm.tcti()).expect("read PCRs");

    assert_eq!(values.len(), 24);
    for pcr in 0..=16 {
        assert_eq!(values[&pcr], vec![0; 32], "PCR {pcr}");
    }
    // PC Client TPMs reset the dynamic root of trust PCRs to all ones.
    assert_eq!(values[&17], vec![0xff; 32]);
}

#[test]
fn extended_pcr_read_back() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };
    let measurement: [u8; 32] = Sha256::digest(b"appliance test event").into();
    {
        let tcti = TctiNameConf::from_str(&swtpm.tcti()).expect("tcti");
        let mut context = Context::new(tcti).expect("context");
        let mut digests = DigestValues::new();
        digests.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(measurement.to_vec()).expect("digest"),
        );
        context
            .execute_with_nullauth_session(|ctx| ctx.pcr_extend(PcrHandle::Pcr16, digests))
            .expect("extend PCR 16");
    }

    let values = tpm::read_sha256_bank(&swtpm.tcti()).expect("read PCRs");

    let mut expected = Sha256::new();
    expected.update([0u8; 32]);
    expected.update(measurement);
    assert_eq!(values[&16], expected.finalize().to_vec());
    assert_eq!(values[&11], vec![0; 32]);
}

#[test]
fn unreachable_tpm_named_in_error() {
    let port = free_port_pair();
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");

    let err = tpm::read_sha256_bank(&tcti).expect_err("nothing listens");

    assert!(format!("{err:#}").contains(&tcti), "{err:#}");
}

#[test]
fn swtpm_manufacturer_looks_virtual() {
    let Some(swtpm) = Swtpm::start() else {
        return;
    };

    let manufacturer =
        appliance_agent::vm_facts::read_tpm_manufacturer(&swtpm.tcti()).expect("manufacturer");
    let judged = appliance_agent::vm_facts::judge_tpm(Some(manufacturer.clone()), true);

    // libtpms, the engine of swtpm, reports IBM's vendor id.
    assert_eq!(manufacturer, "IBM");
    assert!(judged.looks_virtual);
}
