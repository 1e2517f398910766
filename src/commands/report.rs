//! `dgen report`: report.html and report.json from the store, or — when a `dgen run` holds the
//! store — asked of that run, like `dgen export`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::Result;

use crate::cli::ReportArgs;
use crate::commands::during_run;
use crate::report::{self, ReportJob};

/// The report reads every dialogue once; a small page cache keeps its memory flat (redb's
/// default cache would grow to the size of the store).
const REPORT_CACHE: usize = 32 << 20;

pub fn run(store_path: &Path, args: ReportArgs) -> Result<ExitCode> {
    let job = ReportJob {
        html: args.out,
        json: args.json,
        price_input: args.prices.price_input,
        price_output: args.prices.price_output,
        price_cached_input: args.prices.price_cached_input,
        prices_file: args.prices.prices,
    };
    job.check()?;
    let never = AtomicBool::new(false);
    during_run::here_or_by_the_run(
        store_path,
        Some(REPORT_CACHE),
        |store| report::execute(store, &job, &never),
        || during_run::report_request(&job),
    )
}
