//! Progress: a bar on a terminal, a log line every 10 s otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use crate::llm::Pool;

pub struct Progress {
    pub bar: Option<indicatif::ProgressBar>,
    pub total: u64,
    pub done: u64,
    pub failed: u64,
    pub rejected: u64,
    pub started: Instant,
    pub accepted_here: u64,
    /// The endpoints: requests in flight and the adaptive limits.
    pub pool: Arc<Pool>,
}

impl Progress {
    pub fn new(total: u64, done: u64, pool: Arc<Pool>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} accepted  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("valid template"),
            );
            bar.set_position(done);
            bar
        });
        Progress {
            bar,
            total,
            done,
            failed: 0,
            rejected: 0,
            started: Instant::now(),
            accepted_here: 0,
            pool,
        }
    }

    pub fn update(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
            bar.set_message(format!(
                "rejected {}  failed {}  {}",
                self.rejected,
                self.failed,
                self.in_flight()
            ));
        }
    }

    pub fn rate(&self) -> f64 {
        self.accepted_here as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn log_line(&self) {
        if self.bar.is_some() {
            return;
        }
        let rate = self.rate();
        let left = self.total.saturating_sub(self.done + self.failed);
        let eta = if rate > 0.0 {
            format!("{:.0} s", left as f64 / rate)
        } else {
            "unknown".into()
        };
        tracing::info!(
            "progress: {}/{} accepted, {} rejected attempts, {} failed, {rate:.2} dialogues/s, ETA {eta}, {}{}",
            self.done,
            self.total,
            self.rejected,
            self.failed,
            self.in_flight(),
            self.endpoints()
        );
    }

    /// `in flight 5/7 (max 16)`: requests in flight, the adaptive limit, the ceiling (summed
    /// over the endpoints).
    fn in_flight(&self) -> String {
        format!(
            "in flight {}/{:.0} (max {})",
            self.pool.in_flight(),
            self.pool.limit(),
            self.pool.ceiling()
        )
    }

    /// With several endpoints, each one's calls and errors so far.
    fn endpoints(&self) -> String {
        if self.pool.len() < 2 {
            return String::new();
        }
        let parts: Vec<String> = self
            .pool
            .totals()
            .iter()
            .map(|(name, _, s)| format!("{name} {} calls {} errors", s.calls, s.errors))
            .collect();
        format!("; endpoints: {}", parts.join(", "))
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
