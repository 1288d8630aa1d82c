//! `POST /api/vm/gpu`: turns the use of a passed-through GPU on or off.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::vm_status::{self, SecurityNotice, VmStatus};
use super::{error_response, ApiJson, ApiState};
use crate::auth::{Admin, RequireScope};
use crate::config_edit::{self, EditError};

/// Body of `POST /api/vm/gpu`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuRequest {
    pub enabled: bool,
}

/// Response of `POST /api/vm/gpu`: the new status and, when the GPU was
/// turned on in a VM, the risks the client should show.
#[derive(Debug, Serialize)]
pub struct GpuResponse {
    #[serde(flatten)]
    pub status: VmStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_security_notice: Option<SecurityNotice>,
}

/// Writes `vm.gpu_passthrough` to the configuration file, then switches the
/// GPU decision that inference reads. A failed write changes nothing.
pub async fn set_gpu(
    State(state): State<Arc<ApiState>>,
    admin: RequireScope<Admin>,
    ApiJson(request): ApiJson<GpuRequest>,
) -> Response {
    let _change = state.gpu.lock_for_change().await;
    if let Err(err) = config_edit::set_gpu_passthrough(&state.config_path, request.enabled) {
        error!(
            error = %err,
            token = %admin.principal().id,
            enabled = request.enabled,
            "failed to change vm.gpu_passthrough"
        );
        let status = match err {
            EditError::Write { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            EditError::Config(_) | EditError::Unsupported { .. } => StatusCode::CONFLICT,
        };
        return error_response(status, err.to_string());
    }
    state.gpu.set_vm_setting(request.enabled);

    let is_vm = state.detection.is_vm();
    if is_vm && request.enabled {
        warn!(token = %admin.principal().id, "GPU passthrough enabled in a VM: the host can read GPU memory");
    } else {
        info!(token = %admin.principal().id, enabled = request.enabled, "vm.gpu_passthrough changed");
    }
    let response = GpuResponse {
        status: vm_status::build(&state.detection, request.enabled, &state.facts()),
        gpu_security_notice: (is_vm && request.enabled)
            .then(|| vm_status::gpu_passthrough_notice(&state.detection)),
    };
    Json(response).into_response()
}
