//! CSRF tokens: an expiry time and an HMAC-SHA256 over it and the id of the
//! API token that asked for it, under a key drawn when `serve` starts.
//!
//! A token is therefore valid only together with the same bearer token, only
//! until it expires, and only until `serve` restarts. The server keeps no
//! list of issued tokens.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// How long a CSRF token stays valid.
pub const CSRF_TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Header that carries the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Separates the fields of the MAC input, so no two (id, expiry) pairs
/// produce the same bytes.
const DOMAIN: &[u8] = b"appliance-csrf-v1\0";

type HmacSha256 = Hmac<Sha256>;

/// Reason a CSRF token was rejected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("missing X-CSRF-Token header. Get a token from GET /api/auth/csrf and send it with every state-changing request")]
    Missing,
    #[error("malformed X-CSRF-Token header. Send the csrf_token value from GET /api/auth/csrf unchanged")]
    Malformed,
    #[error("the CSRF token expired. Get a new one from GET /api/auth/csrf")]
    Expired,
    #[error("the CSRF token does not belong to this API token, or the server restarted since it was issued. Get a new one from GET /api/auth/csrf")]
    Mismatch,
}

/// A CSRF token and its expiry, in seconds since the Unix epoch.
#[derive(Debug)]
pub struct CsrfToken {
    pub value: String,
    pub expires_at: u64,
}

/// Per-process key for CSRF tokens. Its memory is wiped on drop.
pub struct CsrfKey {
    key: Zeroizing<[u8; 32]>,
}

impl CsrfKey {
    /// Draws a new random key.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = Zeroizing::new([0_u8; 32]);
        getrandom::fill(key.as_mut_slice())?;
        Ok(Self { key })
    }

    /// Issues a token for the API token with id `token_id`, valid from
    /// `now` (seconds since the Unix epoch) for [`CSRF_TOKEN_LIFETIME`].
    pub fn issue(&self, token_id: &str, now: u64) -> CsrfToken {
        let expires_at = now.saturating_add(CSRF_TOKEN_LIFETIME.as_secs());
        let tag = self.mac(token_id, expires_at).finalize().into_bytes();
        CsrfToken {
            value: format!("{expires_at}.{}", hex::encode(tag)),
            expires_at,
        }
    }

    /// Checks a token sent by the holder of the API token `token_id`.
    pub fn verify(&self, token_id: &str, value: &str, now: u64) -> Result<(), CsrfError> {
        let (expiry_text, tag_text) = value.split_once('.').ok_or(CsrfError::Malformed)?;
        let expires_at: u64 = expiry_text.parse().map_err(|_| CsrfError::Malformed)?;
        let tag = hex::decode(tag_text).map_err(|_| CsrfError::Malformed)?;
        // verify_slice compares in constant time.
        self.mac(token_id, expires_at)
            .verify_slice(&tag)
            .map_err(|_| CsrfError::Mismatch)?;
        // Checked after the MAC, so an expiry time that was tampered with
        // reads as a mismatch rather than as expired.
        if now >= expires_at {
            return Err(CsrfError::Expired);
        }
        Ok(())
    }

    fn mac(&self, token_id: &str, expires_at: u64) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(self.key.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(DOMAIN);
        mac.update(token_id.as_bytes());
        mac.update(b"\0");
        mac.update(&expires_at.to_be_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key() -> CsrfKey {
        CsrfKey::generate().expect("random bytes")
    }

    #[test]
    fn issued_token_verifies() {
        let key = key();
        let token = key.issue("abc123", NOW);

        assert_eq!(token.expires_at, NOW + 3600);
        assert_eq!(key.verify("abc123", &token.value, NOW + 10), Ok(()));
    }

    #[test]
    fn token_bound_to_api_token() {
        let key = key();
        let token = key.issue("abc123", NOW);

        assert_eq!(
            key.verify("def456", &token.value, NOW),
            Err(CsrfError::Mismatch)
        );
    }

    #[test]
    fn token_bound_to_key() {
        let token = key().issue("abc123", NOW);

        assert_eq!(
            key().verify("abc123", &token.value, NOW),
            Err(CsrfError::Mismatch)
        );
    }

    #[test]
    fn token_expires() {
        let key = key();
        let token = key.issue("abc123", NOW);

        assert_eq!(
            key.verify("abc123", &token.value, NOW + 3600),
            Err(CsrfError::Expired)
        );
    }

    #[test]
    fn extended_expiry_rejected() {
        let key = key();
        let token = key.issue("abc123", NOW);
        let (_, tag) = token.value.split_once('.').expect("two fields");
        let forged = format!("{}.{tag}", NOW + 999_999);

        assert_eq!(key.verify("abc123", &forged, NOW), Err(CsrfError::Mismatch));
    }

    #[test]
    fn malformed_tokens_rejected() {
        let key = key();
        for value in ["", "123", "abc.00", "123.zz", "123."] {
            let result = key.verify("abc123", value, NOW);
            assert!(
                matches!(result, Err(CsrfError::Malformed | CsrfError::Mismatch)),
                "{value:?}: {result:?}"
            );
        }
        assert_eq!(
            key.verify("abc123", "123.zz", NOW),
            Err(CsrfError::Malformed)
        );
    }
}
