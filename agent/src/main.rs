use std::process::ExitCode;

use appliance_agent::cli::{Cli, Command};
use appliance_agent::{detect_command, early, eventlog_command, logging, serve};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();

    let result = match &cli.command {
        Command::Detect(args) => detect_command::run(args),
        Command::Early(args) => early::run(args),
        // It has exit statuses of its own, which --help documents.
        Command::Eventlog(args) => return eventlog_command::run(args),
        Command::Serve(args) => serve::run(args),
    };

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("appliance-agent: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
