//! `dgen judge` over a store: `--concurrency` judge calls in flight, one writer thread that
//! commits scores, tokens and error counts in batches (one redb transaction each, never across
//! an `.await`). A score counts once committed, so a pass killed at any instant and started
//! again judges exactly what has no score yet.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::rubric::Subject;
use super::{Judge, JudgeError, JudgeScore};
use crate::cost::{self, Price};
use crate::llm::Usage;
use crate::store::{Batch, Store};

/// Results committed in one transaction at most.
const BATCH: usize = 64;

/// What this pass is asked to do.
pub struct PassOptions {
    pub concurrency: usize,
    pub limit: Option<u64>,
    pub rescore: bool,
    pub max_consecutive_failures: u32,
    /// The judge model's price: each commit adds what its calls cost to the store's spent
    /// counter, which `dgen run --max_cost` holds against.
    pub price: Option<Price>,
}

/// What one dialogue's judging produced, for the writer.
enum Scoring {
    Scored(u64, JudgeScore, Usage),
    Failed(&'static str, Usage),
}

/// The counters of judge calls; shared with `dgen run --judge`.
pub fn count_judge(batch: &mut Batch, usage: Usage, error: Option<&str>) {
    batch.count("judge/calls", usage.calls);
    batch.count("judge/tokens/prompt", usage.prompt_tokens);
    batch.count("judge/tokens/completion", usage.completion_tokens);
    batch.count(crate::cost::JUDGE_CACHED_TOKENS, usage.cached_tokens);
    if let Some(kind) = error {
        batch.count(format!("judge/errors/{kind}"), 1);
    }
}

/// The writer thread: commits what arrives in batches until every sender is gone, or until a
/// commit fails (its handle returns the error; the pass then stops, see [`dispatch`]).
fn spawn_writer(
    store: Arc<Store>,
    price: Option<Price>,
    mut rx: mpsc::Receiver<Scoring>,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    std::thread::Builder::new()
        .name("judge-writer".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut batch = Batch::default();
                let mut next = Some(first);
                let mut n = 0;
                let mut spent = 0u64;
                while let Some(result) = next.take() {
                    let usage = match result {
                        Scoring::Scored(seq, score, usage) => {
                            batch.judged.push((seq, score));
                            count_judge(&mut batch, usage, None);
                            usage
                        }
                        Scoring::Failed(kind, usage) => {
                            count_judge(&mut batch, usage, Some(kind));
                            usage
                        }
                    };
                    if let Some(price) = &price {
                        spent = spent.saturating_add(price.cost_nano(&usage));
                    }
                    n += 1;
                    if n < BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                batch.count(cost::SPENT_NANO_USD, spent);
                store.apply(&batch).with_context(|| {
                    format!(
                        "committing judge scores to {} failed; scores committed before are kept. Fix the cause (free disk space, permissions) and run `dgen judge` again",
                        store.path().display()
                    )
                })?;
            }
            Ok(())
        })
        .context("cannot start the store writer thread")
}

/// How the pass ended.
enum End {
    Finished,
    Interrupted,
    Fatal(String),
}

/// Judges the dialogues `opts` selects; returns the closing line's figures or the reason to
/// stop.
pub fn judge_store(store: Arc<Store>, judge: Judge, opts: &PassOptions) -> Result<PassSummary> {
    let model = judge.settings.model.clone();
    let version = super::JUDGE_PROMPT_VERSION;
    let (total, mut todo) = store.judge_todo(&model, version, opts.rescore)?;
    if let Some(limit) = opts.limit {
        todo.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    let mut summary = PassSummary {
        total,
        todo: todo.len() as u64,
        scored: 0,
        errors: std::collections::BTreeMap::new(),
        last_error: None,
        interrupted: false,
    };
    if todo.is_empty() {
        return Ok(summary);
    }
    tracing::info!(
        "judge: {} of {total} dialogues to score with {model} (rubric {version}), concurrency {}",
        todo.len(),
        opts.concurrency
    );
    let runtime = crate::process::worker_runtime()?;
    let (tx, rx) = mpsc::channel::<Scoring>(opts.concurrency * 2 + 8);
    let writer = spawn_writer(store.clone(), opts.price, rx)?;
    let end = runtime.block_on(dispatch(
        store,
        Arc::new(judge),
        todo,
        tx,
        opts,
        &mut summary,
    ));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match writer.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(anyhow!("the store writer panicked")),
    }
    match end {
        End::Finished => Ok(summary),
        End::Interrupted => {
            summary.interrupted = true;
            Ok(summary)
        }
        End::Fatal(message) => bail!("{message}; the scores committed so far are kept"),
    }
}

/// The figures of a pass.
pub struct PassSummary {
    /// Dialogues in the store.
    pub total: u64,
    /// Dialogues this pass set out to judge.
    pub todo: u64,
    pub scored: u64,
    /// Dialogues left unjudged, by kind of error.
    pub errors: std::collections::BTreeMap<&'static str, u64>,
    pub last_error: Option<String>,
    pub interrupted: bool,
}

/// The writer ended early (a failed commit): nothing more can be committed, so nothing more
/// should be paid for.
struct WriterGone;

async fn judge_one(
    store: Arc<Store>,
    judge: Arc<Judge>,
    seq: u64,
    tx: mpsc::Sender<Scoring>,
) -> Result<Result<(), JudgeError>, WriterGone> {
    if tx.is_closed() {
        return Err(WriterGone);
    }
    let record = match store.dialogue(seq) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Err(JudgeError::Call(crate::llm::CallError::Fatal {
                status: 0,
                message: format!("cannot read dialogue {seq}: {e:#}"),
            })))
        }
    };
    let judged = judge.score(&Subject::of(&record)).await;
    let (message, outcome) = match judged.result {
        Ok(score) => (None, Scoring::Scored(seq, score, judged.usage)),
        Err(e) => {
            let kind = e.kind();
            (Some(e), Scoring::Failed(kind, judged.usage))
        }
    };
    tx.send(outcome).await.map_err(|_| WriterGone)?;
    Ok(match message {
        None => Ok(()),
        Some(e) => Err(e),
    })
}

async fn dispatch(
    store: Arc<Store>,
    judge: Arc<Judge>,
    todo: Vec<u64>,
    tx: mpsc::Sender<Scoring>,
    opts: &PassOptions,
    summary: &mut PassSummary,
) -> End {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(todo.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} judged  {per_sec}  ETA {eta}  {msg}",
            )
            .expect("valid template"),
        );
        bar
    });
    let mut signals = crate::process::watch_signals();
    let mut queue = todo.into_iter();
    let mut tasks = JoinSet::new();
    let mut consecutive = 0u32;
    let mut end = End::Finished;
    let mut stopping = false;
    loop {
        while !stopping && tasks.len() < opts.concurrency {
            let Some(seq) = queue.next() else { break };
            tasks.spawn(judge_one(store.clone(), judge.clone(), seq, tx.clone()));
        }
        if tasks.is_empty() {
            break;
        }
        tokio::select! {
            Some(joined) = tasks.join_next() => {
                match joined {
                    Ok(Err(WriterGone)) => {
                        writer_gone(&mut end, &mut stopping, &mut tasks);
                        continue;
                    }
                    Ok(Ok(Ok(()))) => {
                        summary.scored += 1;
                        consecutive = 0;
                    }
                    Ok(Ok(Err(e))) if e.is_fatal() => {
                        end = End::Fatal(format!(
                            "the judge endpoint refused the request: {e}. Check --judge_base_url, --judge_model and the API key"
                        ));
                        stopping = true;
                        tasks.abort_all();
                    }
                    Ok(Ok(Err(e))) => {
                        tracing::warn!("{e}");
                        *summary.errors.entry(e.kind()).or_default() += 1;
                        summary.last_error = Some(e.to_string());
                        consecutive += 1;
                        if consecutive >= opts.max_consecutive_failures && !stopping {
                            end = End::Fatal(format!(
                                "{consecutive} consecutive dialogues could not be judged (--max_consecutive_failures); the last: {e}"
                            ));
                            stopping = true;
                        }
                    }
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => {
                        end = End::Fatal(format!("a judge task crashed: {e}"));
                        stopping = true;
                        tasks.abort_all();
                    }
                }
                if let Some(bar) = &bar {
                    bar.inc(1);
                    let errors: u64 = summary.errors.values().sum();
                    bar.set_message(format!("errors {errors}"));
                }
            }
            () = tx.closed(), if !stopping => writer_gone(&mut end, &mut stopping, &mut tasks),
            Some(()) = signals.recv() => {
                if !stopping {
                    eprintln!("interrupt: stopping; the scores committed so far are kept");
                    end = End::Interrupted;
                    stopping = true;
                    tasks.abort_all();
                }
            }
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    end
}

/// The writer ended early: the judge calls in flight are cancelled rather than paid for with
/// nothing to commit them to; the writer's handle holds the error the pass ends with.
fn writer_gone(
    end: &mut End,
    stopping: &mut bool,
    tasks: &mut JoinSet<Result<Result<(), JudgeError>, WriterGone>>,
) {
    if !matches!(end, End::Fatal(_)) {
        *end = End::Fatal("the store writer stopped before the pass ended".to_string());
    }
    *stopping = true;
    tasks.abort_all();
}
