//! axum parts of the authentication: the `Host` guard for the whole router,
//! the scope extractors and middleware, and `GET /api/auth/csrf`.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use serde::Serialize;
use tracing::{debug, error, warn};

use super::csrf::CSRF_HEADER;
use super::{Auth, CsrfError, Principal, Scope, TokenRejection};
use crate::api::error_response;

/// A request that failed an authentication check.
#[derive(Debug)]
pub enum AuthError {
    MissingHost,
    HostNotAllowed(String),
    OriginNotAllowed(String),
    MissingToken,
    MalformedAuthorization,
    InvalidToken,
    TooManyFailures(Duration),
    WrongScope { required: Scope, actual: Scope },
    Csrf(CsrfError),
    StoreUnavailable,
    NotConfigured,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            AuthError::MissingHost => (
                StatusCode::BAD_REQUEST,
                "missing Host header".to_owned(),
            ),
            AuthError::HostNotAllowed(host) => (
                StatusCode::FORBIDDEN,
                format!(
                    "host {host:?} is not allowed. Use http://127.0.0.1:8480, or add the name to allowed_hosts in appliance.yaml"
                ),
            ),
            AuthError::OriginNotAllowed(origin) => (
                StatusCode::FORBIDDEN,
                format!("origin {origin:?} is not allowed to change the appliance. Send the request from a page served by the appliance, or without an Origin header"),
            ),
            AuthError::MissingToken => (
                StatusCode::UNAUTHORIZED,
                "missing API token. Send it as Authorization: Bearer <token>; `appliance-agent token create` makes one".to_owned(),
            ),
            AuthError::MalformedAuthorization => (
                StatusCode::UNAUTHORIZED,
                "malformed Authorization header. Send Authorization: Bearer <token>".to_owned(),
            ),
            AuthError::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid or revoked API token".to_owned(),
            ),
            AuthError::TooManyFailures(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed token attempts. Retry after {} seconds",
                    retry_after_seconds(*wait)
                ),
            ),
            AuthError::WrongScope { required, actual } => (
                StatusCode::FORBIDDEN,
                format!("this route needs a token of scope {required}, but the token has scope {actual}"),
            ),
            AuthError::Csrf(err) => (StatusCode::FORBIDDEN, err.to_string()),
            AuthError::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the token store cannot be read, so no token can be checked. See the agent's log".to_owned(),
            ),
            AuthError::NotConfigured => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "authentication is not set up for this route".to_owned(),
            ),
        };

        let mut response = error_response(status, message);
        let headers = response.headers_mut();
        match &self {
            AuthError::MissingToken | AuthError::MalformedAuthorization => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"appliance\""),
                );
            }
            AuthError::InvalidToken => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"appliance\", error=\"invalid_token\""),
                );
            }
            AuthError::TooManyFailures(wait) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_seconds(*wait)));
            }
            _ => {}
        }
        response
    }
}

/// Rounds up, so a client that waits that long is no longer blocked.
fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

/// Adds the `Host` check to every route of `router`, and makes `auth`
/// available to the scope extractors. Apply it last, so it also covers the
/// fallback.
pub fn protect(router: Router, auth: Arc<Auth>) -> Router {
    router.layer(middleware::from_fn_with_state(auth, guard_host))
}

async fn guard_host(
    axum::extract::State(auth): axum::extract::State<Arc<Auth>>,
    mut request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(HOST)
        .map(|value| value.to_str().unwrap_or("").to_owned())
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.to_string())
        });
    let Some(host) = host else {
        return AuthError::MissingHost.into_response();
    };
    if !auth.hosts().allows_host_header(&host) {
        debug!(host = %host, "request for a host name that is not allowed");
        return AuthError::HostNotAllowed(host).into_response();
    }
    request.extensions_mut().insert(auth);
    next.run(request).await
}

/// A scope that a route requires, as a type.
pub trait RequiredScope: Send + Sync + 'static {
    const SCOPE: Scope;
}

/// Marker for routes of the admin API.
pub struct Admin;

/// Marker for routes of the inference API.
pub struct Inference;

impl RequiredScope for Admin {
    const SCOPE: Scope = Scope::Admin;
}

impl RequiredScope for Inference {
    const SCOPE: Scope = Scope::Inference;
}

/// Extractor that accepts the request only with a valid bearer token of
/// scope `S`. For the admin scope it also requires a valid CSRF token and
/// an allowed or absent `Origin` on state-changing methods.
pub struct RequireScope<S: RequiredScope>(pub Principal, PhantomData<S>);

impl<S: RequiredScope> RequireScope<S> {
    /// Returns the holder of the token.
    pub fn principal(&self) -> &Principal {
        &self.0
    }
}

impl<S: RequiredScope, State: Send + Sync> FromRequestParts<State> for RequireScope<S> {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &State) -> Result<Self, AuthError> {
        let Some(auth) = parts.extensions.get::<Arc<Auth>>().cloned() else {
            error!(path = %parts.uri.path(), "route protected by a scope but the router lacks auth::protect");
            return Err(AuthError::NotConfigured);
        };
        let state_changing = is_state_changing(&parts.method);

        if state_changing {
            if let Some(origin) = parts.headers.get(ORIGIN) {
                let origin = origin.to_str().unwrap_or("");
                if !auth.hosts().allows_origin(origin) {
                    warn!(origin = %origin, path = %parts.uri.path(), "state-changing request from a foreign origin rejected");
                    return Err(AuthError::OriginNotAllowed(origin.to_owned()));
                }
            }
        }

        let principal = authenticate(&auth, parts)?;
        if principal.scope != S::SCOPE {
            return Err(AuthError::WrongScope {
                required: S::SCOPE,
                actual: principal.scope,
            });
        }

        if state_changing && S::SCOPE == Scope::Admin {
            let value = parts
                .headers
                .get(CSRF_HEADER)
                .ok_or(AuthError::Csrf(CsrfError::Missing))?
                .to_str()
                .map_err(|_| AuthError::Csrf(CsrfError::Malformed))?;
            auth.verify_csrf(&principal, value)
                .map_err(AuthError::Csrf)?;
        }
        Ok(RequireScope(principal, PhantomData))
    }
}

/// GET, HEAD, OPTIONS and TRACE are safe methods (RFC 9110, section 9.2.1);
/// every other method may change state.
fn is_state_changing(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

fn authenticate(auth: &Auth, parts: &Parts) -> Result<Principal, AuthError> {
    let Some(header) = parts.headers.get(AUTHORIZATION) else {
        return Err(AuthError::MissingToken);
    };
    let presented = header
        .to_str()
        .ok()
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or(AuthError::MalformedAuthorization)?;

    let client = client_address(parts);
    match auth.verify_token(presented, client) {
        Ok(principal) => Ok(principal),
        Err(TokenRejection::Blocked(wait)) => Err(AuthError::TooManyFailures(wait)),
        Err(TokenRejection::Unknown) => {
            warn!(
                client = %client.map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".to_owned()),
                path = %parts.uri.path(),
                "request with an invalid API token rejected"
            );
            Err(AuthError::InvalidToken)
        }
        Err(TokenRejection::StoreUnavailable(_)) => Err(AuthError::StoreUnavailable),
    }
}

fn client_address(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip().to_canonical())
}

/// Middleware form of [`RequireScope<Admin>`], for `Router::route_layer`.
/// Handlers behind it can take `Extension<Principal>`.
pub async fn require_admin(
    RequireScope(principal, _): RequireScope<Admin>,
    mut request: Request,
    next: Next,
) -> Response {
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// Middleware form of [`RequireScope<Inference>`], for `Router::route_layer`.
/// Handlers behind it can take `Extension<Principal>`.
pub async fn require_inference(
    RequireScope(principal, _): RequireScope<Inference>,
    mut request: Request,
    next: Next,
) -> Response {
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// Body of `GET /api/auth/csrf`.
#[derive(Debug, Serialize)]
pub struct CsrfResponse {
    pub csrf_token: String,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
    /// Header to send the token in.
    pub header: &'static str,
}

/// `GET /api/auth/csrf`: issues a CSRF token bound to the caller's token.
pub async fn csrf_token(
    admin: RequireScope<Admin>,
    Extension(auth): Extension<Arc<Auth>>,
) -> Json<CsrfResponse> {
    let token = auth.issue_csrf(admin.principal());
    Json(CsrfResponse {
        csrf_token: token.value,
        expires_at: token.expires_at,
        header: "X-CSRF-Token",
    })
}
