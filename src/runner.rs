//! `dgen run`: turns pending work items into dialogues.
//!
//! Shape: a dispatcher keeps `--concurrency` attempts in flight (tokio tasks: scenario call,
//! dialogue call, parse, embed); finished attempts go to one writer thread, which makes the
//! authoritative duplicate checks against everything committed so far and commits a batch of
//! results — dialogue, hash, embedding, item state, counters — in one redb transaction, then
//! acknowledges. An item counts as done only after that commit, so a stop at any instant loses
//! nothing committed and repeats nothing committed: items without a committed result are simply
//! still pending.

use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::catalog::Catalog;
use crate::cli::RunArgs;
use crate::dataset::Dialogue;
use crate::dedup::{self, DedupIndex};
use crate::embed::{self, EmbedService, Embedder};
use crate::llm::{Endpoint, LlmClient, RetryPolicy, Secret, Usage};
use crate::local::{self, LocalServer, ServerSettings};
use crate::parse;
use crate::plan::{Fingerprinter, PlanConfig, WorkItem};
use crate::prompt::{self, AttemptSpec, RequestSettings, Structured};
use crate::record::{self, GeneratedDialogue};
use crate::store::{Accepted, Batch, ItemState, Meta, RunSettings, State, Store};

/// Exit code after Ctrl-C / SIGTERM, as shells report a SIGINT death.
const EXIT_INTERRUPTED: u8 = 130;

/// Everything an attempt needs, shared by all tasks.
struct Ctx {
    settings: RequestSettings,
    catalog: Catalog,
    config: PlanConfig,
    client: LlmClient,
    embedder: EmbedService,
    /// Personas the plan stored, sorted by index: looked up on attempt 0, re-drawn later.
    personas: Vec<(u32, String)>,
    bases: BTreeMap<u32, Dialogue>,
}

/// The persona and sampling of one attempt: the plan's on attempt 0, re-drawn from
/// (item seed, attempt) afterwards; services, category and outcome never change.
pub fn attempt_spec(
    item: &WorkItem,
    attempt: u32,
    config: &PlanConfig,
    personas: &[(u32, String)],
) -> AttemptSpec {
    if attempt == 0 {
        let persona = personas
            .binary_search_by_key(&item.persona_index, |(i, _)| *i)
            .map(|at| personas[at].1.clone())
            .unwrap_or_default();
        return AttemptSpec {
            attempt,
            persona_index: item.persona_index,
            persona,
            temperature: item.temperature,
            top_p: item.top_p,
            frequency_penalty: item.frequency_penalty,
            presence_penalty: item.presence_penalty,
            seed: item.seed,
        };
    }
    let mut rng = ChaCha20Rng::seed_from_u64(
        item.seed ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let mut pick = |list: &[f64]| list[rng.random_range(0..list.len() as u64) as usize];
    let temperature = pick(&config.temperature);
    let top_p = pick(&config.top_p);
    let frequency_penalty = pick(&config.frequency_penalty);
    let presence_penalty = pick(&config.presence_penalty);
    let (persona_index, persona) =
        personas[rng.random_range(0..personas.len() as u64) as usize].clone();
    AttemptSpec {
        attempt,
        persona_index,
        persona,
        temperature,
        top_p,
        frequency_penalty,
        presence_penalty,
        seed: rng.next_u64(),
    }
}

/// What an attempt produced, on its way to the writer.
enum Outcome {
    Candidate {
        item: u64,
        attempt: u32,
        record: Box<GeneratedDialogue>,
        embedding: Vec<f32>,
    },
    Rejected {
        item: u64,
        attempt: u32,
        kind: String,
        message: String,
        usage: Usage,
        /// A call failed or the answer was unusable (counts toward the breaker).
        failure: bool,
    },
}

enum TaskResult {
    Done(Outcome),
    /// The endpoint refused in a way every further call would repeat (bad key, unknown model).
    Fatal(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Decision {
    Accepted,
    Retry(u32),
    Failed,
}

struct Ack {
    item: u64,
    decision: Decision,
    failure: bool,
    message: Option<String>,
}

fn rejected(
    item: u64,
    attempt: u32,
    kind: &str,
    message: String,
    usage: Usage,
    failure: bool,
) -> TaskResult {
    TaskResult::Done(Outcome::Rejected {
        item,
        attempt,
        kind: kind.to_string(),
        message,
        usage,
        failure,
    })
}

async fn attempt_item(ctx: Arc<Ctx>, item: WorkItem, attempt: u32) -> TaskResult {
    let spec = attempt_spec(&item, attempt, &ctx.config, &ctx.personas);
    let mut usage = Usage::default();

    let request = prompt::scenario_request(&ctx.settings, &ctx.catalog, &item, &spec);
    let scenario = match ctx.client.complete(&request).await {
        Ok(c) => {
            usage += c.usage;
            c.content.trim().to_string()
        }
        Err(f) if f.error.is_fatal() => return TaskResult::Fatal(f.error.to_string()),
        Err(f) => {
            usage += f.usage;
            let message = format!("scenario call: {}", f.error);
            return rejected(item.index, attempt, "api_error", message, usage, true);
        }
    };
    if scenario.is_empty() {
        return rejected(
            item.index,
            attempt,
            "empty_scenario",
            "the scenario call returned no text".into(),
            usage,
            true,
        );
    }

    let base = ctx
        .bases
        .get(&item.base_dialogue_index)
        .map(Dialogue::base_conversation)
        .unwrap_or_default();
    let request =
        prompt::dialogue_request(&ctx.settings, &ctx.catalog, &item, &spec, &scenario, &base);
    let (content, truncated) = match ctx.client.complete(&request).await {
        Ok(c) => {
            usage += c.usage;
            (c.content, c.truncated)
        }
        Err(f) if f.error.is_fatal() => return TaskResult::Fatal(f.error.to_string()),
        Err(f) => {
            usage += f.usage;
            let message = format!("dialogue call: {}", f.error);
            return rejected(item.index, attempt, "api_error", message, usage, true);
        }
    };
    let parsed = match ctx.settings.structured {
        Structured::Tags => parse::parse_dialogue(&content, item.min_turns, item.max_turns),
        Structured::Json => parse::parse_json_dialogue(&content, item.min_turns, item.max_turns),
    };
    let turns = match parsed {
        Ok(t) => t,
        Err(e) if truncated => {
            let message = format!(
                "invalid dialogue ({e}): the answer was cut off at max_tokens {}; raise --max_tokens",
                ctx.settings.dialogue_max_tokens
            );
            return rejected(item.index, attempt, "truncated", message, usage, true);
        }
        Err(e) => {
            return rejected(
                item.index,
                attempt,
                e.kind(),
                format!("invalid dialogue: {e}"),
                usage,
                true,
            )
        }
    };

    let hash = dedup::sha256(&record::canonical_text(&turns));
    let embedding = match ctx.embedder.embed(record::embedding_text(&turns)).await {
        Ok(v) => v,
        Err(e) => return TaskResult::Fatal(format!("{e:#}")),
    };
    let slot = &ctx.catalog.time_slots[item.time_slot as usize];
    let record = GeneratedDialogue {
        item_index: Some(item.index),
        attempt,
        dialogue_id: record::dialogue_id(&item.base_dialogue_id, item.seed),
        services: item.services.clone(),
        turns,
        user_emotion: item.user_emotion.clone(),
        assistant_emotion: item.assistant_emotion.clone(),
        scenario_category: item.category.clone(),
        generated_scenario: scenario,
        time_slot: (slot.start(), slot.end(), slot.name().to_string()),
        regions: vec![item.region.clone()],
        resolution_status: item.resolution_status.clone(),
        persona: spec.persona.clone(),
        specific_time: item.specific_time_hhmm(),
        base_dialogue_id: item.base_dialogue_id.clone(),
        model: ctx.settings.model.clone(),
        temperature: spec.temperature,
        top_p: spec.top_p,
        frequency_penalty: spec.frequency_penalty,
        presence_penalty: spec.presence_penalty,
        seed: spec.seed,
        usage,
        hash,
    };
    TaskResult::Done(Outcome::Candidate {
        item: item.index,
        attempt,
        record: Box::new(record),
        embedding,
    })
}

/// The single writer: duplicate checks where the commit happens, then one transaction a batch.
struct Writer {
    store: Arc<Store>,
    index: DedupIndex,
    next_seq: u64,
    threshold: f32,
    max_attempts: u32,
    last_commit: Instant,
}

impl Writer {
    fn state_after(&self, attempt: u32, error: Option<String>) -> (ItemState, Decision) {
        let attempts = attempt + 1;
        if attempts >= self.max_attempts {
            let state = ItemState {
                state: State::Failed,
                attempts,
                last_error: error,
            };
            (state, Decision::Failed)
        } else {
            let state = ItemState {
                state: State::Rejected,
                attempts,
                last_error: error,
            };
            (state, Decision::Retry(attempts))
        }
    }

    fn reject(
        &self,
        batch: &mut Batch,
        item: u64,
        attempt: u32,
        kind: &str,
        message: String,
        failure: bool,
    ) -> Ack {
        let (state, decision) = self.state_after(attempt, Some(message.clone()));
        batch.count(format!("rejected/{kind}"), 1);
        if decision == Decision::Failed {
            batch.count(format!("failed/{kind}"), 1);
        }
        batch.states.push((item, state));
        Ack {
            item,
            decision,
            failure,
            message: Some(message),
        }
    }

    fn process(&mut self, outcomes: Vec<Outcome>) -> Result<Vec<Ack>> {
        let mut batch = Batch::default();
        let mut acks = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome {
                Outcome::Rejected {
                    item,
                    attempt,
                    kind,
                    message,
                    usage,
                    failure,
                } => {
                    count_usage(&mut batch, usage);
                    acks.push(self.reject(&mut batch, item, attempt, &kind, message, failure));
                }
                Outcome::Candidate {
                    item,
                    attempt,
                    record,
                    embedding,
                } => {
                    count_usage(&mut batch, record.usage);
                    if self.index.contains_hash(&record.hash) {
                        let message = "exact duplicate of a stored dialogue".to_string();
                        acks.push(self.reject(
                            &mut batch,
                            item,
                            attempt,
                            "duplicate_exact",
                            message,
                            false,
                        ));
                        continue;
                    }
                    if let Some((other, sim)) = self.index.similar(&embedding, self.threshold) {
                        let message = format!(
                            "near-duplicate: cosine {sim:.3} with stored dialogue #{other}"
                        );
                        acks.push(self.reject(
                            &mut batch,
                            item,
                            attempt,
                            "duplicate_semantic",
                            message,
                            false,
                        ));
                        continue;
                    }
                    self.index.insert(&[record.hash], &embedding);
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    batch.states.push((
                        item,
                        ItemState {
                            state: State::Done,
                            attempts: attempt + 1,
                            last_error: None,
                        },
                    ));
                    batch.count("accepted", 1);
                    batch.accepted.push(Accepted {
                        seq,
                        record: *record,
                        embedding,
                    });
                    acks.push(Ack {
                        item,
                        decision: Decision::Accepted,
                        failure: false,
                        message: None,
                    });
                }
            }
        }
        let now = Instant::now();
        batch.count(
            "run/elapsed_ms",
            now.duration_since(self.last_commit).as_millis() as u64,
        );
        self.last_commit = now;
        self.store.apply(&batch)?;
        Ok(acks)
    }
}

fn count_usage(batch: &mut Batch, usage: Usage) {
    batch.count("calls", usage.calls);
    batch.count("tokens/prompt", usage.prompt_tokens);
    batch.count("tokens/completion", usage.completion_tokens);
}

fn spawn_writer(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Outcome>,
    acks: mpsc::UnboundedSender<Result<Ack, String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut outcomes = vec![first];
                while outcomes.len() < 64 {
                    match rx.try_recv() {
                        Ok(o) => outcomes.push(o),
                        Err(_) => break,
                    }
                }
                match writer.process(outcomes) {
                    Ok(list) => {
                        for ack in list {
                            let _ = acks.send(Ok(ack));
                        }
                    }
                    Err(e) => {
                        let _ = acks.send(Err(format!("committing to the store failed: {e:#}")));
                        return;
                    }
                }
            }
        })
        .expect("spawn the writer thread")
}

/// The API key: `OPENAI_KEY`, `OPENAI_API_KEY`, or either in `./.env.local`.
fn api_key() -> Option<Secret> {
    for name in ["OPENAI_KEY", "OPENAI_API_KEY"] {
        if let Ok(v) = std::env::var(name) {
            if !v.trim().is_empty() {
                return Some(Secret::new(v.trim().to_string()));
            }
        }
    }
    let text = std::fs::read_to_string(".env.local").ok()?;
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((k, v)) = line.split_once('=') {
            if matches!(k.trim(), "OPENAI_KEY" | "OPENAI_API_KEY") {
                let v = v.trim().trim_matches('"').trim_matches('\'');
                if !v.is_empty() {
                    return Some(Secret::new(v.to_string()));
                }
            }
        }
    }
    None
}

fn is_loopback(base_url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base_url) else {
        return false;
    };
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Refuses a store whose stored plan no longer hashes to its fingerprint.
fn verify_plan(store: &Store, meta: &Meta) -> Result<()> {
    let fps = [
        meta.datasets.dialogues.fingerprint.as_str(),
        meta.datasets.personas.fingerprint.as_str(),
    ];
    let mut f = Fingerprinter::new(&meta.catalog, &meta.config, &fps);
    store.for_each_item(|item| {
        f.add(&item);
        Ok(())
    })?;
    let actual = f.finish();
    if actual != meta.plan_fingerprint {
        bail!(
            "the plan in {} does not match its fingerprint ({} stored, {actual} computed): it was written by an incompatible dgen or altered; plan into a new --store",
            store.path().display(),
            meta.plan_fingerprint
        );
    }
    Ok(())
}

/// (item index, next attempt number) pairs, in dispatch order.
type Queue = VecDeque<(u64, u32)>;

/// Items still to attempt, in index order, and the number of items in each state.
fn pending_work(store: &Store, max_attempts: u32) -> Result<(Queue, BTreeMap<State, u64>)> {
    let mut queue = VecDeque::new();
    let mut counts: BTreeMap<State, u64> = BTreeMap::new();
    for (index, state) in store.states()? {
        *counts.entry(state.state).or_default() += 1;
        match state.state {
            State::Pending | State::InFlight => queue.push_back((index, state.attempts)),
            State::Rejected if state.attempts < max_attempts => {
                queue.push_back((index, state.attempts))
            }
            _ => {}
        }
    }
    Ok((queue, counts))
}

fn dry_run(
    store: &Store,
    meta: &Meta,
    settings: &RequestSettings,
    args: &RunArgs,
) -> Result<ExitCode> {
    let (queue, _) = pending_work(store, args.max_attempts)?;
    let personas: Vec<(u32, String)> = store.personas()?.into_iter().collect();
    let bases = store.base_dialogues()?;
    let url = format!("{}/chat/completions", args.base_url.trim_end_matches('/'));
    if queue.is_empty() {
        println!("no pending items: nothing would be sent");
    }
    for (index, attempt) in queue.iter().take(args.limit) {
        let item = store.item(*index)?;
        let spec = attempt_spec(&item, *attempt, &meta.config, &personas);
        let scenario = prompt::scenario_request(settings, &meta.catalog, &item, &spec);
        println!(
            "### item {index}, attempt {}: scenario request\nPOST {url}",
            attempt + 1
        );
        println!("{}", serde_json::to_string_pretty(&scenario)?);
        let base = bases
            .get(&item.base_dialogue_index)
            .map(Dialogue::base_conversation)
            .unwrap_or_default();
        let dialogue = prompt::dialogue_request(
            settings,
            &meta.catalog,
            &item,
            &spec,
            "<the text the scenario call returns>",
            &base,
        );
        println!(
            "### item {index}, attempt {}: dialogue request\nPOST {url}",
            attempt + 1
        );
        println!("{}", serde_json::to_string_pretty(&dialogue)?);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(store_path: &Path, args: RunArgs) -> Result<ExitCode> {
    if args.concurrency == Some(0) {
        bail!("--concurrency must be at least 1");
    }
    if args.slots == 0 {
        bail!("--slots must be at least 1");
    }
    if args.max_attempts == 0 {
        bail!("--max_attempts must be at least 1");
    }
    if args.request_timeout.is_nan() || args.request_timeout <= 0.0 {
        bail!("--request_timeout must be a positive number of seconds");
    }
    let store = Arc::new(Store::open_existing(store_path)?);
    let _requests = crate::commands::during_run::serve(&store);
    let meta = store.meta()?.context("the store holds no plan")?;
    let assets = embed::assets_dir(args.assets_dir.as_deref());
    let local_model = match (&args.local_model, args.local) {
        (Some(path), _) => Some(path.clone()),
        (None, true) => Some(assets.join(local::DEFAULT_MODEL)),
        (None, false) => None,
    };
    let model_name = match (&args.model, &local_model) {
        (Some(m), _) => m.clone(),
        (None, Some(path)) => path
            .file_stem()
            .map_or_else(|| "local".into(), |s| s.to_string_lossy().into_owned()),
        (None, None) => meta.catalog.generation_defaults.model.clone(),
    };
    let settings = RequestSettings {
        model: model_name,
        dialogue_max_tokens: args
            .max_tokens
            .unwrap_or(meta.catalog.generation_defaults.dialogue_call.max_tokens),
        structured: args.structured.unwrap_or(if local_model.is_some() {
            Structured::Json
        } else {
            Structured::Tags
        }),
        grammar: local_model.is_some(),
    };
    let concurrency = args.concurrency.unwrap_or(if local_model.is_some() {
        args.slots
    } else {
        16
    });
    if args.dry_run {
        return dry_run(&store, &meta, &settings, &args);
    }

    let key = api_key();
    if key.is_none() && local_model.is_none() && !is_loopback(&args.base_url) {
        bail!(
            "no API key for {}: set OPENAI_API_KEY (or OPENAI_KEY), or put OPENAI_KEY=... in ./.env.local; loopback endpoints need none",
            args.base_url
        );
    }

    let (queue, counts) = pending_work(&store, args.max_attempts)?;
    let total: u64 = counts.values().sum();
    let done = counts.get(&State::Done).copied().unwrap_or(0);
    if queue.is_empty() {
        println!(
            "all {total} items of {} are finished ({done} accepted, {} failed); nothing to do",
            store.path().display(),
            total - done
        );
        return Ok(ExitCode::SUCCESS);
    }
    verify_plan(&store, &meta)?;
    let run_settings = RunSettings {
        prompt_version: format!("{}/{}", prompt::PROMPT_VERSION, settings.structured.name()),
        embedding: embed::EMBEDDING_ID.to_string(),
        model: settings.model.clone(),
    };
    match store.run_settings()? {
        Some(prev) if prev != run_settings && store.dialogue_count()? > 0 => {
            bail!(
                "{} was generated with {} / {} / model {}; this run would use {} / {} / model {}. Mixing them would make the data inconsistent: use the same --model and dgen version, or plan into a new --store",
                store.path().display(),
                prev.prompt_version,
                prev.embedding,
                prev.model,
                run_settings.prompt_version,
                run_settings.embedding,
                run_settings.model
            );
        }
        Some(prev) if prev == run_settings => {}
        _ => store.set_run_settings(&run_settings)?,
    }

    let embedder = Embedder::load(&assets)?;
    // Started from the main thread: the parent-death signal follows the thread that forked.
    let server = match &local_model {
        Some(model) => Some(LocalServer::start(&ServerSettings {
            binary: args
                .llama_server
                .clone()
                .unwrap_or_else(|| assets.join(local::DEFAULT_SERVER)),
            model: model.clone(),
            ctx: args.ctx,
            threads: args
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            slots: args.slots,
            log: args.log_file.with_file_name("llama-server.log"),
        })?),
        None => None,
    };
    let base_url = server
        .as_ref()
        .map_or_else(|| args.base_url.clone(), |s| s.base_url.clone());
    let index = store.load_index(embed::DIM)?;
    let next_seq = store.next_seq()?;
    let endpoint = Endpoint {
        base_url: base_url.clone(),
        api_key: key,
        timeout: Duration::from_secs_f64(args.request_timeout),
        retry: RetryPolicy {
            max_retries: args.max_retries,
            base: Duration::from_millis(args.retry_base_ms),
            cap: Duration::from_secs(60),
        },
    };
    let personas: Vec<(u32, String)> = store.personas()?.into_iter().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    let _guard = runtime.enter();
    let ctx = Arc::new(Ctx {
        settings,
        catalog: meta.catalog.clone(),
        config: meta.config.clone(),
        client: LlmClient::new(&endpoint)?,
        embedder: EmbedService::start(embedder),
        personas,
        bases: store.base_dialogues()?,
    });
    let writer = Writer {
        store: store.clone(),
        index,
        next_seq,
        threshold: meta.config.similarity_threshold as f32,
        max_attempts: args.max_attempts,
        last_commit: Instant::now(),
    };
    tracing::info!(
        "run: {} items to attempt ({done} of {total} already accepted), concurrency {}, model {}, endpoint {}",
        queue.len(),
        concurrency,
        ctx.settings.model,
        base_url
    );
    let summary = runtime.block_on(dispatch(
        ctx,
        writer,
        queue,
        total,
        done,
        concurrency,
        &args,
    ))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(server);

    let counts = store.state_counts()?;
    let accepted = counts[&State::Done];
    let failed = counts[&State::Failed];
    let pending = total - accepted - failed;
    eprintln!(
        "run {}: {accepted}/{total} accepted, {failed} failed, {pending} pending; this run accepted {} in {:.1} s",
        match summary.stop {
            Stop::Finished => "finished",
            Stop::Interrupted => "interrupted",
            Stop::Fatal(_) => "stopped",
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
    }
}

enum Stop {
    Finished,
    Interrupted,
    Fatal(String),
}

struct Summary {
    stop: Stop,
    accepted: u64,
    elapsed: Duration,
}

/// First SIGINT/SIGTERM: a message on the channel. Second: exit at once; whatever is in flight
/// stays pending, and redb discards any transaction that did not commit.
fn watch_signals() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            seen += 1;
            if seen >= 2 {
                eprintln!("second interrupt: exiting now; items in flight stay pending");
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
            let _ = tx.send(());
        }
    });
    rx
}

struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    failed: u64,
    rejected: u64,
    started: Instant,
    accepted_here: u64,
}

impl Progress {
    fn new(total: u64, done: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} accepted  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("valid template"),
            );
            bar.set_position(done);
            bar
        });
        Progress {
            bar,
            total,
            done,
            failed: 0,
            rejected: 0,
            started: Instant::now(),
            accepted_here: 0,
        }
    }

    fn update(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
            bar.set_message(format!(
                "rejected {}  failed {}",
                self.rejected, self.failed
            ));
        }
    }

    fn rate(&self) -> f64 {
        self.accepted_here as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    fn log_line(&self) {
        if self.bar.is_some() {
            return;
        }
        let rate = self.rate();
        let left = self.total.saturating_sub(self.done + self.failed);
        let eta = if rate > 0.0 {
            format!("{:.0} s", left as f64 / rate)
        } else {
            "unknown".into()
        };
        tracing::info!(
            "progress: {}/{} accepted, {} rejected attempts, {} failed, {rate:.2} dialogues/s, ETA {eta}",
            self.done,
            self.total,
            self.rejected,
            self.failed
        );
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

async fn dispatch(
    ctx: Arc<Ctx>,
    writer: Writer,
    mut queue: Queue,
    total: u64,
    done: u64,
    concurrency: usize,
    args: &RunArgs,
) -> Result<Summary> {
    let store = writer.store.clone();
    let (out_tx, out_rx) = mpsc::channel::<Outcome>(concurrency * 2 + 8);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let writer_thread = spawn_writer(writer, out_rx, ack_tx);
    let mut signals = watch_signals();
    let mut tasks: JoinSet<TaskResult> = JoinSet::new();
    let mut in_flight = 0usize;
    let mut stopping = false;
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut stop = Stop::Finished;
    let mut consecutive_failures = 0u32;
    let mut progress = Progress::new(total, done);
    let mut ticker = tokio::time::interval(Duration::from_secs(10));
    ticker.tick().await;

    loop {
        while !stopping && in_flight < concurrency {
            let Some((index, attempt)) = queue.pop_front() else {
                break;
            };
            let item = store.item(index)?;
            tasks.spawn(attempt_item(ctx.clone(), item, attempt));
            in_flight += 1;
        }
        if in_flight == 0 {
            break;
        }
        tokio::select! {
            Some(joined) = tasks.join_next() => match joined {
                Ok(TaskResult::Done(outcome)) => {
                    if out_tx.send(outcome).await.is_err() {
                        bail!("the store writer stopped unexpectedly");
                    }
                }
                Ok(TaskResult::Fatal(message)) => {
                    in_flight -= 1;
                    if !matches!(stop, Stop::Fatal(_)) {
                        tracing::error!("fatal: {message}; stopping the run");
                        stop = Stop::Fatal(format!("the endpoint refused the request: {message}. Check --base_url, --model and the API key; pending items are kept"));
                    }
                    stopping = true;
                    tasks.abort_all();
                }
                Err(e) if e.is_cancelled() => in_flight -= 1,
                Err(e) => bail!("an attempt crashed: {e}"),
            },
            Some(ack) = ack_rx.recv() => {
                let ack = match ack {
                    Ok(a) => a,
                    Err(message) => bail!(message),
                };
                in_flight -= 1;
                match ack.decision {
                    Decision::Accepted => {
                        progress.done += 1;
                        progress.accepted_here += 1;
                    }
                    Decision::Retry(next) => {
                        progress.rejected += 1;
                        queue.push_back((ack.item, next));
                    }
                    Decision::Failed => {
                        progress.rejected += 1;
                        progress.failed += 1;
                    }
                }
                if let Some(m) = &ack.message {
                    tracing::debug!("item {}: {m}", ack.item);
                }
                if ack.failure {
                    consecutive_failures += 1;
                    if consecutive_failures >= args.max_consecutive_failures && !stopping {
                        let last = ack.message.unwrap_or_default();
                        stop = Stop::Fatal(format!(
                            "{consecutive_failures} consecutive failures (--max_consecutive_failures); the last: {last}"
                        ));
                        stopping = true;
                        deadline = Some(tokio::time::Instant::now() + Duration::from_secs_f64(args.shutdown_timeout));
                    }
                } else {
                    consecutive_failures = 0;
                }
                progress.update();
            },
            Some(()) = signals.recv() => {
                if !stopping {
                    eprintln!("interrupt: finishing {in_flight} items in flight (up to {:.0} s); press Ctrl-C again to exit now", args.shutdown_timeout);
                    stopping = true;
                    stop = Stop::Interrupted;
                    deadline = Some(tokio::time::Instant::now() + Duration::from_secs_f64(args.shutdown_timeout));
                }
            },
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                tracing::warn!("shutdown timeout: leaving {} unfinished items pending", tasks.len());
                tasks.abort_all();
                deadline = None;
            },
            _ = ticker.tick() => progress.log_line(),
        }
    }
    progress.finish();
    drop(out_tx);
    writer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the store writer panicked"))?;
    // A commit failure reported after the last ack.
    while let Ok(ack) = ack_rx.try_recv() {
        if let Err(message) = ack {
            bail!(message);
        }
    }
    Ok(Summary {
        stop,
        accepted: progress.accepted_here,
        elapsed: progress.started.elapsed(),
    })
}
