//! The generation loop: runs one request on an engine and reports text,
//! the finish reason and token counts, whatever the engine.

use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::engine::{Engine, Prompt, Sampling};
use super::text::{Piece, TextAssembler};

/// One request for the engine.
#[derive(Debug)]
pub struct Job {
    /// Identifier of the API response, for the logs.
    pub id: String,
    pub prompt: Prompt,
    pub sampling: Sampling,
    /// Most tokens to generate; `None` means until the context is full.
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    /// Where the events go. A closed channel means the client left, which
    /// cancels the job.
    pub events: mpsc::Sender<Event>,
}

/// Why a generation ended, with OpenAI's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its answer or a stop string appeared.
    Stop,
    /// `max_tokens` was reached or the context is full.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Token counts of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// A failure that ends a job.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("the prompt has {prompt_tokens} tokens, but the context window is {context_tokens} tokens. Shorten the messages")]
    PromptTooLong {
        prompt_tokens: u32,
        context_tokens: u32,
    },

    #[error("the prompt ({prompt_tokens} tokens) and max_tokens ({max_tokens}) add up to {total} tokens, above the context window of {context_tokens} tokens. Lower max_tokens to {available} or less, or shorten the messages")]
    ContextOverflow {
        prompt_tokens: u32,
        max_tokens: u32,
        total: u64,
        context_tokens: u32,
        available: u32,
    },

    #[error("the inference engine failed: {0}")]
    Engine(String),
}

/// What the generation loop reports, in this order: `Started`, any number
/// of `Text`, then `Finished`; or `Failed` at any point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Started { prompt_tokens: u32 },
    Text(String),
    Finished { reason: FinishReason, usage: Usage },
    Failed(JobError),
}

/// How a job ended, for the caller's logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Finished {
        reason: FinishReason,
        usage: Usage,
    },
    Failed(JobError),
    /// The client left; `completion_tokens` were generated before.
    Cancelled {
        completion_tokens: u32,
    },
}

/// Runs a job to its end and returns how it ended.
pub fn run(engine: &mut dyn Engine, job: Job) -> Outcome {
    let started_at = Instant::now();
    let context_tokens = engine.info().context_tokens;
    let outcome = generate(engine, context_tokens, &job);
    let elapsed_ms = started_at.elapsed().as_millis();
    match &outcome {
        Outcome::Finished { reason, usage } => info!(
            id = %job.id,
            finish_reason = reason.as_str(),
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            elapsed_ms,
            "generation finished"
        ),
        Outcome::Failed(err) => warn!(id = %job.id, error = %err, elapsed_ms, "generation failed"),
        Outcome::Cancelled { completion_tokens } => info!(
            id = %job.id,
            completion_tokens,
            elapsed_ms,
            "generation cancelled: the client disconnected"
        ),
    }
    outcome
}

fn generate(engine: &mut dyn Engine, context_tokens: u32, job: &Job) -> Outcome {
    if job.events.is_closed() {
        return Outcome::Cancelled {
            completion_tokens: 0,
        };
    }
    let fail = |err: JobError| {
        // The client may be gone already; the outcome is logged either way.
        let _ = job.events.blocking_send(Event::Failed(err.clone()));
        Outcome::Failed(err)
    };

    let mut generation = match engine.start(&job.prompt, &job.sampling) {
        Ok(generation) => generation,
        Err(err) => return fail(JobError::Engine(err.to_string())),
    };
    let prompt_tokens = generation.prompt_tokens();
    let budget = match completion_budget(prompt_tokens, job.max_tokens, context_tokens) {
        Ok(budget) => budget,
        Err(err) => return fail(err),
    };
    if !send(job, Event::Started { prompt_tokens }) {
        return Outcome::Cancelled {
            completion_tokens: 0,
        };
    }

    let mut assembler = TextAssembler::new(job.stop.clone());
    let mut completion_tokens: u32 = 0;
    let reason = loop {
        if completion_tokens >= budget {
            break FinishReason::Length;
        }
        if job.events.is_closed() {
            return Outcome::Cancelled { completion_tokens };
        }
        let bytes = match generation.next_token() {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break FinishReason::Stop,
            Err(err) => return fail(JobError::Engine(err.to_string())),
        };
        completion_tokens += 1;
        match assembler.push(&bytes) {
            Piece::Text(text) => {
                if !text.is_empty() && !send(job, Event::Text(text)) {
                    return Outcome::Cancelled { completion_tokens };
                }
            }
            Piece::Stop(text) => {
                debug!(id = %job.id, "stop string reached");
                let usage = Usage {
                    prompt_tokens,
                    completion_tokens,
                };
                return finish(job, text, FinishReason::Stop, usage);
            }
        }
    };

    let usage = Usage {
        prompt_tokens,
        completion_tokens,
    };
    finish(job, assembler.finish(), reason, usage)
}

/// Sends the last text and the end of the generation.
fn finish(job: &Job, rest: String, reason: FinishReason, usage: Usage) -> Outcome {
    let cancelled = Outcome::Cancelled {
        completion_tokens: usage.completion_tokens,
    };
    if !rest.is_empty() && !send(job, Event::Text(rest)) {
        return cancelled;
    }
    if !send(job, Event::Finished { reason, usage }) {
        return cancelled;
    }
    Outcome::Finished { reason, usage }
}

/// Returns how many tokens the job may generate: `max_tokens` when the
/// prompt and it fit in the context, else an error naming the limit.
/// Without `max_tokens`, the rest of the context.
pub fn completion_budget(
    prompt_tokens: u32,
    max_tokens: Option<u32>,
    context_tokens: u32,
) -> Result<u32, JobError> {
    if prompt_tokens >= context_tokens {
        return Err(JobError::PromptTooLong {
            prompt_tokens,
            context_tokens,
        });
    }
    let available = context_tokens - prompt_tokens;
    match max_tokens {
        None => Ok(available),
        Some(max_tokens) if max_tokens <= available => Ok(max_tokens),
        Some(max_tokens) => Err(JobError::ContextOverflow {
            prompt_tokens,
            max_tokens,
            total: u64::from(prompt_tokens) + u64::from(max_tokens),
            context_tokens,
            available,
        }),
    }
}

/// Sends an event; false when the client has left.
fn send(job: &Job, event: Event) -> bool {
    job.events.blocking_send(event).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_without_max_tokens_fills_context() {
        assert_eq!(completion_budget(14, None, 4096), Ok(4082));
    }

    #[test]
    fn budget_with_max_tokens() {
        assert_eq!(completion_budget(14, Some(8), 4096), Ok(8));
        assert_eq!(completion_budget(14, Some(4082), 4096), Ok(4082));
    }

    #[test]
    fn budget_overflow_names_limit() {
        let err = completion_budget(14, Some(4083), 4096).expect_err("overflow");
        let message = err.to_string();
        assert!(message.contains("4096"), "{message}");
        assert!(message.contains("4082 or less"), "{message}");
    }

    #[test]
    fn budget_prompt_fills_context() {
        let err = completion_budget(4096, None, 4096).expect_err("full");
        assert_eq!(
            err,
            JobError::PromptTooLong {
                prompt_tokens: 4096,
                context_tokens: 4096
            }
        );
    }
}
