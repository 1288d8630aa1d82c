//! PCR values read from the TPM itself through tpm2-tss's ESAPI.

use std::collections::BTreeMap;

use anyhow::Context as _;
use tss_esapi::abstraction::pcr;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::structures::{PcrSelectionListBuilder, PcrSlot};
use tss_esapi::{Context, TctiNameConf};

/// TCTI of the kernel's TPM resource manager, which lets several clients
/// share the TPM.
pub const DEVICE_TCTI: &str = "device:/dev/tpmrm0";

/// Every PCR slot, 0 to 23.
const SLOTS: [PcrSlot; 24] = [
    PcrSlot::Slot0,
    PcrSlot::Slot1,
    PcrSlot::Slot2,
    PcrSlot::Slot3,
    PcrSlot::Slot4,
    PcrSlot::Slot5,
    PcrSlot::Slot6,
    PcrSlot::Slot7,
    PcrSlot::Slot8,
    PcrSlot::Slot9,
    PcrSlot::Slot10,
    PcrSlot::Slot11,
    PcrSlot::Slot12,
    PcrSlot::Slot13,
    PcrSlot::Slot14,
    PcrSlot::Slot15,
    PcrSlot::Slot16,
    PcrSlot::Slot17,
    PcrSlot::Slot18,
    PcrSlot::Slot19,
    PcrSlot::Slot20,
    PcrSlot::Slot21,
    PcrSlot::Slot22,
    PcrSlot::Slot23,
];

/// Reads every sha256 PCR through the TPM reached by `tcti` (for example
/// [`DEVICE_TCTI`], or `swtpm:host=127.0.0.1,port=2321` in tests).
pub fn read_sha256_bank(tcti: &str) -> anyhow::Result<BTreeMap<u32, Vec<u8>>> {
    let name: TctiNameConf = tcti
        .parse()
        .with_context(|| format!("invalid TCTI {tcti:?}"))?;
    let mut context =
        Context::new(name).with_context(|| format!("failed to open the TPM through {tcti}"))?;
    let selection = PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &SLOTS)
        .build()
        .context("failed to build the PCR selection")?;
    let data = pcr::read_all(&mut context, selection)
        .with_context(|| format!("failed to read the sha256 PCRs through {tcti}"))?;
    let bank = data
        .pcr_bank(HashingAlgorithm::Sha256)
        .with_context(|| format!("the TPM behind {tcti} has no sha256 PCR bank"))?;

    let mut values = BTreeMap::new();
    for (slot, digest) in bank {
        // A PcrSlot is a one-bit mask; its bit number is the PCR index.
        let index = u32::from(*slot).trailing_zeros();
        values.insert(index, digest.value().to_vec());
    }
    Ok(values)
}
