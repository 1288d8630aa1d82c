//! LUKS2 tokens of the vault, read from and written to the header's JSON metadata.
//!
//! The TPM token uses the field names and encodings of systemd's `systemd-tpm2` token
//! (systemd 257), so `cryptsetup luksDump` and systemd's tools read it the same way. The recovery keyslot is marked with a `systemd-recovery`
//! token, as systemd-cryptenroll does. While the vault is being created, an
//! `appliance-enrollment` token with no keyslot records how far enrollment got.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

pub const TPM2_TOKEN_TYPE: &str = "systemd-tpm2";
pub const RECOVERY_TOKEN_TYPE: &str = "systemd-recovery";
pub const ENROLLMENT_TOKEN_TYPE: &str = "appliance-enrollment";

/// A `systemd-tpm2` token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tpm2Token {
    pub keyslots: Vec<u32>,
    /// TPM2B_PRIVATE followed by TPM2B_PUBLIC.
    pub blob: Vec<u8>,
    /// PCRs bound by literal value ("tpm2-pcrs").
    pub pcrs: Vec<u32>,
    pub pcr_bank: String,
    pub primary_alg: String,
    pub policy_hash: Vec<u8>,
    pub pin: bool,
    /// PEM of the key that signs PCR policies ("tpm2_pubkey"), if the token uses one.
    pub pubkey: Option<Vec<u8>>,
    /// PCRs covered by the signed policy ("tpm2_pubkey_pcrs").
    pub pubkey_pcrs: Vec<u32>,
}

/// How far enrollment got, recorded before each step that can be interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentState {
    /// Header written; keyslots and the filesystem may be missing.
    Formatting,
    /// Keyslots, tokens and the filesystem are complete; the recovery key may not have
    /// been shown yet.
    Formatted,
}

/// The in-progress marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    pub state: EnrollmentState,
    /// The recovery key sealed by the TPM, so an interrupted boot can show the same key
    /// again instead of one that would not work.
    pub sealed_recovery_key: Option<Vec<u8>>,
}

/// One token of the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Tpm2(Tpm2Token),
    Recovery {
        keyslots: Vec<u32>,
    },
    Enrollment(EnrollmentToken),
    /// A token this agent does not use; kept as it is.
    Other {
        kind: String,
        keyslots: Vec<u32>,
    },
}

/// The parts of `cryptsetup luksDump --dump-json-metadata` the unlock flow needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Luks2Metadata {
    pub keyslots: Vec<u32>,
    pub tokens: BTreeMap<u32, Token>,
}

/// Reason the metadata could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("LUKS2 metadata: {0}")]
pub struct MetadataError(String);

impl Luks2Metadata {
    /// Parses the LUKS2 JSON metadata area. Tokens with damaged fields are kept as `Other`
    /// with a warning, so one bad token does not hide the others.
    pub fn from_json(value: &Value) -> Result<Self, MetadataError> {
        let keyslots = value
            .get("keyslots")
            .and_then(Value::as_object)
            .ok_or_else(|| MetadataError("no \"keyslots\" object".to_owned()))?
            .keys()
            .map(|key| parse_index(key, "keyslot"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tokens = BTreeMap::new();
        if let Some(map) = value.get("tokens").and_then(Value::as_object) {
            for (key, token) in map {
                let id = parse_index(key, "token")?;
                tokens.insert(id, Token::from_json(id, token));
            }
        }
        Ok(Self { keyslots, tokens })
    }

    pub fn has_keyslot(&self, keyslot: u32) -> bool {
        self.keyslots.contains(&keyslot)
    }

    /// Returns the enrollment marker and its token number, if enrollment is unfinished.
    pub fn enrollment(&self) -> Option<(u32, &EnrollmentToken)> {
        self.tokens.iter().find_map(|(id, token)| match token {
            Token::Enrollment(marker) => Some((*id, marker)),
            _ => None,
        })
    }

    /// Returns the TPM tokens in token order.
    pub fn tpm2_tokens(&self) -> impl Iterator<Item = (u32, &Tpm2Token)> {
        self.tokens.iter().filter_map(|(id, token)| match token {
            Token::Tpm2(tpm) => Some((*id, tpm)),
            _ => None,
        })
    }

    /// Returns the keyslots marked as recovery keyslots.
    pub fn recovery_keyslots(&self) -> Vec<u32> {
        self.tokens
            .values()
            .filter_map(|token| match token {
                Token::Recovery { keyslots } => Some(keyslots.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

fn parse_index(key: &str, what: &str) -> Result<u32, MetadataError> {
    key.parse()
        .map_err(|_| MetadataError(format!("{what} number {key:?} is not a number")))
}

impl Token {
    fn from_json(id: u32, value: &Value) -> Self {
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let keyslots = keyslot_list(value);
        let parsed = match kind.as_str() {
            TPM2_TOKEN_TYPE => Tpm2Token::from_json(value).map(Token::Tpm2),
            RECOVERY_TOKEN_TYPE => Ok(Token::Recovery {
                keyslots: keyslots.clone(),
            }),
            ENROLLMENT_TOKEN_TYPE => EnrollmentToken::from_json(value).map(Token::Enrollment),
            _ => Err(String::new()),
        };
        match parsed {
            Ok(token) => token,
            Err(reason) => {
                if !reason.is_empty() {
                    tracing::warn!(token = id, kind, reason, "ignoring a damaged LUKS2 token");
                }
                Token::Other { kind, keyslots }
            }
        }
    }
}

fn keyslot_list(value: &Value) -> Vec<u32> {
    value
        .get("keyslots")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|slot| slot.as_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

fn pcr_list(value: &Value, field: &str) -> Result<Vec<u32>, String> {
    match value.get(field) {
        None => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .iter()
            .map(|pcr| {
                pcr.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n < 24)
                    .ok_or_else(|| format!("{field} lists {pcr}, which is not a PCR index 0-23"))
            })
            .collect(),
        Some(other) => Err(format!("{field} is {other}, not a list")),
    }
}

fn base64_field(value: &Value, field: &str) -> Result<Option<Vec<u8>>, String> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => BASE64
            .decode(text)
            .map(Some)
            .map_err(|error| format!("{field} is not base64: {error}")),
        Some(other) => Err(format!("{field} is {other}, not a string")),
    }
}

impl Tpm2Token {
    fn from_json(value: &Value) -> Result<Self, String> {
        let blob = base64_field(value, "tpm2-blob")?.ok_or("no tpm2-blob")?;
        let policy_hash = value
            .get("tpm2-policy-hash")
            .and_then(Value::as_str)
            .map(decode_hex)
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            keyslots: keyslot_list(value),
            blob,
            pcrs: pcr_list(value, "tpm2-pcrs")?,
            pcr_bank: string_field(value, "tpm2-pcr-bank").unwrap_or_else(|| "sha256".to_owned()),
            primary_alg: string_field(value, "tpm2-primary-alg")
                .unwrap_or_else(|| "ecc".to_owned()),
            policy_hash,
            pin: value
                .get("tpm2-pin")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            pubkey: base64_field(value, "tpm2_pubkey")?,
            pubkey_pcrs: pcr_list(value, "tpm2_pubkey_pcrs")?,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut token = json!({
            "type": TPM2_TOKEN_TYPE,
            "keyslots": self.keyslots.iter().map(u32::to_string).collect::<Vec<_>>(),
            "tpm2-blob": BASE64.encode(&self.blob),
            "tpm2-pcrs": self.pcrs,
            "tpm2-pcr-bank": self.pcr_bank,
            "tpm2-primary-alg": self.primary_alg,
            "tpm2-policy-hash": encode_hex(&self.policy_hash),
            "tpm2-pin": self.pin,
            "tpm2_pcrlock": false,
        });
        if let Some(pubkey) = &self.pubkey {
            token["tpm2_pubkey"] = json!(BASE64.encode(pubkey));
            token["tpm2_pubkey_pcrs"] = json!(self.pubkey_pcrs);
        }
        token
    }
}

/// Builds the `systemd-recovery` token for `keyslot`.
pub fn recovery_token_json(keyslot: u32) -> Value {
    json!({ "type": RECOVERY_TOKEN_TYPE, "keyslots": [keyslot.to_string()] })
}

impl EnrollmentToken {
    fn from_json(value: &Value) -> Result<Self, String> {
        let state = match value.get("state").and_then(Value::as_str) {
            Some("formatting") => EnrollmentState::Formatting,
            Some("formatted") => EnrollmentState::Formatted,
            other => return Err(format!("unknown enrollment state {other:?}")),
        };
        Ok(Self {
            state,
            sealed_recovery_key: base64_field(value, "sealed-recovery-key")?,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut token = json!({
            "type": ENROLLMENT_TOKEN_TYPE,
            "keyslots": [],
            "state": match self.state {
                EnrollmentState::Formatting => "formatting",
                EnrollmentState::Formatted => "formatted",
            },
        });
        if let Some(sealed) = &self.sealed_recovery_key {
            token["sealed-recovery-key"] = json!(BASE64.encode(sealed));
        }
        token
    }
}

fn string_field(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    hex::decode(text).map_err(|error| format!("hex value {text:?} is invalid: {error}"))
}

pub fn encode_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpm2_token_round_trips() {
        let token = Tpm2Token {
            keyslots: vec![1],
            blob: vec![1, 2, 3],
            pcrs: vec![7],
            pcr_bank: "sha256".to_owned(),
            primary_alg: "ecc".to_owned(),
            policy_hash: vec![0xab; 32],
            pin: false,
            pubkey: Some(b"-----BEGIN PUBLIC KEY-----".to_vec()),
            pubkey_pcrs: vec![11],
        };
        let json = token.to_json();
        assert_eq!(json["keyslots"], json!(["1"]));
        assert_eq!(Tpm2Token::from_json(&json), Ok(token));
    }

    #[test]
    fn damaged_tokens_are_kept_as_other() {
        let metadata = json!({
            "keyslots": {"0": {}, "1": {}},
            "tokens": {
                "0": {"type": "systemd-tpm2", "keyslots": ["1"], "tpm2-blob": "!!"},
                "1": {"type": "systemd-recovery", "keyslots": ["0"]},
            }
        });
        let parsed = Luks2Metadata::from_json(&metadata).expect("parses");
        assert_eq!(parsed.keyslots, vec![0, 1]);
        assert!(matches!(parsed.tokens[&0], Token::Other { .. }));
        assert_eq!(parsed.recovery_keyslots(), vec![0]);
        assert_eq!(parsed.tpm2_tokens().count(), 0);
    }
}
