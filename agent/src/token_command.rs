//! `token`: manages API tokens in the token store from a shell on the
//! appliance.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use serde_json::json;

use crate::auth::{TokenRecord, TokenStore};
use crate::cli::{TokenArgs, TokenCommand};
use crate::config;

/// Runs one `token` subcommand.
pub fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let store = TokenStore::new(store_path(args)?);
    match &args.command {
        TokenCommand::Create { name, scope } => {
            let (record, token) = store.create(name, *scope)?;
            // The token alone on stdout, so `$(appliance-agent token create
            // ...)` captures it; the explanation goes to stderr.
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", token.as_str()).context("failed to print the token")?;
            stdout.flush().context("failed to print the token")?;
            eprintln!(
                "appliance-agent: created {} token {} ({:?}) in {}. It is shown only this once.",
                record.scope,
                record.id,
                record.name,
                store.path().display()
            );
        }
        TokenCommand::List { json } => {
            let records = store.list()?;
            if *json {
                let entries: Vec<_> = records.iter().map(record_json).collect();
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print!("{}", table(&records));
            }
        }
        TokenCommand::Revoke { id } => {
            let record = store.revoke(id)?;
            eprintln!(
                "appliance-agent: revoked {} token {} ({:?})",
                record.scope, record.id, record.name
            );
        }
    }
    Ok(())
}

fn store_path(args: &TokenArgs) -> anyhow::Result<std::path::PathBuf> {
    if let Some(path) = &args.store {
        return Ok(path.clone());
    }
    let config = config::load(&args.config)?;
    Ok(config.auth.token_store)
}

fn record_json(record: &TokenRecord) -> serde_json::Value {
    json!({
        "id": record.id,
        "name": record.name,
        "scope": record.scope,
        "created_at": record.created_at,
    })
}

/// Formats the records as a table with a header line.
fn table(records: &[TokenRecord]) -> String {
    let mut text = format!("{:<12}  {:<9}  {:<20}  NAME\n", "ID", "SCOPE", "CREATED");
    for record in records {
        let created = UNIX_EPOCH + Duration::from_secs(record.created_at);
        text.push_str(&format!(
            "{:<12}  {:<9}  {:<20}  {}\n",
            record.id,
            record.scope.as_str(),
            humantime::format_rfc3339_seconds(created).to_string(),
            record.name
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    #[test]
    fn table_shows_no_hash() {
        let record = TokenRecord {
            id: "0123456789ab".to_owned(),
            name: "laptop".to_owned(),
            scope: Scope::Inference,
            created_at: 1_800_000_000,
            sha256: [0xab; 32],
        };

        let text = table(&[record]);

        assert!(
            text.contains("0123456789ab  inference  2027-01-15T08:00:00Z  laptop"),
            "{text}"
        );
        assert!(!text.contains("abab"), "{text}");
    }
}
