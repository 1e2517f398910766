//! The single writer: duplicate checks where the commit happens, then one redb transaction a
//! batch — dialogue, hash, embedding, item state and counters land together or not at all.
//! Calls are billed as soon as they return (an [`Outcome::Billed`]), so the tokens of an attempt
//! cut short by a kill still reach the counters with the next commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::sync::mpsc;

use crate::cost::{self, Price};
use crate::dedup::DedupIndex;
use crate::judge::pass::count_judge;
use crate::llm::{Pool, Usage};
use crate::store::{Accepted, Batch, ItemState, State, Store, ENDPOINT_PREFIX};

use super::attempt::{Candidate, Outcome, Rejection};

/// Outcomes committed in one transaction at most.
const BATCH: usize = 64;

/// How long a batch of bills alone waits for company: a call's tokens still reach the store
/// within moments, but not in a transaction (and an fsync) of their own each.
const BILLS_WAIT: std::time::Duration = std::time::Duration::from_millis(25);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Accepted,
    Retry(u32),
    Failed,
}

pub struct Ack {
    pub item: u64,
    pub decision: Decision,
    pub failure: bool,
    pub message: Option<String>,
}

/// How many attempts an item may use: `--max_attempts`, or more for failed items that
/// `--retry_failed` gave another round.
pub struct Budget {
    pub max_attempts: u32,
    pub extended: HashMap<u64, u32>,
}

impl Budget {
    fn limit(&self, item: u64) -> u32 {
        self.extended
            .get(&item)
            .copied()
            .unwrap_or(self.max_attempts)
    }
}

pub struct Writer {
    pub store: Arc<Store>,
    pub index: DedupIndex,
    pub next_seq: u64,
    pub threshold: f32,
    pub budget: Budget,
    pub last_commit: Instant,
    /// The run's price: each commit adds what its bills cost to the store's spent counter.
    pub price: Option<Price>,
    /// The judge model's price, for `--judge`'s calls.
    pub judge_price: Option<Price>,
    /// Nano-dollars committed as spent, for `--max_cost`; raised after each commit.
    pub spent: Arc<AtomicU64>,
    /// Bills go through the Batch API: their tokens are counted as batch tokens too, so
    /// `dgen status` prices them at the batch price.
    pub batch: bool,
    /// The endpoints, whose in-flight samples, 429 count and per-endpoint counters each commit
    /// takes along (none in batch mode, which sends no requests of its own).
    pub pool: Option<Arc<Pool>>,
}

impl Writer {
    /// The writer of a run on `store`: the duplicate index loaded, the next sequence number,
    /// the plan's threshold, the attempts allowed, what is spent so far.
    pub fn new(
        store: &Arc<Store>,
        meta: &crate::store::Meta,
        budget: Budget,
        prices: (Option<Price>, Option<Price>),
        spent: Arc<AtomicU64>,
        pool: Option<Arc<Pool>>,
    ) -> Result<Writer> {
        let loading = Instant::now();
        let index = store.load_index(crate::embed::DIM)?;
        tracing::info!(
            "dedup index of {} stored dialogues loaded in {:.2} s ({} MB)",
            index.len(),
            loading.elapsed().as_secs_f64(),
            index.memory_bytes() / 1_000_000
        );
        Ok(Writer {
            store: store.clone(),
            index,
            next_seq: store.next_seq()?,
            threshold: meta.config.similarity_threshold as f32,
            budget,
            last_commit: Instant::now(),
            price: prices.0,
            judge_price: prices.1,
            spent,
            batch: false,
            pool,
        })
    }

    pub fn reject(&self, batch: &mut Batch, r: Rejection) -> Ack {
        let attempts = r.attempt + 1;
        let (state, decision) = if attempts >= self.budget.limit(r.item) {
            (State::Failed, Decision::Failed)
        } else {
            (State::Rejected, Decision::Retry(attempts))
        };
        batch.count(format!("rejected/{}", r.kind), 1);
        batch.states.push((
            r.item,
            ItemState {
                state,
                attempts,
                last_error: Some(r.message.clone()),
                reason: Some(r.kind),
            },
        ));
        Ack {
            item: r.item,
            decision,
            failure: r.failure,
            message: Some(r.message),
        }
    }

    /// The duplicate checks against everything committed and everything earlier in this batch.
    fn accept(&mut self, batch: &mut Batch, c: Candidate) -> Result<Ack> {
        // Full-precision vectors come from this batch (not committed yet) or the store.
        let store = &self.store;
        let duplicate = self.index.check(
            &[c.record.hash],
            &c.embedding,
            self.threshold,
            |seq| match batch.accepted.iter().find(|a| a.seq == seq) {
                Some(a) => Ok(a.embedding.clone()),
                None => store.embedding(seq),
            },
        )?;
        if let Some(dup) = duplicate {
            return Ok(self.reject(batch, c.rejection(dup.kind(), dup.message())));
        }
        let seq = self.next_seq;
        self.index.insert(seq, &[c.record.hash], &c.embedding);
        self.next_seq += 1;
        batch.states.push((
            c.item,
            ItemState {
                state: State::Done,
                attempts: c.attempt + 1,
                last_error: None,
                reason: None,
            },
        ));
        batch.count("accepted", 1);
        for found in &c.quality.checks {
            batch.count(format!("flagged/{}", found.check), 1);
        }
        batch.accepted.push(Accepted {
            seq,
            record: *c.record,
            embedding: c.embedding,
            quality: Some(c.quality),
        });
        Ok(Ack {
            item: c.item,
            decision: Decision::Accepted,
            failure: false,
            message: None,
        })
    }

    /// Commits one batch of outcomes; the acks say what became of each attempt.
    fn process(&mut self, outcomes: Vec<Outcome>) -> Result<Vec<Ack>> {
        let (mut batch, acks, spent) = self.build(outcomes)?;
        if let Some(pool) = &self.pool {
            let (samples, overloaded) = pool.drain();
            batch.in_flight = samples;
            batch.count("calls_overloaded", overloaded);
            // One endpoint's counters would repeat the run's: kept for runs over several.
            let several = pool.len() > 1;
            for (name, stats) in pool.drain_stats().into_iter().filter(|_| several) {
                for (what, n) in stats.counters() {
                    if n > 0 {
                        batch.count(format!("{ENDPOINT_PREFIX}{name}/{what}"), n);
                    }
                }
            }
        }
        self.commit(batch, spent)?;
        Ok(acks)
    }

    /// The write set of a batch of outcomes, the acks, and what its bills cost (nano-dollars);
    /// nothing is committed yet (the duplicate index already holds the accepted dialogues, so
    /// the write set must be committed or the run ended).
    pub fn build(&mut self, outcomes: Vec<Outcome>) -> Result<(Batch, Vec<Ack>, u64)> {
        let mut batch = Batch::default();
        let mut acks = Vec::with_capacity(outcomes.len());
        let mut spent = 0u64;
        let bill = |price: Option<Price>, usage: &Usage| price.map_or(0, |p| p.cost_nano(usage));
        for outcome in outcomes {
            match outcome {
                Outcome::Billed(usage) => {
                    spent = spent.saturating_add(bill(self.price, &usage));
                    count_usage(&mut batch, usage, self.batch);
                }
                Outcome::TimedOut(bound) => {
                    // Charged to spent and counted apart, never as tokens billed.
                    let charged = bill(self.price, &bound);
                    spent = spent.saturating_add(charged);
                    batch.count(cost::UPPER_BOUND_NANO_USD, charged);
                    batch.count(cost::TIMED_OUT_CALLS, bound.calls);
                }
                Outcome::Judged(usage, error) => {
                    spent = spent.saturating_add(bill(self.judge_price, &usage));
                    count_judge(&mut batch, usage, error);
                }
                Outcome::Rejected(r) => acks.push(self.reject(&mut batch, r)),
                Outcome::Candidate(c) => acks.push(self.accept(&mut batch, c)?),
            }
        }
        Ok((batch, acks, spent))
    }

    /// Commits a write set with its cost and the run time since the last commit.
    pub fn commit(&mut self, mut batch: Batch, spent: u64) -> Result<()> {
        batch.count(cost::SPENT_NANO_USD, spent);
        let now = Instant::now();
        batch.count(
            "run/elapsed_ms",
            now.duration_since(self.last_commit).as_millis() as u64,
        );
        self.last_commit = now;
        self.store.apply(&batch).with_context(|| {
            format!(
                "committing to the store {} failed; everything committed before is kept. Fix the cause (free disk space, permissions) and run `dgen run` again to continue",
                self.store.path().display()
            )
        })?;
        self.spent.fetch_add(spent, Ordering::SeqCst);
        Ok(())
    }
}

fn count_usage(batch: &mut Batch, usage: Usage, batch_api: bool) {
    batch.count("calls", usage.calls);
    batch.count("tokens/prompt", usage.prompt_tokens);
    batch.count("tokens/completion", usage.completion_tokens);
    batch.count(cost::CACHED_TOKENS, usage.cached_tokens);
    if batch_api {
        batch.count(cost::BATCH_PROMPT_TOKENS, usage.prompt_tokens);
        batch.count(cost::BATCH_COMPLETION_TOKENS, usage.completion_tokens);
        batch.count(cost::BATCH_CACHED_TOKENS, usage.cached_tokens);
    }
}

/// Takes what is waiting, up to a batch.
fn drain(rx: &mut mpsc::Receiver<Outcome>, outcomes: &mut Vec<Outcome>) {
    while outcomes.len() < BATCH {
        match rx.try_recv() {
            Ok(o) => outcomes.push(o),
            Err(_) => break,
        }
    }
}

/// The writer thread. It ends when every sender of `rx` is gone (after committing what they
/// sent) or at the first failed commit, whose error its handle returns.
pub fn spawn_writer(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Outcome>,
    acks: mpsc::UnboundedSender<Ack>,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let handle = std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut outcomes = vec![first];
                drain(&mut rx, &mut outcomes);
                if outcomes.iter().all(|o| {
                    matches!(
                        o,
                        Outcome::Billed(_) | Outcome::TimedOut(_) | Outcome::Judged(..)
                    )
                }) {
                    std::thread::sleep(BILLS_WAIT);
                    drain(&mut rx, &mut outcomes);
                }
                for ack in writer.process(outcomes)? {
                    let _ = acks.send(ack);
                }
            }
            // The last samples of the in-flight series.
            writer.process(Vec::new())?;
            Ok(())
        })
        .context("cannot start the store writer thread")?;
    Ok(handle)
}
