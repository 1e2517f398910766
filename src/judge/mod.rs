//! The LLM judge: a rubric, scored 1–5 per criterion by any OpenAI-compatible model, stored per
//! dialogue (table `judge`, keyed by the dialogue's sequence number) with the judge model, the
//! rubric's prompt version and the tokens it cost.
//!
//! Scores are kept apart from the dialogue record so that `dgen judge` can add them to a store
//! long after the dialogues were committed, and re-scoring with another model replaces only them.

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
    /// The stored encoding: JSON, so later versions can add fields and still read old entries.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a judge score serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<JudgeScore> {
        serde_json::from_slice(bytes)
            .context("the store holds a judge score this dgen cannot decode")
    }
}
