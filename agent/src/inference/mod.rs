//! Local inference: model files, the engines that run them and the
//! generation loop that the OpenAI-compatible API drives.

pub mod gguf;
pub mod model_file;
