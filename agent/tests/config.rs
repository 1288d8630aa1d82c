//! Parsing of `appliance.yaml` and of the `appliance.listen` credential.

use std::net::SocketAddr;
use std::path::Path;

use appliance_agent::config::{self, Config, ConfigError, CredentialError};

const CONFIG_PATH: &str = "/etc/appliance/appliance.yaml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    config::parse(Path::new(CONFIG_PATH), text)
}

fn error_message(text: &str) -> String {
    parse(text).expect_err("parse must fail").to_string()
}

fn address(text: &str) -> SocketAddr {
    text.parse().expect("valid socket address")
}

#[test]
fn missing_file_gives_defaults() {
    let dir = tempfile::tempdir().expect("create temp dir");

    let config = config::load(&dir.path().join("appliance.yaml")).expect("load");

    assert_eq!(config.listen, vec![address("127.0.0.1:8480")]);
    assert!(!config.vm.gpu_passthrough);
}

#[test]
fn empty_and_comment_files_give_defaults() {
    for text in ["", "\n", "# all defaults\n", "null\n", "~\n"] {
        assert_eq!(
            parse(text).expect("parse"),
            Config::default(),
            "text {text:?}"
        );
    }
}

#[test]
fn full_config_parses() {
    let text = "listen:\n  - 127.0.0.1:9000\n  - \"[::1]:9000\"\nvm:\n  gpu_passthrough: true\n";

    let config = parse(text).expect("parse");

    assert_eq!(
        config.listen,
        vec![address("127.0.0.1:9000"), address("[::1]:9000")]
    );
    assert!(config.vm.gpu_passthrough);
}

#[test]
fn partial_vm_section_keeps_default_listen() {
    let config = parse("vm: {}\n").expect("parse");

    assert_eq!(config.listen, vec![address("127.0.0.1:8480")]);
    assert!(!config.vm.gpu_passthrough);
}

#[test]
fn unknown_top_level_key_rejected() {
    let message = error_message("lisen: [\"127.0.0.1:8480\"]\n");

    assert!(message.contains(CONFIG_PATH), "{message}");
    assert!(message.contains("unknown field `lisen`"), "{message}");
    assert!(
        message.contains("Remove the key or fix its spelling"),
        "{message}"
    );
}

#[test]
fn unknown_vm_key_rejected() {
    let message = error_message("vm:\n  gpu: true\n");

    assert!(message.contains("vm: unknown field `gpu`"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn non_boolean_gpu_passthrough_rejected() {
    let message = error_message("vm:\n  gpu_passthrough: maybe\n");

    assert!(message.contains(CONFIG_PATH), "{message}");
    assert!(message.contains("vm.gpu_passthrough"), "{message}");
    assert!(
        message.contains("Set vm.gpu_passthrough to true or false"),
        "{message}"
    );
}

#[test]
fn address_without_port_rejected() {
    let message = error_message("listen: [\"127.0.0.1:8480\", \"127.0.0.1\"]\n");

    assert!(message.contains("listen[1]"), "{message}");
    assert!(message.contains("IP:port"), "{message}");
}

#[test]
fn empty_listen_list_rejected() {
    let message = error_message("listen: []\n");

    assert!(message.contains("listen: the list is empty"), "{message}");
    assert!(message.contains("Add at least one address"), "{message}");
}

#[test]
fn yaml_syntax_error_names_position() {
    let message = error_message("listen: [\n");

    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("Fix the YAML syntax"), "{message}");
}

#[test]
fn sequence_document_rejected() {
    let message = error_message("- 127.0.0.1:8480\n");

    assert!(message.contains("Write a YAML mapping"), "{message}");
}

#[test]
fn unreadable_config_is_read_error() {
    let dir = tempfile::tempdir().expect("create temp dir");

    // A directory in place of the file fails to read even as root.
    let err = config::load(dir.path()).expect_err("load must fail");

    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn credential_separators_and_ipv6() {
    let addresses = config::parse_address_list("127.0.0.1:1, [::1]:2\n10.0.0.5:3\t127.0.0.2:4,")
        .expect("parse");

    assert_eq!(
        addresses,
        vec![
            address("127.0.0.1:1"),
            address("[::1]:2"),
            address("10.0.0.5:3"),
            address("127.0.0.2:4"),
        ]
    );
}

#[test]
fn credential_invalid_token_named() {
    let dir = tempfile::tempdir().expect("create temp dir");
    std::fs::write(
        dir.path().join(config::LISTEN_CREDENTIAL),
        "127.0.0.1:1,localhost:2",
    )
    .expect("write");

    let err = config::listen_credential(dir.path()).expect_err("must fail");

    assert!(
        matches!(err, CredentialError::InvalidAddress { ref token, .. } if token == "localhost:2"),
        "{err}"
    );
    assert!(err.to_string().contains("appliance.listen"), "{err}");
}

#[test]
fn credential_missing_gives_no_addresses() {
    let dir = tempfile::tempdir().expect("create temp dir");

    assert!(config::listen_credential(dir.path())
        .expect("read")
        .is_empty());
}

#[test]
fn merge_drops_duplicates_in_order() {
    let configured = [address("127.0.0.1:8480")];
    let extra = [address("127.0.0.1:8480"), address("[::1]:8480")];

    let merged = config::merge_listen(&configured, &extra);

    assert_eq!(
        merged,
        vec![address("127.0.0.1:8480"), address("[::1]:8480")]
    );
}

#[test]
fn merge_folds_addresses_under_wildcard() {
    let configured = [address("127.0.0.1:8480"), address("[::1]:8480")];
    let extra = [address("0.0.0.0:8480"), address("127.0.0.1:9000")];

    let merged = config::merge_listen(&configured, &extra);

    assert_eq!(
        merged,
        vec![
            address("[::1]:8480"),
            address("0.0.0.0:8480"),
            address("127.0.0.1:9000")
        ]
    );
}

#[test]
fn models_and_inference_defaults() {
    let config = Config::default();

    assert_eq!(
        config.models.dir,
        Path::new("/var/lib/appliance/vault/models")
    );
    assert_eq!(config.models.default, None);
    assert!(config.models.sha256.is_empty());
    assert_eq!(config.inference.threads, None);
    assert_eq!(config.inference.context_tokens, 4096);
    assert_eq!(config.inference.gpu_layers, None);
}

#[test]
fn models_and_inference_parse() {
    let digest = "ab".repeat(32);
    let text = format!(
        "models:\n  dir: /srv/models\n  default: tiny.gguf\n  sha256:\n    tiny.gguf: {digest}\n\
         inference:\n  threads: 3\n  context_tokens: 2048\n  queue_size: 0\n  gpu_layers: 10\n"
    );

    let config = parse(&text).expect("parse");

    assert_eq!(config.models.dir, Path::new("/srv/models"));
    assert_eq!(config.models.default.as_deref(), Some("tiny.gguf"));
    assert_eq!(
        config.models.sha256.get("tiny.gguf").map(String::as_str),
        Some(digest.as_str())
    );
    assert_eq!(config.inference.threads, Some(3));
    assert_eq!(config.inference.context_tokens, 2048);
    assert_eq!(config.inference.queue_size, 0);
    assert_eq!(config.inference.gpu_layers, Some(10));
}

#[test]
fn invalid_model_digest_rejected() {
    for digest in ["abc", &"g".repeat(64), &"a".repeat(65)] {
        let message = error_message(&format!(
            "models:\n  sha256:\n    tiny.gguf: \"{digest}\"\n"
        ));

        assert!(message.contains("models.sha256.tiny.gguf"), "{message}");
        assert!(message.contains("sha256sum"), "{message}");
    }
}

#[test]
fn model_paths_with_folders_rejected() {
    let message = error_message("models:\n  default: ../etc/shadow\n");
    assert!(message.contains("models.default"), "{message}");

    let message = error_message(&format!(
        "models:\n  sha256:\n    a/b.gguf: {}\n",
        "0".repeat(64)
    ));
    assert!(message.contains("models.sha256"), "{message}");

    let message = error_message("models:\n  dir: models\n");
    assert!(message.contains("models.dir"), "{message}");
    assert!(message.contains("absolute path"), "{message}");
}

#[test]
fn bad_inference_values_rejected() {
    let message = error_message("inference:\n  threads: 0\n");
    assert!(message.contains("inference.threads"), "{message}");

    let message = error_message("inference:\n  context_tokens: 8\n");
    assert!(message.contains("inference.context_tokens"), "{message}");
    assert!(message.contains("minimum of 64"), "{message}");

    let message = error_message("inference:\n  threads: -2\n");
    assert!(message.contains("inference.threads"), "{message}");
    assert!(message.contains("whole number"), "{message}");
}

#[test]
fn unknown_inference_key_rejected() {
    let message = error_message("inference:\n  thread: 2\n");

    assert!(message.contains("unknown field `thread`"), "{message}");
    assert!(message.contains("inference.threads"), "{message}");
}

#[test]
fn shipped_config_parses() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../image/agent-package/main/appliance.yaml");

    let config = config::load(&path).expect("the packaged appliance.yaml is valid");

    assert_eq!(config.listen, vec![address("127.0.0.1:8480")]);
    assert_eq!(config.models, Config::default().models);
    assert_eq!(config.inference, Config::default().inference);
}
