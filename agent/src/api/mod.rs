//! Local HTTP API.

pub mod openai;
pub mod vm_status;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::boot_state::BootState;
use crate::config::Config;
use crate::detect::Detection;
use crate::inference::service::{InferenceService, ServiceState};
use crate::measurements::MeasurementReport;

/// Data the handlers read. Only the inference service's state changes
/// while the server runs.
pub struct ApiState {
    pub detection: Detection,
    pub config: Config,
    pub boot: BootState,
    /// The early stage's measured-boot report; `None` when it did not run.
    pub measurements: Option<MeasurementReport>,
    /// The engine behind `/v1`; `None` when inference was not started.
    pub inference: Option<InferenceService>,
}

/// Builds the router with every route of the API.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/vm/status", get(vm_status))
        .route("/api/boot/status", get(boot_status))
        .route("/api/boot/measurements", get(boot_measurements))
        .merge(openai::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Returns 200 once the model is loaded, else 503 with the reason.
async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let Some(service) = &state.inference else {
        let body = json!({ "status": "unavailable", "detail": "inference is not running" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    };
    match service.state() {
        ServiceState::Ready(model) => {
            Json(json!({ "status": "ok", "model": model.id })).into_response()
        }
        ServiceState::Loading(detail) => {
            let body = json!({ "status": "starting", "detail": detail });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        ServiceState::Unavailable(detail) => {
            let body = json!({ "status": "unavailable", "detail": detail });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
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
    if uri.path().starts_with("/v1/") {
        return openai::not_found(uri.path());
    }
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

fn error_response(status: StatusCode, message: String) -> Response {
    let body = json!({
        "error": {
            "status": status.as_u16(),
            "message": message,
        }
    });
    (status, Json(body)).into_response()
}
