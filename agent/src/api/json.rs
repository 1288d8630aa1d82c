//! JSON request bodies whose errors are JSON too and name the field.
//!
//! axum's own `Json` extractor rejects a malformed body in plain text, and
//! names the field only inside the message.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

/// Extractor for a JSON request body of type `T`.
///
/// A body that does not fit `T` gets `400` with
/// `{"error": {"status": 400, "message": ..., "field": "enabled"}}`, where
/// `field` is the path of the offending field (`null` when the JSON itself
/// is malformed). A missing or other `Content-Type` gets `415`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// A request body that was rejected.
#[derive(Debug, PartialEq, Eq)]
pub struct BodyError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "status": self.status.as_u16(),
                "message": self.message,
                "field": self.field,
            }
        });
        (self.status, axum::Json(body)).into_response()
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = BodyError;

    async fn from_request(request: Request, state: &S) -> Result<Self, BodyError> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if !is_json_media_type(content_type) {
            return Err(BodyError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: format!(
                    "the request body must be JSON, but Content-Type is {content_type:?}. Send Content-Type: application/json"
                ),
                field: None,
            });
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| BodyError {
                status: rejection.status(),
                message: format!("failed to read the request body: {}", rejection.body_text()),
                field: None,
            })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body into `T`, rejecting trailing data and any top-level
/// value other than an object. serde would otherwise also accept a struct
/// written as an array of its field values, such as `[true]`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    if first.is_some_and(|byte| *byte != b'{') {
        return Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            message: "invalid JSON body: expected a JSON object".to_owned(),
            field: None,
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        // Syntax errors have a path too, such as `?` for a key that was
        // never read, but it names no field of the request.
        let field = if err.inner().is_data() {
            field_of(&err)
        } else {
            None
        };
        let inner = err.into_inner();
        let message = match &field {
            Some(field) => format!("invalid field {field}: {inner}"),
            None => format!("invalid JSON body: {inner}"),
        };
        BodyError {
            status: StatusCode::BAD_REQUEST,
            message,
            field,
        }
    })?;
    deserializer.end().map_err(|err| BodyError {
        status: StatusCode::BAD_REQUEST,
        message: format!("invalid JSON body: {err}"),
        field: None,
    })?;
    Ok(value)
}

/// Returns the path of the field an error is about. serde reports a missing
/// field at the path of the object that lacks it, naming the field only in
/// the message, so that name is joined to the path here.
fn field_of(err: &serde_path_to_error::Error<serde_json::Error>) -> Option<String> {
    let path = err.path().to_string();
    let parent = (path != ".").then_some(path);
    let message = err.inner().to_string();
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (parent, missing) {
        (Some(parent), Some(name)) => Some(format!("{parent}.{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        (parent, None) => parent,
    }
}

/// Accepts `application/json` and `application/*+json`, with parameters
/// such as `charset`, as axum's `Json` does.
fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some(subtype) = essence.strip_prefix("application/") else {
        return false;
    };
    subtype == "json" || subtype.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Toggle {
        enabled: bool,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        inner: Toggle,
    }

    fn error_of<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> BodyError {
        parse::<T>(body.as_bytes()).expect_err("body must be rejected")
    }

    #[test]
    fn wrong_type_names_field() {
        let err = error_of::<Toggle>(r#"{"enabled": "yes"}"#);

        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.field.as_deref(), Some("enabled"));
        assert!(
            err.message.contains("expected a boolean"),
            "{}",
            err.message
        );
    }

    #[test]
    fn missing_field_named() {
        let err = error_of::<Toggle>("{}");

        assert_eq!(err.field.as_deref(), Some("enabled"));
        assert!(err.message.contains("missing field"), "{}", err.message);
    }

    #[test]
    fn nested_fields_named_by_path() {
        assert_eq!(
            error_of::<Outer>(r#"{"inner": {"enabled": 1}}"#)
                .field
                .as_deref(),
            Some("inner.enabled")
        );
        assert_eq!(
            error_of::<Outer>(r#"{"inner": {}}"#).field.as_deref(),
            Some("inner.enabled")
        );
    }

    #[test]
    fn unknown_field_named() {
        let err = error_of::<Toggle>(r#"{"enabled": true, "extra": 1}"#);

        assert!(
            err.message.contains("unknown field `extra`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn non_object_bodies_rejected() {
        for body in ["[true]", "true", "null", "\"enabled\"", " [ ]"] {
            let err = error_of::<Toggle>(body);
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(
                err.message.contains("JSON object"),
                "{body}: {}",
                err.message
            );
        }
    }

    #[test]
    fn syntax_errors_have_no_field() {
        for body in ["", "{", "not json", r#"{"enabled": true} trailing"#] {
            let err = error_of::<Toggle>(body);
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{body:?}");
            assert_eq!(err.field, None, "{body:?}");
        }
    }

    #[test]
    fn json_media_types() {
        for value in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(is_json_media_type(value), "{value}");
        }
        for value in [
            "",
            "text/plain",
            "application/jsonp",
            "application/x-www-form-urlencoded",
        ] {
            assert!(!is_json_media_type(value), "{value}");
        }
    }
}
