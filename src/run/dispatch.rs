//! The dispatcher: keeps `--concurrency` attempts in flight, hands finished ones to the writer,
//! re-queues rejected items, and stops on a signal, a fatal error or the breaker.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::cli::RunArgs;
use crate::remote;

use super::attempt::{attempt_item, Ctx, Outcome, TaskResult};
use super::progress::Progress;
use super::queue::Queue;
use super::shutdown::watch_signals;
use super::writer::{spawn_writer, Decision, Writer};

pub enum Stop {
    Finished,
    Interrupted,
    Fatal(String),
}

pub struct Summary {
    pub stop: Stop,
    pub accepted: u64,
    pub elapsed: Duration,
}

pub async fn dispatch(
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
    // Export and status requests from other processes, answered from read snapshots.
    let mut requests = tokio::time::interval(Duration::from_millis(200));
    let serving = Arc::new(std::sync::atomic::AtomicBool::new(false));

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
            _ = requests.tick() => {
                use std::sync::atomic::Ordering;
                if !remote::pending(store.path()).is_empty() && !serving.swap(true, Ordering::SeqCst) {
                    let (store, serving) = (store.clone(), serving.clone());
                    tokio::task::spawn_blocking(move || {
                        remote::serve(&store, remote::answer);
                        serving.store(false, Ordering::SeqCst);
                    });
                }
            },
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
