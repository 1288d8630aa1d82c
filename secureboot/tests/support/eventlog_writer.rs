//! Test support: a writer for TCG event logs in both formats, and a PCR extension computed
//! with the hash crates directly, to check the library's replay against.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

pub const SHA1: u16 = 0x0004;
pub const SHA256: u16 = 0x000b;
pub const SHA384: u16 = 0x000c;
pub const SHA512: u16 = 0x000d;
pub const SM3_256: u16 = 0x0012;

pub const EV_POST_CODE: u32 = 0x1;
pub const EV_NO_ACTION: u32 = 0x3;
pub const EV_SEPARATOR: u32 = 0x4;
pub const EV_EVENT_TAG: u32 = 0x6;
pub const EV_S_CRTM_VERSION: u32 = 0x8;
pub const EV_IPL: u32 = 0xd;
pub const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;
pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
pub const EV_EFI_ACTION: u32 = 0x8000_0007;

/// The sha1, sha256 and sha384 banks, with their digest sizes, as a Spec ID event lists them.
pub const THREE_BANKS: [(u16, u16); 3] = [(SHA1, 20), (SHA256, 32), (SHA384, 48)];

/// Hashes `data` with a known algorithm. For SM3 and unknown algorithms, which the hash crates
/// here do not implement, returns `size` bytes of a pattern derived from the data length.
pub fn hash(algorithm: u16, size: usize, data: &[u8]) -> Vec<u8> {
    match algorithm {
        SHA1 => Sha1::digest(data).to_vec(),
        SHA256 => Sha256::digest(data).to_vec(),
        SHA384 => Sha384::digest(data).to_vec(),
        SHA512 => Sha512::digest(data).to_vec(),
        _ => (0..size)
            .map(|i| (i + data.len()).to_le_bytes()[0])
            .collect(),
    }
}

pub fn to_u32(value: usize) -> u32 {
    u32::try_from(value).expect("test data fits in u32")
}

/// Extends `initial` with each digest in turn, as TPM2_PCR_Extend does.
pub fn extend_chain<D: Digest>(initial: &[u8], digests: &[Vec<u8>]) -> Vec<u8> {
    let mut value = initial.to_vec();
    for digest in digests {
        let mut hasher = D::new();
        hasher.update(&value);
        hasher.update(digest);
        value = hasher.finalize().to_vec();
    }
    value
}

/// Encodes a string as NUL-terminated UTF-16LE, as UEFI and systemd-stub write strings.
pub fn utf16z(text: &str) -> Vec<u8> {
    text.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// Builds the event data of a Spec ID event.
pub fn spec_id_data(algorithms: &[(u16, u16)], vendor_info: &[u8]) -> Vec<u8> {
    let mut data = b"Spec ID Event03\0".to_vec();
    data.extend_from_slice(&0u32.to_le_bytes()); // platformClass: client
    data.extend_from_slice(&[0, 2, 0, 2]); // version 2.0, errata 0, 64-bit UINTN
    data.extend_from_slice(&to_u32(algorithms.len()).to_le_bytes());
    for (algorithm, size) in algorithms {
        data.extend_from_slice(&algorithm.to_le_bytes());
        data.extend_from_slice(&size.to_le_bytes());
    }
    data.push(u8::try_from(vendor_info.len()).expect("vendor info fits its u8 size"));
    data.extend_from_slice(vendor_info);
    data
}

/// Encodes one record in the SHA-1 format.
pub fn sha1_record(pcr: u32, event_type: u32, digest: &[u8], data: &[u8]) -> Vec<u8> {
    assert_eq!(
        digest.len(),
        20,
        "SHA-1 format records hold 20-byte digests"
    );
    let mut record = Vec::new();
    record.extend_from_slice(&pcr.to_le_bytes());
    record.extend_from_slice(&event_type.to_le_bytes());
    record.extend_from_slice(digest);
    record.extend_from_slice(&to_u32(data.len()).to_le_bytes());
    record.extend_from_slice(data);
    record
}

/// Encodes one record in the crypto-agile format.
pub fn crypto_agile_record(
    pcr: u32,
    event_type: u32,
    digests: &[(u16, Vec<u8>)],
    data: &[u8],
) -> Vec<u8> {
    let mut record = Vec::new();
    record.extend_from_slice(&pcr.to_le_bytes());
    record.extend_from_slice(&event_type.to_le_bytes());
    record.extend_from_slice(&to_u32(digests.len()).to_le_bytes());
    for (algorithm, digest) in digests {
        record.extend_from_slice(&algorithm.to_le_bytes());
        record.extend_from_slice(digest);
    }
    record.extend_from_slice(&to_u32(data.len()).to_le_bytes());
    record.extend_from_slice(data);
    record
}

/// Writes a log record by record. Crypto-agile logs start with a Spec ID event.
#[derive(Debug, Clone)]
pub struct LogWriter {
    bytes: Vec<u8>,
    /// The Spec ID event's algorithms and sizes, or `None` for a SHA-1 format log.
    algorithms: Option<Vec<(u16, u16)>>,
    record_offsets: Vec<usize>,
}

impl LogWriter {
    pub fn sha1_only() -> Self {
        Self {
            bytes: Vec::new(),
            algorithms: None,
            record_offsets: Vec::new(),
        }
    }

    pub fn crypto_agile(algorithms: &[(u16, u16)]) -> Self {
        let mut writer = Self::sha1_only();
        writer.push(sha1_record(
            0,
            EV_NO_ACTION,
            &[0; 20],
            &spec_id_data(algorithms, b""),
        ));
        writer.algorithms = Some(algorithms.to_vec());
        writer
    }

    /// Appends already encoded bytes as one record.
    pub fn push(&mut self, record: Vec<u8>) {
        self.record_offsets.push(self.bytes.len());
        self.bytes.extend(record);
    }

    /// Appends a record whose digests are the hashes of `data`, as for an event whose data is
    /// what was measured.
    pub fn measure(self, pcr: u32, event_type: u32, data: &[u8]) -> Self {
        let digests = self.digests_of(data);
        self.record(pcr, event_type, &digests, data)
    }

    /// Appends a record with the given digests. A SHA-1 format log uses the first digest.
    pub fn record(
        mut self,
        pcr: u32,
        event_type: u32,
        digests: &[(u16, Vec<u8>)],
        data: &[u8],
    ) -> Self {
        let record = match self.algorithms {
            Some(_) => crypto_agile_record(pcr, event_type, digests, data),
            None => sha1_record(pcr, event_type, &digests[0].1, data),
        };
        self.push(record);
        self
    }

    /// Appends an EV_NO_ACTION StartupLocality event in PCR 0, with zero digests.
    pub fn startup_locality(self, locality: u8) -> Self {
        let mut data = b"StartupLocality\0".to_vec();
        data.push(locality);
        let digests = self.zero_digests();
        self.record(0, EV_NO_ACTION, &digests, &data)
    }

    /// Returns the digests of `data` in each algorithm of the log.
    pub fn digests_of(&self, data: &[u8]) -> Vec<(u16, Vec<u8>)> {
        self.algorithm_sizes()
            .into_iter()
            .map(|(algorithm, size)| (algorithm, hash(algorithm, usize::from(size), data)))
            .collect()
    }

    pub fn zero_digests(&self) -> Vec<(u16, Vec<u8>)> {
        self.algorithm_sizes()
            .into_iter()
            .map(|(algorithm, size)| (algorithm, vec![0; usize::from(size)]))
            .collect()
    }

    fn algorithm_sizes(&self) -> Vec<(u16, u16)> {
        self.algorithms.clone().unwrap_or_else(|| vec![(SHA1, 20)])
    }

    /// Returns the offset at which each record starts.
    pub fn record_offsets(&self) -> &[usize] {
        &self.record_offsets
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn build(self) -> Vec<u8> {
        self.bytes
    }
}
