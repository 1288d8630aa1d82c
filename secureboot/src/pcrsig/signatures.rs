//! The `.pcrsig` JSON document that `systemd-measure sign` writes.
//!
//! The document is an object with one key per PCR bank. Each bank lists entries of the form
//! `{"pcrs": [11], "pkfp": HEX, "pol": HEX, "sig": BASE64}`: the PCRs of the policy, the
//! fingerprint of the signing key, the PolicyPCR digest and the signature over it.

use base64ct::{Base64, Encoding};
use serde_json::Value;

use super::error::PcrSigError;
use crate::pcr::{PcrBank, PcrIndex};

/// The parsed `.pcrsig` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSignatures {
    banks: Vec<BankSignatures>,
}

/// The signature entries of one bank, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankSignatures {
    /// The bank whose PCR values the entries sign.
    pub bank: PcrBank,
    /// The entries.
    pub entries: Vec<SignatureEntry>,
}

/// One signed PCR policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureEntry {
    /// The PCRs of the policy ("pcrs").
    pub pcrs: Vec<u32>,
    /// SHA-256 of the signing key's DER encoding ("pkfp"). systemd 257 hashes the output of
    /// OpenSSL's i2d_PublicKey, which for RSA is the PKCS#1 RSAPublicKey.
    pub key_fingerprint: Vec<u8>,
    /// The signed policy digest ("pol").
    pub policy: Vec<u8>,
    /// The signature ("sig").
    pub signature: Vec<u8>,
}

impl SignatureEntry {
    /// Returns whether the policy covers exactly one PCR, `pcr`. systemd's unlock code compares
    /// PCR masks, so the order and repetition of the listed PCRs do not matter.
    pub fn selects_only(&self, pcr: PcrIndex) -> bool {
        !self.pcrs.is_empty() && self.pcrs.iter().all(|&listed| listed == pcr.get())
    }
}

impl PcrSignatures {
    /// Parses the contents of a `.pcrsig` section.
    ///
    /// Unlike systemd, which skips entries that lack a field, this rejects them, so that a
    /// damaged section is reported instead of being read as missing signatures. Bank names
    /// must be lower case, as systemd looks them up.
    pub fn parse(json: &[u8]) -> Result<Self, PcrSigError> {
        let document: Value = serde_json::from_slice(json).map_err(PcrSigError::InvalidJson)?;
        let Value::Object(object) = document else {
            return Err(PcrSigError::NotAnObject {
                found: json_type(&document),
            });
        };

        let mut banks = Vec::with_capacity(object.len());
        for (name, value) in &object {
            let bank = PcrBank::ALL
                .into_iter()
                .find(|bank| bank.name() == name)
                .ok_or_else(|| PcrSigError::UnknownBank(name.clone()))?;
            let Value::Array(items) = value else {
                return Err(PcrSigError::BankNotAnArray {
                    bank,
                    found: json_type(value),
                });
            };
            let entries = items
                .iter()
                .enumerate()
                .map(|(index, item)| parse_entry(bank, index, item))
                .collect::<Result<_, _>>()?;
            banks.push(BankSignatures { bank, entries });
        }
        banks.sort_unstable_by_key(|signatures| signatures.bank);
        Ok(Self { banks })
    }

    /// Returns the banks in the order of [`PcrBank`].
    pub fn banks(&self) -> &[BankSignatures] {
        &self.banks
    }

    /// Returns the entries of a bank, or an empty slice if the document lacks the bank.
    pub fn entries(&self, bank: PcrBank) -> &[SignatureEntry] {
        self.banks
            .iter()
            .find(|signatures| signatures.bank == bank)
            .map_or(&[], |signatures| &signatures.entries)
    }
}

fn parse_entry(bank: PcrBank, entry: usize, item: &Value) -> Result<SignatureEntry, PcrSigError> {
    let Value::Object(fields) = item else {
        return Err(PcrSigError::EntryNotAnObject {
            bank,
            entry,
            found: json_type(item),
        });
    };
    let field = |name: &'static str| {
        fields.get(name).ok_or(PcrSigError::MissingField {
            bank,
            entry,
            field: name,
        })
    };
    let invalid =
        |name: &'static str, expected: &'static str, value: &Value| PcrSigError::InvalidField {
            bank,
            entry,
            field: name,
            expected,
            found: shorten(&value.to_string()),
        };

    const PCR_LIST: &str = "an array of PCR numbers";
    let pcrs_value = field("pcrs")?;
    let pcrs = pcrs_value
        .as_array()
        .ok_or_else(|| invalid("pcrs", PCR_LIST, pcrs_value))?
        .iter()
        .map(|pcr| {
            pcr.as_u64()
                .and_then(|number| u32::try_from(number).ok())
                .ok_or_else(|| invalid("pcrs", PCR_LIST, pcrs_value))
        })
        .collect::<Result<_, _>>()?;

    const HEX: &str = "a string of hexadecimal digits";
    let hex_field = |name: &'static str| {
        let value = field(name)?;
        value
            .as_str()
            .and_then(decode_hex)
            .ok_or_else(|| invalid(name, HEX, value))
    };
    let key_fingerprint = hex_field("pkfp")?;
    let policy = hex_field("pol")?;

    const BASE64: &str = "a base64 string (RFC 4648, with padding)";
    let signature_value = field("sig")?;
    let signature = signature_value
        .as_str()
        .and_then(|text| Base64::decode_vec(text).ok())
        .ok_or_else(|| invalid("sig", BASE64, signature_value))?;

    Ok(SignatureEntry {
        pcrs,
        key_fingerprint,
        policy,
        signature,
    })
}

/// Decodes hexadecimal digits of either case, or returns None if the text has an odd length or
/// another character.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(digit: u8) -> Option<u8> {
        char::from(digit)
            .to_digit(16)
            .and_then(|value| u8::try_from(value).ok())
    }

    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Returns the name of a JSON value's type, for error messages.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Shortens text for an error message to at most 80 characters.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    if text.chars().count() <= MAX_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_CHARS - 3).collect();
    short.push_str("...");
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_of_both_cases() {
        assert_eq!(decode_hex("00ffAb"), Some(vec![0x00, 0xff, 0xab]));
    }

    #[test]
    fn hex_rejects_odd_length_and_non_digits() {
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("+1"), None);
    }

    #[test]
    fn shorten_keeps_short_text() {
        assert_eq!(shorten("\"abc\""), "\"abc\"");
        assert_eq!(shorten(&"x".repeat(200)).chars().count(), 80);
    }
}
