//! `dgen status`: the report of the store, or — when a `dgen run` holds the store — the run's.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::StatusArgs;
use crate::commands::during_run;
use crate::ipc::protocol::{Request, StatusRequest};
use crate::status::{self, StatusOptions};

pub fn options(args: &StatusArgs) -> StatusOptions {
    StatusOptions {
        json: args.json,
        price_input: args.prices.price_input,
        price_output: args.prices.price_output,
        price_cached_input: args.prices.price_cached_input,
        prices_file: args.prices.prices.clone(),
    }
}

/// Status reads every dialogue once for the metrics; a small page cache keeps its memory flat
/// (redb's default cache grows toward the size of the store: 409 MB over 100,000 dialogues).
const STATUS_CACHE: usize = 32 << 20;

pub fn run(store_path: &Path, args: StatusArgs) -> Result<ExitCode> {
    let options = options(&args);
    let request = || {
        Ok(Request::Status(StatusRequest {
            json: options.json,
            price_input: options.price_input,
            price_output: options.price_output,
        }))
    };
    during_run::here_or_by_the_run(
        store_path,
        Some(STATUS_CACHE),
        |store| status::render(store, &options),
        request,
    )
}
