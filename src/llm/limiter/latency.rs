//! Latency per completion token of one kind of call, the signal by which a server that queues
//! (llama.cpp, vLLM) shows it has too much to do.

use tokio::time::Instant;

use super::{BASELINE_DOUBLING, LATENCY_TOLERANCE, NOTICEABLE, WARMUP_SAMPLES};

/// Latency of one kind of call, per completion token: a moving average, and an aging minimum
/// of it as the baseline (the average rather than single samples, so one lucky call does not
/// set it).
#[derive(Debug)]
pub(super) struct Latency {
    baseline: f64,
    recent: f64,
    at: Instant,
    /// The limiter's epoch of the samples counted in `fresh`.
    epoch: u64,
    /// Samples of calls started since the latest decrease: only they can cause the next one.
    fresh: u32,
}

impl Latency {
    pub(super) fn new(per_token: f64, at: Instant, epoch: u64) -> Latency {
        Latency {
            baseline: per_token,
            recent: per_token,
            at,
            epoch,
            fresh: 0,
        }
    }

    /// Adds a sample of a call started in `epoch` that returned `completion` tokens; true when
    /// the recent latency says the server queues. A rise of less than [`NOTICEABLE`] a call is
    /// noise.
    pub(super) fn observe(
        &mut self,
        per_token: f64,
        completion: u64,
        now: Instant,
        epoch: u64,
    ) -> bool {
        self.recent = 0.75 * self.recent + 0.25 * per_token;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let aged = self.baseline * (elapsed / BASELINE_DOUBLING.as_secs_f64()).exp2();
        self.baseline = self.recent.min(aged);
        self.at = now;
        if epoch > self.epoch {
            self.epoch = epoch;
            self.fresh = 0;
        }
        if epoch < self.epoch {
            return false;
        }
        self.fresh = self.fresh.saturating_add(1);
        self.fresh >= WARMUP_SAMPLES
            && self.recent > LATENCY_TOLERANCE * self.baseline
            && (self.recent - self.baseline) * completion as f64 > NOTICEABLE
    }
}
