//! API token values: generation, format and the hash that the store keeps.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Prefix of every token, so secret scanners and people recognise one in a
/// log, a paste or a shell history.
pub const TOKEN_PREFIX: &str = "appliance_";

/// Random bytes in a token: 256 bits, far beyond guessing, which is also why
/// an unsalted SHA-256 is enough to store it.
const SECRET_BYTES: usize = 32;

/// Length of a token: the prefix and the secret in hex.
pub const TOKEN_LENGTH: usize = TOKEN_PREFIX.len() + 2 * SECRET_BYTES;

/// Random bytes in a token id, which is public and only needs to be unique.
const ID_BYTES: usize = 6;

/// SHA-256 of a token, the only form the store keeps.
pub type TokenHash = [u8; 32];

/// Generates a new token. The caller shows it once and then drops it, which
/// wipes the memory.
pub fn generate() -> Result<Zeroizing<String>, getrandom::Error> {
    let mut secret = Zeroizing::new([0_u8; SECRET_BYTES]);
    getrandom::fill(secret.as_mut_slice())?;
    let mut token = Zeroizing::new(String::with_capacity(TOKEN_LENGTH));
    token.push_str(TOKEN_PREFIX);
    let encoded = Zeroizing::new(hex::encode(secret.as_slice()));
    token.push_str(&encoded);
    Ok(token)
}

/// Generates a new token id, 12 hex digits.
pub fn generate_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0_u8; ID_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Returns true when `text` has the shape of a token: the prefix and 64
/// lowercase hex digits.
pub fn is_well_formed(text: &str) -> bool {
    text.len() == TOKEN_LENGTH
        && text.starts_with(TOKEN_PREFIX)
        && text[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// Hashes a token for storage and lookup.
pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_is_well_formed() {
        let token = generate().expect("random bytes");

        assert_eq!(token.len(), TOKEN_LENGTH);
        assert!(token.starts_with(TOKEN_PREFIX));
        assert!(is_well_formed(&token), "{}", token.as_str());
    }

    #[test]
    fn generated_tokens_differ() {
        let first = generate().expect("random bytes");
        let second = generate().expect("random bytes");

        assert_ne!(first.as_str(), second.as_str());
    }

    #[test]
    fn malformed_tokens_rejected() {
        let valid = format!("{TOKEN_PREFIX}{}", "a".repeat(64));
        assert!(is_well_formed(&valid));

        for text in [
            String::new(),
            "a".repeat(64),
            format!("{TOKEN_PREFIX}{}", "a".repeat(63)),
            format!("{TOKEN_PREFIX}{}", "a".repeat(65)),
            format!("{TOKEN_PREFIX}{}", "A".repeat(64)),
            format!("{TOKEN_PREFIX}{}g", "a".repeat(63)),
            format!("other_____{}", "a".repeat(64)),
        ] {
            assert!(!is_well_formed(&text), "{text}");
        }
    }

    #[test]
    fn hash_is_sha256_of_the_text() {
        // sha256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(
            hex::encode(hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
