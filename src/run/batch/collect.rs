//! The collecting side of the batch run: a finished batch's output and error files read,
//! each answer sorted (bills, refusals, scenarios to keep, dialogues to check and embed) and
//! committed in one transaction with the job's "collected" mark; a batch that failed as a
//! whole, or that the provider no longer knows, sends its requests into the next batch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;

use crate::store::{BatchJob, BatchStage, StoredScenario};

use super::super::attempt::{self, attempt_spec, Outcome, Rejection};
use super::super::writer::Decision;
use super::api::{BatchObject, Refused};
use super::give_up::GIVEN_UP;
use super::lines::{self, Answer};
use super::{refusal, Driver, Halt};

/// Downloads in a row whose answers do not account for a batch's counts before the run
/// stops and asks the user.
const MAX_SHORT_DOWNLOADS: u32 = 5;

/// A finished batch's result files, read.
enum Download {
    /// Every answer the provider reports is there.
    Complete(HashMap<String, Answer>),
    /// A result file answers 404: it will never be read; the answers of the other.
    Lost {
        answers: HashMap<String, Answer>,
        reason: String,
    },
    /// Fewer answers than the provider reports (no output file yet, lines cut off or
    /// unreadable): nothing is committed, the files are read again later.
    Short(String),
}

impl Driver {
    /// Sorts a batch's answers: bills, refusals, scenarios to store, and the dialogue answers
    /// still to check and embed. Requests whose item moved on since (given up under a lowered
    /// `--max_attempts`, or finished) are billed and otherwise skipped (never applied twice);
    /// unanswered ones go back to the pool.
    fn sort_answers(
        &self,
        job: &BatchJob,
        answers: &HashMap<String, Answer>,
    ) -> (Results, Vec<DialogueAnswer>) {
        let mut r = Results::default();
        let mut dialogues = Vec::new();
        for &(index, attempt) in &job.requests {
            if self.attempts.get(&index) != Some(&attempt) {
                // The provider billed the answer all the same.
                if let Some(Answer::Refused { usage, .. } | Answer::Completed { usage, .. }) =
                    answers.get(&lines::custom_id(job.stage, index, attempt))
                {
                    tracing::debug!(
                        "batch #{}: item {index} moved on since its attempt {attempt} was sent; its answer is billed and dropped",
                        job.id
                    );
                    r.outcomes.push(Outcome::Billed(*usage));
                }
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
    pub(super) async fn collect(
        &mut self,
        at: usize,
        mut job: BatchJob,
        batch: BatchObject,
    ) -> Result<()> {
        let (answers, given_up) = match self.download(&job, &batch).await? {
            Download::Complete(answers) => (answers, None),
            Download::Lost { answers, reason } => (answers, Some(reason)),
            Download::Short(message) => return self.short(&job, message),
        };
        self.incomplete.remove(&job.id);
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
        if let Some(reason) = given_up {
            // A result file the provider no longer has: what the other holds is kept, the
            // rest is asked again (once: the job is closed).
            tracing::warn!("batch #{} given up: {reason}", job.id);
            job.status = GIVEN_UP.into();
            job.note = Some(format!(
                "given up: {reason}; {answered} answered, {unfinished} sent again"
            ));
        }
        write.scenarios.clone_from(&scenarios);
        write.batch_jobs.push(job.clone());
        write.count(format!("batch/{}", job.status), 1);
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

    /// Reads a finished batch's output and error files, and checks that they hold an answer
    /// for each request the provider counts as completed (the output file) and failed (both).
    /// An error-file line never replaces an answer (see [`lines::merge`]).
    async fn download(&self, job: &BatchJob, batch: &BatchObject) -> Result<Download> {
        let mut read = Vec::new();
        let mut lost = None;
        let mut output_lost = false;
        for (which, id) in [
            ("output", &batch.output_file_id),
            ("error", &batch.error_file_id),
        ] {
            let Some(id) = id else {
                read.push((HashMap::new(), 0));
                continue;
            };
            match self.api.content(id, self.result_limit(job)).await {
                Ok(bytes) => read.push(lines::read_answers(&[&bytes])),
                Err(e) if e.downcast_ref::<Refused>().is_some_and(|r| r.status == 404) => {
                    lost = Some(format!("its {which} file {id} answers 404"));
                    output_lost |= which == "output";
                    read.push((HashMap::new(), 0));
                }
                Err(e) => return Err(refusal(e)),
            }
        }
        let ids: std::collections::HashSet<String> = job
            .requests
            .iter()
            .map(|&(index, attempt)| lines::custom_id(job.stage, index, attempt))
            .collect();
        let mut files = read.into_iter();
        let (mut answers, unreadable_out) = files.next().unwrap_or_default();
        let (errors, unreadable_err) = files.next().unwrap_or_default();
        let in_output = answers.keys().filter(|k| ids.contains(*k)).count() as u64;
        lines::merge(&mut answers, errors);
        if let Some(reason) = lost {
            // Only the error file is gone: the output file must still hold every completed
            // answer (else it is read again, as a short download), or the answers cut off
            // would be asked and paid again.
            if output_lost || in_output >= batch.completed {
                return Ok(Download::Lost { answers, reason });
            }
        }
        let in_all = answers.keys().filter(|k| ids.contains(*k)).count() as u64;
        if in_output >= batch.completed && in_all >= batch.completed + batch.failed {
            if unreadable_out + unreadable_err > 0 {
                tracing::warn!(
                    "batch #{}: {} result lines could not be read (every request is answered all the same)",
                    job.id,
                    unreadable_out + unreadable_err
                );
            }
            return Ok(Download::Complete(answers));
        }
        let mut message = format!(
            "batch #{} ({}): the provider reports {} completed and {} failed requests, its result files answer {in_output} and {}",
            job.id,
            batch.id,
            batch.completed,
            batch.failed,
            in_all - in_output
        );
        if batch.output_file_id.is_none() {
            message.push_str(" (no output file yet)");
        }
        if unreadable_out + unreadable_err > 0 {
            message.push_str(&format!(
                " ({} lines unreadable)",
                unreadable_out + unreadable_err
            ));
        }
        Ok(Download::Short(message))
    }

    /// The most bytes a result file of this job may have: a line per request, each at most a
    /// completion of the largest max_tokens (32 bytes a token: escaped text and logprobs
    /// aside) plus its envelope.
    fn result_limit(&self, job: &BatchJob) -> usize {
        let per_line = (self.ctx.settings.dialogue_max_tokens.max(4096) as usize) * 32 + (16 << 10);
        (job.requests.len().saturating_mul(per_line)).saturating_add(1 << 20)
    }

    /// Results that do not account for the batch: nothing committed, the batch stays in
    /// flight and is downloaded again at the next pass; after a few in a row, the user decides.
    fn short(&mut self, job: &BatchJob, message: String) -> Result<()> {
        let tries = self.incomplete.entry(job.id).or_default();
        *tries += 1;
        if *tries >= MAX_SHORT_DOWNLOADS {
            return Err(Halt(format!(
                "{message}, at {tries} downloads in a row. Nothing of it was committed and nothing sent again: run `dgen run --batch` later, or give the batch up with `dgen run --batch_give_up {}` (its answers are then not read, and its requests are sent and paid again)",
                job.id
            ))
            .into());
        }
        tracing::warn!("{message}: nothing committed, the files are read again at the next pass");
        Ok(())
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
    pub(super) fn lost(&mut self, at: usize, mut job: BatchJob) -> Result<()> {
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
        // Each loss sends its requests again, at a price: two in a row, with nothing collected
        // between, stop the run instead of paying on and on.
        self.refusals += 1;
        if self.refusals >= 2 {
            return Err(Halt(format!(
                "the provider answered 404 for two batches in a row (the last: {id}), so their requests would be paid again and again; they are pending again. Check --base_url and the API key, then run `dgen run --batch` again"
            ))
            .into());
        }
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
        let attempt::Checked {
            turns,
            flagged,
            annotation,
        } = match attempt::checked_turns(ctx, &item, &base, content, truncated) {
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
                annotation,
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
