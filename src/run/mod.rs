//! `dgen run`: turns pending work items into dialogues.
//!
//! Shape: the dispatcher (`dispatch`) keeps `--concurrency` attempts (`attempt`: scenario call,
//! dialogue call, parse, embed) in flight as tokio tasks; finished attempts go to one writer
//! thread (`writer`), which makes the authoritative duplicate checks against everything
//! committed so far and commits a batch of results — dialogue, hash, embedding, item state,
//! counters — in one redb transaction, then acknowledges. An item counts as done only after that
//! commit, so a stop at any instant (`shutdown`) loses nothing committed and repeats nothing
//! committed: items without a committed result are simply still pending.

mod attempt;
pub mod batch;
mod budget;
mod config;
mod dispatch;
mod dry_run;
pub mod endpoints;
mod progress;
mod queue;
mod writer;

use crate::process::EXIT_INTERRUPTED;
pub use attempt::attempt_spec;
pub use budget::EXIT_BUDGET;
pub use config::{BatchConfig, JudgeConfig, RunConfig};

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cost::{self, Price, PriceTable, Pricing};
use crate::embed::{self, EmbedService, EmbedWorker};
use crate::llm::local_server::{self, LocalServer, ServerSettings};
use crate::llm::{LlmClient, Pool, PoolEndpoint, Secret};
use crate::prompt::{self, RequestSettings, Schema, Structured};
use crate::quality::{Check, QualityConfig};
use crate::store::{Batch, Meta, RunEndpoint, RunSettings, State, Store};

use crate::judge::{Judge, JudgeSchema, JudgeSettings};
use attempt::{Ctx, InlineJudge};
use budget::CostBudget;
use dispatch::{Stop, Summary};
use endpoints::EndpointSpec;
use writer::{Budget, Writer};

/// What the run sends: model, dialogue max_tokens, wire format, and whether the endpoint is the
/// llama-server this run starts.
fn request_settings(
    config: &RunConfig,
    meta: &Meta,
    local_model: Option<&Path>,
) -> RequestSettings {
    let model = match (&config.model, local_model) {
        (Some(m), _) => m.clone(),
        (None, Some(path)) => path
            .file_stem()
            .map_or_else(|| "local".into(), |s| s.to_string_lossy().into_owned()),
        (None, None) => meta.catalog.generation_defaults.model.clone(),
    };
    RequestSettings {
        model,
        dialogue_max_tokens: config.max_tokens.unwrap_or_else(|| {
            let catalog = meta.catalog.generation_defaults.dialogue_call.max_tokens;
            match meta.config.annotate {
                // The labels (a state per turn, calls, results) make the answer several times
                // longer than the plain turns.
                Some(_) => catalog.saturating_mul(prompt::annotated::MAX_TOKENS_FACTOR),
                None => catalog,
            }
        }),
        // An annotated plan's turns are always JSON (see `check_annotated_format`).
        structured: config.structured.unwrap_or(
            if local_model.is_some() || meta.config.annotate.is_some() {
                Structured::Json
            } else {
                Structured::Tags
            },
        ),
        schema: config.schema.unwrap_or(if local_model.is_some() {
            Schema::Full
        } else {
            Schema::Strict
        }),
        grammar: local_model.is_some(),
        annotate: meta.config.annotate.clone(),
    }
}

/// An annotated plan's labelled turns have no tag format: `--structured tags` is refused.
fn check_annotated_format(config: &RunConfig, meta: &Meta) -> Result<()> {
    if meta.config.annotate.is_some() && config.structured == Some(Structured::Tags) {
        bail!("--structured tags cannot carry an annotated plan's labels (dialogue state, service calls); leave --structured out or use --structured json");
    }
    Ok(())
}

/// Generates the pending items of an open store; the exit code says how the run ended.
pub fn run(store: Arc<Store>, config: RunConfig) -> Result<ExitCode> {
    let meta = store.meta()?.context("the store holds no plan")?;
    if !config.batch.give_up.is_empty() {
        batch::give_up_jobs(&store, &config.batch.give_up)?;
        return Ok(ExitCode::SUCCESS);
    }
    check_annotated_format(&config, &meta)?;
    let assets = embed::assets_dir(config.assets_dir.as_deref());
    let local_model = match (&config.local_model, config.local) {
        (Some(path), _) => Some(path.clone()),
        (None, true) => Some(assets.join(local_server::DEFAULT_MODEL)),
        (None, false) => None,
    };
    let mut settings = request_settings(&config, &meta, local_model.as_deref());
    // The endpoints, settled before any work: a bad --endpoints file is refused at once. A
    // local model is the llama-server started below.
    let specs = match local_model {
        Some(_) => Vec::new(),
        None => endpoints::resolve(&config, &settings.model)?,
    };
    if !specs.is_empty() {
        settings.model = endpoints::model_label(&specs);
    }
    let pricing = PriceTable::resolve(&settings.model, &config.prices.clone())?;
    if config.dry_run {
        return dry_run::print(&store, &meta, &settings, &config, &pricing);
    }
    if let (Some(max), Pricing::Unknown { model }) = (config.max_cost, &pricing) {
        bail!(
            "--max_cost {max} needs a price to hold the run to: {}",
            Pricing::unknown_message(model)
        );
    }
    let judge_price = judge_pricing(&config, &settings, &specs, &pricing)?;
    for spec in &specs {
        spec.check_key()?;
    }
    // Settled before any work, so a judge without a known key stops the run at once.
    judge_key(
        &config,
        &specs
            .iter()
            .map(|s| (s.url.as_str(), s.key.as_ref()))
            .collect::<Vec<_>>(),
    )?;
    if config.batch.enabled {
        batch::check_args(&config, local_model.is_some(), specs.len())?;
    } else {
        batch::check_online(&store)?;
    }
    let Some(work) = prepare(&store, &meta, &settings, &config)? else {
        return Ok(ExitCode::SUCCESS);
    };
    if config.batch.enabled {
        let launch = batch::BatchLaunch {
            settings,
            endpoint: specs
                .into_iter()
                .next()
                .context("a batch run needs its endpoint")?,
            price: pricing.price(),
            work,
        };
        return batch::run(store, &meta, &config, launch);
    }
    store.set_max_cost(config.max_cost)?;
    // Loaded before anything starts, so a missing asset stops the run at once.
    let embedder = EmbedService::start(&assets, config.embed)?;
    // Started from the main thread: the parent-death signal follows the thread that forked.
    let server = match &local_model {
        Some(model) => Some(LocalServer::start(&server_settings(
            &config, &assets, model,
        ))?),
        None => None,
    };
    let specs = match &server {
        Some(server) => vec![EndpointSpec {
            name: "local".into(),
            url: server.base_url.clone(),
            model: settings.model.clone(),
            // Its own key: never the user's, which the port's holder could be someone else.
            key: Some(server.key.clone()),
            key_source: String::new(),
            weight: 1.0,
            max_concurrency: None,
        }],
        None => specs,
    };
    let ceiling = config.concurrency.unwrap_or(if local_model.is_some() {
        config.server.slots
    } else {
        16
    });
    let endpoints = endpoints::pool_endpoints(&specs, &config, ceiling);
    // Attempts in flight: --concurrency, else room for every endpoint to be full.
    let concurrency = config.concurrency.unwrap_or_else(|| {
        endpoints
            .iter()
            .map(|e| e.endpoint.limits.ceiling)
            .sum::<usize>()
            .min(crate::llm::MAX_PARALLEL)
    });
    store.set_run_endpoint(&RunEndpoint {
        base_url: local_model.is_none().then(|| specs[0].url.clone()),
        local_model: local_model.clone(),
        model: (specs.len() > 1).then(|| specs[0].model.clone()),
    })?;
    let total = work.total;
    let launch = Launch {
        settings,
        endpoints,
        embedder,
        concurrency,
        price: pricing.price(),
        judge_price,
    };
    let summary = generate(&store, &meta, launch, work, &config)?;
    drop(server);
    finish(&store, total, summary)
}

/// The catalog's quality data with `--checks` over it; the actions in force are logged, since
/// a resumed run applies its own flags, not those of the run before.
pub(super) fn quality_config(meta: &Meta, config: &RunConfig) -> QualityConfig {
    let mut quality = meta.catalog.quality();
    if let Some(overrides) = &config.checks {
        overrides.apply(&mut quality);
    }
    let actions: Vec<String> = Check::ALL
        .iter()
        .map(|c| format!("{c}={}", quality.action(*c)))
        .collect();
    tracing::info!("quality checks: {}", actions.join(","));
    quality
}

/// The work of this run, once the store is ready for it; `None` (after saying so) when every
/// item is finished.
fn prepare(
    store: &Store,
    meta: &Meta,
    settings: &RequestSettings,
    config: &RunConfig,
) -> Result<Option<queue::Work>> {
    let mut work = queue::pending_work(store, config.max_attempts, config.retry_failed)?;
    settle(store, &mut work, config.max_attempts)?;
    // Batches still at the provider are collected (and their answers billed) even when every
    // item is finished, e.g. given up under a lower --max_attempts while its batch ran.
    let in_flight = config.batch.enabled && store.batch_jobs()?.iter().any(|j| !j.collected);
    if work.queue.is_empty() && !in_flight {
        println!(
            "all {} items of {} are finished ({} accepted, {} failed); nothing to do{}",
            work.total,
            store.path().display(),
            work.done,
            work.failed,
            if work.failed > 0 {
                " (--retry_failed or a higher --max_attempts gives failed items more attempts)"
            } else {
                ""
            }
        );
        return Ok(None);
    }
    store.verify_plan(meta)?;
    check_run_settings(store, settings)?;
    Ok(Some(work))
}

/// What the run calls, and how: settled before the runtime starts.
struct Launch {
    settings: RequestSettings,
    /// The first is where the judge goes by default.
    endpoints: Vec<PoolEndpoint>,
    embedder: (EmbedService, EmbedWorker),
    concurrency: usize,
    /// The model's price: spent is recorded with it, and `--max_cost` needs it.
    price: Option<Price>,
    /// With `--judge`: the judge model's price, for its calls.
    judge_price: Option<Price>,
}

/// With `--judge`, the judge model's price: the run's own when the judge is the run's model;
/// else the price table's (`--prices FILE` over the built-in one), since the `--price_*` flags
/// price `--model`. `--max_cost` needs it, like the run's.
fn judge_pricing(
    config: &RunConfig,
    settings: &RequestSettings,
    specs: &[EndpointSpec],
    pricing: &Pricing,
) -> Result<Option<Price>> {
    if !config.judge.enabled {
        return Ok(None);
    }
    let model = judge_model(config, settings, specs);
    let judge = if model == settings.model {
        pricing.clone()
    } else {
        let overrides = config.prices.clone();
        PriceTable::load(overrides.prices_file.as_deref())?
            .pricing(&model, &cost::PriceOverrides::default())
    };
    if let (Some(max), Pricing::Unknown { model }) = (config.max_cost, &judge) {
        bail!(
            "--max_cost {max} needs a price for the judge's calls too: no price for model {model} (--judge_model); add it to a --prices FILE (the --price_input/--price_output flags price --model only)"
        );
    }
    if let Pricing::Unknown { model } = &judge {
        tracing::warn!(
            "no price for the judge model {model}: its calls are counted but add nothing to the amount spent (add it to a --prices FILE)"
        );
    }
    Ok(judge.price())
}

/// `--judge_model`, else the model of the first endpoint (the run's model when it has one).
fn judge_model(config: &RunConfig, settings: &RequestSettings, specs: &[EndpointSpec]) -> String {
    config
        .judge
        .model
        .clone()
        .or_else(|| specs.first().map(|s| s.model.clone()))
        .unwrap_or_else(|| settings.model.clone())
}

/// The run proper: the runtime, the embedder threads, the writer and the dispatcher.
fn generate(
    store: &Arc<Store>,
    meta: &Meta,
    launch: Launch,
    mut work: queue::Work,
    config: &RunConfig,
) -> Result<Summary> {
    let Launch {
        settings,
        endpoints,
        embedder,
        concurrency,
        price,
        judge_price,
    } = launch;
    let runtime = crate::process::worker_runtime()?;
    let _guard = runtime.enter();
    let (embedder, embed_worker) = embedder;
    let pool = Arc::new(Pool::new(&endpoints, config.calls.retry)?);
    let judge = inline_judge(config, &endpoints, &settings, &pool)?;
    let ctx = Arc::new(Ctx {
        settings,
        catalog: meta.catalog.clone(),
        config: meta.config.clone(),
        pool: pool.clone(),
        embedder,
        personas: store.personas()?.into_iter().collect(),
        bases: store.base_dialogues()?,
        quality: quality_config(meta, config),
        judge,
    });
    let spent = Arc::new(AtomicU64::new(starting_spent(
        store,
        config.max_cost,
        price,
        judge_price,
    )?));
    let budget = match (config.max_cost, price) {
        (Some(max), Some(price)) => Some(CostBudget::new(
            ctx.clone(),
            price,
            judge_price.unwrap_or(price),
            max,
            spent.clone(),
        )),
        _ => None,
    };
    let writer = Writer::new(
        store,
        meta,
        Budget {
            max_attempts: config.max_attempts,
            extended: std::mem::take(&mut work.extended),
        },
        (price, judge_price),
        spent,
        Some(pool.clone()),
    )?;
    tracing::info!(
        "run: {} items to attempt ({} of {} already accepted), concurrency up to {concurrency}{}{}{}, model {}, {}",
        work.queue.len(),
        work.done,
        work.total,
        config.rpm.map_or(String::new(), |n| format!(", {n} requests/min")),
        config.tpm.map_or(String::new(), |n| format!(", {n} tokens/min")),
        if endpoints[0].endpoint.limits.latency_backoff {
            ", backing off on rising latency"
        } else {
            ""
        },
        ctx.settings.model,
        match endpoints.as_slice() {
            [one] => format!("endpoint {}", one.endpoint.base_url),
            several => format!(
                "{} endpoints: {}",
                several.len(),
                several
                    .iter()
                    .map(|e| format!(
                        "{} (model {}, weight {}, max concurrency {})",
                        e.name, e.model, e.weight, e.endpoint.limits.ceiling
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    );
    let summary = runtime.block_on(dispatch::dispatch(
        ctx,
        writer,
        work.queue,
        work.total,
        work.done,
        concurrency,
        config,
        budget,
    ));
    runtime.shutdown_timeout(Duration::from_secs(1));
    embed_worker.finish(Duration::from_secs(10));
    log_endpoints(&pool);
    summary
}

/// What each endpoint did in this run, for the log (several endpoints only).
fn log_endpoints(pool: &Pool) {
    if pool.len() < 2 {
        return;
    }
    for (name, model, s) in pool.totals() {
        let answered = s.calls - s.errors;
        tracing::info!(
            "endpoint {name} (model {model}): {} calls, {} errors, mean latency {}, {} prompt + {} completion tokens, taken out {} times",
            s.calls,
            s.errors,
            s.latency_ms
                .checked_div(answered)
                .map_or_else(|| "-".to_string(), |ms| format!("{ms} ms")),
            s.prompt_tokens,
            s.completion_tokens,
            s.outs
        );
    }
}

/// What the store has spent, in nano-dollars. Under `--max_cost`, at least what its token
/// counters cost at this run's prices (judge tokens at the judge's, else the run's): calls of
/// runs without a price, or with a lower one, recorded less than they used. The difference is
/// committed as spent, so `dgen status` shows what the budget holds against.
pub(super) fn starting_spent(
    store: &Store,
    max_cost: Option<f64>,
    price: Option<Price>,
    judge_price: Option<Price>,
) -> Result<u64> {
    let counters = store.counters()?;
    let recorded = counters.get(cost::SPENT_NANO_USD).copied().unwrap_or(0);
    let (Some(_), Some(price)) = (max_cost, price) else {
        return Ok(recorded);
    };
    let floor = cost::spent_floor(&counters, price, judge_price.unwrap_or(price));
    if floor <= recorded {
        return Ok(recorded);
    }
    tracing::warn!(
        "the store recorded ${} spent, but its tokens cost ${} at this run's prices (calls made without a price); --max_cost counts the larger",
        cost::dollars(cost::from_nano(recorded)),
        cost::dollars(cost::from_nano(floor)),
    );
    let mut batch = Batch::default();
    batch.count(cost::SPENT_NANO_USD, floor - recorded);
    store.apply(&batch)?;
    Ok(floor)
}

/// `--judge`: the judge at the run's (first) endpoint with its key, or at `--judge_base_url`
/// with the key [`judge_key`] settles; with `--judge_model` or that endpoint's model. On the llama-server dgen started, the full schema.
fn inline_judge(
    config: &RunConfig,
    endpoints: &[PoolEndpoint],
    settings: &RequestSettings,
    pool: &Pool,
) -> Result<Option<InlineJudge>> {
    if !config.judge.enabled {
        return Ok(None);
    }
    let first = &endpoints[0];
    let endpoint = &first.endpoint;
    let run_client = pool.first();
    let mut judge_endpoint = endpoint.clone();
    let known: Vec<_> = endpoints
        .iter()
        .map(|e| (e.endpoint.base_url.as_str(), e.endpoint.api_key.as_ref()))
        .collect();
    if let (Some(url), Some(key)) = (&config.judge.base_url, judge_key(config, &known)?) {
        judge_endpoint.base_url = url.clone();
        judge_endpoint.api_key = key;
    }
    let on_local_server = settings.grammar && config.judge.base_url.is_none();
    let model = config
        .judge
        .model
        .clone()
        .unwrap_or_else(|| first.model.clone());
    // The same model at the run's endpoint shares the run's limiter; another model has its
    // own per-minute limits (x-ratelimit-* are per model), and another endpoint its own load.
    let same_endpoint = config
        .judge
        .base_url
        .as_ref()
        .is_none_or(|url| url.trim_end_matches('/') == endpoint.base_url.trim_end_matches('/'));
    let client = if same_endpoint && model == first.model {
        LlmClient::sharing(&judge_endpoint, run_client)?
    } else {
        judge_endpoint.limits.latency_backoff =
            config.latency_backoff.applies_to(&judge_endpoint.base_url);
        LlmClient::new(&judge_endpoint)?
    };
    let judge = Judge {
        client,
        settings: JudgeSettings {
            model,
            schema: if on_local_server {
                JudgeSchema::Full
            } else {
                JudgeSchema::Strict
            },
            max_tokens: 400,
        },
    };
    tracing::info!(
        "judging every dialogue with {} at {}{}",
        judge.settings.model,
        judge_endpoint.base_url,
        config.judge.min_score.map_or(String::new(), |s| format!(
            ", rejecting overall scores below {s}"
        ))
    );
    Ok(Some(InlineJudge {
        judge,
        min_score: config.judge.min_score,
    }))
}

/// The key of a judge at `--judge_base_url` (see [`judge::endpoint::judge_key`]), the run's
/// endpoints being `known`; `None` when the judge shares the run's first endpoint and its key.
fn judge_key(
    config: &RunConfig,
    known: &[(&str, Option<&Secret>)],
) -> Result<Option<Option<Secret>>> {
    match (&config.judge.base_url, config.judge.enabled) {
        (Some(url), true) => {
            crate::judge::endpoint::judge_key(config.judge.key_env.as_deref(), url, known).map(Some)
        }
        _ => Ok(None),
    }
}

/// Records as failed the rejected items a lowered `--max_attempts` leaves without attempts.
fn settle(store: &Store, work: &mut queue::Work, max_attempts: u32) -> Result<()> {
    if work.settle.is_empty() {
        return Ok(());
    }
    tracing::info!(
        "{} rejected items have used their {max_attempts} attempts (--max_attempts); recording them as failed",
        work.settle.len()
    );
    let batch = Batch {
        states: std::mem::take(&mut work.settle),
        ..Batch::default()
    };
    store.apply(&batch)
}

/// Refuses to mix results of other prompts, embeddings or models into a store; records them on
/// the first run.
fn check_run_settings(store: &Store, settings: &RequestSettings) -> Result<()> {
    let run_settings = RunSettings {
        prompt_version: format!("{}/{}", settings.prompt_version(), settings.wire_format()),
        embedding: embed::EMBEDDING_ID.to_string(),
        model: settings.model.clone(),
    };
    match store.run_settings()? {
        Some(prev) if prev != run_settings && store.dialogue_count()? > 0 => {
            bail!(
                "{} was generated with {} / {} / model {}; this run would use {} / {} / model {}. Mixing them would make the data inconsistent: use the same --model, --structured, --schema and dgen version, or plan into a new --store",
                store.path().display(),
                prev.prompt_version,
                prev.embedding,
                prev.model,
                run_settings.prompt_version,
                run_settings.embedding,
                run_settings.model
            );
        }
        Some(prev) if prev == run_settings => Ok(()),
        _ => store.set_run_settings(&run_settings),
    }
}

fn server_settings(config: &RunConfig, assets: &Path, model: &Path) -> ServerSettings {
    config.server.settings(
        assets,
        model,
        config.log_file.with_file_name("llama-server.log"),
    )
}

/// The closing line and the exit code.
pub(super) fn finish(store: &Store, total: u64, summary: Summary) -> Result<ExitCode> {
    let counts = store.state_counts()?;
    let accepted = counts[&State::Done];
    let failed = counts[&State::Failed];
    let pending = total - accepted - failed;
    eprintln!(
        "run {}: {accepted}/{total} accepted, {failed} failed, {pending} pending; this run accepted {} in {:.1} s",
        match summary.stop {
            Stop::Finished => "finished",
            Stop::Interrupted => "interrupted",
            Stop::Fatal(_) | Stop::Budget(_) => "stopped",
        },
        summary.accepted,
        summary.elapsed.as_secs_f64()
    );
    match summary.stop {
        Stop::Finished => Ok(ExitCode::SUCCESS),
        Stop::Interrupted => {
            eprintln!("resume with the same `dgen run` command; committed work is kept");
            Ok(ExitCode::from(EXIT_INTERRUPTED))
        }
        Stop::Fatal(message) => bail!("{message}"),
        Stop::Budget(message) => {
            eprintln!("{message}");
            Ok(ExitCode::from(EXIT_BUDGET))
        }
    }
}
