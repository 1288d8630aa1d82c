//! The OpenAI-compatible routes against the scripted engine: the
//! acceptance cases d01 (stream chunk shape) and d04 (request limits and
//! message validation), and the framing rules around them (stop strings
//! and UTF-8 across tokens, context overflow, the queue, cancellation).
//!
//! The scripted engine replaces llama.cpp only in these tests. The Python
//! tests run the same behaviour against llama.cpp with a tiny model.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance_agent::api::{self, ApiState};
use appliance_agent::auth::{AllowedHosts, Auth, Scope, TokenStore};
use appliance_agent::boot_state::{BootState, SecureBoot, Tpm};
use appliance_agent::config::Config;
use appliance_agent::inference::service::{EngineChoice, EngineSettings, ServiceState};
use appliance_agent::vault::service::VaultService;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use support::{detect_fixture, fixture};

const D01: &str = "cases/d01-stream-chunk-shape";
const D04: &str = "cases/d04-request-limits-and-message-validation";

/// d04's time limit for the whole case.
const D04_CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts the API with the scripted engine and waits until it is ready.
async fn router(script: &Path, context_tokens: u32, queue_size: u32) -> Router {
    let settings = EngineSettings {
        choice: EngineChoice::Scripted(script.to_owned()),
        models: Config::default().models,
        context_tokens,
        threads: 1,
        gpu_layers: 0,
        import_device: PathBuf::from("/nonexistent"),
    };
    let (state, api_key) = state_with_engine(settings, queue_size);
    let service = state.inference().expect("inference started");
    let mut states = service.subscribe();
    tokio::time::timeout(
        Duration::from_secs(10),
        states.wait_for(|state| !matches!(state, ServiceState::Loading(_))),
    )
    .await
    .expect("engine loads in time")
    .expect("state channel open");
    assert!(
        matches!(service.state(), ServiceState::Ready(_)),
        "{:?}",
        service.state()
    );

    // Every request of these tests comes from a client with an inference token.
    let bearer = format!("Bearer {api_key}");
    api::router(state).layer(axum::middleware::map_request(
        move |mut request: Request<Body>| {
            let bearer = bearer.clone();
            async move {
                let headers = request.headers_mut();
                if !headers.contains_key("authorization") {
                    headers.insert("authorization", bearer.parse().expect("header value"));
                }
                if !headers.contains_key("host") {
                    headers.insert("host", "127.0.0.1:8480".parse().expect("header value"));
                }
                request
            }
        },
    ))
}

/// Builds the API state with `settings` as its engine, started, and a token store with
/// one inference token, which it returns.
fn state_with_engine(settings: EngineSettings, queue_size: u32) -> (Arc<ApiState>, String) {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let store = TokenStore::new(dir.join("tokens.json"));
    let (_, api_key) = store
        .create("tests", Scope::Inference)
        .expect("create token");
    let auth = Auth::new(store, AllowedHosts::new(&[], &[])).expect("random key");
    let mut config = Config::default();
    config.inference.queue_size = queue_size;
    let mut state = ApiState::new(
        detect_fixture(&fixture("vm/kvm-q35")),
        config,
        dir.join("appliance.yaml"),
        BootState {
            secure_boot: SecureBoot::Enforcing,
            tpm: Tpm {
                present: true,
                version: Some("2".to_owned()),
                device: Some("/dev/tpmrm0".to_owned()),
            },
        },
        None,
        Arc::new(auth),
        VaultService::load(dir.join("state")),
    );
    state.engine = Some(settings);
    state.start_inference();
    (Arc::new(state), api_key.to_string())
}

#[tokio::test]
async fn inference_routes_need_an_inference_token() {
    let settings = EngineSettings {
        choice: EngineChoice::Scripted(fixture(&format!("{D01}/backend/hello.json"))),
        models: Config::default().models,
        context_tokens: 4096,
        threads: 1,
        gpu_layers: 0,
        import_device: PathBuf::from("/nonexistent"),
    };
    let (state, _) = state_with_engine(settings, 1);
    let router = api::router(state);
    for authorization in [None, Some("Bearer appliance_0000")] {
        let mut builder = Request::get("/v1/models").header("host", "127.0.0.1:8480");
        if let Some(value) = authorization {
            builder = builder.header("authorization", value);
        }
        let reply = send(&router, builder.body(Body::empty()).expect("request")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
    }
}

/// Starts the API with a case's backend and d04's server settings.
async fn case_router(case: &str, backend: &str) -> Router {
    let settings: Value = read_json(&fixture(&format!("{D04}/server-config.json")));
    assert_eq!(
        settings["parallel_slots"], 1,
        "one slot, as the engine runs"
    );
    let context_tokens = u32::try_from(settings["context_tokens"].as_u64().expect("context"))
        .expect("context fits u32");
    router(
        &fixture(&format!("{case}/backend/{backend}.json")),
        context_tokens,
        8,
    )
    .await
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("parse {}: {err}", path.display()))
}

/// A response with its whole body.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "body is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }
}

fn build_request(method: &str, path: &str, headers: &Value, body: &Value) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(headers) = headers.as_object() {
        for (name, value) in headers {
            builder = builder.header(name, value.as_str().expect("header value"));
        }
    }
    builder
        .body(Body::from(body.to_string()))
        .expect("valid request")
}

/// Sends a request from a case's `requests/` folder.
async fn send_case(router: &Router, case: &str, name: &str) -> Reply {
    let request = read_json(&fixture(&format!("{case}/requests/{name}.json")));
    let http = build_request(
        request["method"].as_str().expect("method"),
        request["path"].as_str().expect("path"),
        &request["headers"],
        &request["body"],
    );
    send(router, http).await
}

async fn post(router: &Router, path: &str, body: Value) -> Reply {
    let headers = json!({ "Content-Type": "application/json" });
    send(router, build_request("POST", path, &headers, &body)).await
}

async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("router response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// Parses a server-sent event stream strictly: events separated by blank
/// lines, each a single `data: ` line. Returns the data of each event.
fn sse_data(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).expect("stream is UTF-8");
    assert!(
        text.ends_with("\n\n"),
        "stream ends with a blank line: {text:?}"
    );
    text.trim_end_matches('\n')
        .split("\n\n")
        .map(|event| {
            assert!(!event.contains('\n'), "one line per event: {event:?}");
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event is not a data line: {event:?}"))
                .to_owned()
        })
        .collect()
}

/// Splits stream data into JSON chunks and checks it ends with `[DONE]`.
fn chunks(body: &[u8]) -> Vec<Value> {
    let mut data = sse_data(body);
    assert_eq!(data.pop().as_deref(), Some("[DONE]"), "last event");
    data.iter()
        .map(|text| serde_json::from_str(text).unwrap_or_else(|err| panic!("{err}: {text}")))
        .collect()
}

fn chat_content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect()
}

fn finish_reasons(chunks: &[Value]) -> Vec<Value> {
    chunks
        .iter()
        .filter_map(|chunk| chunk["choices"].as_array()?.first())
        .map(|choice| choice["finish_reason"].clone())
        .collect()
}

#[tokio::test]
async fn d01_stream_with_usage() {
    let router = case_router(D01, "hello").await;

    let reply = send_case(&router, D01, "R1-stream-with-usage").await;

    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.content_type().starts_with("text/event-stream"),
        "{}",
        reply.content_type()
    );
    let chunks = chunks(&reply.body);
    let id = chunks[0]["id"].as_str().expect("id");
    assert!(id.starts_with("chatcmpl-"), "{id}");
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert_eq!(chunk["id"], id, "{chunk}");
    }
    let first_with_choice = chunks
        .iter()
        .find(|chunk| chunk["choices"].as_array().is_some_and(|c| !c.is_empty()))
        .expect("a chunk with a choice");
    assert_eq!(
        first_with_choice["choices"][0]["delta"]["role"],
        "assistant"
    );
    assert_eq!(chat_content(&chunks), "Hello there!");

    let reasons = finish_reasons(&chunks);
    let stops: Vec<&Value> = reasons.iter().filter(|reason| !reason.is_null()).collect();
    assert_eq!(stops, vec![&json!("stop")], "{reasons:?}");

    let usage_chunk = chunks.last().expect("usage chunk");
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 14, "completion_tokens": 4, "total_tokens": 18})
    );
}

#[tokio::test]
async fn d01_stream_plain() {
    let router = case_router(D01, "hello").await;

    let reply = send_case(&router, D01, "R2-stream-plain").await;

    assert_eq!(reply.status, StatusCode::OK);
    let chunks = chunks(&reply.body);
    assert_eq!(chat_content(&chunks), "Hello there!");
    for chunk in &chunks {
        let choices = chunk["choices"].as_array().expect("choices");
        assert_eq!(choices.len(), 1, "{chunk}");
        assert!(chunk.get("usage").is_none(), "{chunk}");
    }
    let reasons = finish_reasons(&chunks);
    let stops: Vec<&Value> = reasons.iter().filter(|reason| !reason.is_null()).collect();
    assert_eq!(stops, vec![&json!("stop")], "{reasons:?}");
}

#[tokio::test]
async fn d01_non_stream() {
    let router = case_router(D01, "hello").await;

    let reply = send_case(&router, D01, "R3-non-stream").await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type(), "application/json");
    let body = reply.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"],
        json!({"role": "assistant", "content": "Hello there!"})
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 14, "completion_tokens": 4, "total_tokens": 18})
    );
    assert_eq!(body["model"], "hello");
}

fn assert_invalid_request(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let body = reply.json();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn d04_negative_max_tokens() {
    let router = case_router(D04, "endless").await;

    let reply = send_case(&router, D04, "L1-negative-max-tokens").await;

    assert_invalid_request(&reply);
    assert_eq!(reply.json()["error"]["param"], "max_tokens");
}

#[tokio::test]
async fn d04_max_tokens_limits() {
    let router = case_router(D04, "endless").await;

    for name in ["L2-max-tokens-8", "L3-max-completion-tokens-8"] {
        let reply = send_case(&router, D04, name).await;

        assert_eq!(reply.status, StatusCode::OK, "{name}");
        let body = reply.json();
        assert_eq!(body["usage"]["completion_tokens"], 8, "{name}");
        assert_eq!(body["choices"][0]["finish_reason"], "length", "{name}");
        assert_eq!(
            body["choices"][0]["message"]["content"], "word xxxxxxx",
            "{name}"
        );
    }
}

#[tokio::test]
async fn d04_huge_max_tokens_names_limit() {
    let router = case_router(D04, "endless").await;

    let reply = send_case(&router, D04, "L4-huge-max-tokens").await;

    assert_invalid_request(&reply);
    let body = reply.json();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("4096 tokens"), "{message}");
    assert!(message.contains("4082 or less"), "{message}");
}

#[tokio::test]
async fn d04_unlimited_fills_context() {
    let started = Instant::now();
    let router = case_router(D04, "endless").await;

    let unlimited = send_case(&router, D04, "L5-no-limit");
    let small = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        send_case(&router, D04, "L5b-concurrent-small").await
    };
    let (unlimited, small) =
        tokio::time::timeout(D04_CASE_TIMEOUT, async { tokio::join!(unlimited, small) })
            .await
            .expect("both requests finish within the case's 60 s");

    assert_eq!(unlimited.status, StatusCode::OK);
    let body = unlimited.json();
    let completion = body["usage"]["completion_tokens"].as_u64().expect("count");
    assert!(completion <= 4082, "{completion}");
    assert_eq!(completion, 4082, "the context, less the prompt, is filled");
    assert_eq!(body["choices"][0]["finish_reason"], "length");

    assert_eq!(small.status, StatusCode::OK);
    assert_eq!(small.json()["usage"]["completion_tokens"], 4);
    assert!(started.elapsed() < D04_CASE_TIMEOUT);
}

#[tokio::test]
async fn d04_message_validation() {
    let router = case_router(D04, "short").await;

    let reply = send_case(&router, D04, "L6-empty-messages").await;
    assert_invalid_request(&reply);
    assert_eq!(reply.json()["error"]["param"], "messages");

    let reply = send_case(&router, D04, "L7-empty-assistant-content").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["choices"][0]["message"]["content"], "OK");

    let reply = send_case(&router, D04, "L8-assistant-null-no-tools").await;
    assert_invalid_request(&reply);
    assert_eq!(reply.json()["error"]["param"], "messages[1].content");
}

/// Writes a scripted-backend-v1 file into `dir` and returns its path.
fn script(dir: &Path, name: &str, tokens: Value, end: &str) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    let script = json!({
        "format": "scripted-backend-v1",
        "prompt_tokens": 14,
        "tokens": tokens,
        "end": end,
    });
    std::fs::write(&path, script.to_string()).expect("write script");
    path
}

fn chat_body(extra: Value) -> Value {
    let mut body = json!({
        "model": "any",
        "messages": [{"role": "user", "content": "Go."}],
    });
    for (key, value) in extra.as_object().expect("object") {
        body[key] = value.clone();
    }
    body
}

#[tokio::test]
async fn utf8_split_across_tokens_streams_whole_characters() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // "café 😀" with "é" and the emoji split across tokens.
    let tokens = json!([
        {"text": "caf"}, {"hex": "c3"}, {"hex": "a9 20 f0"}, {"hex": "9f 98"}, {"hex": "80"}
    ]);
    let router = router(&script(dir.path(), "utf8", tokens, "eos"), 4096, 8).await;

    let reply = post(
        &router,
        "/v1/chat/completions",
        chat_body(json!({"stream": true})),
    )
    .await;

    let chunks = chunks(&reply.body);
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .filter(|text| !text.is_empty())
        .collect();
    assert_eq!(pieces.concat(), "café 😀");
    for piece in &pieces {
        assert!(!piece.contains('\u{fffd}'), "{pieces:?}");
    }
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn stop_string_across_tokens() {
    let router = case_router(D01, "hello").await;

    for (stream, stop) in [(false, json!("lo th")), (true, json!(["zzz", "o t"]))] {
        let reply = post(
            &router,
            "/v1/chat/completions",
            chat_body(json!({"stream": stream, "stop": stop})),
        )
        .await;

        assert_eq!(reply.status, StatusCode::OK);
        if stream {
            let chunks = chunks(&reply.body);
            assert_eq!(chat_content(&chunks), "Hell");
            let reasons = finish_reasons(&chunks);
            assert!(reasons.contains(&json!("stop")), "{reasons:?}");
        } else {
            let body = reply.json();
            assert_eq!(body["choices"][0]["message"]["content"], "Hel");
            assert_eq!(body["choices"][0]["finish_reason"], "stop");
            // The token that completed the stop string was generated.
            assert_eq!(body["usage"]["completion_tokens"], 3);
        }
    }
}

#[tokio::test]
async fn prompt_longer_than_context_rejected() {
    let router = router(&fixture(&format!("{D01}/backend/hello.json")), 14, 8).await;

    let reply = post(&router, "/v1/chat/completions", chat_body(json!({}))).await;

    assert_invalid_request(&reply);
    let body = reply.json();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_eq!(body["error"]["param"], "messages");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("14 tokens"), "{message}");
}

#[tokio::test]
async fn full_queue_answers_429() {
    let router = router(&fixture(&format!("{D04}/backend/endless.json")), 4096, 0).await;

    // A streamed response starts once its job runs, so from then on the
    // job occupies the only place in the queue.
    let busy = build_request(
        "POST",
        "/v1/chat/completions",
        &json!({"Content-Type": "application/json"}),
        &chat_body(json!({"stream": true, "max_tokens": 300})),
    );
    let busy = router.clone().oneshot(busy).await.expect("response");
    assert_eq!(busy.status(), StatusCode::OK);

    let rejected = post(
        &router,
        "/v1/chat/completions",
        chat_body(json!({"max_tokens": 1})),
    )
    .await;

    assert_eq!(rejected.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        rejected
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = rejected.json();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "queue_full");
    let streamed = busy.into_body().collect().await.expect("stream").to_bytes();
    // The role chunk, one chunk per token and the finish chunk.
    assert_eq!(chunks(&streamed).len(), 302);
}

#[tokio::test]
async fn dropped_stream_cancels_generation() {
    let router = router(&fixture(&format!("{D04}/backend/endless.json")), 4096, 0).await;

    let request = build_request(
        "POST",
        "/v1/chat/completions",
        &json!({"Content-Type": "application/json"}),
        &chat_body(json!({"stream": true})),
    );
    let response = router.clone().oneshot(request).await.expect("response");
    let mut body = response.into_body();
    let first = body.frame().await.expect("a frame").expect("frame data");
    assert!(first.is_data());
    drop(body);

    // The only place in the queue frees up once the engine finds the client
    // gone, long before the 4082 tokens of the context would be generated.
    let started = Instant::now();
    loop {
        let reply = post(
            &router,
            "/v1/chat/completions",
            chat_body(json!({"max_tokens": 2})),
        )
        .await;
        if reply.status == StatusCode::OK {
            break;
        }
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "generation not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn completions_stream_and_whole() {
    let router = case_router(D01, "hello").await;
    let body = json!({"model": "hello", "prompt": "Say", "max_tokens": 10});

    let reply = post(&router, "/v1/completions", body.clone()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let whole = reply.json();
    assert_eq!(whole["object"], "text_completion");
    assert!(whole["id"].as_str().expect("id").starts_with("cmpl-"));
    assert_eq!(whole["choices"][0]["text"], "Hello there!");
    assert_eq!(whole["choices"][0]["finish_reason"], "stop");
    assert_eq!(whole["usage"]["completion_tokens"], 4);

    let mut streamed = body;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let reply = post(&router, "/v1/completions", streamed).await;
    let chunks = chunks(&reply.body);
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello there!");
    for chunk in &chunks {
        assert_eq!(chunk["object"], "text_completion");
    }
    assert_eq!(chunks.last().expect("usage")["usage"]["total_tokens"], 18);
}

#[tokio::test]
async fn models_lists_scripted_engine() {
    let router = case_router(D01, "hello").await;

    let reply = send(
        &router,
        Request::get("/v1/models")
            .body(Body::empty())
            .expect("request"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["object"], "list");
    let model = &body["data"][0];
    assert_eq!(model["id"], "hello");
    assert_eq!(model["object"], "model");
    assert_eq!(model["scripted"], true);
    assert_eq!(model["owned_by"], "scripted");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn non_json_content_type_rejected() {
    let router = case_router(D01, "hello").await;
    let request = build_request(
        "POST",
        "/v1/chat/completions",
        &json!({"Content-Type": "text/plain"}),
        &chat_body(json!({})),
    );

    let reply = send(&router, request).await;

    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let message = reply.json()["error"]["message"].clone();
    assert!(
        message
            .as_str()
            .expect("message")
            .contains("application/json"),
        "{message}"
    );
}

#[tokio::test]
async fn unknown_v1_route_is_openai_error() {
    let router = case_router(D01, "hello").await;

    let reply = send(
        &router,
        Request::get("/v1/embeddings")
            .body(Body::empty())
            .expect("request"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let body = reply.json();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["message"], "no route for /v1/embeddings");
}
