//! Pacing: when the next request may start under per-minute limits of requests and tokens,
//! from `--rpm` / `--tpm` or the server's `x-ratelimit-limit-*` headers.
//!
//! Servers enforce "600 a minute" over windows they do not state (OpenAI's can be a few
//! seconds: 10 a second), and some refill continuously. So dgen spreads requests evenly at
//! [`PACE`] of the limit, with a burst of one request only: any window of a second or more then
//! sees at most its allowance, whatever its length. `x-ratelimit-remaining-*` at zero means the
//! server is full now; it frees room when its oldest call leaves a sliding window (its
//! `x-ratelimit-reset-*`) or continuously as a bucket refills (while its reset says when it is
//! full again), so dgen waits for whichever comes first, not for a whole reset.

use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::super::retry::{parse_reset, MAX_SERVER_WAIT};
use super::Limits;

/// Share of a per-minute limit dgen paces at: a little headroom for the server's own clock.
pub(super) const PACE: f64 = 0.98;
/// Lateness a bucket makes up for: a timer wakes a waiter a little after its turn, and a bucket
/// that held exactly one request would lose that time on every request. A bucket holds one
/// request plus this much of its rate, so with [`PACE`] a window of a second or more still sees
/// at most its allowance N (1 + 0.02 × 0.98 N + 0.98 N < N + 1).
const SLACK: Duration = Duration::from_millis(20);

/// The `x-ratelimit-*` headers of a response.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateHeaders {
    pub limit_requests: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub reset_requests: Option<Duration>,
    pub reset_tokens: Option<Duration>,
}

impl RateHeaders {
    pub fn parse(headers: &HeaderMap) -> RateHeaders {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let number = |name: &str| text(name).and_then(|v| v.trim().parse::<u64>().ok());
        let reset = |name: &str| {
            text(name)
                .and_then(parse_reset)
                .map(|d| d.min(MAX_SERVER_WAIT))
        };
        RateHeaders {
            limit_requests: number("x-ratelimit-limit-requests").filter(|&n| n > 0),
            limit_tokens: number("x-ratelimit-limit-tokens").filter(|&n| n > 0),
            remaining_requests: number("x-ratelimit-remaining-requests"),
            remaining_tokens: number("x-ratelimit-remaining-tokens"),
            reset_requests: reset("x-ratelimit-reset-requests"),
            reset_tokens: reset("x-ratelimit-reset-tokens"),
        }
    }
}

/// A duration of `secs`, rounded up to the microsecond (a wait that rounded down could end
/// short of its token, again and again), capped at the longest wait a server may ask for.
fn capped(secs: f64) -> Duration {
    Duration::try_from_secs_f64((secs * 1e6).ceil() / 1e6)
        .map_or(MAX_SERVER_WAIT, |d| d.min(MAX_SERVER_WAIT))
}

/// A token bucket refilled at `rate` a second up to `capacity`: the largest amount one request
/// takes, plus [`SLACK`]'s worth.
#[derive(Debug)]
struct Bucket {
    /// The server's limit a second; the bucket refills at [`PACE`] of it.
    allowed: f64,
    rate: f64,
    capacity: f64,
    level: f64,
    at: Instant,
    /// Set by a flag: the server's headers do not change it.
    explicit: bool,
}

impl Bucket {
    /// A full bucket for `limit` a minute, holding `largest` (one request's amount).
    fn per_minute(limit: f64, largest: f64, explicit: bool, now: Instant) -> Bucket {
        let allowed = limit / 60.0;
        let rate = allowed * PACE;
        let capacity = largest + rate * SLACK.as_secs_f64();
        Bucket {
            allowed,
            rate,
            capacity,
            level: capacity,
            at: now,
            explicit,
        }
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + secs * self.rate).min(self.capacity);
        self.at = now;
    }

    /// Grows the bucket to hold a request of `amount` (a full bucket stays full).
    fn fit(&mut self, amount: f64) {
        let capacity = amount + self.rate * SLACK.as_secs_f64();
        if capacity > self.capacity {
            if self.level >= self.capacity {
                self.level = capacity;
            }
            self.capacity = capacity;
        }
    }

    /// How long until `amount` is there.
    fn wait_for(&self, amount: f64) -> Option<Duration> {
        let need = amount.min(self.capacity);
        (self.level < need).then(|| capped((need - self.level) / self.rate))
    }

    /// How long the server takes to free `amount` at its stated rate.
    fn freeing(&self, amount: f64) -> Duration {
        capped(amount / self.allowed)
    }
}

/// The buckets of one endpoint.
#[derive(Debug)]
pub(super) struct Pacing {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    /// The latest estimate of a request's tokens, to judge `x-ratelimit-remaining-tokens`.
    typical_tokens: u64,
}

impl Pacing {
    pub(super) fn new(limits: &Limits, now: Instant) -> Pacing {
        Pacing {
            requests: limits
                .rpm
                .map(|n| Bucket::per_minute(f64::from(n), 1.0, true, now)),
            tokens: limits
                .tpm
                .map(|n| Bucket::per_minute(n as f64, 1.0, true, now)),
            typical_tokens: 0,
        }
    }

    /// How long until a request of about `tokens` may start; `None`: now.
    pub(super) fn wait(&mut self, now: Instant, tokens: u64) -> Option<Duration> {
        self.typical_tokens = tokens;
        let mut longest: Option<Duration> = None;
        if let Some(b) = &mut self.requests {
            b.refill(now);
            longest = longest.max(b.wait_for(1.0));
        }
        if let Some(b) = &mut self.tokens {
            b.fit(tokens as f64);
            b.refill(now);
            longest = longest.max(b.wait_for(tokens as f64));
        }
        longest
    }

    /// Takes a request of `tokens` from the buckets (after [`Pacing::wait`] said now).
    pub(super) fn take(&mut self, tokens: u64) {
        if let Some(b) = &mut self.requests {
            b.level -= 1.0;
        }
        if let Some(b) = &mut self.tokens {
            b.level -= tokens as f64;
        }
    }

    /// Refunds or charges the difference between a request's estimate and its bill.
    pub(super) fn bill(&mut self, estimate: u64, billed: u64) {
        if let Some(b) = &mut self.tokens {
            b.level = (b.level + estimate as f64 - billed as f64).min(b.capacity);
        }
    }

    /// Learns per-minute limits from a response's headers; when the server says it is full,
    /// until when nothing should start.
    pub(super) fn learn(&mut self, h: &RateHeaders, now: Instant) -> Option<Instant> {
        if let Some(limit) = h.limit_requests {
            learn(&mut self.requests, limit, now, "requests");
        }
        if let Some(limit) = h.limit_tokens {
            learn(&mut self.tokens, limit, now, "tokens");
        }
        let mut wait: Option<Duration> = None;
        if let (Some(0), Some(reset)) = (h.remaining_requests, h.reset_requests) {
            let one = self.requests.as_ref().map_or(reset, |b| b.freeing(1.0));
            wait = wait.max(Some(reset.min(one)));
        }
        if let (Some(left), Some(reset)) = (h.remaining_tokens, h.reset_tokens) {
            if left < self.typical_tokens {
                let short = (self.typical_tokens - left) as f64;
                let freed = self.tokens.as_ref().map_or(reset, |b| b.freeing(short));
                wait = wait.max(Some(reset.min(freed)));
            }
        }
        wait.map(|w| now + w)
    }
}

fn learn(bucket: &mut Option<Bucket>, limit: u64, now: Instant, what: &str) {
    let allowed = limit as f64 / 60.0;
    match bucket {
        Some(b) if b.explicit => {}
        Some(b) if (b.allowed - allowed).abs() < 1e-9 => {}
        _ => {
            tracing::debug!("the server allows {limit} {what} a minute; pacing to it");
            let largest = bucket
                .as_ref()
                .map_or(1.0, |b| b.capacity - b.rate * SLACK.as_secs_f64());
            let mut fresh = Bucket::per_minute(limit as f64, largest, false, now);
            // Empty at first: the server has just counted the request that told us.
            fresh.level = bucket
                .as_ref()
                .map_or(0.0, |old| old.level.min(fresh.capacity));
            *bucket = Some(fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts of `n` requests taken as soon as the bucket allows, from `start`.
    fn starts(pacing: &mut Pacing, n: usize, late: Duration) -> Vec<f64> {
        let start = Instant::now();
        let mut now = start;
        let mut out = Vec::new();
        while out.len() < n {
            match pacing.wait(now, 1) {
                None => {
                    pacing.take(1);
                    out.push((now - start).as_secs_f64());
                }
                // A timer that wakes a little late, as real ones do.
                Some(d) => now += d + late,
            }
        }
        out
    }

    /// The most starts within any `window` seconds.
    fn most_within(starts: &[f64], window: f64) -> usize {
        (0..starts.len())
            .map(|i| {
                starts[i..]
                    .iter()
                    .take_while(|&&t| t - starts[i] < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn no_window_of_a_second_or_more_gets_more_than_its_share() {
        for rpm in [60, 600, 6_000, 60_000] {
            let mut pacing = Pacing::new(
                &Limits {
                    rpm: Some(rpm),
                    ..Limits::ceiling(64)
                },
                Instant::now(),
            );
            let n = (rpm as usize / 6).max(30);
            let s = starts(&mut pacing, n, Duration::ZERO);
            for window in [1.0, 6.0] {
                let allowed = (f64::from(rpm) / 60.0 * window).floor() as usize;
                assert!(
                    most_within(&s, window) <= allowed,
                    "{rpm} a minute: {} starts within {window} s, {allowed} allowed",
                    most_within(&s, window)
                );
            }
            // And the pace is the limit's: 98 % of it.
            let rate = (n - 1) as f64 / s[n - 1] * 60.0;
            assert!(
                (rate / f64::from(rpm) - PACE).abs() < 0.005,
                "{rpm}: {rate}"
            );
        }
    }

    #[test]
    fn a_late_timer_costs_no_pace() {
        let mut pacing = Pacing::new(
            &Limits {
                rpm: Some(600),
                ..Limits::ceiling(64)
            },
            Instant::now(),
        );
        let s = starts(&mut pacing, 200, Duration::from_millis(2));
        let rate = 199.0 / s[199] * 60.0;
        assert!(rate > 0.97 * 600.0, "{rate}");
        assert!(most_within(&s, 1.0) <= 10);
    }

    fn headers(limit: u64, remaining: u64, reset: &str) -> RateHeaders {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit-requests", limit.into());
        h.insert("x-ratelimit-remaining-requests", remaining.into());
        h.insert("x-ratelimit-reset-requests", reset.parse().unwrap());
        RateHeaders::parse(&h)
    }

    /// Regression: a server full now held everything until its reset, which a refilling
    /// bucket states as the time until it is full again (6 s here), although it frees a
    /// request every 100 ms.
    #[test]
    fn a_full_server_is_waited_for_one_request_s_time_not_its_whole_reset() {
        let now = Instant::now();
        let mut pacing = Pacing::new(&Limits::ceiling(64), now);
        let until = pacing.learn(&headers(600, 0, "6s"), now).unwrap();
        assert_eq!(until - now, Duration::from_millis(100));
        // A sliding window whose oldest call leaves sooner: its reset.
        let until = pacing.learn(&headers(600, 0, "0.03s"), now).unwrap();
        assert_eq!(until - now, Duration::from_millis(30));
        // Room left: no wait.
        assert_eq!(pacing.learn(&headers(600, 1, "6s"), now), None);
    }
}
