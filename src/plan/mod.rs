//! The plan: N work items drawn by a ChaCha20 RNG from (catalog, configuration, dataset
//! contents, seed). It is a pure function of those inputs: no hash-map iteration, no clock, no
//! threads, and every draw goes through the integer helpers in `draw` so the result does not depend
//! on the platform's `usize` or on a library's shuffle algorithm.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

mod draw;
mod fingerprint;
mod goal;
mod sampler;
pub mod shard;

pub use fingerprint::{fingerprint, Fingerprinter};
pub use goal::Annotate;
pub use sampler::{combination_key, Sampler};
pub use shard::Shard;

/// Everything the user chose that shapes the plan. Paths are left out on purpose: the plan
/// depends on what the files contain (see the dataset fingerprints), not where they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanConfig {
    pub total_generations: u64,
    pub seed: u64,
    pub similarity_threshold: f64,
    pub min_turns: [u32; 2],
    pub max_turns: [u32; 2],
    pub temperature: Vec<f64>,
    pub top_p: Vec<f64>,
    pub frequency_penalty: Vec<f64>,
    pub presence_penalty: Vec<f64>,
    /// `plan --annotate`: the schema and value pools of the user goals. Absent from a plain
    /// plan's encoding, so plain plans keep their fingerprints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotate: Option<Annotate>,
}

impl PlanConfig {
    /// Refuses settings the sampler or the API could not use, naming the flag.
    pub fn validate(&self) -> Result<()> {
        if self.total_generations == 0 {
            bail!("--total_generations must be at least 1");
        }
        if !(self.similarity_threshold > 0.0 && self.similarity_threshold <= 1.0) {
            bail!(
                "--similarity_threshold is {}; it must be in (0, 1] (0.9 is the default)",
                self.similarity_threshold
            );
        }
        for (flag, [lo, hi]) in [
            ("--min_turns", self.min_turns),
            ("--max_turns", self.max_turns),
        ] {
            if lo == 0 {
                bail!("{flag} {lo} {hi}: a dialogue needs at least 1 turn");
            }
            if lo > hi {
                bail!("{flag} {lo} {hi}: the range is reversed; write it low high, e.g. {flag} {hi} {lo}");
            }
        }
        if self.max_turns[1] < self.min_turns[0] {
            bail!(
                "--max_turns {} {} is below --min_turns {} {}: the maximum turn count can never reach the minimum",
                self.max_turns[0], self.max_turns[1], self.min_turns[0], self.min_turns[1]
            );
        }
        let lists: [(&str, &Vec<f64>, f64, f64); 4] = [
            ("--temperature", &self.temperature, 0.0, 2.0),
            ("--top_p", &self.top_p, 0.0, 1.0),
            ("--frequency_penalty", &self.frequency_penalty, -2.0, 2.0),
            ("--presence_penalty", &self.presence_penalty, -2.0, 2.0),
        ];
        for (flag, list, lo, hi) in lists {
            if list.is_empty() {
                bail!("{flag} needs at least one value");
            }
            for v in list {
                if !v.is_finite() || *v < lo || *v > hi {
                    bail!("{flag} value {v} is outside [{lo}, {hi}]");
                }
            }
        }
        Ok(())
    }
}

/// One unit of work: everything the run needs to make one dialogue, decided up front.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    pub index: u64,
    pub base_dialogue_index: u32,
    pub base_dialogue_id: String,
    /// In prompt order; the first is the primary service.
    pub services: Vec<String>,
    pub category: String,
    pub region: String,
    pub time_slot: u8,
    /// Minutes after midnight, on a 5-minute grid, inside the slot.
    pub specific_time: u16,
    pub persona_index: u32,
    pub user_emotion: String,
    pub assistant_emotion: String,
    pub resolution_status: String,
    pub min_turns: u32,
    pub max_turns: u32,
    pub temperature: f64,
    pub top_p: f64,
    pub frequency_penalty: f64,
    pub presence_penalty: f64,
    /// Seeds everything decided later for this item (request seed, re-draws on retry).
    pub seed: u64,
}

impl WorkItem {
    pub fn primary_service(&self) -> &str {
        &self.services[0]
    }

    pub fn specific_time_hhmm(&self) -> String {
        format!(
            "{:02}:{:02}",
            self.specific_time / 60,
            self.specific_time % 60
        )
    }
}

/// Combination usage: size name -> sorted services joined with `+` -> count.
pub type CombinationUsage = BTreeMap<String, BTreeMap<String, u64>>;
