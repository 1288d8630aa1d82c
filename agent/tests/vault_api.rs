//! `/api/vault/*` on states recorded by early boot. Opening a real vault needs
//! device-mapper and is covered by the QEMU boot tests.

mod support;

use std::sync::Arc;

use appliance_agent::api::{self, ApiState};
use appliance_agent::boot_state::{BootState, SecureBoot, Tpm};
use appliance_agent::config::Config;
use appliance_agent::vault::service::VaultService;
use appliance_agent::vault::{VaultState, VaultStatus};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use support::{detect_fixture, fixture};

fn state_with(status: Option<VaultStatus>) -> (Arc<ApiState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Some(status) = status {
        status.write(dir.path()).expect("write vault.json");
    }
    let state = Arc::new(ApiState {
        detection: detect_fixture(&fixture("vm/docker-on-kvm")),
        config: Config::default(),
        boot: BootState {
            secure_boot: SecureBoot::Enforcing,
            tpm: Tpm {
                present: true,
                version: Some("2".to_owned()),
                device: Some("/dev/tpmrm0".to_owned()),
            },
        },
        measurements: None,
        vault: VaultService::load(dir.path().to_owned()),
    });
    (state, dir)
}

async fn call(state: Arc<ApiState>, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    let response = api::router(state).oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

fn locked() -> VaultStatus {
    let mut status = VaultStatus::new(
        VaultState::Locked,
        Some("the TPM did not unlock the vault (policy mismatch (pcr 11))".to_owned()),
    );
    status.tpm_result = Some("policy mismatch (pcr 11)".to_owned());
    status
}

#[tokio::test]
async fn status_reports_the_state_and_reason_from_early_boot() {
    let (state, _dir) = state_with(Some(locked()));
    let (code, body) = call(state, Method::GET, "/api/vault/status", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["state"], "locked");
    assert_eq!(body["tpm_result"], "policy mismatch (pcr 11)");
    assert!(body["reason"].as_str().expect("reason").contains("pcr 11"));
}

#[tokio::test]
async fn missing_early_state_is_reported_as_an_error_state() {
    let (state, _dir) = state_with(None);
    let (code, body) = call(state, Method::GET, "/api/vault/status", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["state"], "error");
    assert!(body["reason"]
        .as_str()
        .expect("reason")
        .contains("early boot"));
}

#[tokio::test]
async fn malformed_unlock_bodies_get_400_naming_the_field_without_echoing_the_key() {
    let (state, _dir) = state_with(Some(locked()));
    for body in [
        "",
        "{",
        "{\"key\": \"vvvvtttt\"}",
        "{\"recovery_key\": 5}",
        "{\"recovery_key\": \"vvvvtttt-zzzz\"}",
        "{\"recovery_key\": \"vvvvtttt\"}",
    ] {
        let (code, reply) = call(state.clone(), Method::POST, "/api/vault/unlock", body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
        let message = reply["error"]["message"].as_str().expect("message");
        assert!(message.contains("recovery_key"), "{body}: {message}");
        assert!(
            !message.contains("vvvvtttt"),
            "{body}: the key is echoed: {message}"
        );
    }
}

#[tokio::test]
async fn lock_of_a_closed_vault_is_a_conflict_and_unlock_of_an_open_one_too() {
    let (state, _dir) = state_with(Some(locked()));
    let (code, _) = call(state, Method::POST, "/api/vault/lock", "").await;
    assert_eq!(code, StatusCode::CONFLICT);

    let mut open = VaultStatus::new(VaultState::Open, None);
    open.unlocked_by = Some("tpm".to_owned());
    let (state, _dir) = state_with(Some(open));
    let key = "cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv";
    let (code, _) = call(
        state,
        Method::POST,
        "/api/vault/unlock",
        &format!("{{\"recovery_key\": \"{key}\"}}"),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
}
