//! First start: an empty token store gets one admin token, shown once on the
//! console.
//!
//! The token goes to the console device and not to the log, because the log
//! is kept in the journal and read by more people than the console. A
//! service's stderr also goes to the journal, so stderr is used only where no
//! console device exists, such as a development run in a terminal.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tracing::info;
use zeroize::Zeroizing;

use super::store::{StoreError, TokenRecord, TokenStore};
use super::Scope;

/// Console device of the machine (the serial console in a VM).
pub const CONSOLE: &str = "/dev/console";

/// Name of the token created on first start.
pub const INITIAL_TOKEN_NAME: &str = "initial admin";

/// Destination of the initial admin token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Console {
    /// A device or file, opened for appending. A missing file is created
    /// with mode 0600.
    Path(PathBuf),
    /// This process's stderr.
    Stderr,
}

impl Console {
    /// Returns `/dev/console` when it exists, stderr otherwise.
    pub fn detect() -> Self {
        if Path::new(CONSOLE).exists() {
            Console::Path(PathBuf::from(CONSOLE))
        } else {
            Console::Stderr
        }
    }

    fn write_all(&self, text: &[u8]) -> io::Result<()> {
        match self {
            Console::Path(path) => {
                let mut file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOCTTY)
                    .open(path)?;
                file.write_all(text)?;
                file.flush()
            }
            Console::Stderr => {
                let mut stderr = io::stderr().lock();
                stderr.write_all(text)?;
                stderr.flush()
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Console::Path(path) => path.display().to_string(),
            Console::Stderr => "stderr".to_owned(),
        }
    }
}

/// A first-start step that failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("failed to show the initial admin token on {console}: {source}. The token was removed again, so the next start tries again; or create one with `appliance-agent token create --name admin --scope admin`")]
    Show { console: String, source: io::Error },
}

/// Creates the initial admin token when the store has none, and shows it
/// on `console`. Returns the new token's record, or `None` when the store
/// already had tokens.
pub fn ensure_admin_token(
    store: &TokenStore,
    console: &Console,
) -> Result<Option<TokenRecord>, BootstrapError> {
    let Some((record, token)) = store.create_if_empty(INITIAL_TOKEN_NAME, Scope::Admin)? else {
        return Ok(None);
    };
    let message = Zeroizing::new(format!(
        "\nappliance-agent: initial admin API token (id {id}). It is shown only this once; store it now:\n\n    {token}\n\nappliance-agent: send it as \"Authorization: Bearer <token>\". `appliance-agent token` creates more and revokes them.\n\n",
        id = record.id,
        token = token.as_str()
    ));
    if let Err(source) = console.write_all(message.as_bytes()) {
        // A token that was never shown locks the owner out, and a store with a
        // token would never get another one on the next start.
        store.revoke(&record.id)?;
        return Err(BootstrapError::Show {
            console: console.describe(),
            source,
        });
    }
    info!(
        id = %record.id,
        console = %console.describe(),
        store = %store.path().display(),
        "initial admin token created and shown on the console"
    );
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::auth::token::TOKEN_PREFIX;

    #[test]
    fn empty_store_gets_one_admin_token() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = TokenStore::new(dir.path().join("tokens.json"));
        let console = Console::Path(dir.path().join("console"));

        let record = ensure_admin_token(&store, &console)
            .expect("bootstrap")
            .expect("token created");

        assert_eq!(record.scope, Scope::Admin);
        let shown = fs::read_to_string(dir.path().join("console")).expect("read console");
        let token = shown
            .split_whitespace()
            .find(|word| word.starts_with(TOKEN_PREFIX))
            .expect("token on the console");
        let principal = store.verify(token).expect("verify").expect("token valid");
        assert_eq!(principal.id, record.id);
        assert!(shown.contains(&record.id));
    }

    #[test]
    fn store_with_tokens_left_alone() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = TokenStore::new(dir.path().join("tokens.json"));
        store.create("laptop", Scope::Inference).expect("create");
        let console = Console::Path(dir.path().join("console"));

        let created = ensure_admin_token(&store, &console).expect("bootstrap");

        assert_eq!(created, None);
        assert!(!dir.path().join("console").exists());
        assert_eq!(store.list().expect("list").len(), 1);
    }

    #[test]
    fn unwritable_console_leaves_store_empty() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = TokenStore::new(dir.path().join("tokens.json"));
        let console = Console::Path(dir.path().join("missing/console"));

        let err = ensure_admin_token(&store, &console).expect_err("console missing");

        assert!(matches!(err, BootstrapError::Show { .. }), "{err}");
        assert!(err.to_string().contains("missing/console"), "{err}");
        assert_eq!(store.list().expect("list"), Vec::new());
    }
}
