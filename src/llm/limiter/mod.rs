//! Adaptive concurrency: how many requests may be in flight to one endpoint, and when the next
//! one may start. Every HTTP try takes a [`Permit`] first and hands it back with what the server
//! said, so the limiter governs requests whatever shape the work has.
//!
//! - The number in flight adapts below a ceiling (`--concurrency`): slow start, then additive
//!   increase (one more per limit's worth of successes), multiplicative decrease on a 429 or a
//!   503 (halved, and nothing starts before the server's `Retry-After`), and on queueing: a
//!   server that queues (llama.cpp, vLLM) answers slower instead of refusing, so when the recent
//!   time per completion token of a kind of call (calls with the same `max_tokens`) rises to
//!   [`LATENCY_TOLERANCE`] times its baseline, the limit shrinks by [`LATENCY_DECREASE`].
//!   One decrease per round: only a request started after the last decrease can cause another.
//!   The baseline is the lowest recent latency, but it ages (doubles in [`BASELINE_DOUBLING`]
//!   while latency stays above it), so a server that simply got slower costs decreases for a
//!   minute or so, after which additive increase resumes; a decrease needs
//!   [`WARMUP_SAMPLES`] samples of calls started after the previous one. Calls without usage or
//!   with fewer than [`MIN_LATENCY_TOKENS`] completion tokens are no sample: their time is
//!   mostly the fixed time to the first token. The rule is on or off per endpoint
//!   ([`Limits::latency_backoff`]).
//! - Pacing ([`pacing`]): requests spread evenly under per-minute limits of requests and
//!   tokens, from `--rpm` / `--tpm` or the server's `x-ratelimit-limit-requests` / `-tokens`,
//!   with no burst, since servers enforce those limits over windows as short as a second; a
//!   request's tokens are estimated from its size and `max_tokens`, then corrected with the
//!   usage returned. When `x-ratelimit-remaining-*` says the server is full, nothing starts
//!   until it frees room: its reset, or one request's time at its rate if sooner.
//! - A time series of requests in flight and the limit, one sample a second (sparser on long
//!   runs), which the writer stores for `dgen report`.

mod latency;
mod pacing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::retry::MAX_SERVER_WAIT;
use latency::Latency;
use pacing::Pacing;
pub use pacing::RateHeaders;

/// Recent latency this many times the fastest seen means the server queues.
pub const LATENCY_TOLERANCE: f64 = 1.5;
/// The limit's factor on queueing.
pub const LATENCY_DECREASE: f64 = 0.8;
/// The limit's factor on a 429 or 503.
pub const RATE_LIMIT_DECREASE: f64 = 0.5;
/// The limit a run starts at (or the ceiling, if lower); slow start doubles it each round.
pub const INITIAL_LIMIT: f64 = 4.0;
/// Latency samples of a kind of call, of calls started since the latest decrease, before its
/// latency can shrink the limit (again).
pub(super) const WARMUP_SAMPLES: u32 = 4;
/// How long the latency baseline takes to double while recent latency stays above it: a
/// minimum that never aged would hold a server that got slower for good to its best minute,
/// and cut the limit to 1 for good. Long beside the seconds a queue takes to build or drain.
pub const BASELINE_DOUBLING: Duration = Duration::from_secs(120);
/// The fewest completion tokens a call needs to be a latency sample.
pub const MIN_LATENCY_TOKENS: u64 = 16;
/// The least added latency a call (seconds) that counts as queueing.
pub(super) const NOTICEABLE: f64 = 0.02;
/// Samples one run keeps at one a second before it halves the rate, and so on.
const SAMPLES_PER_STEP: u64 = 3600;

/// What the run allows: the ceiling and explicit per-minute limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub ceiling: usize,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    /// Whether rising latency shrinks the limit: right for a server that queues (llama.cpp,
    /// vLLM), noise on a hosted API whose latency moves with its own load.
    pub latency_backoff: bool,
}

impl Limits {
    pub fn ceiling(ceiling: usize) -> Limits {
        Limits {
            ceiling,
            rpm: None,
            tpm: None,
            latency_backoff: true,
        }
    }
}

/// One point of the in-flight time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The most requests in flight since the previous sample.
    pub in_flight: u32,
    /// The limit then, rounded down.
    pub limit: u32,
}

/// What became of a request, for the limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Feedback {
    /// Answered; the tokens it was billed (prompt + completion) and its completion tokens,
    /// when the server said.
    Success {
        billed: Option<u64>,
        completion: u64,
    },
    /// 429 or 503, with the wait the server asked for.
    Overloaded { retry_after: Option<Duration> },
    /// Anything else (a timeout, a refusal): says nothing about the load.
    Other,
}

#[derive(Debug)]
struct State {
    limit: f64,
    /// Until the first decrease, the limit grows by one a success (doubling each round).
    slow_start: bool,
    /// Whether the endpoint has answered yet: until then one request at a time, since its
    /// first answer may state limits that a burst would already exceed.
    answered: bool,
    in_flight: usize,
    peak: usize,
    /// Counts decreases; a permit taken before the latest one cannot cause another.
    epoch: u64,
    hold_until: Option<Instant>,
    pacing: Pacing,
    latency: HashMap<u32, Latency>,
    samples: Vec<Sample>,
    sampled: u64,
    ticks: u64,
    overloaded: u64,
}

pub struct Limiter {
    ceiling: usize,
    latency_backoff: bool,
    state: Mutex<State>,
    /// Notified whenever a request ends; limiters of one pool of endpoints share it, so a
    /// request waiting for any of them wakes when one has room.
    released: Arc<Notify>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Arc<Limiter> {
        Limiter::waking(limits, Arc::new(Notify::new()))
    }

    /// A limiter that notifies `released` whenever one of its requests ends.
    pub fn waking(limits: Limits, released: Arc<Notify>) -> Arc<Limiter> {
        let now = Instant::now();
        let ceiling = limits.ceiling.max(1);
        Arc::new(Limiter {
            ceiling,
            latency_backoff: limits.latency_backoff,
            state: Mutex::new(State {
                limit: INITIAL_LIMIT.min(ceiling as f64),
                slow_start: true,
                answered: false,
                in_flight: 0,
                peak: 0,
                epoch: 0,
                hold_until: None,
                pacing: Pacing::new(&limits, now),
                latency: HashMap::new(),
                samples: Vec::new(),
                sampled: 0,
                ticks: 0,
                overloaded: 0,
            }),
            released,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves counters that are still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// As if the endpoint had answered once (tests of what comes after the first answer).
    #[cfg(test)]
    pub(crate) fn mark_answered(&self) {
        self.lock().answered = true;
    }

    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// The current limit (at least 1, at most the ceiling).
    pub fn limit(&self) -> f64 {
        self.lock().limit
    }

    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// The requests in flight and the limit (at least 1); while the server asked for a pause,
    /// how long it still lasts.
    pub fn load(&self) -> Result<(usize, f64), Duration> {
        let s = self.lock();
        let now = Instant::now();
        match s.hold_until {
            Some(until) if until > now => Err(until - now),
            _ => Ok((s.in_flight, s.allowed() as f64)),
        }
    }

    /// Waits until a request of about `tokens` tokens, of kind `class`, may start.
    pub async fn acquire(self: &Arc<Self>, tokens: u64, class: u32) -> Permit {
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_acquire(tokens, class) {
                Ok(permit) => return permit,
                Err(Some(d)) => tokio::time::sleep(d).await,
                Err(None) => notified.await,
            }
        }
    }

    /// A permit if a request may start now; else how long to wait (`None`: until a request
    /// ends).
    pub fn try_acquire(
        self: &Arc<Self>,
        tokens: u64,
        class: u32,
    ) -> Result<Permit, Option<Duration>> {
        let mut s = self.lock();
        let now = Instant::now();
        self.wait(&mut s, now, tokens)?;
        s.in_flight += 1;
        s.peak = s.peak.max(s.in_flight);
        Ok(Permit {
            limiter: self.clone(),
            epoch: s.epoch,
            started: now,
            tokens,
            class,
            done: false,
        })
    }

    /// `Ok` and the buckets debited when a request may start now; else how long to wait
    /// (`None`: until a request ends).
    fn wait(&self, s: &mut State, now: Instant, tokens: u64) -> Result<(), Option<Duration>> {
        if let Some(until) = s.hold_until {
            if until > now {
                return Err(Some(until - now));
            }
            s.hold_until = None;
        }
        if s.in_flight >= s.allowed() {
            return Err(None);
        }
        if let Some(wait) = s.pacing.wait(now, tokens) {
            return Err(Some(wait.max(Duration::from_millis(1))));
        }
        s.pacing.take(tokens);
        Ok(())
    }

    fn release(&self, permit: &Permit, feedback: Feedback, headers: &RateHeaders) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        let now = Instant::now();
        s.answered |= feedback != Feedback::Other;
        match feedback {
            Feedback::Success { billed, completion } => {
                if let Some(billed) = billed {
                    s.pacing.bill(permit.tokens, billed);
                }
                let queueing = self.latency_backoff
                    && completion >= MIN_LATENCY_TOKENS
                    && self.observe_latency(&mut s, permit, now, completion);
                if queueing {
                    self.decrease(&mut s, permit, LATENCY_DECREASE, "latency rose");
                } else if s.slow_start {
                    s.limit = (s.limit + 1.0).min(self.ceiling as f64);
                } else {
                    s.limit = (s.limit + 1.0 / s.limit).min(self.ceiling as f64);
                }
            }
            Feedback::Overloaded { retry_after } => {
                s.overloaded += 1;
                self.decrease(
                    &mut s,
                    permit,
                    RATE_LIMIT_DECREASE,
                    "the server is overloaded",
                );
                if let Some(wait) = retry_after {
                    hold(&mut s, now + wait.min(MAX_SERVER_WAIT));
                }
            }
            Feedback::Other => {}
        }
        if let Some(until) = s.pacing.learn(headers, now) {
            hold(&mut s, until);
        }
        drop(s);
        self.released.notify_waiters();
    }

    /// Adds the call's time per completion token to its kind's latency; true when it says the
    /// server queues.
    fn observe_latency(
        &self,
        s: &mut State,
        permit: &Permit,
        now: Instant,
        completion: u64,
    ) -> bool {
        let secs = now.saturating_duration_since(permit.started).as_secs_f64();
        let per_token = secs / completion as f64;
        let epoch = s.epoch;
        s.latency
            .entry(permit.class)
            .or_insert_with(|| Latency::new(per_token, now, epoch))
            .observe(per_token, completion, now, permit.epoch)
    }

    /// Shrinks the limit by `factor`, unless `permit` started before the latest decrease;
    /// true when it did.
    fn decrease(&self, s: &mut State, permit: &Permit, factor: f64, why: &str) -> bool {
        if permit.epoch != s.epoch {
            return false;
        }
        let before = s.limit;
        s.limit = (s.limit * factor).max(1.0);
        s.slow_start = false;
        s.epoch += 1;
        tracing::debug!("concurrency limit {before:.1} -> {:.1}: {why}", s.limit);
        true
    }

    /// Records a point of the time series; called once a second while a run goes on. A run
    /// keeps one a second for its first hour, one every two seconds for the next, and so on.
    pub fn sample(&self) {
        let mut s = self.lock();
        let tick = s.ticks;
        s.ticks += 1;
        let every = 1u64 << (s.sampled / SAMPLES_PER_STEP).min(20);
        if !tick.is_multiple_of(every) {
            return;
        }
        let at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let sample = Sample {
            at_ms,
            in_flight: s.peak.min(u32::MAX as usize) as u32,
            limit: s.limit.floor() as u32,
        };
        s.peak = s.in_flight;
        s.sampled += 1;
        s.samples.push(sample);
    }

    /// The samples recorded since the last call, and how many 429s and 503s came meanwhile.
    pub fn drain(&self) -> (Vec<Sample>, u64) {
        let mut s = self.lock();
        (
            std::mem::take(&mut s.samples),
            std::mem::take(&mut s.overloaded),
        )
    }
}

impl State {
    /// How many requests may be in flight now (at least 1).
    fn allowed(&self) -> usize {
        if self.answered {
            (self.limit.floor() as usize).max(1)
        } else {
            1
        }
    }
}

fn hold(s: &mut State, until: Instant) {
    s.hold_until = Some(s.hold_until.map_or(until, |h| h.max(until)));
}

/// Leave to send one request; give it back with [`Permit::finish`]. Dropped unfinished (a
/// cancelled call), it frees its place and says nothing about the load.
pub struct Permit {
    limiter: Arc<Limiter>,
    epoch: u64,
    started: Instant,
    tokens: u64,
    class: u32,
    done: bool,
}

impl Permit {
    pub fn finish(mut self, feedback: Feedback, headers: &RateHeaders) {
        self.done = true;
        self.limiter.release(&self, feedback, headers);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.limiter
                .release(self, Feedback::Other, &RateHeaders::default());
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;

    use super::*;

    fn success(completion: u64) -> Feedback {
        Feedback::Success {
            billed: None,
            completion,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_then_halving_on_a_429_once_per_round() {
        let limiter = Limiter::new(Limits::ceiling(64));
        assert_eq!(limiter.limit(), INITIAL_LIMIT);
        for _ in 0..20 {
            let p = limiter.acquire(10, 1).await;
            tokio::time::advance(Duration::from_millis(100)).await;
            p.finish(success(10), &RateHeaders::default());
        }
        assert_eq!(limiter.limit(), 24.0);
        // Two permits of the same round: only the first 429 halves the limit.
        let a = limiter.acquire(10, 1).await;
        let b = limiter.acquire(10, 1).await;
        let overloaded = Feedback::Overloaded { retry_after: None };
        a.finish(overloaded, &RateHeaders::default());
        b.finish(overloaded, &RateHeaders::default());
        assert_eq!(limiter.limit(), 12.0);
        // Additive increase now: one per limit's worth of successes.
        for _ in 0..12 {
            let p = limiter.acquire(10, 1).await;
            tokio::time::advance(Duration::from_millis(100)).await;
            p.finish(success(10), &RateHeaders::default());
        }
        assert!((limiter.limit() - 13.0).abs() < 0.1, "{}", limiter.limit());
        assert_eq!(limiter.drain().1, 2);
    }

    /// Sequential calls of `latency` each, answering `completion` tokens; the lowest limit seen.
    async fn calls(limiter: &Arc<Limiter>, n: usize, latency: Duration, completion: u64) -> f64 {
        let mut lowest = limiter.limit();
        for _ in 0..n {
            let p = limiter.acquire(10, 7).await;
            tokio::time::advance(latency).await;
            p.finish(success(completion), &RateHeaders::default());
            lowest = lowest.min(limiter.limit());
        }
        lowest
    }

    #[tokio::test(start_paused = true)]
    async fn rising_latency_shrinks_the_limit_but_never_below_one() {
        let limiter = Limiter::new(Limits::ceiling(16));
        let mut latency = Duration::from_millis(10);
        for _ in 0..120 {
            calls(&limiter, 1, latency, 100).await;
            latency = latency.mul_f64(1.05);
        }
        assert!(limiter.limit() < 4.0, "{}", limiter.limit());
        assert!(limiter.limit() >= 1.0);
    }

    /// Regression: the baseline was the best average ever seen, so latency that settled at twice
    /// it cut the limit on every success, down to 1, with no additive increase ever after.
    #[tokio::test(start_paused = true)]
    async fn latency_that_doubles_for_good_does_not_pin_the_limit_at_one() {
        let limiter = Limiter::new(Limits::ceiling(64));
        calls(&limiter, 20, Duration::from_millis(100), 100).await;
        assert_eq!(limiter.limit(), 24.0);
        // Ten minutes of calls at twice the latency.
        let lowest = calls(&limiter, 3000, Duration::from_millis(200), 100).await;
        assert!(lowest < 24.0, "the rise cost no decrease: {lowest}");
        assert!(
            limiter.limit() >= 24.0,
            "no additive increase after the baseline adapted: {} (lowest {lowest})",
            limiter.limit()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn short_answers_missing_usage_and_the_switch_keep_latency_out() {
        // Few completion tokens (or none: no usage), or the rule switched off: no decrease.
        for (latency_backoff, completion) in
            [(true, 0), (true, MIN_LATENCY_TOKENS - 1), (false, 100)]
        {
            let limiter = Limiter::new(Limits {
                latency_backoff,
                ..Limits::ceiling(64)
            });
            calls(&limiter, 10, Duration::from_millis(100), completion).await;
            let lowest = calls(&limiter, 20, Duration::from_secs(5), completion).await;
            assert!(lowest >= 14.0, "{latency_backoff} {completion}: {lowest}");
            assert_eq!(limiter.limit(), 34.0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_request_at_a_time_until_the_endpoint_answers() {
        let limiter = Limiter::new(Limits::ceiling(8));
        let first = limiter.acquire(1, 0).await;
        assert!(matches!(limiter.try_acquire(1, 0), Err(None)));
        assert_eq!(limiter.load(), Ok((1, 1.0)));
        // A call that ends without an answer says nothing yet.
        drop(first);
        let second = limiter.acquire(1, 0).await;
        assert!(matches!(limiter.try_acquire(1, 0), Err(None)));
        second.finish(success(1), &RateHeaders::default());
        let _held: Vec<Permit> = (0..5).map(|_| limiter.try_acquire(1, 0).unwrap()).collect();
        assert_eq!(limiter.in_flight(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_every_request_back() {
        let limiter = Limiter::new(Limits::ceiling(8));
        let p = limiter.acquire(1, 0).await;
        p.finish(
            Feedback::Overloaded {
                retry_after: Some(Duration::from_secs(3)),
            },
            &RateHeaders::default(),
        );
        let start = Instant::now();
        let _p = limiter.acquire(1, 0).await;
        assert_eq!(start.elapsed().as_secs(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_are_paced() {
        let limiter = Limiter::new(Limits {
            rpm: Some(600),
            ..Limits::ceiling(64)
        });
        let start = Instant::now();
        for _ in 0..99 {
            limiter
                .acquire(1, 0)
                .await
                .finish(success(1), &RateHeaders::default());
        }
        // 600 a minute at 98 %: 9.8 a second after the first, with no burst.
        let secs = start.elapsed().as_secs_f64();
        assert!((9.9..10.1).contains(&secs), "{secs}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_server_s_headers_set_the_pace_and_hold_while_it_is_full() {
        let limiter = Limiter::new(Limits::ceiling(8));
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit-tokens", "6000".parse().unwrap());
        headers.insert("x-ratelimit-remaining-tokens", "0".parse().unwrap());
        headers.insert("x-ratelimit-reset-tokens", "2s".parse().unwrap());
        let h = RateHeaders::parse(&headers);
        assert_eq!(h.limit_tokens, Some(6000));
        limiter.acquire(50, 0).await.finish(success(1), &h);
        // 6,000 a minute free 50 tokens in 0.5 s, long before the reset (when it is full
        // again); the learned bucket (98 tokens a second) starts empty, as the server just
        // counted a request: 10 ms more for the 50th token.
        let start = Instant::now();
        limiter
            .acquire(50, 0)
            .await
            .finish(success(1), &RateHeaders::default());
        assert_eq!(start.elapsed().as_millis() / 10, 51);
    }

    #[test]
    fn hostile_headers_are_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit-requests", "-5".parse().unwrap());
        headers.insert("x-ratelimit-limit-tokens", "0".parse().unwrap());
        headers.insert("x-ratelimit-remaining-requests", "NaN".parse().unwrap());
        headers.insert("x-ratelimit-reset-requests", "1e999s".parse().unwrap());
        assert_eq!(RateHeaders::parse(&headers), RateHeaders::default());
    }

    #[test]
    fn samples_thin_out_on_long_runs() {
        let limiter = Limiter::new(Limits::ceiling(4));
        for _ in 0..(SAMPLES_PER_STEP + 100) {
            limiter.sample();
        }
        assert_eq!(limiter.drain().0.len() as u64, SAMPLES_PER_STEP + 50);
    }
}
