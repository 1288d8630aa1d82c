//! The llama.cpp engine, through llama-cpp-2.

use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{send_logs_to_tracing, LogOptions};
use tracing::{info, warn};

use super::engine::{
    ChatMessage, Engine, EngineError, EngineKind, Generation, ModelInfo, Prompt, Sampling,
};
use super::model_file::CheckedModel;
use super::service::EngineSettings;

/// Most prompt tokens evaluated in one llama.cpp batch.
const MAX_BATCH_TOKENS: u32 = 512;

/// Seed value that makes llama.cpp pick a random seed (`LLAMA_DEFAULT_SEED`).
const RANDOM_SEED: u32 = 0xFFFF_FFFF;

/// Template used when the model has none or llama.cpp does not know its
/// template. ChatML is what llama.cpp's own server falls back to.
const FALLBACK_TEMPLATE: &str = "chatml";

/// A model loading failure.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("failed to start llama.cpp: {0}")]
    Backend(String),

    #[error("llama.cpp failed to load {path}: {reason}. Its log lines above give the cause")]
    Model { path: String, reason: String },

    #[error("llama.cpp failed to create a context of {context_tokens} tokens for {path}: {reason}. Lower inference.context_tokens or free memory")]
    Context {
        path: String,
        context_tokens: u32,
        reason: String,
    },

    #[error("the warm-up evaluation of {path} failed: {reason}")]
    WarmUp { path: String, reason: String },
}

/// llama.cpp allows one backend per process.
static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// Returns the process's llama.cpp backend, starting it and routing
/// llama.cpp's log into `tracing` on first use.
pub fn backend() -> Result<&'static LlamaBackend, LoadError> {
    BACKEND
        .get_or_init(|| {
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|err| err.to_string())
        })
        .as_ref()
        .map_err(|err| LoadError::Backend(err.clone()))
}

/// A model and its context, which runs one sequence at a time.
pub struct LlamaEngine {
    info: ModelInfo,
    model: &'static LlamaModel,
    context: LlamaContext<'static>,
    template: LlamaChatTemplate,
    batch: LlamaBatch<'static>,
    batch_tokens: u32,
}

impl LlamaEngine {
    /// Loads a checked model file with the configured threads, context and
    /// GPU layers.
    pub fn load(checked: &CheckedModel, settings: &EngineSettings) -> Result<Self, LoadError> {
        let backend = backend()?;
        let path = checked.path.display().to_string();
        let started = Instant::now();

        let model_params = LlamaModelParams::default().with_n_gpu_layers(settings.gpu_layers);
        let model =
            LlamaModel::load_from_file(backend, &checked.path, &model_params).map_err(|err| {
                LoadError::Model {
                    path: path.clone(),
                    reason: err.to_string(),
                }
            })?;
        // The engine serves this model until the process ends, and the
        // context borrows it, so the model is never freed.
        let model: &'static LlamaModel = Box::leak(Box::new(model));

        let context_tokens = context_size(settings.context_tokens, model.n_ctx_train());
        let batch_tokens = context_tokens.min(MAX_BATCH_TOKENS);
        let threads = i32::try_from(settings.threads).unwrap_or(i32::MAX);
        let context_params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(context_tokens))
            .with_n_batch(batch_tokens)
            .with_n_ubatch(batch_tokens)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let mut context =
            model
                .new_context(backend, context_params)
                .map_err(|err| LoadError::Context {
                    path: path.clone(),
                    context_tokens,
                    reason: err.to_string(),
                })?;
        let mut batch = LlamaBatch::new(batch_tokens as usize, 1);
        warm_up(model, &mut context, &mut batch).map_err(|reason| LoadError::WarmUp {
            path: path.clone(),
            reason,
        })?;

        let template = chat_template(model, &checked.id)?;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0);
        info!(
            path = %path,
            load_ms = started.elapsed().as_millis(),
            context_tokens,
            trained_context_tokens = model.n_ctx_train(),
            threads = settings.threads,
            gpu_layers = settings.gpu_layers,
            gpu_offload_supported = backend.supports_gpu_offload(),
            parameters = model.n_params(),
            "llama.cpp model loaded"
        );
        Ok(LlamaEngine {
            info: ModelInfo {
                id: checked.id.clone(),
                engine: EngineKind::Llama,
                path: checked.path.clone(),
                context_tokens,
                created,
            },
            model,
            context,
            template,
            batch,
            batch_tokens,
        })
    }
}

/// Evaluates one token, then clears the KV cache. The model file is
/// memory-mapped, so this pass reads every weight page once. The first
/// request then does not wait for the disk, and the load time covers the
/// whole read. llama.cpp's own server runs a warm-up pass for the same
/// reason.
fn warm_up(
    model: &LlamaModel,
    context: &mut LlamaContext<'static>,
    batch: &mut LlamaBatch<'static>,
) -> Result<(), String> {
    batch.clear();
    batch
        .add(model.vocab().bos(), 0, &[0], true)
        .map_err(|err| err.to_string())?;
    context.decode(batch).map_err(|err| err.to_string())?;
    context.clear_kv_cache();
    Ok(())
}

/// Picks the context size: the configured one, but no more than the model
/// was trained with, since positions past that give poor output.
fn context_size(configured: u32, trained: u32) -> u32 {
    if trained == 0 {
        configured
    } else {
        configured.min(trained)
    }
}

/// Returns the model's chat template when llama.cpp can apply it, else
/// ChatML.
fn chat_template(model: &LlamaModel, id: &str) -> Result<LlamaChatTemplate, LoadError> {
    let fallback = || {
        LlamaChatTemplate::new(FALLBACK_TEMPLATE).map_err(|err| LoadError::Backend(err.to_string()))
    };
    match model.chat_template(None) {
        Ok(template) => {
            // llama.cpp recognises templates by their text; an unknown one
            // fails here rather than on the first request.
            let probe = [
                LlamaChatMessage::new("system".to_owned(), "s".to_owned()),
                LlamaChatMessage::new("user".to_owned(), "u".to_owned()),
            ];
            let probe: Vec<LlamaChatMessage> = probe.into_iter().filter_map(Result::ok).collect();
            match model.apply_chat_template(&template, &probe, true) {
                Ok(_) => Ok(template),
                Err(err) => {
                    warn!(model = %id, error = %err, fallback = FALLBACK_TEMPLATE, "llama.cpp does not support the model's chat template");
                    fallback()
                }
            }
        }
        Err(err) => {
            warn!(model = %id, error = %err, fallback = FALLBACK_TEMPLATE, "the model has no chat template");
            fallback()
        }
    }
}

impl Engine for LlamaEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn start<'a>(
        &'a mut self,
        prompt: &Prompt,
        sampling: &Sampling,
    ) -> Result<Box<dyn Generation + 'a>, EngineError> {
        let tokens = match prompt {
            Prompt::Chat(messages) => {
                let text = self.render_chat(messages)?;
                // The rendered template contains the model's special
                // tokens as text, so they must be parsed as such.
                self.model.vocab().tokenize(text.as_bytes(), true, true)
            }
            Prompt::Text(text) => self.model.vocab().tokenize(text.as_bytes(), true, false),
        };
        if tokens.is_empty() {
            return Err(EngineError::Tokenize(
                "the prompt gave no tokens".to_owned(),
            ));
        }
        Ok(Box::new(LlamaGeneration {
            sampler: sampler(sampling),
            engine: self,
            prompt: tokens,
            position: 0,
            pending: None,
        }))
    }
}

impl LlamaEngine {
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let messages = messages
            .iter()
            .map(|message| {
                LlamaChatMessage::new(message.role.as_str().to_owned(), message.content.clone())
                    .map_err(|err| EngineError::Template(err.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.model
            .apply_chat_template(&self.template, &messages, true)
            .map_err(|err| EngineError::Template(err.to_string()))
    }
}

/// Builds the sampler chain: temperature, then nucleus sampling, then the
/// seeded random choice; greedy choice at temperature 0.
fn sampler(sampling: &Sampling) -> LlamaSampler {
    if sampling.temperature <= 0.0 {
        return LlamaSampler::greedy();
    }
    LlamaSampler::chain_simple([
        LlamaSampler::temp(sampling.temperature),
        LlamaSampler::top_p(sampling.top_p, 1),
        LlamaSampler::dist(sampling.seed.unwrap_or(RANDOM_SEED)),
    ])
}

struct LlamaGeneration<'a> {
    engine: &'a mut LlamaEngine,
    sampler: LlamaSampler,
    /// Prompt tokens, evaluated on the first `next_token`.
    prompt: Vec<LlamaToken>,
    /// Position of the next token to evaluate.
    position: i32,
    /// The last sampled token, which the next call evaluates first.
    pending: Option<LlamaToken>,
}

impl LlamaGeneration<'_> {
    /// Evaluates the prompt in batches, with logits for its last token.
    fn evaluate_prompt(&mut self) -> Result<(), EngineError> {
        self.engine.context.clear_kv_cache();
        let chunk_len = self.engine.batch_tokens as usize;
        let last = self.prompt.len() - 1;
        for (chunk_index, chunk) in self.prompt.chunks(chunk_len).enumerate() {
            self.engine.batch.clear();
            for (offset, token) in chunk.iter().enumerate() {
                let index = chunk_index * chunk_len + offset;
                self.engine
                    .batch
                    .add(*token, self.position, &[0], index == last)
                    .map_err(|err| EngineError::Decode(err.to_string()))?;
                self.position += 1;
            }
            self.engine
                .context
                .decode(&mut self.engine.batch)
                .map_err(|err| EngineError::Decode(err.to_string()))?;
        }
        Ok(())
    }

    fn evaluate_token(&mut self, token: LlamaToken) -> Result<(), EngineError> {
        self.engine.batch.clear();
        self.engine
            .batch
            .add(token, self.position, &[0], true)
            .map_err(|err| EngineError::Decode(err.to_string()))?;
        self.position += 1;
        self.engine
            .context
            .decode(&mut self.engine.batch)
            .map_err(|err| EngineError::Decode(err.to_string()))
    }
}

impl Generation for LlamaGeneration<'_> {
    fn prompt_tokens(&self) -> u32 {
        u32::try_from(self.prompt.len()).unwrap_or(u32::MAX)
    }

    fn next_token(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        match self.pending.take() {
            None => self.evaluate_prompt()?,
            Some(token) => self.evaluate_token(token)?,
        }
        // The logits are those of the last token in the batch just decoded.
        let token = self
            .sampler
            .sample(&self.engine.context, self.engine.batch.n_tokens() - 1);
        let vocab = self.engine.model.vocab();
        if vocab.is_eog(token) {
            return Ok(None);
        }
        self.pending = Some(token);
        Ok(Some(vocab.token_to_piece(token, false, None)))
    }
}
