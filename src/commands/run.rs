//! `dgen run`: opens the store, answers export and status requests from other processes while
//! it works (see [`during_run`]), and generates.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use crate::cli::RunArgs;
use crate::commands::during_run;
use crate::store::Store;

pub fn run(store_path: &Path, args: RunArgs) -> Result<ExitCode> {
    let store = Arc::new(Store::open_existing(store_path)?);
    // Answered until the run returns; the server is stopped when this guard is dropped.
    let requests = during_run::serve(&store);
    let result = crate::run::run(store, args);
    crate::process::exit_on_signal();
    // Answers the requests it has taken, then stops.
    drop(requests);
    result
}
