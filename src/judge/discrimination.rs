//! Does the judge tell a good dialogue from a broken one? Real dialogues and their corruptions
//! (`corrupt`) are scored, and for each kind of corruption the report counts how often the
//! original scored higher, lower or the same — by the overall score, and by the sum of all
//! eight scores (which ties less often).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::task::JoinSet;

use super::corrupt::{corrupt, Case, Corruption};
use super::rubric::Subject;
use super::{Judge, JudgeError, JudgeScore};
use crate::llm::Usage;

/// One real dialogue and what the judge is told of its plan.
pub struct Original {
    pub services: Vec<String>,
    pub case: Case,
}

#[derive(Debug, Default, Serialize)]
pub struct Tally {
    pub original_higher: u64,
    pub ties: u64,
    pub corrupted_higher: u64,
    /// Share of the pairs where the original scored higher (ties count against).
    pub share_original_higher: Option<f64>,
}

impl Tally {
    fn add(&mut self, original: u32, corrupted: u32) {
        match original.cmp(&corrupted) {
            std::cmp::Ordering::Greater => self.original_higher += 1,
            std::cmp::Ordering::Equal => self.ties += 1,
            std::cmp::Ordering::Less => self.corrupted_higher += 1,
        }
        let n = self.original_higher + self.ties + self.corrupted_higher;
        self.share_original_higher = Some(self.original_higher as f64 / n as f64);
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Row {
    /// Pairs where both the original and the corruption were scored.
    pub pairs: u64,
    pub by_overall: Tally,
    pub by_total: Tally,
    /// Mean overall score of the corruptions.
    pub mean_overall: Option<f64>,
    /// Corruptions the judge could not score.
    pub errors: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub prompt_version: String,
    pub originals: u64,
    /// Originals the judge could not score (their pairs are left out).
    pub original_errors: u64,
    pub originals_mean_overall: Option<f64>,
    pub corruptions: BTreeMap<&'static str, Row>,
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// One message per kind of error, with how often it happened.
    pub error_examples: BTreeMap<String, u64>,
}

fn total(score: &JudgeScore) -> u32 {
    u32::from(score.overall) + score.scores.values().map(|s| u32::from(*s)).sum::<u32>()
}

/// Judges every original and its four corruptions, `concurrency` calls at a time.
pub async fn measure(
    judge: Arc<Judge>,
    originals: Arc<Vec<Original>>,
    seed: u64,
    concurrency: usize,
) -> Report {
    // (original index, None for the original itself or the corruption)
    let mut jobs: Vec<(usize, Option<Corruption>)> = Vec::new();
    for i in 0..originals.len() {
        jobs.push((i, None));
        jobs.extend(Corruption::ALL.iter().map(|k| (i, Some(*k))));
    }
    let mut results: BTreeMap<(usize, Option<Corruption>), Result<JudgeScore, JudgeError>> =
        BTreeMap::new();
    let mut usage = Usage::default();
    let mut tasks = JoinSet::new();
    let mut queue = jobs.into_iter();
    let done = |n: usize| {
        if n.is_multiple_of(10) {
            tracing::info!("judged {n} of {}", originals.len() * 5);
        }
    };
    loop {
        while tasks.len() < concurrency {
            let Some((i, kind)) = queue.next() else { break };
            let (judge, originals) = (judge.clone(), originals.clone());
            tasks.spawn(async move {
                let o = &originals[i];
                let case = match kind {
                    None => o.case.clone(),
                    Some(k) => corrupt(&o.case, k, seed ^ i as u64),
                };
                let subject = Subject {
                    services: &o.services,
                    category: "",
                    scenario: "",
                    persona: "",
                    user_emotion: "",
                    assistant_emotion: "",
                    outcome: &case.outcome,
                    turns: &case.turns,
                };
                ((i, kind), judge.score(&subject).await)
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let Ok((key, judged)) = joined else { continue };
        usage += judged.usage;
        if let Err(e) = &judged.result {
            tracing::warn!("{e}");
        }
        results.insert(key, judged.result);
        done(results.len());
    }
    tally(&judge, originals.len(), &results, usage)
}

fn mean(values: &[u8]) -> Option<f64> {
    (!values.is_empty())
        .then(|| values.iter().map(|v| f64::from(*v)).sum::<f64>() / values.len() as f64)
}

fn tally(
    judge: &Judge,
    originals: usize,
    results: &BTreeMap<(usize, Option<Corruption>), Result<JudgeScore, JudgeError>>,
    usage: Usage,
) -> Report {
    let mut report = Report {
        model: judge.settings.model.clone(),
        prompt_version: super::JUDGE_PROMPT_VERSION.to_string(),
        originals: originals as u64,
        original_errors: 0,
        originals_mean_overall: None,
        corruptions: BTreeMap::new(),
        calls: usage.calls,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        error_examples: BTreeMap::new(),
    };
    for r in results.values() {
        if let Err(e) = r {
            let text: String = e.to_string().chars().take(160).collect();
            *report.error_examples.entry(text).or_default() += 1;
        }
    }
    let mut original_overall = Vec::new();
    for kind in Corruption::ALL {
        let row = report.corruptions.entry(kind.name()).or_default();
        let mut overall = Vec::new();
        for i in 0..originals {
            let Some(Ok(original)) = results.get(&(i, None)) else {
                continue;
            };
            match results.get(&(i, Some(kind))) {
                Some(Ok(c)) => {
                    row.pairs += 1;
                    row.by_overall
                        .add(u32::from(original.overall), u32::from(c.overall));
                    row.by_total.add(total(original), total(c));
                    overall.push(c.overall);
                }
                _ => row.errors += 1,
            }
        }
        row.mean_overall = mean(&overall);
    }
    for i in 0..originals {
        match results.get(&(i, None)) {
            Some(Ok(s)) => original_overall.push(s.overall),
            _ => report.original_errors += 1,
        }
    }
    report.originals_mean_overall = mean(&original_overall);
    report
}

/// The report as a table, one row per corruption.
pub fn render_text(r: &Report) -> String {
    let pct = |t: &Tally| {
        t.share_original_higher
            .map_or("-".to_string(), |s| format!("{:.0} %", 100.0 * s))
    };
    let mut out = format!(
        "judge {} (rubric {}): {} originals, {} not scored; mean overall of the originals {}\n",
        r.model,
        r.prompt_version,
        r.originals,
        r.original_errors,
        r.originals_mean_overall
            .map_or("-".into(), |m| format!("{m:.2}"))
    );
    out.push_str(&format!(
        "{:<28} {:>5}  {:>22}  {:>22}  {:>9}  {:>6}\n",
        "corruption", "pairs", "overall: orig>/=/<", "sum of 8: orig>/=/<", "mean ovr", "errors"
    ));
    for (name, row) in &r.corruptions {
        let t = |t: &Tally| {
            format!(
                "{}/{}/{} ({})",
                t.original_higher,
                t.ties,
                t.corrupted_higher,
                pct(t)
            )
        };
        out.push_str(&format!(
            "{name:<28} {:>5}  {:>22}  {:>22}  {:>9}  {:>6}\n",
            row.pairs,
            t(&row.by_overall),
            t(&row.by_total),
            row.mean_overall.map_or("-".into(), |m| format!("{m:.2}")),
            row.errors
        ));
    }
    out.push_str(&format!(
        "{} calls, {} prompt + {} completion tokens\n",
        r.calls, r.prompt_tokens, r.completion_tokens
    ));
    for (message, n) in &r.error_examples {
        out.push_str(&format!("error x{n}: {message}\n"));
    }
    out
}
