//! `/api/auth/tokens`: creates and lists API tokens through the admin API, for clients on
//! a machine without a shell (the appliance has none by default).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use tracing::{error, info};

use super::{error_response, ApiJson, ApiState};
use crate::auth::http::{Admin, RequireScope};
use crate::auth::{Auth, Scope};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    name: String,
    scope: Scope,
}

/// `POST /api/auth/tokens`: creates a token and returns it once.
pub async fn create(
    State(_state): State<Arc<ApiState>>,
    admin: RequireScope<Admin>,
    Extension(auth): Extension<Arc<Auth>>,
    ApiJson(request): ApiJson<CreateTokenRequest>,
) -> Response {
    let store = auth.store();
    match store.create(&request.name, request.scope) {
        Ok((record, token)) => {
            info!(token = %record.id, scope = request.scope.as_str(), by = %admin.principal().id, "token created through the API");
            (
                StatusCode::CREATED,
                Json(json!({
                    "id": record.id,
                    "name": record.name,
                    "scope": record.scope,
                    "created_at": record.created_at,
                    "token": token.to_string(),
                })),
            )
                .into_response()
        }
        Err(err) => {
            error!(error = %err, "creating a token failed");
            error_response(StatusCode::BAD_REQUEST, err.to_string())
        }
    }
}

/// `GET /api/auth/tokens`: lists the tokens, never their secrets.
pub async fn list(admin: RequireScope<Admin>, Extension(auth): Extension<Arc<Auth>>) -> Response {
    let _ = admin;
    match auth.store().list() {
        Ok(records) => Json(json!({ "tokens": records.iter().map(|record| json!({
            "id": record.id,
            "name": record.name,
            "scope": record.scope,
            "created_at": record.created_at,
        })).collect::<Vec<_>>() }))
        .into_response(),
        Err(err) => {
            error!(error = %err, "listing the tokens failed");
            error_response(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
        }
    }
}
