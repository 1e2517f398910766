//! dgen: manufactures synthetic task-oriented dialogues. `main` only parses flags, sets up
//! logging, dispatches, and prints the error chain once.

mod catalog;
mod cli;
mod commands;
mod dataset;
mod export;
mod plan;
mod status;
mod store;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let args = cli::normalize_legacy_args(std::env::args_os().collect());
    let cli = Cli::parse_from(args);
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plan(args) => commands::plan::run(&cli.store, *args),
        Command::Extract(args) => commands::extract::run(args),
        Command::Status(args) => status::run(&cli.store, args),
        Command::Export(args) => export::run(&cli.store, args),
    }
}

fn init_logging(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose { "dgen=debug" } else { "dgen=info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
