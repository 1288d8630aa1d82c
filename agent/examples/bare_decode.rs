//! A bare llama-cpp-2 decode loop with no server around it: the baseline
//! that `scripts/bench-inference.py` compares the API with.
//!
//! It loads the model, renders one user message with the model's chat
//! template, evaluates the prompt and decodes greedily, and prints the
//! timings as JSON. Build it with
//! `cargo build --release -p appliance-agent --features llama --example bare_decode`.

use std::io::Write;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use serde_json::json;

/// Greedy decoding of one chat prompt, timed.
#[derive(Debug, Parser)]
struct Args {
    /// GGUF model file.
    #[arg(long)]
    model: PathBuf,
    /// The user message.
    #[arg(long)]
    prompt: String,
    /// CPU threads for prompt evaluation and decoding.
    #[arg(long)]
    threads: i32,
    /// Context window in tokens.
    #[arg(long, default_value_t = 4096)]
    context: u32,
    /// Maximum tokens to generate; fewer when the model ends its output.
    #[arg(long)]
    max_tokens: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut backend = LlamaBackend::init().context("failed to start llama.cpp")?;
    backend.void_logs();

    // Load: the model, a context and one warm-up token, as the agent does,
    // so that every weight page has been read once.
    let load_started = Instant::now();
    let model = LlamaModel::load_from_file(&backend, &args.model, &LlamaModelParams::default())
        .with_context(|| format!("failed to load {}", args.model.display()))?;
    let batch_tokens = args.context.min(512);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(args.context))
        .with_n_batch(batch_tokens)
        .with_n_ubatch(batch_tokens)
        .with_n_threads(args.threads)
        .with_n_threads_batch(args.threads);
    let mut context = model
        .new_context(&backend, params)
        .context("failed to create the context")?;
    let mut batch = LlamaBatch::new(batch_tokens as usize, 1);
    batch.add(model.vocab().bos(), 0, &[0], true)?;
    context
        .decode(&mut batch)
        .context("warm-up decode failed")?;
    context.clear_kv_cache();
    let load_ms = load_started.elapsed().as_secs_f64() * 1000.0;

    // Time to first token: template, tokenization, prompt evaluation and
    // the first sample.
    let started = Instant::now();
    let template = model
        .chat_template(None)
        .context("the model has no chat template")?;
    let messages = [LlamaChatMessage::new(
        "user".to_owned(),
        args.prompt.clone(),
    )?];
    let text = model.apply_chat_template(&template, &messages, true)?;
    let prompt = model.vocab().tokenize(text.as_bytes(), true, true);
    if prompt.is_empty() || prompt.len() + args.max_tokens as usize > args.context as usize {
        bail!(
            "the prompt has {} tokens; with --max-tokens it must fit in --context",
            prompt.len()
        );
    }
    let mut position: i32 = 0;
    for chunk in prompt.chunks(batch_tokens as usize) {
        batch.clear();
        for token in chunk {
            let last = position as usize == prompt.len() - 1;
            batch.add(*token, position, &[0], last)?;
            position += 1;
        }
        context
            .decode(&mut batch)
            .context("prompt evaluation failed")?;
    }
    let mut sampler = LlamaSampler::greedy();
    let mut token = sampler.sample(&context, batch.n_tokens() - 1);
    let first_token_at = Instant::now();
    let ttft_ms = (first_token_at - started).as_secs_f64() * 1000.0;

    let mut output = Vec::new();
    let mut generated = 0u32;
    let mut decodes = 0u32;
    let vocab = model.vocab();
    while !vocab.is_eog(token) {
        output.extend(vocab.token_to_piece(token, false, None));
        generated += 1;
        if generated == args.max_tokens {
            break;
        }
        batch.clear();
        batch.add(token, position, &[0], true)?;
        position += 1;
        context.decode(&mut batch).context("decode failed")?;
        decodes += 1;
        token = sampler.sample(&context, 0);
    }
    let decode_seconds = first_token_at.elapsed().as_secs_f64();
    // The first token came with the prompt; each later one took a decode.
    let decode_tokens_per_s = if decodes > 0 && decode_seconds > 0.0 {
        f64::from(decodes) / decode_seconds
    } else {
        0.0
    };

    let report = json!({
        "prompt_tokens": prompt.len(),
        "completion_tokens": generated,
        "load_ms": load_ms,
        "ttft_ms": ttft_ms,
        "decode_tokens_per_s": decode_tokens_per_s,
        "text": String::from_utf8_lossy(&output),
    });
    writeln!(std::io::stdout(), "{report}")?;
    Ok(())
}
