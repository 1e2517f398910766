//! The single writer: duplicate checks where the commit happens, then one redb transaction a
//! batch — dialogue, hash, embedding, item state and counters land together or not at all.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use tokio::sync::mpsc;

use crate::dedup::DedupIndex;
use crate::llm::Usage;
use crate::store::{Accepted, Batch, ItemState, State, Store};

use super::attempt::Outcome;

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

/// The single writer: duplicate checks where the commit happens, then one transaction a batch.
pub struct Writer {
    pub store: Arc<Store>,
    pub index: DedupIndex,
    pub next_seq: u64,
    pub threshold: f32,
    pub max_attempts: u32,
    pub last_commit: Instant,
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

pub fn spawn_writer(
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
