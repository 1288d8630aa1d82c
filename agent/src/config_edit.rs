//! Changes `vm.gpu_passthrough` in `appliance.yaml` by editing that one line,
//! so the operator's comments, order and formatting stay as they were.
//!
//! The edit handles the block style that the shipped file uses. The result
//! is parsed again and must equal the old configuration with only this key
//! changed, so a layout the edit does not understand (flow style, anchors)
//! is rejected instead of being written wrong.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::atomic_file;
use crate::config::{self, Config, ConfigError};

/// Permission bits of a configuration file that did not exist before.
const NEW_FILE_MODE: u32 = 0o644;

/// A configuration change that could not be made. The file is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("cannot change vm.gpu_passthrough in {path} automatically: {reason}. Edit the file by hand, writing vm as a block mapping (a line `vm:` followed by `  gpu_passthrough: true`)")]
    Unsupported { path: PathBuf, reason: String },

    #[error("failed to write the configuration file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Sets `vm.gpu_passthrough` to `enabled` in the file at `path`, creating
/// the file when it does not exist, and returns the new configuration.
pub fn set_gpu_passthrough(path: &Path, enabled: bool) -> Result<Config, EditError> {
    let (old_text, mode) = match fs::read_to_string(path) {
        Ok(text) => {
            let mode = fs::metadata(path)
                .map(|metadata| metadata.permissions().mode() & 0o7777)
                .unwrap_or(NEW_FILE_MODE);
            (Some(text), mode)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => (None, NEW_FILE_MODE),
        Err(source) => {
            return Err(EditError::Config(ConfigError::Read {
                path: path.to_owned(),
                source,
            }))
        }
    };
    let old_config = match &old_text {
        Some(text) => config::parse(path, text)?,
        None => Config::default(),
    };

    let new_text = edit_text(old_text.as_deref().unwrap_or(""), enabled).map_err(|reason| {
        EditError::Unsupported {
            path: path.to_owned(),
            reason,
        }
    })?;
    let new_config = config::parse(path, &new_text)?;
    let mut expected = old_config;
    expected.vm.gpu_passthrough = enabled;
    if new_config != expected {
        return Err(EditError::Unsupported {
            path: path.to_owned(),
            reason: "the edited file did not read back as the same configuration with only vm.gpu_passthrough changed".to_owned(),
        });
    }

    atomic_file::write(path, new_text.as_bytes(), mode).map_err(|source| EditError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(new_config)
}

/// Returns `text` with `vm.gpu_passthrough` set to `enabled`: the value on
/// an existing line is replaced, a missing key is added under `vm:`, and a
/// missing `vm:` is appended. Returns the reason when the layout is not one
/// of these.
pub fn edit_text(text: &str, enabled: bool) -> Result<String, String> {
    let value = if enabled { "true" } else { "false" };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();

    let Some(vm_index) = lines.iter().position(|line| is_key_line(line, 0, "vm")) else {
        let mut edited = text.to_owned();
        if !edited.is_empty() && !edited.ends_with('\n') {
            edited.push('\n');
        }
        edited.push_str(&format!("vm:\n  gpu_passthrough: {value}\n"));
        return Ok(edited);
    };
    let after_key = value_part(lines[vm_index], "vm");
    if !is_blank_or_comment(after_key) {
        return Err("vm is written in flow style or on one line".to_owned());
    }

    // The block of `vm` runs until the next line indented like `vm:`.
    let block_end = lines[vm_index + 1..]
        .iter()
        .position(|line| !is_blank_or_comment(line) && indentation(line) == 0)
        .map_or(lines.len(), |offset| vm_index + 1 + offset);
    let children = vm_index + 1..block_end;
    let child_indent = lines[children.clone()]
        .iter()
        .find(|line| !is_blank_or_comment(line))
        .map_or(2, |line| indentation(line));

    let mut edited: Vec<String> = lines.iter().map(|line| (*line).to_owned()).collect();
    let existing = children
        .clone()
        .filter(|&index| is_key_line(lines[index], child_indent, "gpu_passthrough"))
        .collect::<Vec<_>>();
    match existing.as_slice() {
        [] => {
            let new_line = format!("{}gpu_passthrough: {value}\n", " ".repeat(child_indent));
            if !edited[vm_index].ends_with('\n') {
                edited[vm_index].push('\n');
            }
            edited.insert(vm_index + 1, new_line);
        }
        [index] => edited[*index] = replace_value(lines[*index], value)?,
        _ => return Err("vm.gpu_passthrough appears more than once".to_owned()),
    }
    Ok(edited.concat())
}

/// Returns true when `line` is `key:` at exactly `indent` spaces.
fn is_key_line(line: &str, indent: usize, key: &str) -> bool {
    indentation(line) == indent
        && line[indent..]
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with(':'))
}

/// Returns what follows `key:` on a line, the line ending included.
fn value_part<'a>(line: &'a str, key: &str) -> &'a str {
    let start = indentation(line) + key.len() + 1;
    line.get(start..).unwrap_or("")
}

/// Replaces the scalar after `gpu_passthrough:`, keeping the indentation,
/// the spacing and a trailing comment.
fn replace_value(line: &str, value: &str) -> Result<String, String> {
    let indent = indentation(line);
    let head_length = indent + "gpu_passthrough:".len();
    let (head, rest) = line.split_at(head_length);
    let spacing_length = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let (spacing, rest) = rest.split_at(spacing_length);
    let old_value_length = rest.find(['#', '\n', '\r']).unwrap_or(rest.len());
    let (old_value, tail) = rest.split_at(old_value_length);
    if old_value.trim().is_empty() {
        return Err("vm.gpu_passthrough has no value on its line".to_owned());
    }
    // The value's own trailing spaces separate it from a comment.
    let trailing = &old_value[old_value.trim_end().len()..];
    let spacing = if spacing.is_empty() { " " } else { spacing };
    Ok(format!("{head}{spacing}{value}{trailing}{tail}"))
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(text: &str) -> bool {
    let trimmed = text.trim();
    trimmed.is_empty() || trimmed.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = "# Secure AI Appliance configuration.\n\
        #\n\
        # Addresses the API listens on.\n\
        listen:\n  - \"127.0.0.1:8480\"\n\
        \n\
        vm:\n  # Use a passed-through GPU while running in a VM.\n  gpu_passthrough: false\n";

    #[test]
    fn value_replaced_comments_kept() {
        let edited = edit_text(SHIPPED, true).expect("edit");

        assert_eq!(
            edited,
            SHIPPED.replace("gpu_passthrough: false", "gpu_passthrough: true")
        );
    }

    #[test]
    fn trailing_comment_kept() {
        let text = "vm:\n    gpu_passthrough:   no   # off for now\nlisten: [\"127.0.0.1:8480\"]\n";

        let edited = edit_text(text, true).expect("edit");

        assert_eq!(
            edited,
            "vm:\n    gpu_passthrough:   true   # off for now\nlisten: [\"127.0.0.1:8480\"]\n"
        );
    }

    #[test]
    fn missing_key_added_under_vm() {
        let text = "vm:\n  # nothing yet\nlisten: [\"127.0.0.1:8480\"]\n";

        let edited = edit_text(text, true).expect("edit");

        assert_eq!(
            edited,
            "vm:\n  gpu_passthrough: true\n  # nothing yet\nlisten: [\"127.0.0.1:8480\"]\n"
        );
    }

    #[test]
    fn missing_vm_appended() {
        assert_eq!(
            edit_text("listen: [\"127.0.0.1:8480\"]", false).expect("edit"),
            "listen: [\"127.0.0.1:8480\"]\nvm:\n  gpu_passthrough: false\n"
        );
        assert_eq!(
            edit_text("", true).expect("edit"),
            "vm:\n  gpu_passthrough: true\n"
        );
    }

    #[test]
    fn nested_key_of_same_name_ignored() {
        let text = "other:\n  gpu_passthrough: false\nvm:\n  gpu_passthrough: false\n";

        let edited = edit_text(text, true).expect("edit");

        assert_eq!(
            edited,
            "other:\n  gpu_passthrough: false\nvm:\n  gpu_passthrough: true\n"
        );
    }

    #[test]
    fn crlf_line_endings_kept() {
        let text = "vm:\r\n  gpu_passthrough: false\r\n";

        assert_eq!(
            edit_text(text, true).expect("edit"),
            "vm:\r\n  gpu_passthrough: true\r\n"
        );
    }

    #[test]
    fn flow_style_rejected() {
        let err = edit_text("vm: { gpu_passthrough: false }\n", true).expect_err("flow style");

        assert!(err.contains("flow style"), "{err}");
    }

    #[test]
    fn file_written_and_mode_kept() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let path = dir.path().join("appliance.yaml");
        fs::write(&path, SHIPPED).expect("write config");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");

        let config = set_gpu_passthrough(&path, true).expect("set");

        assert!(config.vm.gpu_passthrough);
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            SHIPPED.replace("gpu_passthrough: false", "gpu_passthrough: true")
        );
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn missing_file_created() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let path = dir.path().join("appliance.yaml");

        let config = set_gpu_passthrough(&path, true).expect("set");

        assert!(config.vm.gpu_passthrough);
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "vm:\n  gpu_passthrough: true\n"
        );
    }

    #[test]
    fn unsupported_layout_leaves_file_unchanged() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let path = dir.path().join("appliance.yaml");
        let text = "vm: {gpu_passthrough: false}\n";
        fs::write(&path, text).expect("write config");

        let err = set_gpu_passthrough(&path, true).expect_err("flow style");

        assert!(matches!(err, EditError::Unsupported { .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).expect("read"), text);
    }

    #[test]
    fn invalid_file_not_touched() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let path = dir.path().join("appliance.yaml");
        let text = "vm:\n  gpu_passthrough: sometimes\n";
        fs::write(&path, text).expect("write config");

        let err = set_gpu_passthrough(&path, true).expect_err("invalid config");

        assert!(matches!(err, EditError::Config(_)), "{err}");
        assert_eq!(fs::read_to_string(&path).expect("read"), text);
    }
}
