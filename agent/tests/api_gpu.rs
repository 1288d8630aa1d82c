//! `POST /api/vm/gpu`, called in-process through the router, against a
//! configuration file and token store in a temporary directory.

mod support;

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use appliance_agent::api::{self, ApiState};
use appliance_agent::auth::{AllowedHosts, Auth, Scope, TokenStore};
use appliance_agent::boot_state::{BootState, SecureBoot, Tpm};
use appliance_agent::config;
use appliance_agent::vault::service::VaultService;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use support::{detect_fixture, fixture};

/// The configuration file the image ships, comments included.
const SHIPPED_CONFIG: &str = include_str!("../../image/agent-package/main/appliance.yaml");

struct Appliance {
    _dir: tempfile::TempDir,
    config_path: PathBuf,
    state: Arc<ApiState>,
    admin: String,
}

fn appliance(relative: &str, config_text: &str) -> Appliance {
    let dir = tempfile::tempdir().expect("create temp dir");
    let config_path = dir.path().join("appliance.yaml");
    fs::write(&config_path, config_text).expect("write config");
    let config = config::parse(&config_path, config_text).expect("valid config");

    let store = TokenStore::new(dir.path().join("tokens.json"));
    let (_, admin) = store.create("admin", Scope::Admin).expect("create token");
    let auth = Auth::new(store, AllowedHosts::new(&[], &[])).expect("random key");

    let boot = BootState {
        secure_boot: SecureBoot::Enforcing,
        tpm: Tpm {
            present: true,
            version: Some("2".to_owned()),
            device: Some("/dev/tpmrm0".to_owned()),
        },
    };
    let state = ApiState::new(
        detect_fixture(&fixture(relative)),
        config,
        config_path.clone(),
        boot,
        None,
        Arc::new(auth),
        VaultService::load(dir.path().join("no-early-state")),
    );
    Appliance {
        _dir: dir,
        config_path,
        state: Arc::new(state),
        admin: admin.to_string(),
    }
}

async fn send(appliance: &Appliance, request: Request<Body>) -> (StatusCode, Value) {
    let response = api::router(appliance.state.clone())
        .oneshot(request)
        .await
        .expect("router response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

async fn csrf(appliance: &Appliance) -> String {
    let (status, body) = send(
        appliance,
        Request::get("/api/auth/csrf")
            .header("host", "localhost:8480")
            .header("authorization", format!("Bearer {}", appliance.admin))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["csrf_token"].as_str().expect("token").to_owned()
}

async fn post_gpu(appliance: &Appliance, csrf: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri("/api/vm/gpu")
        .header("host", "127.0.0.1:8480")
        .header("authorization", format!("Bearer {}", appliance.admin))
        .header("content-type", "application/json");
    if let Some(csrf) = csrf {
        builder = builder.header("x-csrf-token", csrf);
    }
    send(
        appliance,
        builder.body(Body::from(body.to_owned())).expect("request"),
    )
    .await
}

async fn vm_status(appliance: &Appliance) -> Value {
    let (status, body) = send(
        appliance,
        Request::get("/api/vm/status")
            .header("host", "127.0.0.1")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    body
}

fn config_text(appliance: &Appliance) -> String {
    fs::read_to_string(&appliance.config_path).expect("read config")
}

#[tokio::test]
async fn enabling_in_vm_returns_notice() {
    let appliance = appliance("cases/a08-gpu-passthrough-in-kvm-guest", SHIPPED_CONFIG);
    let mut allowed = appliance.state.gpu.subscribe();
    let csrf = csrf(&appliance).await;

    let (status, body) = post_gpu(&appliance, Some(&csrf), r#"{"enabled": true}"#).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["is_vm"], true);
    assert_eq!(body["hypervisor"], "kvm");
    assert_eq!(body["vm_gpu_enabled"], true);
    assert_eq!(body["security_notice"]["level"], "warning");
    let notice = &body["gpu_security_notice"];
    assert_eq!(notice["level"], "warning");
    let details = notice["details"].as_array().expect("details");
    assert!(details
        .iter()
        .any(|detail| detail.as_str().is_some_and(|text| text.contains("DMA"))));
    assert!(allowed.has_changed().expect("sender alive"));
    assert!(*allowed.borrow_and_update());
    assert_eq!(vm_status(&appliance).await["vm_gpu_enabled"], true);
    assert_eq!(
        config_text(&appliance),
        SHIPPED_CONFIG.replace("gpu_passthrough: false", "gpu_passthrough: true")
    );
}

#[tokio::test]
async fn disabling_has_no_gpu_notice() {
    let enabled_config = SHIPPED_CONFIG.replace("gpu_passthrough: false", "gpu_passthrough: true");
    let appliance = appliance("cases/a08-gpu-passthrough-in-kvm-guest", &enabled_config);
    assert!(appliance.state.gpu.allowed());
    let csrf = csrf(&appliance).await;

    let (status, body) = post_gpu(&appliance, Some(&csrf), r#"{"enabled": false}"#).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["vm_gpu_enabled"], false);
    assert!(body.get("gpu_security_notice").is_none(), "{body}");
    assert!(!appliance.state.gpu.allowed());
    assert_eq!(config_text(&appliance), SHIPPED_CONFIG);
}

#[tokio::test]
async fn bare_metal_keeps_using_gpu() {
    let appliance = appliance("vm/bare-metal-server", SHIPPED_CONFIG);
    let csrf = csrf(&appliance).await;

    let (status, body) = post_gpu(&appliance, Some(&csrf), r#"{"enabled": false}"#).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["is_vm"], false);
    assert_eq!(body["vm_gpu_enabled"], true);
    assert!(body.get("gpu_security_notice").is_none());
    assert!(appliance.state.gpu.allowed());
}

#[tokio::test]
async fn rejected_requests_change_nothing() {
    let appliance = appliance("cases/a08-gpu-passthrough-in-kvm-guest", SHIPPED_CONFIG);
    let csrf = csrf(&appliance).await;

    let cases = [
        (None, r#"{"enabled": true}"#, StatusCode::FORBIDDEN),
        (
            Some(csrf.as_str()),
            r#"{"enabled": "yes"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Some(csrf.as_str()),
            r#"{"enable": true}"#,
            StatusCode::BAD_REQUEST,
        ),
        (Some(csrf.as_str()), "", StatusCode::BAD_REQUEST),
    ];
    for (csrf, body, expected) in cases {
        let (status, reply) = post_gpu(&appliance, csrf, body).await;
        assert_eq!(status, expected, "{body}: {reply}");
    }
    let (status, reply) = send(
        &appliance,
        Request::post("/api/vm/gpu")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"enabled": true}"#))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");

    assert_eq!(config_text(&appliance), SHIPPED_CONFIG);
    assert!(!appliance.state.gpu.allowed());
    assert_eq!(vm_status(&appliance).await["vm_gpu_enabled"], false);
}

#[tokio::test]
async fn malformed_body_names_field() {
    let appliance = appliance("cases/a08-gpu-passthrough-in-kvm-guest", SHIPPED_CONFIG);
    let csrf = csrf(&appliance).await;

    let (status, body) = post_gpu(&appliance, Some(&csrf), r#"{"enabled": 1}"#).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "enabled");
}

#[tokio::test]
async fn unsupported_config_layout_is_409() {
    let flow = "vm: {gpu_passthrough: false}\n";
    let appliance = appliance("cases/a08-gpu-passthrough-in-kvm-guest", flow);
    let csrf = csrf(&appliance).await;

    let (status, body) = post_gpu(&appliance, Some(&csrf), r#"{"enabled": true}"#).await;

    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("by hand"),
        "{body}"
    );
    assert_eq!(config_text(&appliance), flow);
    assert!(!appliance.state.gpu.allowed());
}
