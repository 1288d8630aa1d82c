//! `/api/vault/*` on states recorded by early boot. Opening a real vault needs
//! device-mapper and is covered by the QEMU boot tests.

mod support;

use std::sync::Arc;

use appliance_agent::api::{self, ApiState};
use appliance_agent::auth::{AllowedHosts, Auth, Scope, TokenStore};
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

struct Appliance {
    state: Arc<ApiState>,
    admin: String,
    _dir: tempfile::TempDir,
}

fn state_with(status: Option<VaultStatus>) -> Appliance {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Some(status) = status {
        status.write(dir.path()).expect("write vault.json");
    }
    let store = TokenStore::new(dir.path().join("tokens.json"));
    let (_, admin) = store.create("admin", Scope::Admin).expect("create token");
    let auth = Auth::new(store, AllowedHosts::new(&[], &[])).expect("random key");
    let state = Arc::new(ApiState::new(
        detect_fixture(&fixture("vm/docker-on-kvm")),
        Config::default(),
        dir.path().join("appliance.yaml"),
        BootState {
            secure_boot: SecureBoot::Enforcing,
            tpm: Tpm {
                present: true,
                version: Some("2".to_owned()),
                device: Some("/dev/tpmrm0".to_owned()),
            },
        },
        None,
        Arc::new(auth),
        VaultService::load(dir.path().to_owned()),
    ));
    Appliance {
        state,
        admin: admin.to_string(),
        _dir: dir,
    }
}

async fn send(appliance: &Appliance, request: Request<Body>) -> (StatusCode, Value) {
    let response = api::router(appliance.state.clone())
        .oneshot(request)
        .await
        .expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

/// Sends a request as the admin, with a CSRF token on POSTs.
async fn call(
    appliance: &Appliance,
    method: Method,
    path: &str,
    body: &str,
) -> (StatusCode, Value) {
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", "127.0.0.1:8480")
        .header("authorization", format!("Bearer {}", appliance.admin))
        .header("content-type", "application/json");
    if method == Method::POST {
        let (code, csrf) = send(
            appliance,
            Request::get("/api/auth/csrf")
                .header("host", "127.0.0.1:8480")
                .header("authorization", format!("Bearer {}", appliance.admin))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{csrf}");
        builder = builder.header("x-csrf-token", csrf["csrf_token"].as_str().expect("token"));
    }
    send(
        appliance,
        builder.body(Body::from(body.to_owned())).expect("request"),
    )
    .await
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
async fn status_reports_early_state() {
    let appliance = state_with(Some(locked()));
    let (code, body) = call(&appliance, Method::GET, "/api/vault/status", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["state"], "locked");
    assert_eq!(body["tpm_result"], "policy mismatch (pcr 11)");
    assert!(body["reason"].as_str().expect("reason").contains("pcr 11"));
}

#[tokio::test]
async fn status_without_early_state() {
    let appliance = state_with(None);
    let (code, body) = call(&appliance, Method::GET, "/api/vault/status", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["state"], "error");
    assert!(body["reason"]
        .as_str()
        .expect("reason")
        .contains("early boot"));
}

#[tokio::test]
async fn unlock_malformed_body_400() {
    let appliance = state_with(Some(locked()));
    for body in ["", "{", "{\"key\": \"vvvvtttt\"}", "{\"recovery_key\": 5}"] {
        let (code, reply) = call(&appliance, Method::POST, "/api/vault/unlock", body).await;
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
async fn unlock_without_partition_404() {
    // The test machine has no vault partition, which is checked before the key's format.
    let appliance = state_with(Some(locked()));
    for body in [
        "{\"recovery_key\": \"vvvvtttt-zzzz\"}",
        "{\"pin\": \"1234\"}",
    ] {
        let (code, reply) = call(&appliance, Method::POST, "/api/vault/unlock", body).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{body}: {reply}");
        let message = reply["error"]["message"].as_str().expect("message");
        assert!(message.contains("no partition"), "{message}");
        assert!(!message.contains("vvvvtttt"), "{message}");
    }
}

#[tokio::test]
async fn lock_unlock_wrong_state_409() {
    let appliance = state_with(Some(locked()));
    let (code, _) = call(&appliance, Method::POST, "/api/vault/lock", "").await;
    assert_eq!(code, StatusCode::CONFLICT);

    let mut open = VaultStatus::new(VaultState::Open, None);
    open.unlocked_by = Some("tpm".to_owned());
    let appliance = state_with(Some(open));
    let key = "cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv";
    let (code, _) = call(
        &appliance,
        Method::POST,
        "/api/vault/unlock",
        &format!("{{\"recovery_key\": \"{key}\"}}"),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
}

#[tokio::test]
async fn writes_need_token_and_csrf() {
    let appliance = state_with(Some(locked()));
    let body = "{\"recovery_key\": \"cbdefghi\"}";
    for (authorization, csrf, expected) in [
        (None, None, StatusCode::UNAUTHORIZED),
        (
            Some("Bearer appliance_0000"),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (Some(appliance.admin.as_str()), None, StatusCode::FORBIDDEN),
        (
            Some(appliance.admin.as_str()),
            Some("forged"),
            StatusCode::FORBIDDEN,
        ),
    ] {
        for path in ["/api/vault/unlock", "/api/vault/lock", "/api/vault/tpm"] {
            let mut builder = Request::post(path)
                .header("host", "127.0.0.1:8480")
                .header("content-type", "application/json");
            if let Some(token) = authorization {
                let value = if token.starts_with("Bearer ") {
                    token.to_owned()
                } else {
                    format!("Bearer {token}")
                };
                builder = builder.header("authorization", value);
            }
            if let Some(csrf) = csrf {
                builder = builder.header("x-csrf-token", csrf);
            }
            let (code, reply) =
                send(&appliance, builder.body(Body::from(body)).expect("request")).await;
            assert_eq!(code, expected, "{path} {authorization:?} {csrf:?}: {reply}");
        }
    }
}

#[tokio::test]
async fn mistyped_secret_not_echoed() {
    let appliance = state_with(Some(locked()));
    for (path, body) in [
        ("/api/vault/unlock", "{\"pin\": 987654}"),
        ("/api/vault/unlock", "[\"vvvvtttt\", null]"),
        ("/api/vault/tpm", "{\"recovery_key\": \"x\", \"pin\": 4321}"),
        ("/api/vault/tpm", "{\"recovery_key\": 987654}"),
    ] {
        let (code, reply) = call(&appliance, Method::POST, path, body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{path} {body}: {reply}");
        let message = reply["error"]["message"].as_str().expect("message");
        for secret in ["987654", "4321", "vvvvtttt"] {
            assert!(
                !message.contains(secret),
                "{path} {body}: echoed in {message}"
            );
        }
    }
}

#[tokio::test]
async fn writes_need_json_content_type() {
    let appliance = state_with(Some(locked()));
    let (code, csrf) = send(
        &appliance,
        Request::get("/api/auth/csrf")
            .header("host", "127.0.0.1:8480")
            .header("authorization", format!("Bearer {}", appliance.admin))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let request = Request::post("/api/vault/unlock")
        .header("host", "127.0.0.1:8480")
        .header("authorization", format!("Bearer {}", appliance.admin))
        .header("x-csrf-token", csrf["csrf_token"].as_str().expect("token"))
        .header("content-type", "text/plain")
        .body(Body::from("{\"pin\": \"1234\"}"))
        .expect("request");
    let (code, reply) = send(&appliance, request).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{reply}");
}
