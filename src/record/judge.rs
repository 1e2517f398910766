//! One dialogue's LLM-judge score as the store keeps it (table `judge`) and exports it
//! (`quality.judge`), and the rubric's criteria it is scored on. The judge stage computes it;
//! it lives here, below the store, so the store and the exports never import that stage.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The rubric's criteria, in the order the prompt lists them and reports show them.
pub const CRITERIA: [&str; 7] = [
    "naturalness",
    "coherence",
    "task_handling",
    "outcome_as_planned",
    "scenario_followed",
    "emotions_shown",
    "persona_consistent",
];

/// One dialogue's judgement as stored and exported (`quality.judge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeScore {
    /// The overall score, 1–5.
    pub overall: u8,
    /// Each criterion of [`CRITERIA`] with its score, 1–5.
    pub scores: BTreeMap<String, u8>,
    /// One sentence of reasoning.
    pub reasoning: String,
    /// The model that judged.
    pub model: String,
    /// The rubric prompt's version.
    pub prompt_version: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl JudgeScore {
    /// Judged by this model with this rubric version (else `--rescore` scores it again).
    pub fn is_by(&self, model: &str, prompt_version: &str) -> bool {
        self.model == model && self.prompt_version == prompt_version
    }
}

impl JudgeScore {
    /// The stored encoding: JSON, so later versions can add fields and still read old entries.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a judge score serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<JudgeScore> {
        serde_json::from_slice(bytes)
            .context("the store holds a judge score this dgen cannot decode")
    }
}
