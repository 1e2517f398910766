//! dgen: manufactures synthetic task-oriented dialogues. `main` only parses flags, sets up
//! logging, dispatches, and prints the error chain once.

use std::process::ExitCode;

use clap::Parser;

use dgen::cli::{self, Cli, Command};
use dgen::commands;

fn main() -> ExitCode {
    ignore_file_size_signal();
    let args = cli::normalize_legacy_args(std::env::args_os().collect());
    let cli = Cli::parse_from(args);
    let log_file = match &cli.command {
        Command::Run(args) if !args.dry_run => Some(args.log_file.clone()),
        _ => None,
    };
    init_logging(cli.verbose, log_file.as_deref());
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
    let store = cli.store();
    match cli.command {
        Command::Plan(args) => commands::plan::run(&store, *args),
        Command::Extract(args) => commands::extract::run(&store, args),
        Command::Run(args) => commands::run::run(&store, *args),
        Command::Import(args) => commands::import::run(&store, args),
        Command::Merge(args) => commands::merge::run(cli.store.as_deref(), args),
        Command::BenchFill(args) => commands::bench_fill::run(&store, args),
        Command::Judge(args) => commands::judge::run(&store, *args),
        Command::JudgeDiscrimination(args) => commands::judge_discrimination::run(*args),
        Command::Status(args) => commands::status::run(&store, args),
        Command::Export(args) => commands::export::run(&store, args),
        Command::Report(args) => commands::report::run(&store, args),
    }
}

/// Logs go to stderr and, for `dgen run`, to a log file too (INFO by default, DEBUG with -v,
/// `RUST_LOG` wins).
fn init_logging(verbose: bool, file: Option<&std::path::Path>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = || {
        let default = if verbose { "dgen=debug" } else { "dgen=info" };
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(filter());
    let file_layer = file.and_then(|path| {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::sync::Mutex::new(f))
                    .with_ansi(false)
                    .with_target(false)
                    .with_filter(filter()),
            ),
            Err(e) => {
                eprintln!("warning: cannot open log file {}: {e}", path.display());
                None
            }
        }
    });
    tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .init();
}

/// Over a file-size limit (`ulimit -f`) a write fails with EFBIG instead of the kernel's
/// SIGXFSZ killing dgen without a word: the store writer then reports the failed commit.
#[allow(unsafe_code)]
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code and happens
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
