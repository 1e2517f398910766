//! `dgen judge`: scores the stored dialogues with the LLM judge. It needs the store to itself
//! (redb has one writer), and while it works it answers `dgen status`, `dgen export` and
//! `dgen report` like a run does.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};

use crate::cli::JudgeArgs;
use crate::cli::JudgeEndpointArgs;
use crate::commands::during_run;
use crate::cost::{PriceTable, Pricing};
use crate::judge::endpoint::{self, EndpointConfig, RunDefaults};
use crate::judge::pass::{self, PassOptions};
use crate::judge::JUDGE_PROMPT_VERSION;
use crate::process::EXIT_INTERRUPTED;
use crate::store::{Store, StoreInUse};

pub fn run(store_path: &Path, args: JudgeArgs) -> Result<ExitCode> {
    let store = match Store::open_existing(store_path) {
        Ok(store) => Arc::new(store),
        Err(e) if e.is::<StoreInUse>() => bail!(
            "store {} is in use by another dgen process (a `dgen run`?); dgen judge needs the store to itself: run it when that process has finished, or score while generating with `dgen run --judge`",
            store_path.display()
        ),
        Err(e) => return Err(e),
    };
    let endpoint = store.run_endpoint()?;
    let defaults = RunDefaults {
        // After a run over several endpoints, the model of the first, whose URL is recorded.
        model: endpoint
            .as_ref()
            .and_then(|e| e.model.clone())
            .or(store.run_settings()?.map(|r| r.model)),
        endpoint,
    };
    if store.dialogue_count()? == 0 {
        bail!(
            "store {} holds no dialogues to judge yet; generate some with `dgen run` first",
            store_path.display()
        );
    }
    let launched = endpoint::launch(&endpoint_config(&args.endpoint), &defaults)?;
    let model = launched.judge.settings.model.clone();
    tracing::info!("judge endpoint {}, model {model}", launched.base_url);
    let pricing = PriceTable::resolve(&model, &args.prices.overrides())?;
    if let Pricing::Unknown { .. } = pricing {
        tracing::warn!(
            "{}: the judge's calls are counted but add nothing to the amount spent",
            Pricing::unknown_message(&model)
        );
    }
    let opts = PassOptions {
        price: pricing.price(),
        concurrency: launched.concurrency,
        limit: args.limit,
        rescore: args.rescore,
        max_consecutive_failures: args.max_consecutive_failures,
    };
    let requests = during_run::serve(&store)?;
    let result = pass::judge_store(store.clone(), launched.judge, &opts);
    crate::process::exit_on_signal();
    drop(requests);
    drop(launched.server);
    let summary = result?;
    if summary.todo == 0 {
        println!(
            "all {} dialogues of {} are judged by {model} (rubric {JUDGE_PROMPT_VERSION}); nothing to do{}",
            summary.total,
            store_path.display(),
            if args.rescore {
                ""
            } else {
                " (--rescore scores again those judged by another model or rubric version)"
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let failed: u64 = summary.errors.values().sum();
    eprintln!(
        "judge {}: {} of {} scored with {model}, {failed} not scored",
        if summary.interrupted {
            "interrupted"
        } else {
            "finished"
        },
        summary.scored,
        summary.todo,
    );
    if summary.interrupted {
        eprintln!("resume with the same `dgen judge` command; committed scores are kept");
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if failed > 0 {
        let kinds: Vec<String> = summary
            .errors
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        bail!(
            "{failed} dialogues could not be judged ({}; the last: {}); run `dgen judge` again to retry them",
            kinds.join(", "),
            summary.last_error.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--judge_base_url`, `--local`, … turned into the judge stage's own configuration.
pub fn endpoint_config(args: &JudgeEndpointArgs) -> EndpointConfig {
    EndpointConfig {
        base_url: args.judge_base_url.clone(),
        model: args.judge_model.clone(),
        key_env: args.judge_key_env.clone(),
        local: args.local,
        local_model: args.local_model.clone(),
        server: args.server.options(),
        concurrency: args.concurrency,
        latency_backoff: args.latency_backoff,
        calls: args.calls.settings(),
        max_tokens: args.max_tokens,
        assets_dir: args.assets_dir.clone(),
    }
}
