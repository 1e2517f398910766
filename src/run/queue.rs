//! What a run has to do: the stored plan checked against its fingerprint, and the items still
//! to attempt.

use std::collections::{HashMap, VecDeque};

use anyhow::Result;

use crate::store::{ItemState, State, Store};

/// (item index, next attempt number) pairs, in dispatch order.
pub type Queue = VecDeque<(u64, u32)>;

/// The items still to attempt, in index order, and where the plan stands.
pub struct Work {
    pub queue: Queue,
    pub total: u64,
    /// Items already accepted.
    pub done: u64,
    /// Items out of attempts, counting those in `settle`.
    pub failed: u64,
    /// Rejected items that have used up a lowered `--max_attempts`: the run records them as
    /// failed before it starts, so that `dgen status` and the run agree.
    pub settle: Vec<(u64, ItemState)>,
    /// Failed items given another round by `--retry_failed`, with their new attempt limit.
    pub extended: HashMap<u64, u32>,
}

/// Sorts every item: done, failed (now or settled), or queued with its next attempt number.
/// Failed items come back when `--max_attempts` was raised above their attempts (up to it), or
/// with `retry_failed` for `max_attempts` more than they have used; attempt numbers keep
/// counting, so a retried item never repeats an earlier attempt's sampling.
pub fn pending_work(store: &Store, max_attempts: u32, retry_failed: bool) -> Result<Work> {
    let mut work = Work {
        queue: VecDeque::new(),
        total: 0,
        done: 0,
        failed: 0,
        settle: Vec::new(),
        extended: HashMap::new(),
    };
    for (index, state) in store.states()? {
        work.total += 1;
        let next = state.attempts;
        match state.state {
            State::Done => work.done += 1,
            State::Pending | State::InFlight => work.queue.push_back((index, next)),
            // Failed, or out of attempts under this run's limit: `--retry_failed` gives it
            // `max_attempts` more than it has used.
            State::Failed | State::Rejected
                if retry_failed && (state.state == State::Failed || next >= max_attempts) =>
            {
                work.extended
                    .insert(index, next.saturating_add(max_attempts));
                work.queue.push_back((index, next));
            }
            State::Rejected | State::Failed if next < max_attempts => {
                work.queue.push_back((index, next))
            }
            State::Rejected => {
                work.failed += 1;
                let settled = ItemState {
                    state: State::Failed,
                    ..state
                };
                work.settle.push((index, settled));
            }
            State::Failed => work.failed += 1,
        }
    }
    Ok(work)
}
