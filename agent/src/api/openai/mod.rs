//! The OpenAI-compatible inference API: `GET /v1/models`,
//! `POST /v1/chat/completions` and `POST /v1/completions`, with and
//! without server-sent events.

pub mod error;
pub mod request;
pub mod response;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::warn;

use self::error::ApiError;
use self::request::GenerationRequest;
use self::response::{Endpoint, ResponseHeader};
use super::ApiState;
use crate::inference::engine::{EngineKind, ModelInfo};
use crate::inference::generate::{Event, Job, JobError};
use crate::inference::service::{InferenceService, ServiceState, SubmitError};

/// Seconds a client is told to wait after a 429.
pub const QUEUE_FULL_RETRY_AFTER: u32 = 1;

/// Seconds between two log lines about rejected requests.
const REJECTION_LOG_INTERVAL: u64 = 10;

/// Builds the `/v1` routes. The caller adds authentication as a layer.
pub fn router() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
}

/// Returns the OpenAI error for a path under `/v1` that has no route.
pub fn not_found(path: &str) -> Response {
    ApiError::with_status(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("unknown_url"),
        format!("no route for {path}"),
    )
    .into_response()
}

async fn models(State(state): State<Arc<ApiState>>) -> Response {
    let data: Vec<Value> = match ready_model(&state) {
        Ok((_, model)) => vec![model_object(&model)],
        Err(_) => Vec::new(),
    };
    Json(json!({ "object": "list", "data": data })).into_response()
}

fn model_object(model: &ModelInfo) -> Value {
    let (owner, engine) = match model.engine {
        EngineKind::Llama => ("appliance", "llama.cpp"),
        EngineKind::Scripted => ("scripted", "scripted"),
    };
    json!({
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": owner,
        "engine": engine,
        "scripted": model.engine == EngineKind::Scripted,
        "context_length": model.context_tokens,
    })
}

async fn chat_completions(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = read_body(&headers, body).and_then(|body| request::parse_chat(&body));
    match request {
        Ok(request) => generate(state, Endpoint::Chat, request).await,
        Err(err) => err.into_response(),
    }
}

async fn completions(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = read_body(&headers, body).and_then(|body| request::parse_completion(&body));
    match request {
        Ok(request) => generate(state, Endpoint::Completion, request).await,
        Err(err) => err.into_response(),
    }
}

/// Checks the content type and returns the body. Requiring
/// `application/json` also keeps browsers from sending these requests
/// from other sites without a CORS preflight.
fn read_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::with_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            None,
            format!(
                "Content-Type is {content_type:?}: send the body as JSON with Content-Type: application/json"
            ),
        ));
    }
    body.map_err(|rejection| {
        ApiError::with_status(
            rejection.status(),
            "invalid_request_error",
            None,
            format!("failed to read the request body: {}", rejection.body_text()),
        )
    })
}

/// Returns the service and its model when the model is loaded.
fn ready_model(state: &ApiState) -> Result<(InferenceService, Arc<ModelInfo>), ApiError> {
    let not_ready = |detail: String| {
        ApiError::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("model_not_ready"),
            format!("the model is not ready: {detail}"),
        )
    };
    let Some(service) = state.inference() else {
        return Err(not_ready(
            "inference is not running: the models are in the vault, which is not open".to_owned(),
        ));
    };
    match service.state() {
        ServiceState::Ready(model) => Ok((service, model)),
        ServiceState::Loading(detail) | ServiceState::Unavailable(detail) => Err(not_ready(detail)),
    }
}

async fn generate(
    state: Arc<ApiState>,
    endpoint: Endpoint,
    request: GenerationRequest,
) -> Response {
    let (service, model) = match ready_model(&state) {
        Ok(ready) => ready,
        Err(err) => return err.into_response(),
    };
    let header = ResponseHeader {
        endpoint,
        id: new_id(endpoint),
        created: unix_seconds(),
        model: model.id.clone(),
    };

    let submitted = service.submit(|events| Job {
        id: header.id.clone(),
        prompt: request.prompt.clone(),
        sampling: request.sampling,
        max_tokens: request.max_tokens,
        stop: request.stop.clone(),
        events,
    });
    let mut events = match submitted {
        Ok(events) => events,
        Err(err) => return submit_error(err).into_response(),
    };

    // The first event decides the status: the prompt may not fit.
    match events.recv().await {
        Some(Event::Started { .. }) => {}
        Some(Event::Failed(err)) => return job_error(endpoint, &err).into_response(),
        Some(other) => {
            warn!(id = %header.id, event = ?other, "generation sent an event before it started");
            return worker_gone().into_response();
        }
        None => return worker_gone().into_response(),
    }

    if request.stream {
        stream_response(header, events, request.include_usage).into_response()
    } else {
        collect_response(header, events).await
    }
}

/// Waits for the whole text and returns it as one JSON object.
async fn collect_response(header: ResponseHeader, mut events: mpsc::Receiver<Event>) -> Response {
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Text(piece) => text.push_str(&piece),
            Event::Finished { reason, usage } => {
                return Json(header.complete(&text, reason, usage)).into_response()
            }
            Event::Failed(err) => return job_error(header.endpoint, &err).into_response(),
            Event::Started { .. } => {}
        }
    }
    worker_gone().into_response()
}

/// Where a stream is between engine events.
struct StreamState {
    header: ResponseHeader,
    events: mpsc::Receiver<Event>,
    include_usage: bool,
    /// Server-sent events ready to go out.
    queue: VecDeque<SseEvent>,
    done: bool,
}

/// Streams the generation as server-sent events. Dropping the stream,
/// which happens when the client disconnects, drops the event receiver and
/// so cancels the generation.
fn stream_response(
    header: ResponseHeader,
    events: mpsc::Receiver<Event>,
    include_usage: bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut queue = VecDeque::new();
    if header.endpoint == Endpoint::Chat {
        queue.push_back(json_event(&header.role_chunk(include_usage)));
    }
    let state = StreamState {
        header,
        events,
        include_usage,
        queue,
        done: false,
    };
    Sse::new(stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.queue.pop_front() {
                return Some((Ok(event), state));
            }
            if state.done {
                return None;
            }
            let next = state.events.recv().await;
            queue_events(&mut state, next);
        }
    }))
}

/// Turns one engine event into the server-sent events that follow it.
fn queue_events(state: &mut StreamState, event: Option<Event>) {
    let header = &state.header;
    match event {
        Some(Event::Text(text)) => {
            let chunk = header.text_chunk(&text, state.include_usage);
            state.queue.push_back(json_event(&chunk));
        }
        Some(Event::Finished { reason, usage }) => {
            let chunk = header.finish_chunk(reason, state.include_usage);
            state.queue.push_back(json_event(&chunk));
            if state.include_usage {
                state
                    .queue
                    .push_back(json_event(&header.usage_chunk(usage)));
            }
            state.queue.push_back(SseEvent::default().data("[DONE]"));
            state.done = true;
        }
        Some(Event::Failed(err)) => {
            let error = job_error(header.endpoint, &err);
            state.queue.push_back(json_event(&error.body()));
            state.queue.push_back(SseEvent::default().data("[DONE]"));
            state.done = true;
        }
        Some(Event::Started { .. }) => {}
        None => {
            state.queue.push_back(json_event(&worker_gone().body()));
            state.queue.push_back(SseEvent::default().data("[DONE]"));
            state.done = true;
        }
    }
}

fn json_event(value: &Value) -> SseEvent {
    SseEvent::default().data(value.to_string())
}

fn submit_error(err: SubmitError) -> ApiError {
    match err {
        SubmitError::QueueFull { pending } => {
            log_rejection(pending);
            ApiError::with_status(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("queue_full"),
                err.to_string(),
            )
            .with_retry_after(QUEUE_FULL_RETRY_AFTER)
        }
        SubmitError::NotReady(detail) => ApiError::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("model_not_ready"),
            format!("the model is not ready: {detail}"),
        ),
    }
}

fn job_error(endpoint: Endpoint, err: &JobError) -> ApiError {
    let prompt_param = match endpoint {
        Endpoint::Chat => "messages",
        Endpoint::Completion => "prompt",
    };
    match err {
        JobError::PromptTooLong { .. } => {
            ApiError::invalid(prompt_param, err.to_string()).with_code("context_length_exceeded")
        }
        JobError::ContextOverflow { .. } => {
            ApiError::invalid("max_tokens", err.to_string()).with_code("context_length_exceeded")
        }
        JobError::Engine(_) => ApiError::with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            err.to_string(),
        ),
    }
}

fn worker_gone() -> ApiError {
    ApiError::with_status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        None,
        "the inference thread ended the request without a result; the service log has the cause",
    )
}

/// Logs rejected requests at most once per interval, with their count.
fn log_rejection(pending: u32) {
    static REJECTED: AtomicU64 = AtomicU64::new(0);
    static LAST_LOGGED: AtomicU64 = AtomicU64::new(0);
    let rejected = REJECTED.fetch_add(1, Ordering::Relaxed) + 1;
    let now = unix_seconds();
    let last = LAST_LOGGED.load(Ordering::Relaxed);
    let due = now >= last.saturating_add(REJECTION_LOG_INTERVAL);
    if due
        && LAST_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        warn!(
            pending,
            rejected_total = rejected,
            "inference queue full, answering 429"
        );
    }
}

/// Returns a response id: the endpoint's prefix and 96 random bits.
fn new_id(endpoint: Endpoint) -> String {
    let mut bytes = [0u8; 12];
    if let Err(err) = getrandom::fill(&mut bytes) {
        // Ids only need to differ, so the clock will do.
        warn!(error = %err, "no random bytes for a response id");
        bytes[..8].copy_from_slice(&u64::to_le_bytes(unix_nanos()));
    }
    format!(
        "{}{}",
        endpoint.id_prefix(),
        appliance_secureboot::pcr::to_hex(&bytes)
    )
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
