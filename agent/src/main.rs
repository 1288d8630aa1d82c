use std::process::ExitCode;

use appliance_agent::cli::{Cli, Command};
use appliance_agent::{detect_command, early, eventlog_command, logging, serve, token_command};
use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    logging::init();

    if matches!(cli.command, Command::Early(_) | Command::Serve(_)) {
        // These two handle vault keys: no core dumps, no ptrace by other users.
        if let Err(error) = appliance_agent::vault::secret::harden_process() {
            tracing::warn!(%error, "could not make the process non-dumpable");
        }
    }

    let result = match &cli.command {
        Command::Detect(args) => detect_command::run(args),
        Command::Early(args) => early::run(args),
        // It has exit statuses of its own, which --help documents.
        Command::Eventlog(args) => return eventlog_command::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Token(args) => token_command::run(args),
    };

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("appliance-agent: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Restores the default SIGPIPE action, which Rust's runtime sets to ignore.
/// Otherwise `appliance-agent detect | head -1` makes `println!` panic on the
/// closed pipe, and with `panic = "abort"` the process dies with SIGABRT
/// instead of ending quietly like other command-line tools.
fn restore_sigpipe() {
    // SAFETY: called first in main, before any thread exists; setting a
    // signal's action to SIG_DFL installs no Rust code as a handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
