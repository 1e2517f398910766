//! `dgen run --batch`: the run through the OpenAI Batch API, at the batch price.
//!
//! Each pass re-attaches to the batches the store knows, collects the finished ones, and
//! submits what is left: a scenario request for each pending item without a scenario for its
//! current attempt, a dialogue request for each item whose scenario came back. Results go
//! through the online run's parse → checks → embed → duplicate checks → commit path; a
//! rejected item's next attempt goes into a later batch, until every item is accepted or out
//! of attempts.
//!
//! Exactly once: a batch job, with the (item, attempt) of every request it carries, is
//! committed before its file is uploaded; the file id and then the batch id are committed as
//! soon as the provider returns them. A create is never sent again blindly: a process killed
//! after the upload, or a create that timed out, failed with a 5xx or lost its answer, finds
//! the batch by its input file and attaches to it instead of creating another. A batch's
//! results, the items' new states, the scenarios, the tokens and the job's "collected" mark
//! are committed in one transaction, and only once the result files hold an answer for every
//! request the provider counts as completed or failed, so a kill during the download or a
//! file cut short only means downloading again. Requests an expired, cancelled or failed batch
//! left unanswered simply go into the next batch; nothing answered is asked again. So do the
//! requests of a batch the provider answers 404 for (it no longer knows it), with a warning,
//! and those of a job the provider refuses for good (`give_up`). An upload whose answer a kill
//! cut off leaves a file no batch uses: re-attaching deletes this store's own such files
//! (`uploads`).
//!
//! Here: the set-up and the passes; `submit` renders, budgets, uploads and creates batches;
//! `collect` reads and commits their results; `give_up` closes the jobs that cannot go on;
//! `api` speaks HTTP; `lines` is the JSONL.

mod api;
mod collect;
mod give_up;
mod lines;
mod submit;
mod uploads;

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::embed::{self, EmbedService};
use crate::llm::Pool;
use crate::prompt::RequestSettings;
use crate::run::RunConfig;
use crate::store::{BatchJob, Meta, Store, StoredScenario};

use super::attempt::Ctx;
use super::dispatch::{Stop, Summary};
use super::writer::{Budget, Writer};
use crate::process::watch_signals;
use api::BatchApi;
pub use give_up::give_up_jobs;

/// The Batch API's limits per input file.
pub const MAX_REQUESTS: usize = 50_000;
pub const MAX_MB: usize = 200;

/// What the batch run needs from `dgen run`'s set-up.
pub struct BatchLaunch {
    pub settings: RequestSettings,
    /// The provider: its URL, key and model.
    pub endpoint: super::endpoints::EndpointSpec,
    pub price: Option<crate::cost::Price>,
    pub work: super::queue::Work,
}

/// Runs the pending items through the Batch API: one pass, or (`--wait`) passes until every
/// item is finished.
pub fn run(
    store: Arc<Store>,
    meta: &Meta,
    config: &RunConfig,
    launch: BatchLaunch,
) -> Result<ExitCode> {
    let assets = embed::assets_dir(config.assets_dir.as_deref());
    // Loaded before anything starts, so a missing asset stops the run at once.
    let (embedder, embed_worker) = EmbedService::start(&assets, config.embed)?;
    let runtime = crate::process::worker_runtime()?;
    let _guard = runtime.enter();
    let BatchLaunch {
        settings,
        endpoint: spec,
        price,
        mut work,
    } = launch;
    let total = work.total;
    let batch_price = price.map(crate::cost::Price::batch);
    store.set_max_cost(config.max_cost)?;
    let launch_spent = super::starting_spent(&store, config.max_cost, batch_price, None)?;
    // The pool the record's provenance names (batch mode sends no chat request of its own).
    let pool = Pool::new(
        &super::endpoints::pool_endpoints(std::slice::from_ref(&spec), config, 1),
        config.calls.retry,
    )?;
    let ctx = Ctx {
        settings,
        catalog: meta.catalog.clone(),
        config: meta.config.clone(),
        pool: Arc::new(pool),
        embedder,
        personas: store.personas()?.into_iter().collect(),
        bases: store.base_dialogues()?,
        quality: super::quality_config(meta, config),
        judge: None,
    };
    let mut writer = Writer::new(
        &store,
        meta,
        Budget {
            max_attempts: config.max_attempts,
            extended: std::mem::take(&mut work.extended),
        },
        (batch_price, None),
        Arc::new(AtomicU64::new(launch_spent)),
        None,
    )?;
    writer.batch = true;
    let jobs = store.batch_jobs()?;
    let driver = Driver {
        api: BatchApi::new(&spec.url, spec.key.clone(), config.calls.timeout)?,
        store: store.clone(),
        ctx,
        writer,
        attempts: work.queue.iter().copied().collect(),
        scenarios: store.batch_scenarios()?,
        next_id: jobs.iter().map(|j| j.id + 1).max().unwrap_or(0),
        jobs: jobs.into_iter().filter(|j| !j.collected).collect(),
        fingerprint: meta.plan_fingerprint.clone(),
        file_prefix: uploads::file_prefix(&meta.plan_fingerprint, &store.batch_tag()?),
        max_requests: config.batch.max_requests,
        max_bytes: config.batch.max_mb * 1_000_000,
        hold_until: None,
        hold: config.batch.poll_interval,
        refusals: 0,
        consecutive_failures: 0,
        max_consecutive_failures: config.max_consecutive_failures,
        accepted_here: 0,
        started: Instant::now(),
        budget: config
            .max_cost
            .zip(batch_price)
            .map(|(usd, p)| ((usd * crate::cost::prices::NANO_PER_USD).floor() as u64, p)),
        over_budget: None,
        reservations: HashMap::new(),
        incomplete: HashMap::new(),
    };
    tracing::info!(
        "batch run: {} items to finish ({} of {total} already accepted), {} batches to re-attach to, model {}, endpoint {}",
        driver.attempts.len(),
        work.done,
        driver.jobs.len(),
        driver.ctx.settings.model,
        spec.url
    );
    let summary = runtime.block_on(driver.drive(config.batch.wait, config.batch.poll_interval));
    runtime.shutdown_timeout(Duration::from_secs(1));
    embed_worker.finish(Duration::from_secs(10));
    let summary = summary?;
    match summary {
        Some(summary) => super::finish(&store, total, summary),
        None => Ok(ExitCode::SUCCESS),
    }
}

struct Driver {
    api: BatchApi,
    store: Arc<Store>,
    ctx: Ctx,
    writer: Writer,
    /// Items still to finish, with their current attempt.
    attempts: BTreeMap<u64, u32>,
    /// Scenarios returned and not yet followed by their dialogue's answer.
    scenarios: BTreeMap<u64, StoredScenario>,
    /// Batches not yet collected.
    jobs: Vec<BatchJob>,
    next_id: u64,
    fingerprint: String,
    /// How the names of this store's input files begin (see [`uploads::file_prefix`]).
    file_prefix: String,
    max_requests: usize,
    max_bytes: usize,
    /// The provider's enqueued-token limit was reached: no new batch before then.
    hold_until: Option<Instant>,
    hold: Duration,
    /// Batches refused for another reason in a row: two mean the requests themselves are
    /// wrong, and the run stops instead of resubmitting them forever.
    refusals: u32,
    consecutive_failures: u32,
    max_consecutive_failures: u32,
    accepted_here: u64,
    started: Instant,
    /// `--max_cost` in nano-dollars, with the batch price it holds the requests to.
    budget: Option<(u64, crate::cost::Price)>,
    /// Why the last pass submitted less than it could: the budget would be passed.
    over_budget: Option<String>,
    /// The upper bound each batch in flight reserves, by job id (see [`Driver::reserved`]).
    reservations: HashMap<u64, u64>,
    /// Downloads in a row, by job id, whose results did not account for the batch.
    incomplete: HashMap<u64, u32>,
}

/// How a pass left the run.
enum Pass {
    /// Batches are in flight (or held back): come back later.
    Waiting,
    /// Every item is accepted or out of attempts.
    Finished,
    /// Nothing in flight, and the next request would pass `--max_cost`.
    Budget(String),
}

impl Driver {
    /// Passes until the work is finished (`--wait`), or one pass. `None`: one pass ended with
    /// batches in flight, and said so.
    async fn drive(mut self, wait: bool, poll: Duration) -> Result<Option<Summary>> {
        let mut signals = watch_signals();
        let mut interval = poll;
        let mut last_line = String::new();
        if !self.jobs.is_empty() {
            // Re-attaching: an upload whose answer a kill cut off left a file nothing uses.
            self.delete_unused_uploads().await;
        }
        loop {
            let before = (self.attempts.len(), self.jobs.len());
            let pass = match self.pass().await {
                Ok(p) => p,
                Err(e) if e.is::<Halt>() => return Ok(Some(self.summary(Stop::Fatal(format!("{e:#}"))))),
                Err(e) => {
                    return Err(e.context(
                        "the batch run stopped; everything committed is kept, and the same `dgen run --batch` re-attaches to the batches in flight",
                    ))
                }
            };
            match pass {
                Pass::Finished => return Ok(Some(self.summary(Stop::Finished))),
                Pass::Budget(message) => return Ok(Some(self.summary(Stop::Budget(message)))),
                Pass::Waiting => {}
            }
            let line = self.progress_line();
            if line != last_line {
                // On stderr and in the log file.
                tracing::info!("{line}");
                last_line = line;
            }
            if !wait {
                eprintln!(
                    "{} batches in flight at the provider (results within 24 h); run the same `dgen run --batch` again to collect them and submit the next round, or add --wait to stay until the run is finished",
                    self.jobs.iter().filter(|j| !j.collected).count()
                );
                return Ok(None);
            }
            // Back to the first interval when something moved; slower while nothing does.
            interval = if (self.attempts.len(), self.jobs.len()) != before {
                poll
            } else {
                (interval.mul_f64(1.5)).min(poll.max(Duration::from_secs(300)))
            };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                Some(()) = signals.recv() => {
                    eprintln!("interrupt: the submitted batches keep running at the provider; `dgen run --batch` re-attaches to them");
                    return Ok(Some(self.summary(Stop::Interrupted)));
                }
            }
        }
    }

    fn summary(&self, stop: Stop) -> Summary {
        Summary {
            stop,
            accepted: self.accepted_here,
            elapsed: self.started.elapsed(),
        }
    }

    fn progress_line(&self) -> String {
        let mut line = format!(
            "batch run: {} items to finish, {} accepted in this run",
            self.attempts.len(),
            self.accepted_here
        );
        for job in &self.jobs {
            line.push_str(&format!(
                "; batch #{} {} ({} requests): {}, {} done, {} failed",
                job.id,
                job.stage.name(),
                job.requests.len(),
                job.status,
                job.completed,
                job.failed
            ));
        }
        if let Some(until) = self.hold_until {
            if until > Instant::now() {
                line.push_str(&format!(
                    "; new batches held {:.0} s for the provider's enqueued-token limit",
                    (until - Instant::now()).as_secs_f64()
                ));
            }
        }
        line
    }

    async fn pass(&mut self) -> Result<Pass> {
        for at in 0..self.jobs.len() {
            self.advance(at).await?;
        }
        self.jobs.retain(|j| !j.collected);
        if self.attempts.is_empty() {
            // Batches of items that moved on (given up meanwhile) are still billed: collected.
            return Ok(if self.jobs.is_empty() {
                Pass::Finished
            } else {
                Pass::Waiting
            });
        }
        if self.hold_until.is_none_or(|t| t <= Instant::now()) {
            self.hold_until = None;
            self.submit_new().await?;
        }
        match self.over_budget.take() {
            Some(message) if self.jobs.is_empty() => Ok(Pass::Budget(message)),
            Some(message) => {
                tracing::debug!("{message}; waiting for the batches in flight");
                Ok(Pass::Waiting)
            }
            None => Ok(Pass::Waiting),
        }
    }

    /// Moves one batch job on: upload, create, poll, collect.
    async fn advance(&mut self, at: usize) -> Result<()> {
        let mut job = self.jobs[at].clone();
        let wanted = job
            .requests
            .iter()
            .any(|(item, attempt)| self.attempts.get(item) == Some(attempt));
        if job.file_id.is_none() && !wanted {
            // Prepared before a kill and never uploaded, and every item has moved on since
            // (finished, or given up under a lower --max_attempts): nothing to pay for.
            self.give_up(
                &mut job,
                "never sent, since every item of it had moved on before its upload",
            )?;
            self.jobs[at] = job;
            return Ok(());
        }
        if job.file_id.is_none() {
            // Prepared but not uploaded (or the upload's answer was lost): upload again; an
            // unused file costs nothing.
            let content = self.render(&job)?;
            self.upload(&mut job, content).await?;
        }
        if !job.collected && job.batch_id.is_none() {
            self.create(&mut job, true).await?;
        }
        if !job.collected {
            let Some(batch) = self
                .api
                .get(job.batch_id.as_deref().unwrap_or_default())
                .await
                .map_err(refusal)?
            else {
                let file = job.file_id.as_deref().unwrap_or_default();
                if !self.api.file_known(file).await.map_err(refusal)? {
                    return Err(Halt(format!(
                        "the provider answers 404 for batch #{} ({}) and for its input file {file}: this is not the account or endpoint that created them. Check --base_url and the API key (the run that submitted them used this store's batches), then run `dgen run --batch` again; nothing was sent again",
                        job.id,
                        job.batch_id.as_deref().unwrap_or_default()
                    ))
                    .into());
                }
                // A listing that shows a batch over the file contradicts the 404: sending the
                // requests again could pay for them twice.
                let since = (job.created_ms / 1000).saturating_sub(submit::CLOCK_SLACK_S);
                if let Some(listed) = self.api.find_by_input(file, since).await.map_err(refusal)? {
                    return Err(Halt(format!(
                        "the provider answers 404 for batch #{} ({}) but lists batch {} ({}) over its input file {file}: dgen cannot follow a batch it cannot read. Check --base_url (a proxy that passes GET /batches but not GET /batches/ID?), then run `dgen run --batch` again; nothing was sent again",
                        job.id,
                        job.batch_id.as_deref().unwrap_or_default(),
                        listed.id,
                        listed.status
                    ))
                    .into());
                }
                return self.lost(at, job);
            };
            if batch.status != job.status
                || batch.completed != job.completed
                || batch.failed != job.failed
            {
                job.status.clone_from(&batch.status);
                job.completed = batch.completed;
                job.failed = batch.failed;
                self.store.put_batch_job(&job)?;
            }
            if batch.is_terminal() {
                self.jobs[at] = job.clone();
                self.collect(at, job, batch).await?;
                return Ok(());
            }
        }
        self.jobs[at] = job;
        Ok(())
    }
}

/// Something that stops the run with its committed work kept (exit non-zero, say why).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Halt(String);

/// A refusal by the provider stops the run (with what is committed kept); other errors too.
fn refusal(e: anyhow::Error) -> anyhow::Error {
    if let Some(r) = e.downcast_ref::<api::Refused>() {
        return Halt(r.message.clone()).into();
    }
    e
}

/// An online run on a store with batches in flight would generate their items a second time:
/// refused, naming the way out.
pub fn check_online(store: &Store) -> Result<()> {
    let open: Vec<BatchJob> = store
        .batch_jobs()?
        .into_iter()
        .filter(|j| !j.collected)
        .collect();
    if let Some(first) = open.first() {
        let requests: usize = open.iter().map(|j| j.requests.len()).sum();
        bail!(
            "{} batches ({requests} requests, the first #{} {}) are in flight in {}: an online run would pay for their items twice. Collect them with `dgen run --batch --wait` (the rest of the items can then run online), or give one up with `dgen run --batch_give_up {}` (its requests are then sent again)",
            open.len(),
            first.id,
            first.batch_id.as_deref().unwrap_or(&first.status),
            store.path().display(),
            first.id
        );
    }
    Ok(())
}

/// `--batch` with what it cannot do: said before anything starts.
pub fn check_args(config: &RunConfig, local: bool, endpoints: usize) -> Result<()> {
    if endpoints > 1 {
        bail!("--batch submits to one provider's Batch API: give one endpoint (--base_url, or a single --endpoint) instead of {endpoints}");
    }
    if local {
        bail!("--batch needs a provider with the OpenAI Batch API; llama-server (--local) has none: drop --batch, or pass --base_url of such a provider");
    }
    if config.judge.enabled {
        bail!("--judge scores each dialogue with a call of its own, which --batch does not make; run `dgen judge` after the batch run instead");
    }
    Ok(())
}
