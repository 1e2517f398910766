//! Value parsers: clap runs them before any work and names the flag in its message, so every
//! numeric flag is checked here for form, range and finiteness.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

pub use crate::llm::MAX_PARALLEL;

/// Highest `--rpm`: a million requests a minute, beyond any endpoint's limit; above it the
/// pacing would be finer than the clock.
pub const MAX_RPM: u32 = 1_000_000;

/// Highest `--tpm`: ten billion tokens a minute, far beyond any endpoint's limit.
pub const MAX_TPM: u64 = 10_000_000_000;

/// Longest timeout a flag may set: a day. Longer ones are typos, and a deadline computed
/// from them could overflow the clock.
pub const MAX_SECONDS: f64 = 86_400.0;

/// A whole number in `lo..=hi`.
pub fn whole<T>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |text: &str| {
        let value: T = text
            .trim()
            .parse()
            .map_err(|_| format!("\"{text}\" is not a whole number; give one from {lo} to {hi}"))?;
        if value < lo {
            return Err(format!("{value} is too small: it must be at least {lo}"));
        }
        if value > hi {
            return Err(format!("{value} is too large: it must be at most {hi}"));
        }
        Ok(value)
    }
}

/// A finite number for which `inside` holds; `range` says which numbers those are.
pub fn real(
    range: &'static str,
    inside: fn(f64) -> bool,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |text: &str| {
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("\"{text}\" is not a number; give one in {range}"))?;
        if !value.is_finite() {
            return Err(format!(
                "{} is not a finite number; give one in {range}",
                text.trim()
            ));
        }
        if !inside(value) {
            return Err(format!("{value} is outside {range}"));
        }
        Ok(value)
    }
}

/// Seconds, possibly fractional, as a `Duration`: finite, at most [`MAX_SECONDS`], and above 0
/// unless `zero_ok`.
pub fn seconds(
    zero_ok: bool,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text: &str| {
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("\"{text}\" is not a number of seconds; give e.g. 60"))?;
        if !value.is_finite() {
            return Err(format!(
                "{} is not a finite number of seconds; give e.g. 60",
                text.trim()
            ));
        }
        if zero_ok && value < 0.0 {
            return Err(format!("{value} is negative: give 0 seconds or more"));
        }
        if !zero_ok && value <= 0.0 {
            return Err(format!("{value} is too short: give more than 0 seconds"));
        }
        if value > MAX_SECONDS {
            return Err(format!(
                "{value} is too long: give at most {MAX_SECONDS} seconds (a day)"
            ));
        }
        Duration::try_from_secs_f64(value).map_err(|e| format!("{value} seconds: {e}"))
    }
}
