//! Parsing and validation of `/v1/chat/completions` and `/v1/completions`
//! request bodies. Each invalid value gives a 400 naming the parameter.
//! Parameters this server does not read, such as `user` or
//! `presence_penalty`, are ignored as OpenAI-compatible servers commonly do;
//! ones whose effect a client relies on, such as `tools` or `n`, are
//! rejected.

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::inference::engine::{ChatMessage, Prompt, Role, Sampling};

/// Most stop strings per request, as in the OpenAI API.
pub const MAX_STOP_STRINGS: usize = 4;

/// `max_tokens` of `/v1/completions` when the request has none, as in the
/// OpenAI API.
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

/// A validated generation request.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationRequest {
    pub prompt: Prompt,
    pub sampling: Sampling,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// Send a last chunk with the token counts (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Parses a `/v1/chat/completions` body.
pub fn parse_chat(body: &[u8]) -> Result<GenerationRequest, ApiError> {
    let object = parse_object(body)?;
    check_common(&object)?;
    reject_set(&object, "tools", "tools are not supported")?;
    reject_set(&object, "functions", "functions are not supported")?;
    if matches!(object.get("logprobs"), Some(Value::Bool(true))) {
        return Err(ApiError::invalid("logprobs", "logprobs are not supported"));
    }

    let messages = parse_messages(object.get("messages"))?;
    let max_tokens = match optional_max_tokens(&object, "max_completion_tokens")? {
        Some(value) => Some(value),
        None => optional_max_tokens(&object, "max_tokens")?,
    };
    finish(&object, Prompt::Chat(messages), max_tokens)
}

/// Parses a `/v1/completions` body.
pub fn parse_completion(body: &[u8]) -> Result<GenerationRequest, ApiError> {
    let object = parse_object(body)?;
    check_common(&object)?;
    if matches!(object.get("echo"), Some(Value::Bool(true))) {
        return Err(ApiError::invalid("echo", "echo is not supported"));
    }
    reject_set(&object, "suffix", "suffix is not supported")?;
    reject_set(&object, "logprobs", "logprobs are not supported")?;
    if let Some(best_of) = object.get("best_of").filter(|value| !value.is_null()) {
        if best_of.as_u64() != Some(1) {
            return Err(ApiError::invalid("best_of", "best_of: only 1 is supported"));
        }
    }

    let prompt = parse_prompt(object.get("prompt"))?;
    let max_tokens =
        optional_max_tokens(&object, "max_tokens")?.or(Some(COMPLETIONS_DEFAULT_MAX_TOKENS));
    finish(&object, Prompt::Text(prompt), max_tokens)
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        ApiError::bad_request(format!(
            "the request body is not valid JSON: {err}. Send a JSON object"
        ))
    })?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
    }
}

/// Checks the parameters both endpoints share that need no conversion.
fn check_common(object: &Map<String, Value>) -> Result<(), ApiError> {
    match object.get("model") {
        Some(Value::String(model)) if !model.is_empty() => {}
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "model",
                "model is required: use an id that GET /v1/models lists",
            ))
        }
        Some(_) => return Err(ApiError::invalid("model", "model must be a string")),
    }
    if let Some(n) = object.get("n").filter(|value| !value.is_null()) {
        if n.as_u64() != Some(1) {
            return Err(ApiError::invalid(
                "n",
                format!("n is {n}: only 1 is supported"),
            ));
        }
    }
    Ok(())
}

/// Rejects a parameter that is present with a value other than null or an
/// empty list.
fn reject_set(object: &Map<String, Value>, param: &str, message: &str) -> Result<(), ApiError> {
    match object.get(param) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) if items.is_empty() => Ok(()),
        Some(_) => Err(ApiError::invalid(param, message)),
    }
}

/// Reads the sampling, stop and streaming parameters and builds the request.
fn finish(
    object: &Map<String, Value>,
    prompt: Prompt,
    max_tokens: Option<u32>,
) -> Result<GenerationRequest, ApiError> {
    let sampling = Sampling {
        temperature: optional_number(object, "temperature", 0.0, 2.0)?.unwrap_or(1.0),
        top_p: optional_number(object, "top_p", 0.0, 1.0)?.unwrap_or(1.0),
        seed: optional_seed(object)?,
    };
    let stream = match object.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(ApiError::invalid("stream", "stream must be true or false")),
    };
    let include_usage = parse_stream_options(object.get("stream_options"), stream)?;
    Ok(GenerationRequest {
        prompt,
        sampling,
        max_tokens,
        stop: parse_stop(object.get("stop"))?,
        stream,
        include_usage,
    })
}

fn parse_messages(value: Option<&Value>) -> Result<Vec<ChatMessage>, ApiError> {
    let items = match value {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid("messages", "messages is required"))
        }
        Some(_) => return Err(ApiError::invalid("messages", "messages must be an array")),
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "messages is empty: send at least one message",
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_message(index, item))
        .collect()
}

fn parse_message(index: usize, item: &Value) -> Result<ChatMessage, ApiError> {
    let param = format!("messages[{index}]");
    let Value::Object(message) = item else {
        return Err(ApiError::invalid(
            &param,
            format!("{param} must be an object"),
        ));
    };
    let role = match message.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some(other @ ("tool" | "function")) => {
            return Err(ApiError::invalid(
                &format!("{param}.role"),
                format!("{param}.role {other:?} is not supported: this server has no tool calls"),
            ))
        }
        Some(other) => {
            return Err(ApiError::invalid(
                &format!("{param}.role"),
                format!(
                    "{param}.role {other:?} is invalid: use system, developer, user or assistant"
                ),
            ))
        }
        None => {
            return Err(ApiError::invalid(
                &format!("{param}.role"),
                format!("{param}.role is required"),
            ))
        }
    };
    if role == Role::Assistant {
        reject_set(message, "tool_calls", "tool calls are not supported").map_err(|mut err| {
            err.param = Some(format!("{param}.tool_calls"));
            err
        })?;
    }
    let content = parse_content(&param, role, message.get("content"))?;
    Ok(ChatMessage { role, content })
}

/// Reads a message's content: a string, or a list of text parts joined
/// with newlines.
fn parse_content(param: &str, role: Role, value: Option<&Value>) -> Result<String, ApiError> {
    let content_param = format!("{param}.content");
    match value {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (index, part) in parts.iter().enumerate() {
                let part_param = format!("{content_param}[{index}]");
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(text))) => texts.push(text.as_str()),
                    (Some("text"), _) => {
                        return Err(ApiError::invalid(
                            &part_param,
                            format!("{part_param}.text must be a string"),
                        ))
                    }
                    (Some(other), _) => {
                        return Err(ApiError::invalid(
                            &part_param,
                            format!(
                                "{part_param}.type {other:?} is not supported: only text parts are"
                            ),
                        ))
                    }
                    (None, _) => {
                        return Err(ApiError::invalid(
                            &part_param,
                            format!("{part_param} needs a type"),
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        None | Some(Value::Null) => {
            let message = if role == Role::Assistant {
                format!("{content_param} is missing: an assistant message needs content, since this server has no tool calls")
            } else {
                format!("{content_param} is required")
            };
            Err(ApiError::invalid(&content_param, message))
        }
        Some(_) => Err(ApiError::invalid(
            &content_param,
            format!("{content_param} must be a string or a list of text parts"),
        )),
    }
}

fn parse_prompt(value: Option<&Value>) -> Result<String, ApiError> {
    match value {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(text)] => Ok(text.clone()),
            _ => Err(ApiError::invalid(
                "prompt",
                "prompt must be a string or a list of one string; token lists and several prompts are not supported",
            )),
        },
        None | Some(Value::Null) => Err(ApiError::invalid("prompt", "prompt is required")),
        Some(_) => Err(ApiError::invalid("prompt", "prompt must be a string")),
    }
}

/// Reads a token limit: a whole number of 1 or more. Values above what a
/// `u32` holds are kept as `u32::MAX`, which no context fits.
fn optional_max_tokens(object: &Map<String, Value>, param: &str) -> Result<Option<u32>, ApiError> {
    let Some(value) = object.get(param).filter(|value| !value.is_null()) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::invalid(
            param,
            format!("{param} is {value}: it must be a whole number of 1 or more"),
        )
    };
    if let Some(number) = value.as_u64() {
        if number == 0 {
            return Err(invalid());
        }
        return Ok(Some(u32::try_from(number).unwrap_or(u32::MAX)));
    }
    Err(invalid())
}

fn optional_number(
    object: &Map<String, Value>,
    param: &str,
    min: f64,
    max: f64,
) -> Result<Option<f32>, ApiError> {
    let Some(value) = object.get(param).filter(|value| !value.is_null()) else {
        return Ok(None);
    };
    match value.as_f64() {
        #[allow(clippy::cast_possible_truncation)] // within [min, max], a small range
        Some(number) if (min..=max).contains(&number) => Ok(Some(number as f32)),
        _ => Err(ApiError::invalid(
            param,
            format!("{param} is {value}: it must be a number from {min} to {max}"),
        )),
    }
}

/// Reads `seed`, any 64-bit integer, and folds it into llama.cpp's 32-bit
/// seed.
fn optional_seed(object: &Map<String, Value>) -> Result<Option<u32>, ApiError> {
    let Some(value) = object.get("seed").filter(|value| !value.is_null()) else {
        return Ok(None);
    };
    let seed = value.as_i64().ok_or_else(|| {
        ApiError::invalid("seed", format!("seed is {value}: it must be an integer"))
    })?;
    let folded = seed.rem_euclid(1 << 32);
    Ok(Some(u32::try_from(folded).unwrap_or(0)))
}

fn parse_stop(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(text)) => return Ok(vec![text.clone()]),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::invalid(
                "stop",
                "stop must be a string or a list of strings",
            ))
        }
    };
    if items.len() > MAX_STOP_STRINGS {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "stop has {} strings: at most {MAX_STOP_STRINGS} are allowed",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(text) => Ok(text.clone()),
            _ => Err(ApiError::invalid(
                "stop",
                "stop must be a string or a list of strings",
            )),
        })
        .collect()
}

fn parse_stream_options(value: Option<&Value>, stream: bool) -> Result<bool, ApiError> {
    let options = match value {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Object(options)) => options,
        Some(_) => {
            return Err(ApiError::invalid(
                "stream_options",
                "stream_options must be an object",
            ))
        }
    };
    if !stream {
        return Err(ApiError::invalid(
            "stream_options",
            "stream_options is only allowed when stream is true",
        ));
    }
    match options.get("include_usage") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(include)) => Ok(*include),
        Some(_) => Err(ApiError::invalid(
            "stream_options.include_usage",
            "stream_options.include_usage must be true or false",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chat(body: Value) -> Result<GenerationRequest, ApiError> {
        parse_chat(body.to_string().as_bytes())
    }

    fn base() -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut body = base();
        body[key] = value;
        body
    }

    fn param_of(result: Result<GenerationRequest, ApiError>) -> String {
        let err = result.expect_err("invalid request");
        assert_eq!(err.status, 400);
        assert_eq!(err.kind, "invalid_request_error");
        err.param.unwrap_or_default()
    }

    #[test]
    fn minimal_chat_parses() {
        let request = chat(base()).expect("valid");
        assert_eq!(
            request.prompt,
            Prompt::Chat(vec![ChatMessage {
                role: Role::User,
                content: "hi".to_owned()
            }])
        );
        assert_eq!(request.max_tokens, None);
        assert_eq!(request.sampling, Sampling::default());
        assert!(!request.stream);
        assert!(request.stop.is_empty());
    }

    #[test]
    fn max_completion_tokens_preferred() {
        let mut body = with("max_tokens", json!(5));
        body["max_completion_tokens"] = json!(7);
        assert_eq!(chat(body).expect("valid").max_tokens, Some(7));
    }

    #[test]
    fn bad_max_tokens_rejected() {
        for value in [json!(-2), json!(0), json!(1.5), json!("8")] {
            assert_eq!(
                param_of(chat(with("max_tokens", value.clone()))),
                "max_tokens",
                "{value}"
            );
        }
        assert_eq!(
            param_of(chat(with("max_completion_tokens", json!(-1)))),
            "max_completion_tokens"
        );
    }

    #[test]
    fn huge_max_tokens_saturates() {
        let request = chat(with("max_tokens", json!(1u64 << 40))).expect("valid");
        assert_eq!(request.max_tokens, Some(u32::MAX));
    }

    #[test]
    fn sampling_parameters_parse() {
        let mut body = with("temperature", json!(0));
        body["top_p"] = json!(0.5);
        body["seed"] = json!(-1);
        let request = chat(body).expect("valid");
        assert_eq!(request.sampling.temperature, 0.0);
        assert_eq!(request.sampling.top_p, 0.5);
        assert_eq!(request.sampling.seed, Some(u32::MAX));
    }

    #[test]
    fn out_of_range_sampling_rejected() {
        assert_eq!(
            param_of(chat(with("temperature", json!(2.5)))),
            "temperature"
        );
        assert_eq!(param_of(chat(with("top_p", json!(-0.1)))), "top_p");
        assert_eq!(param_of(chat(with("seed", json!(1.5)))), "seed");
    }

    #[test]
    fn stop_forms_parse() {
        assert_eq!(
            chat(with("stop", json!("END"))).expect("valid").stop,
            vec!["END"]
        );
        assert_eq!(
            chat(with("stop", json!(["a", "b"]))).expect("valid").stop,
            vec!["a", "b"]
        );
        assert_eq!(
            param_of(chat(with("stop", json!(["a", "b", "c", "d", "e"])))),
            "stop"
        );
        assert_eq!(param_of(chat(with("stop", json!([1])))), "stop");
    }

    #[test]
    fn stream_options_need_stream() {
        let options = json!({"include_usage": true});
        assert_eq!(
            param_of(chat(with("stream_options", options.clone()))),
            "stream_options"
        );
        let mut body = with("stream", json!(true));
        body["stream_options"] = options;
        assert!(chat(body).expect("valid").include_usage);
    }

    #[test]
    fn message_errors_name_the_message() {
        assert_eq!(param_of(chat(with("messages", json!([])))), "messages");
        assert_eq!(
            param_of(chat(with(
                "messages",
                json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": null}])
            ))),
            "messages[1].content"
        );
        assert_eq!(
            param_of(chat(with(
                "messages",
                json!([{"role": "tool", "content": "a"}])
            ))),
            "messages[0].role"
        );
        assert_eq!(
            param_of(chat(with(
                "messages",
                json!([{"role": "robot", "content": "a"}])
            ))),
            "messages[0].role"
        );
        assert_eq!(
            param_of(chat(with(
                "messages",
                json!([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])
            ))),
            "messages[0].content[0]"
        );
    }

    #[test]
    fn empty_assistant_content_accepted() {
        let body = with(
            "messages",
            json!([{"role": "user", "content": "A"}, {"role": "assistant", "content": ""}, {"role": "user", "content": "B"}]),
        );
        chat(body).expect("empty assistant content is valid");
    }

    #[test]
    fn text_parts_joined() {
        let body = with(
            "messages",
            json!([{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]),
        );
        let request = chat(body).expect("valid");
        assert_eq!(
            request.prompt,
            Prompt::Chat(vec![ChatMessage {
                role: Role::System,
                content: "a\nb".to_owned()
            }])
        );
    }

    #[test]
    fn unsupported_features_rejected() {
        assert_eq!(param_of(chat(with("n", json!(2)))), "n");
        assert_eq!(
            param_of(chat(with("tools", json!([{"type": "function"}])))),
            "tools"
        );
        assert_eq!(param_of(chat(with("logprobs", json!(true)))), "logprobs");
        chat(with("tools", json!([]))).expect("an empty tool list is fine");
        chat(with("user", json!("someone"))).expect("unread parameters are ignored");
    }

    #[test]
    fn model_required() {
        let mut body = base();
        body.as_object_mut().expect("object").remove("model");
        assert_eq!(param_of(chat(body)), "model");
        assert_eq!(param_of(chat(with("model", json!("")))), "model");
    }

    #[test]
    fn non_json_body_rejected() {
        let err = parse_chat(b"{not json").expect_err("invalid JSON");
        assert_eq!(err.status, 400);
        assert!(err.message.contains("not valid JSON"), "{}", err.message);
        assert!(parse_chat(b"[1]").is_err());
    }

    #[test]
    fn completion_prompt_forms() {
        let parse = |body: Value| parse_completion(body.to_string().as_bytes());
        let request = parse(json!({"model": "m", "prompt": "Once"})).expect("valid");
        assert_eq!(request.prompt, Prompt::Text("Once".to_owned()));
        assert_eq!(request.max_tokens, Some(COMPLETIONS_DEFAULT_MAX_TOKENS));
        let request =
            parse(json!({"model": "m", "prompt": ["Once"], "max_tokens": 3})).expect("valid");
        assert_eq!(request.max_tokens, Some(3));
        for prompt in [json!([1, 2]), json!(["a", "b"]), json!(null)] {
            let err = parse(json!({"model": "m", "prompt": prompt})).expect_err("invalid prompt");
            assert_eq!(err.param.as_deref(), Some("prompt"));
        }
        let err = parse(json!({"model": "m", "prompt": "a", "echo": true})).expect_err("echo");
        assert_eq!(err.param.as_deref(), Some("echo"));
    }
}
