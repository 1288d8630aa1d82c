//! Response bodies in the OpenAI API's shapes: `chat.completion`,
//! `chat.completion.chunk` and `text_completion`, and the usage object.

use serde_json::{json, Value};

use crate::inference::generate::{FinishReason, Usage};

/// Which endpoint a response belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

impl Endpoint {
    /// Prefix of the response id, as OpenAI's ids have.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Endpoint::Chat => "chatcmpl-",
            Endpoint::Completion => "cmpl-",
        }
    }
}

/// The fields every object of one response shares.
#[derive(Clone, Debug)]
pub struct ResponseHeader {
    pub endpoint: Endpoint,
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub model: String,
}

pub fn usage_object(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": u64::from(usage.prompt_tokens) + u64::from(usage.completion_tokens),
    })
}

impl ResponseHeader {
    /// The whole response of a request without streaming.
    pub fn complete(&self, text: &str, reason: FinishReason, usage: Usage) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "logprobs": null,
                "finish_reason": reason.as_str(),
            }),
            Endpoint::Completion => json!({
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": reason.as_str(),
            }),
        };
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage_object(usage),
        })
    }

    /// The chunk that opens a chat stream: the assistant role and no text.
    pub fn role_chunk(&self, include_usage: bool) -> Value {
        let delta = json!({ "role": "assistant", "content": "" });
        self.chunk(delta, None, include_usage)
    }

    /// A chunk with text.
    pub fn text_chunk(&self, text: &str, include_usage: bool) -> Value {
        let delta = match self.endpoint {
            Endpoint::Chat => json!({ "content": text }),
            Endpoint::Completion => Value::String(text.to_owned()),
        };
        self.chunk(delta, None, include_usage)
    }

    /// The chunk with the finish reason and no text.
    pub fn finish_chunk(&self, reason: FinishReason, include_usage: bool) -> Value {
        let delta = match self.endpoint {
            Endpoint::Chat => json!({}),
            Endpoint::Completion => Value::String(String::new()),
        };
        self.chunk(delta, Some(reason), include_usage)
    }

    /// The last chunk when usage was requested: no choices, only usage.
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_object(usage),
        })
    }

    /// Builds a chunk. For chat `content` is the delta object; for
    /// completions it is the text. With usage requested, every chunk
    /// carries `"usage": null` as OpenAI's do.
    fn chunk(&self, content: Value, reason: Option<FinishReason>, include_usage: bool) -> Value {
        let finish_reason = reason.map(FinishReason::as_str);
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "delta": content,
                "logprobs": null,
                "finish_reason": finish_reason,
            }),
            Endpoint::Completion => json!({
                "index": 0,
                "text": content,
                "logprobs": null,
                "finish_reason": finish_reason,
            }),
        };
        let mut chunk = json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completion, _) => "text_completion",
        }
    }
}
