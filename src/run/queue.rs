//! What a run has to do: the stored plan checked against its fingerprint, and the items still
//! to attempt.

use std::collections::VecDeque;

use anyhow::{bail, Result};

use crate::plan::Fingerprinter;
use crate::store::{Meta, State, Store};

/// Refuses a store whose stored plan no longer hashes to its fingerprint.
pub fn verify_plan(store: &Store, meta: &Meta) -> Result<()> {
    let fps = [
        meta.datasets.dialogues.fingerprint.as_str(),
        meta.datasets.personas.fingerprint.as_str(),
    ];
    let mut f = Fingerprinter::new(&meta.catalog, &meta.config, &fps);
    store.for_each_item(|item| {
        f.add(&item);
        Ok(())
    })?;
    let actual = f.finish();
    if actual != meta.plan_fingerprint {
        bail!(
            "the plan in {} does not match its fingerprint ({} stored, {actual} computed): it was written by an incompatible dgen or altered; plan into a new --store",
            store.path().display(),
            meta.plan_fingerprint
        );
    }
    Ok(())
}

/// (item index, next attempt number) pairs, in dispatch order.
pub type Queue = VecDeque<(u64, u32)>;

/// The items still to attempt, in index order, and where the plan stands.
pub struct Work {
    pub queue: Queue,
    pub total: u64,
    /// Items already accepted.
    pub done: u64,
}

pub fn pending_work(store: &Store, max_attempts: u32) -> Result<Work> {
    let mut work = Work {
        queue: VecDeque::new(),
        total: 0,
        done: 0,
    };
    for (index, state) in store.states()? {
        work.total += 1;
        match state.state {
            State::Done => work.done += 1,
            State::Pending | State::InFlight => work.queue.push_back((index, state.attempts)),
            State::Rejected if state.attempts < max_attempts => {
                work.queue.push_back((index, state.attempts))
            }
            _ => {}
        }
    }
    Ok(work)
}
