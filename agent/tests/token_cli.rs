//! The `token` command, run as the real binary on a temporary store.

use std::path::Path;
use std::process::{Command, Output};

use appliance_agent::auth::TokenStore;
use serde_json::Value;

fn token(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appliance-agent"))
        .arg("token")
        .args(args)
        .arg("--store")
        .arg(store)
        .output()
        .expect("run appliance-agent token")
}

fn stdout_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn create_prints_token_once() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = dir.path().join("tokens.json");

    let output = token(
        &store,
        &["create", "--name", "laptop", "--scope", "inference"],
    );

    assert!(output.status.success(), "{}", stderr_text(&output));
    let printed = stdout_text(&output);
    let printed = printed.trim_end();
    assert!(printed.starts_with("appliance_"), "{printed}");
    assert_eq!(printed.lines().count(), 1);
    assert!(stderr_text(&output).contains("shown only this once"));
    let principal = TokenStore::new(store.clone())
        .verify(printed)
        .expect("verify")
        .expect("printed token is stored");
    assert_eq!(principal.name, "laptop");
    assert_eq!(principal.scope.as_str(), "inference");
    let list = token(&store, &["list"]);
    assert!(!stdout_text(&list).contains(printed));
}

#[test]
fn list_shows_no_secrets() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = dir.path().join("tokens.json");
    let created = token(&store, &["create", "--name", "ops", "--scope", "admin"]);
    let secret = stdout_text(&created).trim_end().to_owned();
    let hash = TokenStore::new(store.clone()).list().expect("list")[0].sha256;

    let table = token(&store, &["list"]);
    let json = token(&store, &["list", "--json"]);

    assert!(table.status.success(), "{}", stderr_text(&table));
    let table = stdout_text(&table);
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains(" admin "), "{table}");
    assert!(table.contains("ops"), "{table}");
    let entries: Value = serde_json::from_str(&stdout_text(&json)).expect("JSON list");
    assert_eq!(entries[0]["name"], "ops");
    assert_eq!(entries[0]["scope"], "admin");
    assert!(entries[0]["created_at"].is_u64());
    assert!(entries[0].get("sha256").is_none());
    for text in [table, stdout_text(&json)] {
        assert!(!text.contains(&secret));
        assert!(!text.contains(&hex::encode(hash)));
    }
}

#[test]
fn revoke_removes_token() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = dir.path().join("tokens.json");
    let created = token(&store, &["create", "--name", "old", "--scope", "admin"]);
    let secret = stdout_text(&created).trim_end().to_owned();
    let id = TokenStore::new(store.clone()).list().expect("list")[0]
        .id
        .clone();

    let output = token(&store, &["revoke", &id]);

    assert!(output.status.success(), "{}", stderr_text(&output));
    assert!(stderr_text(&output).contains(&id));
    assert_eq!(
        TokenStore::new(store.clone())
            .verify(&secret)
            .expect("verify"),
        None
    );
}

#[test]
fn revoke_unknown_id_fails() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = dir.path().join("tokens.json");

    let output = token(&store, &["revoke", "feedfacecafe"]);

    assert!(!output.status.success());
    let message = stderr_text(&output);
    assert!(message.contains("feedfacecafe"), "{message}");
    assert!(message.contains("token list"), "{message}");
}

#[test]
fn invalid_scope_rejected() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = dir.path().join("tokens.json");

    let output = token(&store, &["create", "--name", "x", "--scope", "root"]);

    assert!(!output.status.success());
    assert!(
        stderr_text(&output).contains("admin"),
        "{}",
        stderr_text(&output)
    );
    assert!(!store.exists());
}

#[test]
fn store_path_from_config() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = dir.path().join("from-config/tokens.json");
    let config = dir.path().join("appliance.yaml");
    std::fs::write(
        &config,
        format!("auth:\n  token_store: {}\n", store.display()),
    )
    .expect("write config");

    let output = Command::new(env!("CARGO_BIN_EXE_appliance-agent"))
        .args([
            "token", "create", "--name", "cfg", "--scope", "admin", "--config",
        ])
        .arg(&config)
        .output()
        .expect("run appliance-agent token");

    assert!(output.status.success(), "{}", stderr_text(&output));
    assert_eq!(TokenStore::new(store).list().expect("list").len(), 1);
}
