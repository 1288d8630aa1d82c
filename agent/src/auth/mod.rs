//! Authentication of the local API: bearer tokens kept as hashes in a token
//! store, scopes, CSRF tokens for state-changing requests, a `Host`
//! allow-list against DNS rebinding, and a limit on failed attempts.
//!
//! To protect a route, add an extractor to its handler:
//!
//! ```ignore
//! async fn unlock(
//!     _admin: RequireScope<Admin>,
//!     ApiJson(body): ApiJson<UnlockRequest>,
//! ) -> Response { ... }
//! ```
//!
//! [`RequireScope<Admin>`](http::RequireScope) also checks `X-CSRF-Token`
//! and `Origin` on every method other than GET, HEAD, OPTIONS and TRACE.
//! [`RequireScope<Inference>`](http::RequireScope) only checks the bearer
//! token, because OpenAI-compatible clients send no CSRF token. For a whole
//! group of routes, [`http::require_admin`] and [`http::require_inference`]
//! do the same as middleware. Either way the router must be wrapped by
//! [`http::protect`], which [`crate::api::router`] does.

pub mod bootstrap;
pub mod csrf;
pub mod hosts;
pub mod http;
pub mod rate_limit;
pub mod store;
pub mod token;

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use self::csrf::{CsrfError, CsrfKey, CsrfToken};
pub use self::hosts::AllowedHosts;
pub use self::http::{protect, require_admin, require_inference, Admin, Inference, RequireScope};
pub use self::rate_limit::FailureLimiter;
pub use self::store::{StoreError, TokenRecord, TokenStore};

/// Default path of the token store, inside the vault's mount point.
pub const DEFAULT_TOKEN_STORE: &str = "/var/lib/appliance/vault/auth/tokens.json";

/// Copy of the admin tokens' hashes outside the vault, which authenticates requests
/// while the vault is closed (to open it, above all). It is refreshed whenever `serve`
/// sees the vault open, and holds hashes only: adding a record to it offline grants the
/// routes that work while the vault is closed, and opening the vault still takes the
/// recovery key or the TPM.
pub const LOCKED_STATE_TOKEN_STORE: &str = "/var/lib/appliance/auth/admin-tokens.json";

/// Permission of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The admin API under `/api`: settings, the vault, tokens.
    Admin,
    /// The OpenAI-compatible inference API under `/v1`.
    Inference,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Inference => "inference",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The holder of a verified token, as handlers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Public id of the token.
    pub id: String,
    /// Name the token was created with.
    pub name: String,
    pub scope: Scope,
}

/// Everything the API's authentication checks need, shared by all requests.
pub struct Auth {
    store: RwLock<Arc<TokenStore>>,
    limiter: Mutex<FailureLimiter>,
    csrf: CsrfKey,
    hosts: AllowedHosts,
}

/// Reason a bearer token was not accepted.
#[derive(Debug)]
pub enum TokenRejection {
    /// The client has too many recent failures and must wait this long.
    Blocked(Duration),
    /// No stored token matches.
    Unknown,
    /// The token store cannot be read, so no token can be checked.
    StoreUnavailable(StoreError),
}

impl Auth {
    /// Creates the shared state with a fresh CSRF key.
    pub fn new(store: TokenStore, hosts: AllowedHosts) -> Result<Self, getrandom::Error> {
        Ok(Self::with_limiter(
            store,
            hosts,
            CsrfKey::generate()?,
            FailureLimiter::default(),
        ))
    }

    /// Creates the shared state with a given key and limiter, for tests.
    pub fn with_limiter(
        store: TokenStore,
        hosts: AllowedHosts,
        csrf: CsrfKey,
        limiter: FailureLimiter,
    ) -> Self {
        Self {
            store: RwLock::new(Arc::new(store)),
            limiter: Mutex::new(limiter),
            csrf,
            hosts,
        }
    }

    /// Returns the token store in use.
    pub fn store(&self) -> Arc<TokenStore> {
        // A poisoned lock still holds a whole Arc: a panic cannot leave it
        // half-replaced.
        self.store
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Points authentication at another token store, such as the one
    /// inside the vault once it is open. Requests already being checked
    /// finish with the old store.
    pub fn replace_store(&self, store: TokenStore) {
        *self
            .store
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(store);
    }

    /// Returns the names accepted in `Host` and `Origin` headers.
    pub fn hosts(&self) -> &AllowedHosts {
        &self.hosts
    }

    /// Checks a bearer token presented by `client`, counting a failure
    /// towards the client's limit.
    pub fn verify_token(
        &self,
        presented: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal, TokenRejection> {
        self.verify_token_at(presented, client, Instant::now())
    }

    fn verify_token_at(
        &self,
        presented: &str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<Principal, TokenRejection> {
        if let Some(wait) = self.limiter().blocked_for(client, now) {
            return Err(TokenRejection::Blocked(wait));
        }
        match self.store().verify(presented) {
            Ok(Some(principal)) => Ok(principal),
            Ok(None) => {
                let mut limiter = self.limiter();
                limiter.record_failure(client, now);
                if let Some(wait) = limiter.blocked_for(client, now) {
                    tracing::warn!(
                        client = %client.map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".to_owned()),
                        retry_after_seconds = wait.as_secs(),
                        "too many failed API token attempts, rejecting tokens for a while"
                    );
                }
                Err(TokenRejection::Unknown)
            }
            Err(err) => Err(TokenRejection::StoreUnavailable(err)),
        }
    }

    /// Issues a CSRF token bound to `principal`'s token.
    pub fn issue_csrf(&self, principal: &Principal) -> CsrfToken {
        self.csrf.issue(&principal.id, unix_now())
    }

    /// Checks a CSRF token sent by `principal`.
    pub fn verify_csrf(&self, principal: &Principal, value: &str) -> Result<(), CsrfError> {
        self.csrf.verify(&principal.id, value, unix_now())
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, FailureLimiter> {
        // The limiter's counts stay consistent even if a holder panicked:
        // each update is a single push or pop.
        self.limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}
