//! Several endpoints behind one call (`dgen run --endpoint URL …` or `--endpoints FILE`).
//!
//! Each try goes to the healthy endpoint with the most free room: the share of its adaptive
//! limit not in flight, times its weight (so the load each carries follows its limit). Every endpoint has its own [`Limiter`] (its ceiling is
//! the endpoint's max concurrency), key, retry state and breaker: one that stops answering
//! (connection refused, timeouts or 5xx [`STORM`] tries in a row) or refuses the key or the
//! model (401–405) is taken out and probed again after a backoff — one request at a time, until
//! one succeeds. A try that failed on an endpoint taken out moves to another at once; the call
//! fails only when its retries are spent or no endpoint is left. With one endpoint a call
//! behaves as [`LlmClient::complete`] always has: nothing is taken out, a refusal stops the run.
//!
//! Per-endpoint calls, errors, latency and tokens are counted here and drained by the run's
//! writer into the store's counters, so `dgen status` shows them during and after a run.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::client::{Encoded, Endpoint, LlmClient};
use super::limiter::{Limiter, Permit, Sample};
use super::retry::RetryPolicy;
use super::{CallError, CallFailure, ChatRequest, Completion, Usage};

/// Failed tries in a row (no answer, or a 5xx) that take an endpoint out.
pub const STORM: u32 = 3;
/// The shortest wait before an endpoint taken out is probed: `--retry_base_ms` may be 0.
const PROBE_MIN: Duration = Duration::from_millis(50);

/// One endpoint of the run, as configured.
#[derive(Debug, Clone)]
pub struct PoolEndpoint {
    /// How logs and `dgen status` name it (never with a key or credentials in it).
    pub name: String,
    /// The model sent to it, and named in the provenance of what it generated.
    pub model: String,
    /// Its share of the free room: a weight of 2 fills it twice as readily.
    pub weight: f64,
    /// URL, key, timeout and limits (the ceiling is its max concurrency).
    pub endpoint: Endpoint,
}

/// What one endpoint did: tries sent, tries that failed, the time of answered tries and the
/// tokens billed, and how often it was taken out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub calls: u64,
    pub errors: u64,
    pub latency_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub outs: u64,
}

impl EndpointStats {
    /// The counters a commit adds, by the store's names (`endpoint/NAME/...`).
    pub fn counters(&self) -> [(&'static str, u64); 6] {
        [
            ("calls", self.calls),
            ("errors", self.errors),
            ("latency_ms", self.latency_ms),
            ("prompt_tokens", self.prompt_tokens),
            ("completion_tokens", self.completion_tokens),
            ("outs", self.outs),
        ]
    }

    fn add(&mut self, other: &EndpointStats) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.latency_ms = self.latency_ms.saturating_add(other.latency_ms);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.outs += other.outs;
    }
}

/// A completion and the endpoint (index into the pool) that served it.
pub struct Served {
    pub completion: Completion,
    pub endpoint: usize,
    /// Earlier tries that were sent and timed out (the provider may have billed them).
    pub timed_out: u32,
}

pub struct Pool {
    members: Vec<Member>,
    retry: RetryPolicy,
    /// Notified when a request ends on any endpoint or an endpoint's health changes.
    wake: Arc<Notify>,
}

struct Member {
    name: String,
    model: String,
    weight: f64,
    client: LlmClient,
    health: Mutex<Health>,
    /// Since the writer's last drain, and since the run started.
    stats: Mutex<(EndpointStats, EndpointStats)>,
}

#[derive(Debug)]
struct Health {
    /// Failed tries in a row that count toward [`STORM`].
    failures: u32,
    out: Option<Out>,
    /// The wait before the next probe, when it is next taken out.
    backoff: Duration,
}

#[derive(Debug)]
struct Out {
    until: Instant,
    reason: String,
    /// Refused the key or the model: if every endpoint is out so, the run stops.
    fatal: bool,
    /// A probe is in flight: others wait for its answer.
    probing: bool,
}

/// What the selection found.
enum Pick {
    /// The endpoint, a permit of its limiter, and whether the try probes an endpoint taken out.
    Go(usize, Permit, bool),
    /// Nothing free now: wait this long, or (`None`) until a request ends.
    Wait(Option<Duration>),
    /// Every endpoint is out; the error says why.
    NoneLeft(CallError),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    pub fn new(endpoints: &[PoolEndpoint], retry: RetryPolicy) -> anyhow::Result<Pool> {
        anyhow::ensure!(!endpoints.is_empty(), "a run needs at least one endpoint");
        let wake = Arc::new(Notify::new());
        let probe = retry.base.max(PROBE_MIN);
        let members = endpoints
            .iter()
            .map(|e| {
                let limiter = Limiter::waking(e.endpoint.limits, wake.clone());
                Ok(Member {
                    name: e.name.clone(),
                    model: e.model.clone(),
                    weight: e.weight,
                    client: LlmClient::with_limiter(&e.endpoint, limiter)?,
                    health: Mutex::new(Health {
                        failures: 0,
                        out: None,
                        backoff: probe,
                    }),
                    stats: Mutex::new(Default::default()),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Pool {
            members,
            retry,
            wake,
        })
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The model endpoint `index` is called with.
    pub fn model(&self, index: usize) -> &str {
        &self.members[index].model
    }

    /// The first endpoint's client: the judge shares its limiter when it calls the same model.
    pub fn first(&self) -> &LlmClient {
        &self.members[0].client
    }

    /// Requests in flight over every endpoint.
    pub fn in_flight(&self) -> usize {
        self.limiters().map(|l| l.in_flight()).sum()
    }

    /// The sum of the endpoints' adaptive limits.
    pub fn limit(&self) -> f64 {
        self.limiters().map(|l| l.limit().floor()).sum()
    }

    /// The sum of the endpoints' ceilings.
    pub fn ceiling(&self) -> usize {
        self.limiters().map(|l| l.ceiling()).sum()
    }

    fn limiters(&self) -> impl Iterator<Item = &Arc<Limiter>> {
        self.members.iter().map(|m| m.client.limiter())
    }

    /// Records a point of every endpoint's in-flight series (once a second).
    pub fn sample(&self) {
        for l in self.limiters() {
            l.sample();
        }
    }

    /// The in-flight series since the last call, summed over the endpoints (they are sampled
    /// on the same ticks), and the 429s and 503s meanwhile.
    pub fn drain(&self) -> (Vec<Sample>, u64) {
        let mut merged: Vec<Sample> = Vec::new();
        let mut overloaded = 0;
        for l in self.limiters() {
            let (samples, n) = l.drain();
            overloaded += n;
            for (i, s) in samples.into_iter().enumerate() {
                match merged.get_mut(i) {
                    Some(m) => {
                        m.in_flight = m.in_flight.saturating_add(s.in_flight);
                        m.limit = m.limit.saturating_add(s.limit);
                    }
                    None => merged.push(s),
                }
            }
        }
        (merged, overloaded)
    }

    /// Each endpoint's name and what it did since the last call.
    pub fn drain_stats(&self) -> Vec<(&str, EndpointStats)> {
        self.members
            .iter()
            .map(|m| (m.name.as_str(), std::mem::take(&mut lock(&m.stats).0)))
            .collect()
    }

    /// Each endpoint's name, model and what it did in this run.
    pub fn totals(&self) -> Vec<(&str, &str, EndpointStats)> {
        self.members
            .iter()
            .map(|m| (m.name.as_str(), m.model.as_str(), lock(&m.stats).1))
            .collect()
    }

    /// One completion on whichever endpoint has room, retrying what is worth retrying, on
    /// another endpoint when this one was taken out. Tokens of every answered try count.
    pub async fn complete(&self, request: &ChatRequest) -> Result<Served, CallFailure> {
        let single = self.members.len() == 1;
        let mut usage = Usage::default();
        let mut retry = 0;
        let mut failovers = 0;
        let mut timed_out = 0;
        let fail = |error, usage, timed_out| {
            Err(CallFailure {
                error,
                usage,
                timed_out,
            })
        };
        let pacing = match Encoded::new(request) {
            Ok(e) => e,
            Err(error) => return fail(error, usage, timed_out),
        };
        loop {
            let (index, permit, probe) =
                match self.acquire(pacing.estimate, pacing.max_tokens).await {
                    Ok(got) => got,
                    Err(error @ CallError::Fatal { .. }) => return fail(error, usage, timed_out),
                    Err(error) if retry < self.retry.max_retries => {
                        let wait = self.retry.delay(retry, None);
                        tracing::debug!("{error}; retry {} in {wait:?}", retry + 1);
                        tokio::time::sleep(wait).await;
                        retry += 1;
                        continue;
                    }
                    Err(error) => return fail(error, usage, timed_out),
                };
            let member = &self.members[index];
            let body = if request.chat.model == member.model {
                pacing.body.clone()
            } else {
                let mut sent = request.clone();
                sent.chat.model.clone_from(&member.model);
                match Encoded::new(&sent) {
                    Ok(e) => e.body,
                    Err(error) => return fail(error, usage, timed_out),
                }
            };
            let started = Instant::now();
            let result = member.client.send_with(body, permit).await;
            member.count(&result, started.elapsed());
            let (error, billed) = match result {
                Ok(mut completion) => {
                    self.succeeded(member);
                    completion.usage += usage;
                    return Ok(Served {
                        completion,
                        endpoint: index,
                        timed_out,
                    });
                }
                Err(failed) => failed,
            };
            usage += billed;
            timed_out += u32::from(error.timed_out());
            // Whether this endpoint was taken out: then the next try goes elsewhere at once.
            let taken_out = match &error {
                CallError::Rejected { .. } => {
                    if probe {
                        // It answered: the refusal concerns this request, not the endpoint.
                        self.succeeded(member);
                    }
                    return fail(error, usage, timed_out);
                }
                CallError::Fatal { .. } if single => return fail(error, usage, timed_out),
                CallError::Fatal { .. } => self.take_out(member, error.to_string(), true, probe),
                CallError::Retryable { .. } if single => false,
                CallError::Retryable { status, .. } => self.failed(member, *status, &error, probe),
            };
            if taken_out && failovers < 2 * self.members.len() {
                failovers += 1;
                tracing::debug!("{} failed ({error}); trying another endpoint", member.name);
                continue;
            }
            let retry_after = match &error {
                CallError::Retryable { retry_after, .. } if retry < self.retry.max_retries => {
                    *retry_after
                }
                _ => return fail(error, usage, timed_out),
            };
            // With several endpoints the server's wait holds its own limiter (429, 503), and
            // the next try may go to another endpoint sooner.
            let wait = self
                .retry
                .delay(retry, if single { retry_after } else { None });
            tracing::debug!(
                "call failed on {} ({error}); retry {} in {wait:?}",
                member.name,
                retry + 1
            );
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    /// Waits for room on some endpoint; an error when every endpoint is out.
    async fn acquire(&self, tokens: u64, class: u32) -> Result<(usize, Permit, bool), CallError> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.pick(tokens, class) {
                Pick::Go(index, permit, probe) => return Ok((index, permit, probe)),
                Pick::NoneLeft(error) => return Err(error),
                Pick::Wait(Some(wait)) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = &mut notified => {}
                    }
                }
                Pick::Wait(None) => notified.await,
            }
        }
    }

    /// The endpoint with the most weighted free room (an endpoint due for a probe first), and
    /// a permit of its limiter.
    fn pick(&self, tokens: u64, class: u32) -> Pick {
        let now = Instant::now();
        // (weighted free share, free places, endpoint, probe)
        let mut candidates: Vec<(f64, f64, usize, bool)> = Vec::new();
        let mut soonest: Option<Duration> = None;
        let mut left = false;
        let mut sooner = |d: Duration| {
            soonest = Some(soonest.map_or(d, |s: Duration| s.min(d)));
        };
        for (i, m) in self.members.iter().enumerate() {
            let limiter = m.client.limiter();
            let probe = match &lock(&m.health).out {
                None => false,
                Some(out) if out.probing => {
                    left = true;
                    continue;
                }
                Some(out) if out.until > now => {
                    sooner(out.until - now);
                    continue;
                }
                Some(_) => true,
            };
            left = true;
            match limiter.load() {
                Ok((in_flight, limit)) if (in_flight as f64) < limit => {
                    let free = limit - in_flight as f64;
                    // The share of its limit still free, weighted: load follows each one's
                    // limit. An absolute count would favour the endpoint whose limit grew
                    // first, however slow its queue.
                    let score = if probe {
                        f64::INFINITY
                    } else {
                        m.weight * free / limit
                    };
                    candidates.push((score, free, i, probe));
                }
                Ok(_) => {}
                Err(held) => sooner(held),
            }
        }
        candidates.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(b.1.total_cmp(&a.1))
                .then(a.2.cmp(&b.2))
        });
        for (_, _, i, probe) in candidates {
            let m = &self.members[i];
            match m.client.limiter().try_acquire(tokens, class) {
                Ok(permit) => {
                    if probe {
                        let mut health = lock(&m.health);
                        match health.out.as_mut() {
                            Some(out) if !out.probing => out.probing = true,
                            // Another call took the probe meanwhile.
                            _ => continue,
                        }
                        tracing::debug!("probing endpoint {}", m.name);
                    }
                    return Pick::Go(i, permit, probe);
                }
                Err(Some(wait)) => sooner(wait),
                Err(None) => {}
            }
        }
        if left {
            Pick::Wait(soonest)
        } else {
            Pick::NoneLeft(self.none_left(now))
        }
    }

    /// Every endpoint is out: fatal when each refused the key or the model, else worth
    /// another try once a probe is due.
    fn none_left(&self, now: Instant) -> CallError {
        let mut fatal = true;
        let reasons: Vec<String> = self
            .members
            .iter()
            .map(|m| {
                let health = lock(&m.health);
                match &health.out {
                    Some(out) => {
                        fatal &= out.fatal;
                        format!(
                            "{}: {} (probed again in {:.1} s)",
                            m.name,
                            out.reason,
                            out.until.saturating_duration_since(now).as_secs_f64()
                        )
                    }
                    None => format!("{}: available", m.name),
                }
            })
            .collect();
        let message = format!("no endpoint is left: {}", reasons.join("; "));
        if fatal {
            CallError::Fatal { status: 0, message }
        } else {
            CallError::Retryable {
                status: None,
                message,
                retry_after: None,
                timed_out: false,
            }
        }
    }

    fn succeeded(&self, m: &Member) {
        let mut health = lock(&m.health);
        health.failures = 0;
        if let Some(out) = health.out.take() {
            health.backoff = self.retry.base.max(PROBE_MIN);
            tracing::info!("endpoint {} is back (it was out: {})", m.name, out.reason);
            drop(health);
            self.wake.notify_waiters();
        }
    }

    /// A failed try that may say the endpoint is down; true when it is out now.
    fn failed(&self, m: &Member, status: Option<u16>, error: &CallError, probe: bool) -> bool {
        // Rate limits and conflicts are the limiter's business, not signs of a broken endpoint.
        if matches!(status, Some(408 | 409 | 425 | 429)) {
            if probe {
                // It answers: back in, and its limiter paces it.
                self.succeeded(m);
            }
            return false;
        }
        let mut health = lock(&m.health);
        health.failures += 1;
        if !probe && health.out.is_none() && health.failures < STORM {
            return false;
        }
        drop(health);
        self.take_out(m, error.to_string(), false, probe)
    }

    /// Takes the endpoint out until its next probe; a failed probe doubles the wait. A try
    /// sent before it was taken out changes nothing. True: it is out.
    fn take_out(&self, m: &Member, reason: String, fatal: bool, probe: bool) -> bool {
        let mut health = lock(&m.health);
        if health.out.is_some() && !probe {
            return true;
        }
        let wait = health.backoff;
        health.backoff = (wait * 2).min(self.retry.cap.max(PROBE_MIN));
        health.failures = 0;
        tracing::warn!(
            "endpoint {} taken out of the run: {reason}; probing it again in {:.1} s",
            m.name,
            wait.as_secs_f64()
        );
        health.out = Some(Out {
            until: Instant::now() + wait,
            reason,
            fatal,
            probing: false,
        });
        drop(health);
        let mut stats = lock(&m.stats);
        stats.0.outs += 1;
        stats.1.outs += 1;
        drop(stats);
        self.wake.notify_waiters();
        true
    }
}

impl Member {
    fn count(&self, result: &Result<Completion, (CallError, Usage)>, took: Duration) {
        let (usage, ok) = match result {
            Ok(c) => (c.usage, true),
            Err((_, usage)) => (*usage, false),
        };
        let delta = EndpointStats {
            calls: 1,
            errors: u64::from(!ok),
            latency_ms: if ok { took.as_millis() as u64 } else { 0 },
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            outs: 0,
        };
        let mut stats = lock(&self.stats);
        stats.0.add(&delta);
        stats.1.add(&delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Limits;

    fn pool(members: &[(usize, f64)]) -> Pool {
        let endpoints: Vec<PoolEndpoint> = members
            .iter()
            .enumerate()
            .map(|(i, &(ceiling, weight))| PoolEndpoint {
                name: format!("e{i}"),
                model: format!("m{i}"),
                weight,
                endpoint: Endpoint {
                    base_url: format!("http://127.0.0.1:9/{i}"),
                    api_key: None,
                    timeout: Duration::from_secs(1),
                    retry: retry(),
                    limits: Limits::ceiling(ceiling),
                },
            })
            .collect();
        let pool = Pool::new(&endpoints, retry()).unwrap();
        // Past the first answer, after which an endpoint takes more than one request at once.
        for limiter in pool.limiters() {
            limiter.mark_answered();
        }
        pool
    }

    fn retry() -> RetryPolicy {
        RetryPolicy {
            max_retries: 1,
            base: Duration::from_secs(30),
            cap: Duration::from_secs(60),
        }
    }

    /// Picks until nothing is free; the endpoints chosen, permits kept.
    fn fill(p: &Pool) -> (Vec<usize>, Vec<Permit>) {
        let (mut order, mut permits) = (Vec::new(), Vec::new());
        while let Pick::Go(i, permit, _) = p.pick(10, 1) {
            order.push(i);
            permits.push(permit);
        }
        (order, permits)
    }

    #[test]
    fn the_largest_weighted_free_share_wins() {
        // Limits start at 4 (or the ceiling): 2 and 4 free. Equal shares go to the endpoint
        // with more free places.
        let p = pool(&[(2, 1.0), (6, 1.0)]);
        let (order, _permits) = fill(&p);
        assert_eq!(order, [1, 0, 1, 1, 0, 1]);
        assert!(matches!(p.pick(10, 1), Pick::Wait(None)));
        // A weight of 3 triples the first one's share.
        let p = pool(&[(2, 3.0), (6, 1.0)]);
        assert_eq!(fill(&p).0[..3], [0, 0, 1]);
    }

    #[test]
    fn endpoints_taken_out_are_skipped_and_all_refused_is_fatal() {
        let p = pool(&[(4, 1.0), (4, 1.0)]);
        let refused = CallError::Fatal {
            status: 401,
            message: "HTTP 401: bad key".into(),
        };
        assert!(p.take_out(&p.members[1], refused.to_string(), true, false));
        let (order, permits) = fill(&p);
        assert_eq!(order, [0, 0, 0, 0]);
        drop(permits);
        // Connection failures count up to the storm; then it is out too.
        let down = CallError::Retryable {
            status: None,
            message: "connection failed".into(),
            retry_after: None,
            timed_out: false,
        };
        for _ in 1..STORM {
            assert!(!p.failed(&p.members[0], None, &down, false));
        }
        assert!(p.failed(&p.members[0], None, &down, false));
        match p.pick(10, 1) {
            Pick::NoneLeft(CallError::Retryable { message, .. }) => {
                assert!(message.contains("e0: connection failed"), "{message}");
                assert!(message.contains("e1: HTTP 401: bad key"), "{message}");
            }
            _ => panic!("expected no endpoint left"),
        }
        // Refusing the key everywhere is fatal; a 429 is never a sign of a broken endpoint.
        let p = pool(&[(4, 1.0), (4, 1.0)]);
        for m in &p.members {
            p.take_out(m, refused.to_string(), true, false);
        }
        assert!(matches!(
            p.pick(10, 1),
            Pick::NoneLeft(CallError::Fatal { .. })
        ));
        let p = pool(&[(4, 1.0)]);
        for _ in 0..10 {
            assert!(!p.failed(&p.members[0], Some(429), &down, false));
        }
        assert!(matches!(p.pick(10, 1), Pick::Go(0, _, false)));
    }
}
