//! Local HTTP API.

pub mod json;
pub mod openai;
pub mod tokens;
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
use crate::inference::service::{EngineChoice, EngineSettings, InferenceService, ServiceState};
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
    /// The engine behind `/v1`; `None` while it is not running (the vault that holds the
    /// models is closed).
    inference: RwLock<Option<InferenceService>>,
    /// How to start the engine; `None` when this server runs no inference.
    pub engine: Option<EngineSettings>,
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
            inference: RwLock::new(None),
            engine: None,
        }
    }

    /// Returns the running inference service, if any.
    pub fn inference(&self) -> Option<InferenceService> {
        self.inference
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Returns whether the engine's models live in the vault, so it can run only while
    /// the vault is open. A machine with no vault partition at all serves the folder as
    /// it is.
    pub fn models_in_vault(&self) -> bool {
        if self.vault.state_now() == Some(crate::vault::VaultState::Absent) {
            return false;
        }
        self.engine.as_ref().is_some_and(|settings| {
            !matches!(settings.choice, EngineChoice::Scripted(_))
                && settings.models.dir.starts_with(crate::vault::MOUNT_POINT)
        })
    }

    /// Starts the inference engine unless it runs, or no engine is configured.
    pub fn start_inference(&self) {
        let Some(settings) = &self.engine else {
            return;
        };
        let mut slot = self
            .inference
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            tracing::info!(
                engine = ?settings.choice,
                models_dir = %settings.models.dir.display(),
                threads = settings.threads,
                context_tokens = settings.context_tokens,
                gpu_layers = settings.gpu_layers,
                "starting the inference engine"
            );
            *slot = Some(InferenceService::start(
                settings.clone(),
                self.config.inference.queue_size,
            ));
        }
    }

    /// Stops the inference engine: its thread ends, and unmaps the model, once the requests
    /// that still hold it finish.
    pub fn stop_inference(&self) {
        let stopped = self
            .inference
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if stopped.is_some() {
            tracing::info!("inference engine stopped");
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
        .route("/api/auth/tokens", get(tokens::list).post(tokens::create))
        .route("/api/vault/status", get(vault::status))
        .route("/api/vault/unlock", post(vault::unlock))
        .route("/api/vault/lock", post(vault::lock))
        .route("/api/vault/tpm", post(vault::reseal))
        .merge(openai::router().route_layer(axum::middleware::from_fn(auth::require_inference)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    auth::protect(routes, auth)
}

/// Returns 200 once the model is loaded (and the vault that holds it is open), else 503
/// with the reason.
async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let vault = state.vault.status().await;
    if state.models_in_vault() && vault.state != crate::vault::VaultState::Open {
        let body = json!({
            "status": "locked",
            "detail": vault.reason.unwrap_or_else(|| "the vault is not open".to_owned()),
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let Some(service) = state.inference() else {
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
