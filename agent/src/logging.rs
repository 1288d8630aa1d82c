//! Logging to stderr, which journald captures for services.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Filter when `RUST_LOG` is unset. llama.cpp logs each step of a model
/// load at its info level, dozens of lines, so only its warnings show.
const DEFAULT_FILTER: &str = "info,llama-cpp-2=warn";

/// Installs the global subscriber. `RUST_LOG` sets the filter.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // journald stamps every line itself and shows no colours.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!under_journald && std::io::stderr().is_terminal());
    if under_journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
