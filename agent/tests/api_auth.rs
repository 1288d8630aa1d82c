//! Authentication rules of the API, called in-process through the router:
//! bearer tokens and scopes, CSRF tokens, `Origin` and `Host` checks, the
//! limit on failed attempts, and JSON body errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use appliance_agent::api::ApiJson;
use appliance_agent::auth::{
    self, require_admin, Admin, AllowedHosts, Auth, CsrfKey, FailureLimiter, Inference, Principal,
    RequireScope, Scope, TokenStore,
};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Toggle {
    enabled: bool,
}

/// Routes shaped like the ones other modules add: an admin write, an
/// inference write, and an admin group behind the middleware form.
fn router(auth: Arc<Auth>) -> Router {
    let admin_group = Router::new()
        .route(
            "/api/group/whoami",
            get(|Extension(principal): Extension<Principal>| async move {
                Json(json!({ "id": principal.id }))
            }),
        )
        .route_layer(axum::middleware::from_fn(require_admin));
    let routes = Router::new()
        .route("/api/auth/csrf", get(auth::http::csrf_token))
        .route(
            "/api/toggle",
            post(
                |admin: RequireScope<Admin>, ApiJson(body): ApiJson<Toggle>| async move {
                    Json(json!({ "enabled": body.enabled, "by": admin.principal().id }))
                },
            ),
        )
        .route(
            "/v1/echo",
            post(|_key: RequireScope<Inference>| async { Json(json!({ "ok": true })) }),
        )
        .merge(admin_group);
    auth::protect(routes, auth)
}

struct Fixture {
    _dir: tempfile::TempDir,
    store_path: std::path::PathBuf,
    auth: Arc<Auth>,
    admin: String,
    admin_id: String,
    inference: String,
}

fn fixture_with_limiter(limiter: FailureLimiter) -> Fixture {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store_path = dir.path().join("auth/tokens.json");
    let store = TokenStore::new(store_path.clone());
    let (admin_record, admin) = store.create("admin", Scope::Admin).expect("create admin");
    let (_, inference) = store
        .create("chat", Scope::Inference)
        .expect("create inference");
    let auth = Auth::with_limiter(
        store,
        AllowedHosts::new(&[], &[]),
        CsrfKey::generate().expect("random key"),
        limiter,
    );
    Fixture {
        _dir: dir,
        store_path,
        auth: Arc::new(auth),
        admin: admin.to_string(),
        admin_id: admin_record.id,
        inference: inference.to_string(),
    }
}

fn fixture() -> Fixture {
    fixture_with_limiter(FailureLimiter::default())
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn send(auth: &Arc<Auth>, request: Request<Body>) -> Reply {
    let response = router(auth.clone())
        .oneshot(request)
        .await
        .expect("router response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|err| {
        panic!(
            "body is not JSON ({err}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Reply {
        status,
        headers,
        body,
    }
}

fn request(method: Method, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1:8480")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn csrf_for(fixture: &Fixture, token: &str) -> String {
    let reply = send(
        &fixture.auth,
        request(Method::GET, "/api/auth/csrf")
            .header("authorization", bearer(token))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["csrf_token"]
        .as_str()
        .expect("csrf_token string")
        .to_owned()
}

fn toggle(token: &str, csrf: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = request(Method::POST, "/api/toggle")
        .header("authorization", bearer(token))
        .header("content-type", "application/json");
    if let Some(csrf) = csrf {
        builder = builder.header("x-csrf-token", csrf);
    }
    builder.body(Body::from(body.to_owned())).expect("request")
}

fn message(reply: &Reply) -> &str {
    reply.body["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn admin_write_with_csrf_accepted() {
    let fixture = fixture();
    let csrf = csrf_for(&fixture, &fixture.admin).await;

    let reply = send(
        &fixture.auth,
        toggle(&fixture.admin, Some(&csrf), r#"{"enabled": true}"#),
    )
    .await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["enabled"], true);
    assert_eq!(reply.body["by"], fixture.admin_id.as_str());
}

#[tokio::test]
async fn csrf_response_shape() {
    let fixture = fixture();
    let reply = send(
        &fixture.auth,
        request(Method::GET, "/api/auth/csrf")
            .header("authorization", bearer(&fixture.admin))
            .body(Body::empty())
            .expect("request"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body["csrf_token"].is_string());
    assert!(reply.body["expires_at"].is_u64());
    assert_eq!(reply.body["header"], "X-CSRF-Token");
}

#[tokio::test]
async fn missing_token_is_401() {
    let fixture = fixture();
    let reply = send(
        &fixture.auth,
        request(Method::POST, "/api/toggle")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"enabled": true}"#))
            .expect("request"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["error"]["status"], 401);
    assert_eq!(
        reply.headers["www-authenticate"],
        "Bearer realm=\"appliance\""
    );
}

#[tokio::test]
async fn unknown_token_is_401() {
    let fixture = fixture();
    let stranger = format!("appliance_{}", "0".repeat(64));

    let reply = send(
        &fixture.auth,
        toggle(&stranger, None, r#"{"enabled": true}"#),
    )
    .await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers["www-authenticate"]
        .to_str()
        .expect("header text")
        .contains("invalid_token"));
}

#[tokio::test]
async fn non_bearer_authorization_is_401() {
    let fixture = fixture();
    for value in [
        "Basic YWRtaW46YWRtaW4=".to_owned(),
        fixture.admin.clone(),
        "Bearer".to_owned(),
    ] {
        let reply = send(
            &fixture.auth,
            request(Method::GET, "/api/auth/csrf")
                .header("authorization", value.as_str())
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{value}");
    }
}

#[tokio::test]
async fn revoked_token_is_401() {
    let fixture = fixture();
    let csrf = csrf_for(&fixture, &fixture.admin).await;
    TokenStore::new(fixture.store_path.clone())
        .revoke(&fixture.admin_id)
        .expect("revoke");

    let reply = send(
        &fixture.auth,
        toggle(&fixture.admin, Some(&csrf), r#"{"enabled": true}"#),
    )
    .await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn missing_csrf_is_403() {
    let fixture = fixture();

    let reply = send(
        &fixture.auth,
        toggle(&fixture.admin, None, r#"{"enabled": true}"#),
    )
    .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(message(&reply).contains("X-CSRF-Token"), "{}", reply.body);
}

#[tokio::test]
async fn csrf_of_other_token_is_403() {
    let fixture = fixture();
    let other = TokenStore::new(fixture.store_path.clone())
        .create("second admin", Scope::Admin)
        .expect("create")
        .1;
    let csrf = csrf_for(&fixture, &other).await;

    let reply = send(
        &fixture.auth,
        toggle(&fixture.admin, Some(&csrf), r#"{"enabled": true}"#),
    )
    .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        message(&reply).contains("does not belong"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn forged_csrf_is_403() {
    let fixture = fixture();
    let csrf = csrf_for(&fixture, &fixture.admin).await;
    let (expiry, tag) = csrf.split_once('.').expect("two fields");
    let later = expiry.parse::<u64>().expect("expiry") + 86_400;

    for forged in [
        format!("{later}.{tag}"),
        "garbage".to_owned(),
        format!("{expiry}.{}", "0".repeat(64)),
    ] {
        let reply = send(
            &fixture.auth,
            toggle(&fixture.admin, Some(&forged), r#"{"enabled": true}"#),
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{forged}");
    }
}

#[tokio::test]
async fn foreign_origin_is_403() {
    let fixture = fixture();
    let csrf = csrf_for(&fixture, &fixture.admin).await;

    for (origin, expected) in [
        ("http://evil.example", StatusCode::FORBIDDEN),
        ("null", StatusCode::FORBIDDEN),
        ("http://localhost:8480", StatusCode::OK),
    ] {
        let mut request = toggle(&fixture.admin, Some(&csrf), r#"{"enabled": true}"#);
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("header value"));
        let reply = send(&fixture.auth, request).await;
        assert_eq!(reply.status, expected, "{origin}: {}", reply.body);
    }
}

#[tokio::test]
async fn foreign_host_is_403() {
    let fixture = fixture();

    for host in ["evil.example", "evil.example:8480", "127.0.0.1.nip.io"] {
        let reply = send(
            &fixture.auth,
            Request::builder()
                .uri("/api/auth/csrf")
                .header("host", host)
                .header("authorization", bearer(&fixture.admin))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{host}");
        assert!(message(&reply).contains("allowed_hosts"), "{}", reply.body);
    }
}

#[tokio::test]
async fn missing_host_is_400() {
    let fixture = fixture();

    let reply = send(
        &fixture.auth,
        Request::builder()
            .uri("/api/auth/csrf")
            .body(Body::empty())
            .expect("request"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn host_check_covers_unknown_routes() {
    let fixture = fixture();

    let reply = send(
        &fixture.auth,
        Request::builder()
            .uri("/nowhere")
            .header("host", "evil.example")
            .body(Body::empty())
            .expect("request"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn inference_token_on_admin_route_is_403() {
    let fixture = fixture();

    let reply = send(
        &fixture.auth,
        request(Method::GET, "/api/auth/csrf")
            .header("authorization", bearer(&fixture.inference))
            .body(Body::empty())
            .expect("request"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(message(&reply).contains("scope admin"), "{}", reply.body);
}

#[tokio::test]
async fn admin_token_on_inference_route_is_403() {
    let fixture = fixture();

    let reply = send(
        &fixture.auth,
        request(Method::POST, "/v1/echo")
            .header("authorization", bearer(&fixture.admin))
            .body(Body::empty())
            .expect("request"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn inference_write_needs_no_csrf() {
    let fixture = fixture();

    let reply = send(
        &fixture.auth,
        request(Method::POST, "/v1/echo")
            .header("authorization", bearer(&fixture.inference))
            .body(Body::empty())
            .expect("request"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn middleware_form_passes_principal() {
    let fixture = fixture();

    let denied = send(
        &fixture.auth,
        request(Method::GET, "/api/group/whoami")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    let allowed = send(
        &fixture.auth,
        request(Method::GET, "/api/group/whoami")
            .header("authorization", bearer(&fixture.admin))
            .body(Body::empty())
            .expect("request"),
    )
    .await;

    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.body["id"], fixture.admin_id.as_str());
}

#[tokio::test]
async fn malformed_body_is_400_naming_field() {
    let fixture = fixture();
    let csrf = csrf_for(&fixture, &fixture.admin).await;

    for (body, field) in [
        (r#"{"enabled": "yes"}"#, json!("enabled")),
        ("{}", json!("enabled")),
        (r#"{"enabled": true, "extra": 1}"#, json!("extra")),
        ("{", Value::Null),
    ] {
        let reply = send(&fixture.auth, toggle(&fixture.admin, Some(&csrf), body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.body["error"]["status"], 400, "{body}");
        assert_eq!(
            reply.body["error"]["field"], field,
            "{body}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn unauthenticated_malformed_body_is_401() {
    let fixture = fixture();

    let reply = send(&fixture.auth, toggle("nonsense", None, "{")).await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let fixture = fixture();
    let csrf = csrf_for(&fixture, &fixture.admin).await;

    let reply = send(
        &fixture.auth,
        request(Method::POST, "/api/toggle")
            .header("authorization", bearer(&fixture.admin))
            .header("x-csrf-token", csrf)
            .header("content-type", "text/plain")
            .body(Body::from(r#"{"enabled": true}"#))
            .expect("request"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

fn from_client(mut request: Request<Body>, address: &str) -> Request<Body> {
    let address: SocketAddr = address.parse().expect("socket address");
    request.extensions_mut().insert(ConnectInfo(address));
    request
}

#[tokio::test]
async fn repeated_failures_are_429() {
    let fixture = fixture_with_limiter(FailureLimiter::new(3, 100, Duration::from_secs(60)));
    let stranger = format!("appliance_{}", "1".repeat(64));

    for attempt in 0..3 {
        let reply = send(
            &fixture.auth,
            from_client(toggle(&stranger, None, "{}"), "127.0.0.1:40000"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }

    let blocked = send(
        &fixture.auth,
        from_client(
            request(Method::GET, "/api/auth/csrf")
                .header("authorization", bearer(&fixture.admin))
                .body(Body::empty())
                .expect("request"),
            "127.0.0.1:40001",
        ),
    )
    .await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = blocked.headers["retry-after"]
        .to_str()
        .expect("header text")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    let other_client = send(
        &fixture.auth,
        from_client(
            request(Method::GET, "/api/auth/csrf")
                .header("authorization", bearer(&fixture.admin))
                .body(Body::empty())
                .expect("request"),
            "192.0.2.7:40000",
        ),
    )
    .await;
    assert_eq!(other_client.status, StatusCode::OK);
}

#[tokio::test]
async fn missing_tokens_not_counted_as_failures() {
    let fixture = fixture_with_limiter(FailureLimiter::new(2, 100, Duration::from_secs(60)));

    for _ in 0..5 {
        let reply = send(
            &fixture.auth,
            request(Method::GET, "/api/auth/csrf")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    csrf_for(&fixture, &fixture.admin).await;
}

#[tokio::test]
async fn unreadable_store_is_503() {
    let fixture = fixture();
    std::fs::write(&fixture.store_path, "not json").expect("corrupt the store");

    let reply = send(
        &fixture.auth,
        request(Method::GET, "/api/auth/csrf")
            .header("authorization", bearer(&fixture.admin))
            .body(Body::empty())
            .expect("request"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn replaced_store_used_at_once() {
    let fixture = fixture();
    let dir = tempfile::tempdir().expect("create temp dir");
    let vault_store = TokenStore::new(dir.path().join("tokens.json"));
    let (_, vault_admin) = vault_store
        .create("vault admin", Scope::Admin)
        .expect("create");

    fixture.auth.replace_store(vault_store);

    csrf_for(&fixture, &vault_admin).await;
    let reply = send(
        &fixture.auth,
        request(Method::GET, "/api/auth/csrf")
            .header("authorization", bearer(&fixture.admin))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}
