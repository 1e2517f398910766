//! How long to wait before trying a call again: what the server asked for (`Retry-After`,
//! `x-ratelimit-reset-requests` / `-tokens`), else exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;
use reqwest::header::HeaderMap;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries after the first one.
    pub max_retries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): the server's hint when it gave one
    /// (capped), else `base * 2^retry` with full jitter in [50 %, 100 %].
    pub fn delay(&self, retry: u32, hint: Option<Duration>) -> Duration {
        if let Some(hint) = hint {
            return hint.min(self.cap);
        }
        let exp = self
            .base
            .saturating_mul(1u32 << retry.min(16))
            .min(self.cap);
        let factor = rand::rng().random_range(0.5..=1.0);
        exp.mul_f64(factor)
    }
}

/// The longest wait the response's headers ask for, if any.
pub fn retry_hint(headers: &HeaderMap) -> Option<Duration> {
    let mut best: Option<Duration> = None;
    let mut consider = |d: Option<Duration>| {
        if let Some(d) = d {
            best = Some(best.map_or(d, |b| b.max(d)));
        }
    };
    if let Some(v) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok()) {
        consider(
            v.trim()
                .parse::<f64>()
                .ok()
                .map(|ms| Duration::from_secs_f64(ms / 1000.0)),
        );
    }
    if let Some(v) = headers.get("retry-after").and_then(|v| v.to_str().ok()) {
        consider(parse_retry_after(v));
    }
    for name in ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            consider(parse_reset(v));
        }
    }
    best
}

/// `Retry-After`: delta-seconds (possibly fractional) or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate(value)?;
    let now = std::time::SystemTime::now();
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// OpenAI's reset headers: durations such as `1s`, `6m0s`, `20ms`, `1h2m3.5s`.
pub fn parse_reset(value: &str) -> Option<Duration> {
    let mut total = 0.0f64;
    let mut number = String::new();
    let mut chars = value.trim().chars().peekable();
    let mut seen = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let n: f64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += n * unit;
        seen = true;
    }
    if !number.is_empty() {
        total += number.parse::<f64>().ok()?;
        seen = true;
    }
    seen.then(|| Duration::from_secs_f64(total))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form servers send.
fn httpdate(value: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as u64
        + 1;
    let year: u64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4].split(':').filter_map(|p| p.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations() {
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_reset("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_reset("soon"), None);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let d = httpdate("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            d.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
            784_111_777
        );
    }

    #[test]
    fn the_longest_hint_wins_and_is_capped() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "1".parse().unwrap());
        h.insert("x-ratelimit-reset-tokens", "2.5s".parse().unwrap());
        assert_eq!(retry_hint(&h), Some(Duration::from_millis(2500)));
        let p = RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        assert_eq!(p.delay(0, retry_hint(&h)), Duration::from_secs(2));
        let d = p.delay(2, None);
        assert!(
            d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
            "{d:?}"
        );
    }
}
