//! The interface between the generation loop and a model runtime.
//!
//! An engine turns a prompt into tokens and produces one token at a time as
//! raw bytes. Everything else (UTF-8 assembly, stop strings, token limits,
//! the OpenAI framing) happens above it, the same for every engine.

use std::path::PathBuf;

use serde::Serialize;

/// Which runtime serves the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// llama.cpp through llama-cpp-2.
    Llama,
    /// A token stream read from a file, for client and API tests.
    Scripted,
}

/// The model an engine serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// Name that `/v1/models` lists and responses carry.
    pub id: String,
    pub engine: EngineKind,
    /// The file the model or script came from.
    pub path: PathBuf,
    /// Context window: prompt and completion tokens together.
    pub context_tokens: u32,
    /// When the model was loaded, in seconds since the Unix epoch.
    pub created: u64,
}

/// Role of a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role's name in chat templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// What the model continues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// A conversation, to be rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Plain text, used as it is.
    Text(String),
}

/// Sampling parameters of one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// 0 picks the most likely token every time.
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens whose probabilities
    /// add up to this value.
    pub top_p: f32,
    /// Seed of the random choice; `None` picks a random seed.
    pub seed: Option<u32>,
}

impl Default for Sampling {
    /// The OpenAI API's defaults.
    fn default() -> Self {
        Sampling {
            temperature: 1.0,
            top_p: 1.0,
            seed: None,
        }
    }
}

/// A failure inside an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the chat template failed: {0}")]
    Template(String),

    #[error("tokenization failed: {0}")]
    Tokenize(String),

    #[error("evaluation failed: {0}")]
    Decode(String),
}

/// A loaded model that runs one generation at a time.
pub trait Engine {
    /// The model this engine serves.
    fn info(&self) -> &ModelInfo;

    /// Prepares a generation: renders and tokenizes the prompt, but does
    /// not evaluate it yet, so the caller can check the prompt's length
    /// against the context window first.
    fn start<'a>(
        &'a mut self,
        prompt: &Prompt,
        sampling: &Sampling,
    ) -> Result<Box<dyn Generation + 'a>, EngineError>;
}

/// One generation in progress.
pub trait Generation {
    /// Number of tokens in the prompt.
    fn prompt_tokens(&self) -> u32;

    /// Produces the next token's bytes, or `None` at the end of the
    /// generation (the model's end-of-generation token). The first call
    /// evaluates the prompt.
    fn next_token(&mut self) -> Result<Option<Vec<u8>>, EngineError>;
}
