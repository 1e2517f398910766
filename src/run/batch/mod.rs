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
//! soon as the provider returns them. A process killed after the upload but before the create
//! answered finds the batch by its input file on resume and attaches to it instead of
//! creating another. A batch's results, the items' new states, the scenarios, the tokens and
//! the job's "collected" mark are committed in one transaction, so a kill during the download
//! only means downloading again. Requests an expired, cancelled or failed batch left
//! unanswered simply go into the next batch; nothing answered is asked again.

mod api;
mod lines;
mod uploads;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::json;

use crate::cost::{dollars, from_nano, Estimator, Expectation};
use crate::embed::{self, EmbedService};
use crate::llm::Pool;
use crate::prompt::{self, RequestSettings};
use crate::run::RunConfig;
use crate::store::{BatchJob, BatchStage, Meta, Store, StoredScenario};

use super::attempt::{self, attempt_spec, Ctx, Outcome, Rejection};
use super::dispatch::{Stop, Summary};
use super::writer::{Budget, Decision, Writer};
use crate::process::watch_signals;
use api::{BatchApi, BatchObject};
use lines::Answer;

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
                    self.jobs.len()
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
            return Ok(Pass::Finished);
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
        if job.file_id.is_none() {
            // Prepared but not uploaded (or the upload's answer was lost): upload again; an
            // unused file costs nothing.
            let content = self.render(&job)?;
            self.upload(&mut job, content).await?;
        }
        if job.batch_id.is_none() {
            self.create(&mut job, true).await?;
        }
        if !job.collected {
            let Some(batch) = self
                .api
                .get(job.batch_id.as_deref().unwrap_or_default())
                .await
                .map_err(refusal)?
            else {
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

    async fn upload(&mut self, job: &mut BatchJob, content: Vec<u8>) -> Result<()> {
        let name = uploads::file_name(&self.file_prefix, job.id, job.stage);
        let file_id = self.api.upload(&name, content).await.map_err(refusal)?;
        job.file_id = Some(file_id);
        job.status = "uploaded".into();
        self.store.put_batch_job(job)
    }

    /// Creates the batch over the job's file, or (after a restart) attaches to the batch an
    /// earlier process created over it.
    async fn create(&mut self, job: &mut BatchJob, resumed: bool) -> Result<()> {
        let file_id = job.file_id.clone().unwrap_or_default();
        let existing = if resumed {
            self.api.find_by_input(&file_id).await?
        } else {
            None
        };
        let batch = match existing {
            Some(b) => {
                tracing::info!(
                    "batch #{}: attached to {} created before the restart",
                    job.id,
                    b.id
                );
                b
            }
            None => {
                let metadata = json!({
                    "dgen_job": job.id.to_string(),
                    "dgen_stage": job.stage.name(),
                    "dgen_plan": &self.fingerprint[..self.fingerprint.len().min(16)],
                });
                self.api.create(&file_id, metadata).await.map_err(refusal)?
            }
        };
        job.batch_id = Some(batch.id.clone());
        job.status.clone_from(&batch.status);
        self.store.put_batch_job(job)
    }

    /// The request lines of a job, rendered from its items (the same bytes each time).
    fn render(&self, job: &BatchJob) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for &(index, attempt) in &job.requests {
            out.extend(self.request(job.stage, index, attempt)?);
        }
        Ok(out)
    }

    fn request(&self, stage: BatchStage, index: u64, attempt: u32) -> Result<Vec<u8>> {
        let ctx = &self.ctx;
        let item = self.store.item(index)?;
        let spec = attempt_spec(&item, attempt, &ctx.config, &ctx.personas);
        let request = match stage {
            BatchStage::Scenario => {
                prompt::scenario_request(&ctx.settings, &ctx.catalog, &item, &spec)
            }
            BatchStage::Dialogue => {
                let scenario = self
                    .scenarios
                    .get(&index)
                    .filter(|s| s.attempt == attempt)
                    .with_context(|| format!("item {index}: the scenario of attempt {attempt} is missing from the store"))?;
                let base = attempt::base_conversation(ctx, &item);
                prompt::dialogue_request(
                    &ctx.settings,
                    &ctx.catalog,
                    &item,
                    &spec,
                    &scenario.text,
                    &base,
                )
            }
        };
        Ok(lines::request_line(
            &lines::custom_id(stage, index, attempt),
            &request,
        ))
    }

    /// The most an item's attempt may still cost at the batch price, in nano-dollars: both
    /// calls at their max_tokens (a dialogue request reserves the scenario's share too, which
    /// errs on the safe side).
    fn bound(&self, index: u64, attempt: u32) -> Result<u64> {
        let Some((_, price)) = self.budget else {
            return Ok(0);
        };
        let ctx = &self.ctx;
        let item = self.store.item(index)?;
        let spec = attempt_spec(&item, attempt, &ctx.config, &ctx.personas);
        let base = attempt::base_conversation(ctx, &item);
        let estimator = Estimator::new(&ctx.settings, &ctx.catalog, Expectation::Guess);
        Ok(price.cost_nano(&estimator.attempt_bound(&item, &spec, &base)))
    }

    /// What the batches in flight reserve under `--max_cost`: each job's upper bound, counted
    /// once (rendering its requests' prompts to count them is not free), dropped once collected.
    fn reserved(&mut self) -> Result<u64> {
        let open: HashSet<u64> = self.jobs.iter().map(|j| j.id).collect();
        self.reservations.retain(|id, _| open.contains(id));
        let mut counted = Vec::new();
        for job in self
            .jobs
            .iter()
            .filter(|j| !self.reservations.contains_key(&j.id))
        {
            let mut sum = 0u64;
            for &(index, attempt) in &job.requests {
                sum = sum.saturating_add(self.bound(index, attempt)?);
            }
            counted.push((job.id, sum));
        }
        self.reservations.extend(counted);
        Ok(self
            .reservations
            .values()
            .fold(0u64, |total, n| total.saturating_add(*n)))
    }

    /// Submits a batch for every request not yet in one, within the per-file limits.
    async fn submit_new(&mut self) -> Result<()> {
        let busy: HashSet<u64> = self
            .jobs
            .iter()
            .flat_map(|j| j.requests.iter().map(|(i, _)| *i))
            .collect();
        let mut scenario = Vec::new();
        let mut dialogue = Vec::new();
        let mut room = match self.budget {
            Some((limit, _)) => {
                let reserved = self.reserved()?;
                let spent = self.writer.spent.load(std::sync::atomic::Ordering::SeqCst);
                Some((limit, spent, reserved))
            }
            None => None,
        };
        for (&index, &attempt) in &self.attempts {
            if busy.contains(&index) {
                continue;
            }
            if let Some((limit, spent, reserved)) = &mut room {
                let cost = self.bound(index, attempt)?;
                if spent.saturating_add(*reserved).saturating_add(cost) > *limit {
                    self.over_budget = Some(format!(
                        "--max_cost ${} reached: ${} spent, ${} reserved by the batches in flight, and the next request could cost up to ${}. Raise --max_cost to go on (the amount spent is kept in the store)",
                        dollars(from_nano(*limit)),
                        dollars(from_nano(*spent)),
                        dollars(from_nano(*reserved)),
                        dollars(from_nano(cost)),
                    ));
                    break;
                }
                *reserved += cost;
            }
            match self.scenarios.get(&index) {
                Some(s) if s.attempt == attempt => dialogue.push((index, attempt)),
                _ => scenario.push((index, attempt)),
            }
        }
        for (stage, requests) in [
            (BatchStage::Scenario, scenario),
            (BatchStage::Dialogue, dialogue),
        ] {
            let mut chunk = Vec::new();
            let mut content = Vec::new();
            for (index, attempt) in requests {
                let line = self.request(stage, index, attempt)?;
                if !chunk.is_empty()
                    && (chunk.len() >= self.max_requests
                        || content.len() + line.len() > self.max_bytes)
                {
                    self.send(
                        stage,
                        std::mem::take(&mut chunk),
                        std::mem::take(&mut content),
                    )
                    .await?;
                }
                chunk.push((index, attempt));
                content.extend(line);
            }
            if !chunk.is_empty() {
                self.send(stage, chunk, content).await?;
            }
        }
        Ok(())
    }

    /// Commits a new job, then uploads its file and creates its batch.
    async fn send(
        &mut self,
        stage: BatchStage,
        requests: Vec<(u64, u32)>,
        content: Vec<u8>,
    ) -> Result<()> {
        let mut job = BatchJob {
            id: self.next_id,
            stage,
            requests,
            created_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            file_id: None,
            batch_id: None,
            status: "prepared".into(),
            completed: 0,
            failed: 0,
            collected: false,
            note: None,
        };
        self.next_id += 1;
        self.store.put_batch_job(&job)?;
        tracing::info!(
            "batch #{}: {} {} requests, {:.1} MB",
            job.id,
            job.requests.len(),
            stage.name(),
            content.len() as f64 / 1e6
        );
        // Recorded as prepared: from here a kill only means uploading again.
        self.jobs.push(job.clone());
        let at = self.jobs.len() - 1;
        self.upload(&mut job, content).await?;
        self.jobs[at] = job.clone();
        self.create(&mut job, false).await?;
        self.jobs[at] = job;
        Ok(())
    }

    /// Sorts a batch's answers: bills, refusals, scenarios to store, and the dialogue answers
    /// still to check and embed. Requests whose item moved on since are skipped (never applied
    /// twice); unanswered ones go back to the pool.
    fn sort_answers(
        &self,
        job: &BatchJob,
        answers: &HashMap<String, Answer>,
    ) -> (Results, Vec<DialogueAnswer>) {
        let mut r = Results::default();
        let mut dialogues = Vec::new();
        for &(index, attempt) in &job.requests {
            if self.attempts.get(&index) != Some(&attempt) {
                continue;
            }
            match answers.get(&lines::custom_id(job.stage, index, attempt)) {
                None => r.unfinished += 1,
                Some(Answer::Unfinished { message }) => {
                    r.last_error = Some(message.clone());
                    r.unfinished += 1;
                }
                Some(Answer::Refused { message, usage }) => {
                    r.answered += 1;
                    r.outcomes.push(Outcome::Billed(*usage));
                    let message = format!("{} call: {message}", job.stage.name());
                    r.outcomes
                        .push(rejected(index, attempt, "api_error", message, true));
                    if job.stage == BatchStage::Dialogue {
                        r.scenarios.push((index, None));
                    }
                }
                Some(Answer::Completed {
                    content,
                    truncated,
                    usage,
                }) => {
                    r.answered += 1;
                    r.outcomes.push(Outcome::Billed(*usage));
                    match job.stage {
                        BatchStage::Scenario if content.trim().is_empty() => {
                            let message = "the scenario call returned no text".to_string();
                            r.outcomes.push(rejected(
                                index,
                                attempt,
                                "empty_scenario",
                                message,
                                true,
                            ));
                        }
                        BatchStage::Scenario => r.scenarios.push((
                            index,
                            Some(StoredScenario {
                                attempt,
                                text: content.trim().to_string(),
                                usage: *usage,
                            }),
                        )),
                        BatchStage::Dialogue => {
                            r.scenarios.push((index, None));
                            dialogues.push(DialogueAnswer {
                                index,
                                attempt,
                                content: content.clone(),
                                truncated: *truncated,
                                usage: *usage,
                            });
                        }
                    }
                }
            }
        }
        (r, dialogues)
    }

    /// Commits a finished batch's results in one transaction with the job's "collected"
    /// mark; requests it left unanswered go back to the pool.
    async fn collect(&mut self, at: usize, mut job: BatchJob, batch: BatchObject) -> Result<()> {
        let mut files = Vec::new();
        for id in [&batch.output_file_id, &batch.error_file_id]
            .into_iter()
            .flatten()
        {
            files.push(self.api.content(id).await?);
        }
        let slices: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        let (answers, unreadable) = lines::read_answers(&slices);
        if unreadable > 0 {
            tracing::warn!("batch #{}: {unreadable} result lines could not be read; their requests are sent again", job.id);
        }
        let (mut results, dialogues) = self.sort_answers(&job, &answers);
        // Embedded side by side (the embedder batches what waits), committed in request order.
        let evaluated: Vec<Result<Outcome>> = futures::stream::iter(dialogues.iter())
            .map(|d| self.dialogue(d))
            .buffered(64)
            .collect()
            .await;
        for outcome in evaluated {
            results.outcomes.push(outcome?);
        }
        let Results {
            outcomes,
            scenarios,
            answered,
            unfinished,
            mut last_error,
        } = results;
        let (mut write, acks, spent) = self.writer.build(outcomes)?;
        job.collected = true;
        job.status.clone_from(&batch.status);
        job.completed = batch.completed;
        job.failed = batch.failed;
        job.note = Some(self.note(&batch, answered, unfinished));
        write.scenarios.clone_from(&scenarios);
        write.batch_jobs.push(job.clone());
        write.count(format!("batch/{}", batch.status), 1);
        self.writer.commit(write, spent)?;
        tracing::info!(
            "batch #{} {}: {}",
            job.id,
            job.stage.name(),
            job.note.as_deref().unwrap_or("")
        );
        self.jobs[at] = job.clone();
        for (index, scenario) in scenarios {
            match scenario {
                Some(s) => self.scenarios.insert(index, s),
                None => self.scenarios.remove(&index),
            };
        }
        let mut failures_here = 0;
        for ack in acks {
            match ack.decision {
                Decision::Accepted => {
                    self.accepted_here += 1;
                    self.attempts.remove(&ack.item);
                }
                Decision::Failed => {
                    self.attempts.remove(&ack.item);
                }
                Decision::Retry(next) => {
                    self.attempts.insert(ack.item, next);
                }
            }
            if ack.failure {
                failures_here += 1;
                self.consecutive_failures += 1;
                last_error = ack.message.clone();
            } else {
                self.consecutive_failures = 0;
            }
        }
        if failures_here > 0 {
            tracing::debug!("batch #{}: {failures_here} answers unusable", job.id);
        }
        if self.consecutive_failures >= self.max_consecutive_failures {
            return Err(Halt(format!(
                "{} consecutive failures (--max_consecutive_failures); the last: {}",
                self.consecutive_failures,
                last_error.unwrap_or_default()
            ))
            .into());
        }
        self.failed_batch(&batch, &job)
    }

    /// A batch that failed as a whole: waits for an enqueued-token limit, stops on a second
    /// refusal of another kind in a row.
    fn failed_batch(&mut self, batch: &BatchObject, job: &BatchJob) -> Result<()> {
        if batch.status != "failed" {
            self.refusals = 0;
            self.hold = Duration::from_secs(1).max(self.hold / 2);
            return Ok(());
        }
        let described: Vec<String> = batch
            .errors
            .iter()
            .map(|(code, message)| format!("{code}: {message}"))
            .collect();
        if batch
            .errors
            .iter()
            .any(|(code, _)| code == "token_limit_exceeded")
        {
            self.hold_until = Some(Instant::now() + self.hold);
            tracing::warn!(
                "batch #{} refused: the provider's enqueued-token limit is reached; its {} requests wait {:.0} s, until batches in flight finish",
                job.id,
                job.requests.len(),
                self.hold.as_secs_f64()
            );
            self.hold = (self.hold * 2).min(Duration::from_secs(1800));
            return Ok(());
        }
        self.refusals += 1;
        if self.refusals >= 2 {
            return Err(Halt(format!(
                "the provider refused two batches in a row ({}); the requests stay pending. Check --model and --base_url",
                described.join("; ")
            ))
            .into());
        }
        tracing::warn!(
            "batch #{} failed ({}); its requests are sent again",
            job.id,
            described.join("; ")
        );
        Ok(())
    }

    /// The provider answers 404 for a batch in flight (deleted, or expired from its records):
    /// the job is closed and its requests, still unanswered, go into the next batch.
    fn lost(&mut self, at: usize, mut job: BatchJob) -> Result<()> {
        let id = job.batch_id.clone().unwrap_or_default();
        tracing::warn!(
            "batch #{} ({id}): the provider answers 404, it no longer knows the batch; its {} requests go into the next batch",
            job.id,
            job.requests.len()
        );
        job.collected = true;
        job.status = "not_found".into();
        job.note = Some(format!(
            "not found: the provider answered 404 for {id}; its requests were sent again"
        ));
        let mut write = crate::store::Batch::default();
        write.batch_jobs.push(job.clone());
        write.count("batch/not_found", 1);
        self.writer.commit(write, 0)?;
        self.jobs[at] = job;
        Ok(())
    }

    fn note(&self, batch: &BatchObject, answered: usize, unfinished: usize) -> String {
        let mut note = format!("{}: {answered} answered", batch.status);
        if unfinished > 0 {
            note.push_str(&format!(", {unfinished} left unanswered and sent again"));
        }
        if !batch.errors.is_empty() {
            let errors: Vec<String> = batch
                .errors
                .iter()
                .map(|(c, m)| format!("{c}: {m}"))
                .collect();
            note.push_str(&format!(" ({})", errors.join("; ")));
        }
        note
    }

    /// A dialogue answer through the online run's checks and the embedder.
    async fn dialogue(&self, answer: &DialogueAnswer) -> Result<Outcome> {
        let &DialogueAnswer {
            index,
            attempt,
            ref content,
            truncated,
            usage,
        } = answer;
        let ctx = &self.ctx;
        let item = self.store.item(index)?;
        let scenario = self
            .scenarios
            .get(&index)
            .filter(|s| s.attempt == attempt)
            .with_context(|| {
                format!("item {index}: the scenario of attempt {attempt} is missing from the store")
            })?;
        let spec = attempt_spec(&item, attempt, &ctx.config, &ctx.personas);
        let base = attempt::base_conversation(ctx, &item);
        let (turns, flagged) = match attempt::checked_turns(ctx, &item, &base, content, truncated) {
            Ok(t) => t,
            Err(u) => return Ok(rejected(index, attempt, &u.kind, u.message, u.failure)),
        };
        let mut total = scenario.usage;
        total += usage;
        let candidate = attempt::candidate(
            ctx,
            &item,
            attempt::Answered {
                spec,
                served_by: 0,
                usage: total,
                turns,
                scenario: scenario.text.clone(),
                flagged,
            },
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!(Halt(e)))?;
        Ok(Outcome::Candidate(candidate))
    }
}

/// A batch's answers sorted, before the commit.
#[derive(Default)]
struct Results {
    outcomes: Vec<Outcome>,
    /// Scenarios to store (`Some`) or drop (`None`), by item.
    scenarios: Vec<(u64, Option<StoredScenario>)>,
    answered: usize,
    unfinished: usize,
    last_error: Option<String>,
}

/// A dialogue request's answer, to check and embed.
struct DialogueAnswer {
    index: u64,
    attempt: u32,
    content: String,
    truncated: bool,
    usage: crate::llm::Usage,
}

fn rejected(item: u64, attempt: u32, kind: &str, message: String, failure: bool) -> Outcome {
    Outcome::Rejected(Rejection {
        item,
        attempt,
        kind: kind.to_string(),
        message,
        failure,
    })
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
            "{} batches ({requests} requests, the first #{} {}) are in flight in {}: an online run would pay for their items twice. Collect them with `dgen run --batch --wait` (the rest of the items can then run online)",
            open.len(),
            first.id,
            first.batch_id.as_deref().unwrap_or(&first.status),
            store.path().display()
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
