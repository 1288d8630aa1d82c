//! systemd's userspace measurement log, `/run/log/systemd/tpm2-measure.log`.
//!
//! systemd-pcrphase, systemd-pcrextend and systemd-cryptsetup extend PCRs
//! after the firmware is gone, so their extensions are not in the firmware's
//! TCG event log. systemd records each one here as JSON-SEQ (RFC 7464:
//! records start with the ASCII RS byte 0x1E and end with a newline) in a
//! TCG Canonical Event Log (CEL-JSON) shape.

use serde::Deserialize;

/// Path systemd writes the log to.
pub const USERSPACE_LOG: &str = "/run/log/systemd/tpm2-measure.log";

/// RFC 7464 record separator.
const RECORD_SEPARATOR: u8 = 0x1e;

/// One extension as systemd records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserspaceEvent {
    pub pcr: u32,
    /// (bank, digest) pairs, bank in systemd's spelling ("sha256").
    pub digests: Vec<(String, Vec<u8>)>,
    /// The measured string, for example the phase word "enter-initrd".
    pub description: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    pcr: u32,
    digests: Vec<RecordDigest>,
    #[serde(default)]
    content: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordDigest {
    hash_alg: String,
    digest: String,
}

/// Parses the log. A record that is not valid JSON, or whose digest is not
/// hex, is an error naming its position, because skipping it would make a
/// replay silently wrong.
pub fn parse(bytes: &[u8]) -> Result<Vec<UserspaceEvent>, String> {
    let mut events = Vec::new();
    let records = bytes
        .split(|byte| *byte == RECORD_SEPARATOR)
        .map(String::from_utf8_lossy)
        .filter(|text| !text.trim().is_empty());
    for (index, text) in records.enumerate() {
        let text = text.trim();
        let record: Record = serde_json::from_str(text)
            .map_err(|err| format!("record {index} of {USERSPACE_LOG} is invalid JSON: {err}"))?;
        let mut digests = Vec::with_capacity(record.digests.len());
        for digest in record.digests {
            let value = super::pcrs::decode_hex(&digest.digest).ok_or_else(|| {
                format!("record {index} of {USERSPACE_LOG} has a digest that is not hex")
            })?;
            digests.push((digest.hash_alg.to_ascii_lowercase(), value));
        }
        let description = record
            .content
            .as_ref()
            .and_then(|content| content.get("string"))
            .and_then(|value| value.as_str())
            .map(str::to_owned);
        events.push(UserspaceEvent {
            pcr: record.pcr,
            digests,
            description,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_records_parsed() {
        let log = b"\x1e{\"pcr\":11,\"digests\":[{\"hashAlg\":\"sha256\",\"digest\":\"00ff\"}],\"content_type\":\"systemd\",\"content\":{\"eventType\":\"phase\",\"string\":\"enter-initrd\"}}\n\x1e{\"pcr\":15,\"digests\":[{\"hashAlg\":\"SHA1\",\"digest\":\"aa\"}]}\n";

        let events = parse(log).expect("parse");

        assert_eq!(events.len(), 2);
        assert_eq!(events[0].pcr, 11);
        assert_eq!(events[0].digests, vec![("sha256".to_owned(), vec![0, 255])]);
        assert_eq!(events[0].description.as_deref(), Some("enter-initrd"));
        assert_eq!(events[1].digests[0].0, "sha1");
        assert_eq!(events[1].description, None);
    }

    #[test]
    fn invalid_record_named() {
        let log = b"\x1e{\"pcr\":11,\"digests\":[]}\n\x1enot json\n";

        let err = parse(log).expect_err("invalid");

        assert!(err.contains("record 1 "), "{err}");
    }

    #[test]
    fn empty_log_has_no_events() {
        assert!(parse(b"").expect("parse").is_empty());
    }
}
