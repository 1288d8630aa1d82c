//! Local HTTP API.

pub mod json;
pub mod vault;
pub mod vm_gpu;
pub mod vm_status;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use self::json::ApiJson;
use self::vm_status::VmFacts;
use crate::auth::{self, Auth};
use crate::boot_state::BootState;
use crate::config::Config;
use crate::detect::Detection;
use crate::gpu_access::GpuAccess;
use crate::measurements::MeasurementReport;
use crate::vault::service::VaultService;

/// Data the handlers read and the shared values they change.
pub struct ApiState {
    pub detection: Detection,
    /// Configuration as loaded at start; `gpu` has the live GPU setting.
    pub config: Config,
    /// File that `POST /api/vm/gpu` edits.
    pub config_path: PathBuf,
    pub boot: BootState,
    /// The early stage's measured-boot report; `None` when it did not run.
    pub measurements: Option<MeasurementReport>,
    pub auth: Arc<Auth>,
    pub gpu: Arc<GpuAccess>,
    /// TPM, sizing and hardening facts; `serve` updates the hardening
    /// report after every check.
    pub facts: Arc<RwLock<VmFacts>>,
    pub vault: Arc<VaultService>,
}

impl ApiState {
    /// Builds the state, deriving the GPU decision from the detected
    /// platform and the configuration.
    pub fn new(
        detection: Detection,
        config: Config,
        config_path: PathBuf,
        boot: BootState,
        measurements: Option<MeasurementReport>,
        auth: Arc<Auth>,
        vault: Arc<VaultService>,
    ) -> Self {
        let gpu = Arc::new(GpuAccess::new(detection.is_vm(), config.vm.gpu_passthrough));
        Self {
            detection,
            config,
            config_path,
            boot,
            measurements,
            auth,
            gpu,
            facts: Arc::new(RwLock::new(VmFacts::default())),
            vault,
        }
    }

    /// Returns a copy of the current facts.
    pub fn facts(&self) -> VmFacts {
        // The facts are replaced whole, so a poisoned lock still holds a
        // consistent value.
        self.facts
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Builds the router with every route of the API, behind the `Host` check.
pub fn router(state: Arc<ApiState>) -> Router {
    let auth = state.auth.clone();
    let routes = Router::new()
        .route("/api/health", get(health))
        .route("/api/vm/status", get(vm_status))
        .route("/api/vm/gpu", post(vm_gpu::set_gpu))
        .route("/api/boot/status", get(boot_status))
        .route("/api/boot/measurements", get(boot_measurements))
        .route("/api/auth/csrf", get(auth::http::csrf_token))
        .route("/api/vault/status", get(vault::status))
        .route("/api/vault/unlock", post(vault::unlock))
        .route("/api/vault/lock", post(vault::lock))
        .route("/api/vault/tpm", post(vault::reseal))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    auth::protect(routes, auth)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn vm_status(State(state): State<Arc<ApiState>>) -> Json<vm_status::VmStatus> {
    Json(vm_status::build(
        &state.detection,
        state.gpu.vm_setting(),
        &state.facts(),
    ))
}

async fn boot_status(State(state): State<Arc<ApiState>>) -> Json<BootState> {
    Json(state.boot.clone())
}

async fn boot_measurements(State(state): State<Arc<ApiState>>) -> Response {
    match &state.measurements {
        Some(report) => Json(report).into_response(),
        None => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "no measurement report: the early boot stage did not record one in /run/appliance, \
             so this boot is unverified"
                .to_owned(),
        ),
    }
}

async fn not_found(uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
}

async fn method_not_allowed(uri: Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed for {}", uri.path()),
    )
}

/// Builds the API's error body, `{"error": {"status": ..., "message": ...}}`.
pub fn error_response(status: StatusCode, message: String) -> Response {
    let body = json!({
        "error": {
            "status": status.as_u16(),
            "message": message,
        }
    });
    (status, Json(body)).into_response()
}
