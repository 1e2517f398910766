//! The mock's rate limits, enforced with 429s as hosted APIs enforce theirs, in two shapes: a
//! sliding window (at most the window's allowance in any stretch of `window`) and a token
//! bucket that holds the window's allowance and refills continuously. Limits are stated per
//! minute in the `x-ratelimit-*` headers (as OpenAI states them) but enforced over the window,
//! so a window of 1 s allowing 10 calls is "600 requests a minute" enforced as 10 a second.
//!
//! `x-ratelimit-remaining-*` is what the window or bucket has left now; `x-ratelimit-reset-*`
//! is, for the sliding window, when the oldest call leaves it (the next call it frees), and for
//! the bucket, when it is full again (OpenAI's "resets to its initial state"), although it
//! frees capacity all along.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How the allowance comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// A call counts until `window` after its arrival.
    #[default]
    Sliding,
    /// A bucket of the window's allowance, refilled at the allowance per window.
    Bucket,
}

/// Limits a server enforces, per `window`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub window: Duration,
    pub requests: Option<u64>,
    /// Prompt and completion tokens billed within the window.
    pub tokens: Option<u64>,
    /// Send `x-ratelimit-*` headers (limits stated per minute, as OpenAI's are).
    pub headers: bool,
    pub shape: Shape,
}

/// What the limits have counted.
#[derive(Debug, Default)]
pub struct RateState {
    /// Sliding window: calls within it (arrival, ticket, tokens: prompt, then + completion).
    calls: VecDeque<(Instant, u64, u64)>,
    tickets: u64,
    /// Bucket: requests and tokens left, and when.
    level: Option<(f64, f64, Instant)>,
    /// 429s sent.
    pub limited: u64,
    /// Arrivals of the calls admitted, in order.
    pub admitted: Vec<Instant>,
    /// Arrivals of every call, refused or admitted, in order.
    pub arrived: Vec<Instant>,
}

/// A header list, as `respond` takes it.
pub type Headers = Vec<(&'static str, String)>;

/// `1.5s`, as OpenAI writes its reset durations.
fn reset_text(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)
}

impl RateLimit {
    /// Allowance per second, of requests and of tokens.
    fn rates(&self) -> (f64, f64) {
        let w = self.window.as_secs_f64();
        let rate = |n: Option<u64>| n.map_or(f64::INFINITY, |n| n as f64 / w);
        (rate(self.requests), rate(self.tokens))
    }
}

impl RateState {
    /// Drops what the window no longer holds, or refills the bucket.
    fn settle(&mut self, limit: &RateLimit, now: Instant) {
        match limit.shape {
            Shape::Sliding => {
                while self
                    .calls
                    .front()
                    .is_some_and(|(at, _, _)| now.duration_since(*at) >= limit.window)
                {
                    self.calls.pop_front();
                }
            }
            Shape::Bucket => {
                let full = (
                    limit.requests.map_or(f64::INFINITY, |n| n as f64),
                    limit.tokens.map_or(f64::INFINITY, |n| n as f64),
                );
                let (requests, tokens, at) = self.level.unwrap_or((full.0, full.1, now));
                let (r, t) = limit.rates();
                let dt = now.saturating_duration_since(at).as_secs_f64();
                self.level = Some((
                    (requests + r * dt).min(full.0),
                    (tokens + t * dt).min(full.1),
                    now,
                ));
            }
        }
    }

    /// Requests and tokens left now (after `settle`).
    fn left(&self, limit: &RateLimit) -> (f64, f64) {
        match (limit.shape, self.level) {
            (Shape::Bucket, Some((r, t, _))) => (r, t),
            _ => {
                let used: u64 = self.calls.iter().map(|(_, _, t)| t).sum();
                (
                    limit.requests.map_or(f64::INFINITY, |n| {
                        n.saturating_sub(self.calls.len() as u64) as f64
                    }),
                    limit
                        .tokens
                        .map_or(f64::INFINITY, |n| n.saturating_sub(used) as f64),
                )
            }
        }
    }

    /// Until the bucket is full again, for requests and for tokens.
    fn resets(&self, limit: &RateLimit) -> (Duration, Duration) {
        match (limit.shape, self.level) {
            (Shape::Bucket, Some((r, t, _))) => {
                let (rr, tr) = limit.rates();
                let until = |left: f64, full: Option<u64>, rate: f64| {
                    full.map_or(Duration::ZERO, |n| secs((n as f64 - left) / rate))
                };
                (until(r, limit.requests, rr), until(t, limit.tokens, tr))
            }
            _ => (Duration::ZERO, Duration::ZERO),
        }
    }

    /// The `x-ratelimit-*` headers as things stand.
    pub fn headers(&mut self, limit: &RateLimit, now: Instant) -> Headers {
        if !limit.headers {
            return Vec::new();
        }
        self.settle(limit, now);
        let per_minute = |n: u64| (n as f64 * 60.0 / limit.window.as_secs_f64()).floor() as u64;
        let (left_requests, left_tokens) = self.left(limit);
        let (reset_requests, reset_tokens) = match limit.shape {
            Shape::Sliding => {
                let oldest = self.calls.front().map_or(Duration::ZERO, |(at, _, _)| {
                    (*at + limit.window).saturating_duration_since(now)
                });
                (oldest, oldest)
            }
            Shape::Bucket => self.resets(limit),
        };
        let mut out = Vec::new();
        if let Some(n) = limit.requests {
            out.push(("x-ratelimit-limit-requests", per_minute(n).to_string()));
            out.push((
                "x-ratelimit-remaining-requests",
                (left_requests.max(0.0).floor() as u64).to_string(),
            ));
            out.push(("x-ratelimit-reset-requests", reset_text(reset_requests)));
        }
        if let Some(n) = limit.tokens {
            out.push(("x-ratelimit-limit-tokens", per_minute(n).to_string()));
            out.push((
                "x-ratelimit-remaining-tokens",
                (left_tokens.max(0.0).floor() as u64).to_string(),
            ));
            out.push(("x-ratelimit-reset-tokens", reset_text(reset_tokens)));
        }
        out
    }

    /// Admits a call of `prompt_tokens` (its ticket, for [`RateState::bill`]); else the 429's
    /// headers, `Retry-After` included.
    pub fn admit(
        &mut self,
        limit: &RateLimit,
        prompt_tokens: u64,
        now: Instant,
    ) -> Result<u64, Headers> {
        self.arrived.push(now);
        self.settle(limit, now);
        let (left_requests, left_tokens) = self.left(limit);
        let over_requests = limit.requests.is_some() && left_requests < 1.0;
        let over_tokens = limit.tokens.is_some() && left_tokens < prompt_tokens as f64;
        if over_requests || over_tokens {
            self.limited += 1;
            let wait = match limit.shape {
                // When the oldest call leaves the window (for tokens, possibly not enough: a
                // guess, as servers' are).
                Shape::Sliding => self.calls.front().map_or(Duration::ZERO, |(at, _, _)| {
                    (*at + limit.window).saturating_duration_since(now)
                }),
                // When the bucket holds enough again.
                Shape::Bucket => {
                    let (r, t) = limit.rates();
                    secs(((1.0 - left_requests) / r).max((prompt_tokens as f64 - left_tokens) / t))
                }
            };
            let mut headers = self.headers(limit, now);
            headers.push(("Retry-After", format!("{:.3}", wait.as_secs_f64())));
            return Err(headers);
        }
        self.tickets += 1;
        self.admitted.push(now);
        match (limit.shape, &mut self.level) {
            (Shape::Bucket, Some((r, t, _))) => {
                *r -= 1.0;
                *t -= prompt_tokens as f64;
            }
            _ => self.calls.push_back((now, self.tickets, prompt_tokens)),
        }
        Ok(self.tickets)
    }

    /// Bills an admitted call's completion tokens.
    pub fn bill(&mut self, limit: &RateLimit, ticket: u64, completion: u64) {
        match (limit.shape, &mut self.level) {
            (Shape::Bucket, Some((_, t, _))) => *t -= completion as f64,
            _ => {
                if let Some(entry) = self.calls.iter_mut().find(|(_, n, _)| *n == ticket) {
                    entry.2 += completion;
                }
            }
        }
    }
}
