//! Local inference: model files, the engines that run them and the
//! generation loop that the OpenAI-compatible API drives.

pub mod cpu;
pub mod engine;
pub mod generate;
pub mod gguf;
pub mod import;
#[cfg(feature = "llama")]
pub mod llama;
pub mod model_file;
pub mod scripted;
pub mod service;
pub mod text;
