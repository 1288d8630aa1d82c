//! Recovery keys in systemd's format: 32 random bytes as 64 "modhex" characters in eight
//! dash-separated groups of eight, the format `systemd-cryptenroll --recovery-key` prints.
//! Modhex uses only letters that sit at the same place on most keyboard layouts, so the key
//! can be typed on a console whatever the keymap.

use super::secret::Secret;

const MODHEX: &[u8; 16] = b"cbdefghijklnrtuv";
const KEY_BYTES: usize = 32;
const GROUP: usize = 8;
/// 64 characters and 7 dashes.
pub const RECOVERY_KEY_LEN: usize = KEY_BYTES * 2 + KEY_BYTES * 2 / GROUP - 1;

/// Why a typed recovery key was rejected. The messages never echo the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecoveryKeyError {
    #[error(
        "the recovery key has {found} characters (not counting dashes and spaces); it has 64, \
         in 8 groups of 8 like cbdefghi-jklnrtuv-..."
    )]
    WrongLength { found: usize },
    #[error(
        "the recovery key contains {found:?} at position {position}; it uses only the letters \
         c b d e f g h i j k l n r t u v"
    )]
    InvalidCharacter { found: char, position: usize },
}

/// Generates a new recovery key as the text the owner types, which is also the keyslot's
/// passphrase.
pub fn generate() -> Result<Secret, getrandom::Error> {
    let raw = Secret::random(KEY_BYTES)?;
    let mut text = Secret::zeroed(RECOVERY_KEY_LEN);
    let out = text.as_mut_bytes();
    let mut position = 0;
    for (index, byte) in raw.as_bytes().iter().enumerate() {
        if index > 0 && index % (GROUP / 2) == 0 {
            out[position] = b'-';
            position += 1;
        }
        out[position] = MODHEX[usize::from(byte >> 4)];
        out[position + 1] = MODHEX[usize::from(byte & 0x0f)];
        position += 2;
    }
    Ok(text)
}

/// Normalizes a typed recovery key to the canonical form: lower case, dashes between groups.
/// Spaces, dashes and surrounding whitespace are ignored, so "CBDE FGHI..." also works.
pub fn normalize(typed: &[u8]) -> Result<Secret, RecoveryKeyError> {
    let mut digits = Secret::zeroed(KEY_BYTES * 2);
    let mut count = 0usize;
    for (position, byte) in typed.iter().enumerate() {
        let lower = byte.to_ascii_lowercase();
        if matches!(lower, b'-' | b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        if !MODHEX.contains(&lower) {
            return Err(RecoveryKeyError::InvalidCharacter {
                found: char::from(*byte),
                position: position + 1,
            });
        }
        if count < digits.len() {
            digits.as_mut_bytes()[count] = lower;
        }
        count += 1;
    }
    if count != KEY_BYTES * 2 {
        return Err(RecoveryKeyError::WrongLength { found: count });
    }
    let mut text = Secret::zeroed(RECOVERY_KEY_LEN);
    let out = text.as_mut_bytes();
    let mut position = 0;
    for (index, digit) in digits.as_bytes().iter().enumerate() {
        if index > 0 && index % GROUP == 0 {
            out[position] = b'-';
            position += 1;
        }
        out[position] = *digit;
        position += 1;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_systemds_shape() {
        let key = generate().expect("getrandom");
        let text = std::str::from_utf8(key.as_bytes()).expect("ascii");
        let groups: Vec<&str> = text.split('-').collect();
        assert_eq!(groups.len(), 8);
        assert!(groups.iter().all(|group| group.len() == 8));
        assert!(text.bytes().all(|b| b == b'-' || MODHEX.contains(&b)));
        assert_eq!(normalize(key.as_bytes()).expect("valid"), key);
    }

    #[test]
    fn typed_variants_normalize_to_the_canonical_form() {
        let canonical = b"nrlhjbcf-vrvtrrcj-dhbkrjic-gvvugdci-ndgfdjrr-lggklbrh-rjcrffrt-lunfvvit";
        let typed = b"  NRLHJBCF VRVTRRCJ dhbkrjicgvvugdci-ndgfdjrr-lggklbrh-rjcrffrt-lunfvvit\n";
        assert_eq!(normalize(typed).expect("valid").as_bytes(), canonical);
    }

    #[test]
    fn errors_name_the_problem_without_echoing_the_key() {
        assert_eq!(
            normalize(b"cbde").expect_err("too short"),
            RecoveryKeyError::WrongLength { found: 4 }
        );
        let error = normalize(b"cbdefghi-jklnrtua").expect_err("rejected");
        assert_eq!(
            error,
            RecoveryKeyError::InvalidCharacter {
                found: 'a',
                position: 17
            }
        );
    }
}
