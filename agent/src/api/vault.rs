//! `/api/vault/*`: the vault's state, and opening or closing it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{error_response, ApiState};
use std::path::PathBuf;

use tracing::{info, warn};

use crate::auth::bootstrap::Console;
use crate::auth::http::{Admin, RequireScope};
use crate::auth::store::TokenStore;
use crate::auth::{Scope, LOCKED_STATE_TOKEN_STORE};
use crate::vault::secret::Secret;
use crate::vault::service::VaultError;

pub async fn status(State(state): State<Arc<ApiState>>) -> Response {
    Json(state.vault.status().await).into_response()
}

/// Either the recovery key or, for a PIN-protected TPM keyslot, the PIN.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnlockRequest {
    recovery_key: Option<Zeroizing<String>>,
    pin: Option<Zeroizing<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResealRequest {
    recovery_key: Zeroizing<String>,
    pin: Option<Zeroizing<String>>,
    #[serde(default)]
    bind_pcr7: bool,
}

pub async fn unlock(
    State(state): State<Arc<ApiState>>,
    admin: RequireScope<Admin>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // NOTE: the request body buffer itself is freed without being wiped; the parsed key is.
    let request: UnlockRequest = match parse_body(
        &headers,
        body,
        "{\"recovery_key\": \"...\"} with the recovery key shown at first boot, or \
         {\"pin\": \"...\"} with the TPM PIN",
    ) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let result = match (&request.recovery_key, &request.pin) {
        (Some(key), None) => state.vault.unlock(Secret::from_slice(key.as_bytes())).await,
        (None, Some(pin)) if !pin.is_empty() => {
            state
                .vault
                .unlock_with_pin(Secret::from_slice(pin.as_bytes()))
                .await
        }
        _ => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "give exactly one of recovery_key and pin (non-empty)".to_owned(),
            )
        }
    };
    drop(request);
    match result {
        Ok(status) => {
            info!(token = %admin.principal().id, "vault opened through the API");
            use_vault_token_store(&state);
            state.start_inference();
            Json(status).into_response()
        }
        Err(error) => vault_error(error),
    }
}

/// Switches authentication to the token store inside the vault once it is open.
fn use_vault_token_store(state: &ApiState) {
    let path = &state.config.auth.token_store;
    if path.starts_with(crate::vault::MOUNT_POINT) {
        let store = crate::serve::open_token_store(path, &Console::detect());
        state.auth.replace_store(store);
    }
}

/// `POST /api/vault/tpm`: seals a new TPM keyslot to this boot.
pub async fn reseal(
    State(state): State<Arc<ApiState>>,
    admin: RequireScope<Admin>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: ResealRequest = match parse_body(
        &headers,
        body,
        "{\"recovery_key\": \"...\", \"pin\": \"...\" (optional), \"bind_pcr7\": false}",
    ) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if request.pin.as_ref().is_some_and(|pin| pin.is_empty()) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "pin: must not be empty; leave it out for a keyslot without a PIN".to_owned(),
        );
    }
    let verified = state
        .measurements
        .as_ref()
        .is_some_and(|report| report.verdict == crate::measurements::Verdict::Verified);
    let key = Secret::from_slice(request.recovery_key.as_bytes());
    let pin = request
        .pin
        .as_ref()
        .map(|pin| Secret::from_slice(pin.as_bytes()));
    let bind_pcr7 = request.bind_pcr7;
    drop(request);
    match state.vault.reseal(key, pin, bind_pcr7, verified).await {
        Ok(status) => {
            info!(token = %admin.principal().id, "TPM keyslot re-sealed through the API");
            Json(status).into_response()
        }
        Err(error) => vault_error(error),
    }
}

pub async fn lock(State(state): State<Arc<ApiState>>, admin: RequireScope<Admin>) -> Response {
    let in_vault = state
        .config
        .auth
        .token_store
        .starts_with(crate::vault::MOUNT_POINT);
    let copy = TokenStore::new(PathBuf::from(LOCKED_STATE_TOKEN_STORE));
    if in_vault {
        // Tokens made since the vault was opened must still open it again.
        if let Err(error) = state.auth.store().copy_scope_to(Scope::Admin, &copy) {
            warn!(%error, "could not refresh the admin token hashes outside the vault");
        }
    }
    // The engine maps the model file, which keeps the vault busy.
    if state.models_in_vault() {
        state.stop_inference();
    }
    match state.vault.lock().await {
        Ok(status) => {
            info!(token = %admin.principal().id, "vault locked through the API");
            if in_vault {
                state.auth.replace_store(copy);
            }
            Json(status).into_response()
        }
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
        VaultError::WrongPin => StatusCode::FORBIDDEN,
        VaultError::TpmLockout => StatusCode::TOO_MANY_REQUESTS,
        VaultError::NotAllowed(_) => StatusCode::CONFLICT,
    };
    let message = match &error {
        VaultError::BadRecoveryKey(inner) => format!("recovery_key: {inner}"),
        other => other.to_string(),
    };
    error_response(status, message)
}

/// Parses a JSON object body that carries a secret. Errors name the field and the
/// expected shape, but never quote a value: a mistyped PIN or key must not come back in
/// the response.
fn parse_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    shape: &str,
) -> Result<T, Box<Response>> {
    let json_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("application/json"));
    if !json_type {
        return Err(Box::new(error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body with Content-Type: application/json".to_owned(),
        )));
    }
    let body = body.map_err(|rejection| {
        Box::new(error_response(
            rejection.status(),
            format!(
                "the request body could not be read: {}",
                rejection.body_text()
            ),
        ))
    })?;
    let bad = |detail: String| {
        Box::new(error_response(
            StatusCode::BAD_REQUEST,
            format!("the body must be a JSON object {shape} ({detail})"),
        ))
    };
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|error| {
        bad(format!(
            "invalid JSON at line {} column {}",
            error.line(),
            error.column()
        ))
    })?;
    if !value.is_object() {
        return Err(bad("it is not an object".to_owned()));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        // Unknown and missing field errors quote only field names; type errors quote the
        // value, so they are replaced.
        if inner.starts_with("unknown field") || inner.starts_with("missing field") {
            bad(inner)
        } else {
            bad(format!("{path}: wrong type"))
        }
    })
}
