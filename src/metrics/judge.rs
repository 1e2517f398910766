//! The judge's scores over the stored dialogues: how many are judged and by which model and
//! rubric version, the mean overall and per-criterion scores, the histogram of overall scores,
//! and what judging cost (from the run's counters). Kept per dialogue: a few sums.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::record::judge::{JudgeScore, CRITERIA};

#[derive(Debug, Default)]
pub struct JudgeStats {
    dialogues: u64,
    judged: u64,
    by_judge: BTreeMap<(String, String), u64>,
    overall_sum: u64,
    criteria_sums: BTreeMap<&'static str, u64>,
    histogram: [u64; 5],
}

/// The judge's calls, tokens and errors, from the run's counters.
#[derive(Debug, Default, Clone, Serialize)]
pub struct JudgeCosts {
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Judgements that failed, by kind (`api_error`, `invalid_answer`): a dialogue that fails in
    /// two passes counts twice.
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct JudgeReport {
    /// Stored dialogues, judged or not.
    pub dialogues: u64,
    pub judged: u64,
    pub by_judge: Vec<JudgeCount>,
    pub mean_overall: Option<f64>,
    /// Mean score of each criterion, in the rubric's order of `criteria`.
    pub mean_scores: BTreeMap<String, f64>,
    pub criteria: Vec<&'static str>,
    /// How many judged dialogues got each overall score, 1 to 5.
    pub overall_histogram: BTreeMap<u8, u64>,
    #[serde(flatten)]
    pub costs: JudgeCosts,
}

#[derive(Debug, Serialize)]
pub struct JudgeCount {
    pub model: String,
    pub prompt_version: String,
    pub judged: u64,
}

impl JudgeStats {
    pub fn add(&mut self, score: Option<&JudgeScore>) {
        self.dialogues += 1;
        let Some(s) = score else { return };
        self.judged += 1;
        *self
            .by_judge
            .entry((s.model.clone(), s.prompt_version.clone()))
            .or_default() += 1;
        self.overall_sum += u64::from(s.overall);
        if (1..=5).contains(&s.overall) {
            self.histogram[usize::from(s.overall) - 1] += 1;
        }
        for c in CRITERIA {
            if let Some(v) = s.scores.get(c) {
                *self.criteria_sums.entry(c).or_default() += u64::from(*v);
            }
        }
    }

    pub fn report(self, costs: JudgeCosts) -> JudgeReport {
        let mean = |sum: u64| (self.judged > 0).then(|| sum as f64 / self.judged as f64);
        JudgeReport {
            dialogues: self.dialogues,
            judged: self.judged,
            mean_overall: mean(self.overall_sum),
            mean_scores: self
                .criteria_sums
                .iter()
                .filter_map(|(c, sum)| Some((c.to_string(), mean(*sum)?)))
                .collect(),
            criteria: CRITERIA.to_vec(),
            overall_histogram: (1..=5u8)
                .map(|s| (s, self.histogram[usize::from(s) - 1]))
                .collect(),
            by_judge: self
                .by_judge
                .into_iter()
                .map(|((model, prompt_version), judged)| JudgeCount {
                    model,
                    prompt_version,
                    judged,
                })
                .collect(),
            costs,
        }
    }
}
