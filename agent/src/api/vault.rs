//! `/api/vault/*`: the vault's state, and opening or closing it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{error_response, ApiState};
use crate::vault::secret::Secret;
use crate::vault::service::VaultError;

pub async fn status(State(state): State<Arc<ApiState>>) -> Response {
    Json(state.vault.status().await).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnlockRequest {
    recovery_key: Zeroizing<String>,
}

pub async fn unlock(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    // NOTE: the request body buffer itself is freed without being wiped; the parsed key is.
    let request: UnlockRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be a JSON object {{\"recovery_key\": \"...\"}} with the \
                     recovery key shown at first boot ({})",
                    describe_json_error(&error)
                ),
            )
        }
    };
    let key = Secret::from_slice(request.recovery_key.as_bytes());
    drop(request);
    match state.vault.unlock(key).await {
        Ok(status) => Json(status).into_response(),
        Err(error) => vault_error(error),
    }
}

pub async fn lock(State(state): State<Arc<ApiState>>) -> Response {
    match state.vault.lock().await {
        Ok(status) => Json(status).into_response(),
        Err(error) => vault_error(error),
    }
}

fn vault_error(error: VaultError) -> Response {
    let status = match &error {
        VaultError::AlreadyOpen | VaultError::NotOpen => StatusCode::CONFLICT,
        VaultError::Absent(_) => StatusCode::NOT_FOUND,
        VaultError::BadRecoveryKey(_) => StatusCode::BAD_REQUEST,
        VaultError::Failed(message) if message.contains("does not open the vault") => {
            StatusCode::FORBIDDEN
        }
        VaultError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match &error {
        VaultError::BadRecoveryKey(inner) => format!("recovery_key: {inner}"),
        other => other.to_string(),
    };
    error_response(status, message)
}

/// Describes a JSON error without quoting the input, which may contain the key.
fn describe_json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    // serde names the missing or unknown field in backquotes; values are never echoed for
    // these error kinds.
    match error.classify() {
        serde_json::error::Category::Data => text,
        _ => format!(
            "invalid JSON at line {} column {}",
            error.line(),
            error.column()
        ),
    }
}
