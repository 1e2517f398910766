//! The submission side of the batch run: each pending request rendered into JSONL, held to
//! `--max_cost` (the upper bound of every batch in flight is reserved), cut at the per-file
//! limits, committed as a job, uploaded, and created as a batch (or, after a restart,
//! attached to the batch an earlier process created over the same file).

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::json;

use crate::cost::{dollars, from_nano, Estimator, Expectation};
use crate::prompt;
use crate::store::{BatchJob, BatchStage};

use super::super::attempt::{self, attempt_spec};
use super::{lines, uploads, Driver};

/// How far the provider's clock may be behind ours: a batch created over a job's file is
/// looked for among those created from this long before the job was prepared.
pub(super) const CLOCK_SLACK_S: u64 = 600;

impl Driver {
    /// Uploads the job's file. A refusal that concerns the file (too large, malformed) gives
    /// the job up (see [`Driver::refused_job`]); the caller checks `job.collected`.
    pub(super) async fn upload(&mut self, job: &mut BatchJob, content: Vec<u8>) -> Result<()> {
        let name = uploads::file_name(&self.file_prefix, job.id, job.stage);
        let file_id = match self.api.upload(&name, content).await {
            Ok(id) => id,
            Err(e) => return self.refused_job(job, "the upload of its input file", e),
        };
        job.file_id = Some(file_id);
        job.status = "uploaded".into();
        self.store.put_batch_job(job)
    }

    /// Creates the batch over the job's file, or attaches to the batch an earlier try or an
    /// earlier process created over it. A refusal that concerns the job (its file deleted,
    /// refused) gives the job up.
    pub(super) async fn create(&mut self, job: &mut BatchJob, resumed: bool) -> Result<()> {
        let file_id = job.file_id.clone().unwrap_or_default();
        let metadata = json!({
            "dgen_job": job.id.to_string(),
            "dgen_stage": job.stage.name(),
            "dgen_plan": &self.fingerprint[..self.fingerprint.len().min(16)],
        });
        let since = (job.created_ms / 1000).saturating_sub(CLOCK_SLACK_S);
        let created = match self.api.create(&file_id, metadata, since, resumed).await {
            Ok(c) => c,
            Err(e) => return self.refused_job(job, "the batch's create", e),
        };
        let batch = created.batch;
        if created.attached {
            tracing::info!(
                "batch #{}: attached to {} created by an earlier try",
                job.id,
                batch.id
            );
        }
        job.batch_id = Some(batch.id.clone());
        job.status.clone_from(&batch.status);
        self.store.put_batch_job(job)
    }

    /// The request lines of a job, rendered from its items (the same bytes each time).
    pub(super) fn render(&self, job: &BatchJob) -> Result<Vec<u8>> {
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
        let open: HashSet<u64> = self
            .jobs
            .iter()
            .filter(|j| !j.collected)
            .map(|j| j.id)
            .collect();
        self.reservations.retain(|id, _| open.contains(id));
        let mut counted = Vec::new();
        for job in self
            .jobs
            .iter()
            .filter(|j| !j.collected && !self.reservations.contains_key(&j.id))
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
    pub(super) async fn submit_new(&mut self) -> Result<()> {
        let busy: HashSet<u64> = self
            .jobs
            .iter()
            .filter(|j| !j.collected)
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
        if !job.collected {
            self.create(&mut job, false).await?;
            self.jobs[at] = job;
        }
        Ok(())
    }
}
