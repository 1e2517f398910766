//! The dispatcher: keeps `--concurrency` attempts in flight, hands finished ones to the writer,
//! re-queues rejected items, and stops on a signal, a fatal error or the breaker. The attempts'
//! requests wait for the endpoint's adaptive limiter, whose in-flight series it samples once a
//! second.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::run::RunConfig;

use super::attempt::{attempt_item, Ctx, Outcome, TaskResult};
use super::budget::CostBudget;
use super::progress::Progress;
use super::queue::Queue;
use super::writer::{spawn_writer, Ack, Decision, Writer};
use crate::process::watch_signals;
use crate::store::Store;

pub enum Stop {
    Finished,
    Interrupted,
    Fatal(String),
    /// `--max_cost` would be passed by the next attempt; the message says by how much.
    Budget(String),
}

pub struct Summary {
    pub stop: Stop,
    pub accepted: u64,
    pub elapsed: Duration,
}

/// The dispatcher's state between events.
struct Dispatcher<'a> {
    ctx: Arc<Ctx>,
    config: &'a RunConfig,
    store: Arc<Store>,
    queue: Queue,
    concurrency: usize,
    to_writer: mpsc::Sender<Outcome>,
    tasks: JoinSet<TaskResult>,
    /// Attempts dispatched and not yet acknowledged by the writer (or cancelled).
    in_flight: usize,
    stopping: bool,
    /// After a stop was asked for: when to give up on the attempts still in flight.
    deadline: Option<tokio::time::Instant>,
    stop: Stop,
    /// The writer ended early (a failed commit); its handle says why.
    writer_gone: bool,
    consecutive_failures: u32,
    progress: Progress,
    /// `--max_cost`, consulted before each attempt is dispatched.
    budget: Option<CostBudget>,
}

impl Dispatcher<'_> {
    fn fill(&mut self) {
        while !self.stopping && self.in_flight < self.concurrency {
            let Some((index, attempt)) = self.queue.pop_front() else {
                break;
            };
            let item = match self.store.item(index) {
                Ok(item) => item,
                Err(e) => {
                    self.halt(format!("cannot read work item {index}: {e:#}"));
                    break;
                }
            };
            if let Some(budget) = &mut self.budget {
                if let Err(message) = budget.admit(&item, attempt) {
                    self.queue.push_front((index, attempt));
                    // The attempts in flight reserve their upper bounds, which they rarely
                    // reach: each acknowledgement frees room, and this attempt is tried again.
                    if self.in_flight == 0 {
                        self.wind_down(Stop::Budget(message));
                    }
                    break;
                }
            }
            let billing = self.to_writer.clone();
            self.tasks
                .spawn(attempt_item(self.ctx.clone(), item, attempt, billing));
            self.in_flight += 1;
        }
    }

    /// Stops at once for a reason that concerns the whole run: attempts in flight are
    /// cancelled (their items stay pending), what was committed stays.
    fn halt(&mut self, message: String) {
        if !matches!(self.stop, Stop::Fatal(_)) {
            tracing::error!("{message}; stopping the run");
            self.stop = Stop::Fatal(format!("{message}; pending items are kept"));
        }
        self.stopping = true;
        self.tasks.abort_all();
    }

    /// Stops dispatching and gives the attempts in flight until the shutdown timeout.
    fn wind_down(&mut self, stop: Stop) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.stop = stop;
        self.deadline = Some(tokio::time::Instant::now() + self.shutdown_timeout());
    }

    fn shutdown_timeout(&self) -> Duration {
        self.config.shutdown_timeout
    }

    /// The writer ended early (a failed commit; its handle holds the error): what it did not
    /// acknowledge stays uncommitted, so only the attempts still running are waited for.
    fn writer_failed(&mut self) {
        self.writer_gone = true;
        self.stopping = true;
        self.in_flight = self.tasks.len();
        self.tasks.abort_all();
    }

    fn timed_out(&mut self) {
        tracing::warn!(
            "shutdown timeout: leaving {} unfinished items pending",
            self.tasks.len()
        );
        self.tasks.abort_all();
        self.deadline = None;
    }

    /// Closes the writer's channel, waits for its last commit, and says how the run ended.
    fn finish(self, writer: std::thread::JoinHandle<Result<()>>) -> Result<Summary> {
        self.progress.finish();
        let Dispatcher {
            stop,
            progress,
            writer_gone,
            to_writer,
            ..
        } = self;
        // The finished attempts' senders are gone too: the writer commits what it holds, ends.
        drop(to_writer);
        match writer.join() {
            Ok(Ok(())) if !writer_gone => {}
            Ok(Ok(())) => bail!("the store writer stopped before the run ended"),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(anyhow!("the store writer panicked")),
        }
        Ok(Summary {
            stop,
            accepted: progress.accepted_here,
            elapsed: progress.started.elapsed(),
        })
    }

    async fn joined(&mut self, joined: Result<TaskResult, tokio::task::JoinError>) {
        match joined {
            Ok(TaskResult::Done(outcome)) => {
                if self.to_writer.send(outcome).await.is_err() {
                    self.in_flight -= 1;
                    self.writer_failed();
                }
            }
            Ok(TaskResult::Fatal(message)) => {
                self.in_flight -= 1;
                self.halt(message);
            }
            Err(e) if e.is_cancelled() => self.in_flight -= 1,
            Err(e) => {
                self.in_flight -= 1;
                self.halt(format!("an attempt crashed: {e}"));
            }
        }
    }

    fn acked(&mut self, ack: Ack) {
        self.in_flight -= 1;
        if let Some(budget) = &mut self.budget {
            budget.release(ack.item);
        }
        let progress = &mut self.progress;
        match ack.decision {
            Decision::Accepted => {
                progress.done += 1;
                progress.accepted_here += 1;
            }
            Decision::Retry(next) => {
                progress.rejected += 1;
                self.queue.push_back((ack.item, next));
            }
            Decision::Failed => {
                progress.rejected += 1;
                progress.failed += 1;
            }
        }
        if let Some(m) = &ack.message {
            tracing::debug!("item {}: {m}", ack.item);
        }
        if !ack.failure {
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures += 1;
            if self.consecutive_failures >= self.config.max_consecutive_failures {
                let last = ack.message.unwrap_or_default();
                let n = self.consecutive_failures;
                self.wind_down(Stop::Fatal(format!(
                    "{n} consecutive failures (--max_consecutive_failures); the last: {last}"
                )));
            }
        }
        self.progress.update();
    }

    fn interrupted(&mut self) {
        if !self.stopping {
            eprintln!(
                "interrupt: finishing {} items in flight (up to {:.0} s); press Ctrl-C again to exit now",
                self.in_flight,
                self.shutdown_timeout().as_secs_f64()
            );
            self.wind_down(Stop::Interrupted);
        }
    }
}

// The budget joined the run's settings here; bundling them would touch every caller.
#[allow(clippy::too_many_arguments)]
pub async fn dispatch(
    ctx: Arc<Ctx>,
    writer: Writer,
    queue: Queue,
    total: u64,
    done: u64,
    concurrency: usize,
    config: &RunConfig,
    budget: Option<CostBudget>,
) -> Result<Summary> {
    let store = writer.store.clone();
    let pool = ctx.pool.clone();
    let (to_writer, from_dispatch) = mpsc::channel::<Outcome>(concurrency * 4 + 8);
    let (ack_tx, mut acks) = mpsc::unbounded_channel();
    let writer_thread = spawn_writer(writer, from_dispatch, ack_tx)?;
    let mut d = Dispatcher {
        ctx,
        config,
        store,
        queue,
        concurrency,
        to_writer,
        tasks: JoinSet::new(),
        in_flight: 0,
        stopping: false,
        deadline: None,
        stop: Stop::Finished,
        writer_gone: false,
        consecutive_failures: 0,
        progress: Progress::new(total, done, pool),
        budget,
    };
    let mut signals = watch_signals();
    let mut ticker = tokio::time::interval(Duration::from_secs(10));
    ticker.tick().await;
    let mut sampler = tokio::time::interval(Duration::from_secs(1));
    sampler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        d.fill();
        if d.in_flight == 0 {
            break;
        }
        tokio::select! {
            Some(joined) = d.tasks.join_next() => d.joined(joined).await,
            ack = acks.recv(), if !d.writer_gone => match ack {
                Some(ack) => d.acked(ack),
                None => d.writer_failed(),
            },
            Some(()) = signals.recv() => d.interrupted(),
            _ = async { if let Some(at) = d.deadline { tokio::time::sleep_until(at).await } }, if d.deadline.is_some() => d.timed_out(),
            _ = ticker.tick() => d.progress.log_line(),
            _ = sampler.tick() => {
                d.progress.pool.sample();
                d.progress.update();
            }
        }
    }
    d.finish(writer_thread)
}
