//! An engine that replays a token stream from a file, so that API clients
//! and the API's own tests can rely on exact token boundaries.
//!
//! The file is JSON in the `scripted-backend-v1` format:
//!
//! ```json
//! { "format": "scripted-backend-v1", "prompt_tokens": 14,
//!   "tokens": [ { "text": "Hel" }, { "hex": "c3a9" } ], "end": "eos" }
//! ```
//!
//! Each token is raw bytes, given as UTF-8 `text` or as `hex`, so a token
//! may end inside a character. With `"end": "eos"` the generation ends
//! after the list; with `"end": "never"` the token `x` follows forever.
//! Every prompt counts as `prompt_tokens` tokens, and each token takes
//! 1 ms, like a fast model.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::engine::{Engine, EngineError, EngineKind, Generation, ModelInfo, Prompt, Sampling};

/// Value of the `format` field this reader accepts.
pub const FORMAT: &str = "scripted-backend-v1";

/// Time each token takes.
const TOKEN_DELAY: Duration = Duration::from_millis(1);

/// The token that `"end": "never"` repeats after the list.
const ENDLESS_TOKEN: &[u8] = b"x";

/// A script file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("failed to read the script {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("invalid script {path}: {message}. Write a {FORMAT} JSON file: {{\"format\": \"{FORMAT}\", \"prompt_tokens\": N, \"tokens\": [{{\"text\": \"...\"}} or {{\"hex\": \"...\"}}], \"end\": \"eos\" or \"never\"}}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
    format: String,
    prompt_tokens: u32,
    tokens: Vec<TokenEntry>,
    end: End,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    text: Option<String>,
    hex: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum End {
    /// The generation ends after the listed tokens.
    Eos,
    /// The token `x` follows the listed tokens forever.
    Never,
}

/// A loaded script.
#[derive(Debug)]
pub struct ScriptedEngine {
    info: ModelInfo,
    prompt_tokens: u32,
    tokens: Vec<Vec<u8>>,
    end: End,
}

impl ScriptedEngine {
    /// Loads the script at `path`. The model id is the file name without
    /// its extension.
    pub fn load(path: &Path, context_tokens: u32) -> Result<Self, ScriptError> {
        let text = fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |message: String| ScriptError::Invalid {
            path: path.to_owned(),
            message,
        };
        let script: ScriptFile =
            serde_json::from_str(&text).map_err(|err| invalid(err.to_string()))?;
        if script.format != FORMAT {
            return Err(invalid(format!(
                "format is {:?}, expected {FORMAT:?}",
                script.format
            )));
        }
        let tokens = script
            .tokens
            .iter()
            .enumerate()
            .map(|(index, entry)| token_bytes(index, entry))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;

        let id = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scripted".to_owned());
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0);
        Ok(ScriptedEngine {
            info: ModelInfo {
                id,
                engine: EngineKind::Scripted,
                path: path.to_owned(),
                context_tokens,
                created,
            },
            prompt_tokens: script.prompt_tokens,
            tokens,
            end: script.end,
        })
    }
}

fn token_bytes(index: usize, entry: &TokenEntry) -> Result<Vec<u8>, String> {
    match (&entry.text, &entry.hex) {
        (Some(text), None) => Ok(text.as_bytes().to_vec()),
        (None, Some(hex)) => decode_hex(hex).ok_or_else(|| {
            format!("tokens[{index}].hex {hex:?} is not an even number of hexadecimal digits")
        }),
        _ => Err(format!(
            "tokens[{index}] must have exactly one of \"text\" and \"hex\""
        )),
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = hex
        .bytes()
        .filter(|byte| !byte.is_ascii_whitespace())
        .collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

impl Engine for ScriptedEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn start<'a>(
        &'a mut self,
        _prompt: &Prompt,
        _sampling: &Sampling,
    ) -> Result<Box<dyn Generation + 'a>, EngineError> {
        Ok(Box::new(ScriptedGeneration {
            engine: self,
            next: 0,
        }))
    }
}

struct ScriptedGeneration<'a> {
    engine: &'a ScriptedEngine,
    next: usize,
}

impl Generation for ScriptedGeneration<'_> {
    fn prompt_tokens(&self) -> u32 {
        self.engine.prompt_tokens
    }

    fn next_token(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        let token = match self.engine.tokens.get(self.next) {
            Some(token) => token.clone(),
            None if self.engine.end == End::Never => ENDLESS_TOKEN.to_vec(),
            None => return Ok(None),
        };
        self.next += 1;
        thread::sleep(TOKEN_DELAY);
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_script(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("script.json");
        fs::write(&path, text).expect("write script");
        (dir, path)
    }

    fn generate_all(engine: &mut ScriptedEngine, limit: usize) -> Vec<Vec<u8>> {
        let prompt = Prompt::Text(String::new());
        let mut generation = engine.start(&prompt, &Sampling::default()).expect("start");
        let mut tokens = Vec::new();
        while tokens.len() < limit {
            match generation.next_token().expect("token") {
                Some(token) => tokens.push(token),
                None => break,
            }
        }
        tokens
    }

    #[test]
    fn text_and_hex_tokens_then_eos() {
        let (_dir, path) = write_script(
            r#"{"format":"scripted-backend-v1","prompt_tokens":3,
                "tokens":[{"text":"a"},{"hex":"e2 82"},{"hex":"AC"}],"end":"eos"}"#,
        );
        let mut engine = ScriptedEngine::load(&path, 128).expect("load");
        assert_eq!(engine.info().id, "script");
        assert_eq!(engine.info().engine, EngineKind::Scripted);

        let tokens = generate_all(&mut engine, 10);
        assert_eq!(tokens, vec![b"a".to_vec(), vec![0xe2, 0x82], vec![0xac]]);
    }

    #[test]
    fn never_ending_script_repeats_x() {
        let (_dir, path) = write_script(
            r#"{"format":"scripted-backend-v1","prompt_tokens":1,"tokens":[{"text":"word "}],"end":"never"}"#,
        );
        let mut engine = ScriptedEngine::load(&path, 128).expect("load");

        let tokens = generate_all(&mut engine, 4);
        assert_eq!(
            tokens,
            vec![
                b"word ".to_vec(),
                b"x".to_vec(),
                b"x".to_vec(),
                b"x".to_vec()
            ]
        );
    }

    #[test]
    fn wrong_format_rejected() {
        let (_dir, path) =
            write_script(r#"{"format":"v2","prompt_tokens":1,"tokens":[],"end":"eos"}"#);
        let message = ScriptedEngine::load(&path, 128)
            .expect_err("wrong format")
            .to_string();
        assert!(message.contains("\"v2\""), "{message}");
        assert!(message.contains("script.json"), "{message}");
    }

    #[test]
    fn bad_tokens_rejected() {
        for (tokens, expected) in [
            (r#"[{"hex":"abc"}]"#, "tokens[0].hex"),
            (r#"[{"hex":"zz"}]"#, "tokens[0].hex"),
            (r#"[{"text":"a"},{}]"#, "tokens[1] must have exactly one"),
            (
                r#"[{"text":"a","hex":"61"}]"#,
                "tokens[0] must have exactly one",
            ),
        ] {
            let (_dir, path) = write_script(&format!(
                r#"{{"format":"scripted-backend-v1","prompt_tokens":1,"tokens":{tokens},"end":"eos"}}"#
            ));
            let message = ScriptedEngine::load(&path, 128)
                .expect_err("bad token")
                .to_string();
            assert!(message.contains(expected), "{tokens}: {message}");
        }
    }

    #[test]
    fn unknown_end_rejected() {
        let (_dir, path) = write_script(
            r#"{"format":"scripted-backend-v1","prompt_tokens":1,"tokens":[],"end":"later"}"#,
        );
        let message = ScriptedEngine::load(&path, 128)
            .expect_err("unknown end")
            .to_string();
        assert!(message.contains("later"), "{message}");
    }
}
