//! How long to wait before trying a call again: what the server asked for (`Retry-After`,
//! `x-ratelimit-reset-requests` / `-tokens`), else exponential backoff with jitter. Headers are
//! the server's word, so nothing in them can panic us: a negative, NaN or infinite wait is
//! ignored, and a long one is cut to [`MAX_SERVER_WAIT`].

use std::time::Duration;

use rand::Rng;
use reqwest::header::HeaderMap;

/// The longest wait a server can ask of one retry; a longer one is cut to this, with a warning.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries after the first one.
    pub max_retries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): the server's hint when it gave one (up
    /// to [`MAX_SERVER_WAIT`]: retrying sooner than asked only earns another refusal), else
    /// `base * 2^retry`, capped at `cap`, with full jitter in [50 %, 100 %].
    pub fn delay(&self, retry: u32, hint: Option<Duration>) -> Duration {
        if let Some(hint) = hint {
            return hint.min(MAX_SERVER_WAIT);
        }
        let exp = self
            .base
            .saturating_mul(1u32 << retry.min(16))
            .min(self.cap);
        let factor = rand::rng().random_range(0.5..=1.0);
        exp.mul_f64(factor)
    }
}

/// The longest wait the response's headers ask for, if any, at most [`MAX_SERVER_WAIT`].
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
                .and_then(|ms| wait(ms / 1000.0)),
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
    best.map(|asked| {
        if asked > MAX_SERVER_WAIT {
            tracing::warn!(
                "the server asked to wait {:.0} s before retrying; waiting {} s, the most dgen waits",
                asked.as_secs_f64(),
                MAX_SERVER_WAIT.as_secs()
            );
        }
        asked.min(MAX_SERVER_WAIT)
    })
}

/// A wait of `secs` seconds from a header: `None` for what no server means (negative, NaN,
/// infinite), `Duration::MAX` for a finite value too large for a `Duration` (cut later).
fn wait(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    if secs == 0.0 {
        return Some(Duration::ZERO);
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// `Retry-After`: delta-seconds (possibly fractional) or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return wait(secs);
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
    if !seen {
        return None;
    }
    wait(total)
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form servers send. Fields out of range
/// (a 99th of January, year 0 or beyond 9999) make it unreadable; dates before 1970 are fine.
fn httpdate(value: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let in_range = |text: &str, lo: i64, hi: i64| -> Option<i64> {
        text.parse::<i64>().ok().filter(|n| (lo..=hi).contains(n))
    };
    let day = in_range(day, 1, 31)?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as i64
        + 1;
    let year = in_range(year, 1, 9999)?;
    let [h, m, s] = time.split(':').collect::<Vec<_>>()[..] else {
        return None;
    };
    let (h, m, s) = (
        in_range(h, 0, 23)?,
        in_range(m, 0, 59)?,
        in_range(s, 0, 60)?,
    );
    // Days from the civil date (Howard Hinnant's algorithm); bounded fields keep it in range.
    let (y, mp) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    let offset = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        std::time::UNIX_EPOCH.checked_add(offset)
    } else {
        std::time::UNIX_EPOCH.checked_sub(offset)
    }
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
        // The server's hint is honoured beyond the backoff cap, up to MAX_SERVER_WAIT.
        assert_eq!(p.delay(0, retry_hint(&h)), Duration::from_millis(2500));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(86_400))),
            MAX_SERVER_WAIT
        );
        let d = p.delay(2, None);
        assert!(
            d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
            "{d:?}"
        );
    }

    #[test]
    fn hostile_values_are_ignored_or_capped_never_a_panic() {
        for value in ["inf", "-inf", "NaN", "-1", "-0.5", "1e400"] {
            assert_eq!(parse_retry_after(value), None, "{value}");
        }
        assert_eq!(parse_retry_after("-0"), Some(Duration::ZERO));
        assert_eq!(parse_reset(&format!("{}s", "9".repeat(400))), None);
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1920 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            httpdate("Thu, 01 Jan 1920 00:00:00 GMT")
                .and_then(|t| std::time::UNIX_EPOCH.duration_since(t).ok())
                .map(|d| d.as_secs()),
            Some(1_577_923_200)
        );
        for date in [
            "Sun, 99 Jan 2000 00:00:00 GMT",
            "Sun, 01 Jan 0 00:00:00 GMT",
            "Sun, 01 Jan 99999999999999999999 00:00:00 GMT",
            "Sun, 01 Jan 2000 99:99:99 GMT",
            "Sun, 01 Jan 2000 1:2:3:4 GMT",
        ] {
            assert_eq!(httpdate(date), None, "{date}");
        }
        let mut h = HeaderMap::new();
        h.insert("retry-after-ms", "-1".parse().unwrap());
        h.insert("retry-after", "1e30".parse().unwrap());
        h.insert("x-ratelimit-reset-requests", "inf".parse().unwrap());
        assert_eq!(retry_hint(&h), Some(MAX_SERVER_WAIT));
        let mut far = HeaderMap::new();
        far.insert(
            "retry-after",
            "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap(),
        );
        assert_eq!(retry_hint(&far), Some(MAX_SERVER_WAIT));
    }
}
