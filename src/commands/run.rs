//! `dgen run`: opens the store, answers export and status requests from other processes while
//! it works (see [`during_run`]), and generates.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use crate::cli::RunArgs;
use crate::commands::during_run;
use crate::run::{BatchConfig, JudgeConfig, RunConfig};
use crate::store::Store;

pub fn run(store_path: &Path, args: RunArgs) -> Result<ExitCode> {
    let config = config(args);
    let store = Arc::new(Store::open_existing(store_path)?);
    // Answered until the run returns; the server is stopped when this guard is dropped.
    let requests = during_run::serve(&store)?;
    let result = crate::run::run(store, config);
    crate::process::exit_on_signal();
    // Answers the requests it has taken, then stops.
    drop(requests);
    result
}

/// The command line, turned once into the configuration the run owns (clap's types stop here).
pub fn config(args: RunArgs) -> RunConfig {
    RunConfig {
        base_url: args.base_url,
        model: args.model,
        endpoint: args.endpoint,
        endpoints: args.endpoints,
        concurrency: args.concurrency,
        rpm: args.rpm,
        tpm: args.tpm,
        latency_backoff: args.latency_backoff,
        local_model: args.local_model,
        local: args.local,
        server: args.server.options(),
        structured: args.structured,
        schema: args.schema,
        max_attempts: args.max_attempts,
        retry_failed: args.retry_failed,
        calls: args.calls.settings(),
        max_tokens: args.max_tokens,
        max_consecutive_failures: args.max_consecutive_failures,
        checks: args.checks,
        shutdown_timeout: args.shutdown_timeout,
        batch: BatchConfig {
            enabled: args.batch,
            wait: args.wait,
            poll_interval: args.poll_interval,
            max_requests: args.batch_max_requests,
            max_mb: args.batch_max_mb,
            give_up: args.batch_give_up,
        },
        dry_run: args.dry_run,
        limit: args.limit,
        max_cost: args.max_cost,
        prices: args.prices.overrides(),
        assets_dir: args.assets_dir,
        embed: args.embed.parallelism(),
        log_file: args.log_file,
        judge: JudgeConfig {
            enabled: args.judge,
            model: args.judge_model,
            base_url: args.judge_base_url,
            key_env: args.judge_key_env,
            min_score: args.min_judge_score,
        },
    }
}
