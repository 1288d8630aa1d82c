//! Local HTTP API.

pub mod vault;
pub mod vm_status;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::boot_state::BootState;
use crate::config::Config;
use crate::detect::Detection;
use crate::measurements::MeasurementReport;
use crate::vault::service::VaultService;

/// Data the handlers read. Only the vault's state changes while the server runs.
pub struct ApiState {
    pub detection: Detection,
    pub config: Config,
    pub boot: BootState,
    /// The early stage's measured-boot report; `None` when it did not run.
    pub measurements: Option<MeasurementReport>,
    pub vault: Arc<VaultService>,
}

/// Builds the router with every route of the API.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/vm/status", get(vm_status))
        .route("/api/boot/status", get(boot_status))
        .route("/api/boot/measurements", get(boot_measurements))
        .route("/api/vault/status", get(vault::status))
        .route("/api/vault/unlock", post(vault::unlock))
        .route("/api/vault/lock", post(vault::lock))
        .route("/api/vault/tpm", post(vault::reseal))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn vm_status(State(state): State<Arc<ApiState>>) -> Json<vm_status::VmStatus> {
    Json(vm_status::build(&state.detection, &state.config))
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

pub(crate) fn error_response(status: StatusCode, message: String) -> Response {
    let body = json!({
        "error": {
            "status": status.as_u16(),
            "message": message,
        }
    });
    (status, Json(body)).into_response()
}
