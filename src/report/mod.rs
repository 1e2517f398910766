//! `dgen report`: one self-contained `report.html` (inline CSS, charts as inline SVG, a
//! dialogue browser in vanilla JS, no network) and `report.json` with every number the page
//! shows.
//!
//! The numbers are `dgen status --json`'s: the report is the status [`Report`] itself (flattened
//! into `report.json`), plus the per-check counts taken from it, the judge scores' histogram and
//! the browser's sample, both gathered by [`sample::Collector`] during the metrics' one pass
//! over the dialogues. Memory stays bounded however many dialogues the store holds: the browser
//! keeps at most [`BROWSER_CAP`] of them.

pub mod concurrency;
pub mod html;
pub mod sample;
pub mod svg;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::output::atomic_file::AtomicFile;
use crate::quality::Check;
use crate::status::{self, Report, StatusOptions};
use crate::store::Store;

pub use sample::{BrowserDialogue, JudgeSummary};

/// The most dialogues the browser holds; above it, a sample drawn with the plan's seed.
pub const BROWSER_CAP: usize = 2_000;

/// Everything the page shows, as `report.json` holds it.
#[derive(Debug, Serialize)]
pub struct ReportData {
    /// `dgen status --json`, key for key.
    #[serde(flatten)]
    pub status: Report,
    /// Per quality check, in [`Check::ALL`] order: the status report's `run.checks` (accepted
    /// dialogues flagged) and `run.rejections` (attempts rejected) under the check's name.
    pub checks: Vec<CheckCount>,
    /// The judge's scores over every stored dialogue (none until `dgen judge` has run).
    pub judge: JudgeSummary,
    pub browser: BrowserSummary,
    /// Requests in flight over time and the adaptive limit, as `dgen run` recorded them.
    pub in_flight: concurrency::InFlightSeries,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckCount {
    pub check: &'static str,
    pub flagged: u64,
    pub rejected: u64,
}

/// What the dialogue browser holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrowserSummary {
    /// Dialogues read from the store.
    pub dialogues: u64,
    /// Dialogues in the browser: all of them up to [`BROWSER_CAP`], else that many.
    pub shown: u64,
    pub sampled: bool,
    /// The plan's seed, which draws the sample.
    pub seed: u64,
    /// The ids of the dialogues shown, in store order.
    pub dialogue_ids: Vec<String>,
}

/// What to write, and the prices for the cost figures (as `dgen status` takes them).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportJob {
    pub html: PathBuf,
    pub json: PathBuf,
    pub price_input: Option<f64>,
    pub price_output: Option<f64>,
}

impl ReportJob {
    /// Refuses one path for both files (the second would replace the first).
    pub fn check(&self) -> Result<()> {
        let same = std::path::absolute(&self.html)? == std::path::absolute(&self.json)?;
        if same {
            bail!(
                "--out and --json both name {}; give them different files",
                self.html.display()
            );
        }
        Ok(())
    }
}

/// The page's data and the browser's dialogues, from the store's current contents. Setting
/// `cancel` stops the pass over the dialogues.
pub fn build(
    store: &Store,
    job: &ReportJob,
    cancel: &AtomicBool,
) -> Result<(ReportData, Vec<BrowserDialogue>)> {
    let meta = store.meta()?.context("the store holds no plan")?;
    let seed = meta.config.seed;
    let options = StatusOptions {
        json: true,
        price_input: job.price_input,
        price_output: job.price_output,
    };
    let mut collector = sample::Collector::new(seed, BROWSER_CAP, cancel);
    let status = status::report_with(store, &options, &mut collector)?;
    let (judge, dialogues, seen) = collector.finish();
    let mut data = assemble(status, judge, seen, seed, &dialogues);
    data.in_flight = concurrency::series(&store.in_flight_series()?);
    Ok((data, dialogues))
}

/// The report around a status report and what the collector gathered.
pub fn assemble(
    status: Report,
    judge: JudgeSummary,
    seen: u64,
    seed: u64,
    dialogues: &[BrowserDialogue],
) -> ReportData {
    let checks = Check::ALL
        .iter()
        .map(|c| CheckCount {
            check: c.name(),
            flagged: status.run.checks.get(c.name()).copied().unwrap_or(0),
            rejected: status.run.rejections.get(c.name()).copied().unwrap_or(0),
        })
        .collect();
    let browser = BrowserSummary {
        dialogues: seen,
        shown: dialogues.len() as u64,
        sampled: seen > dialogues.len() as u64,
        seed,
        dialogue_ids: dialogues.iter().map(|d| d.dialogue_id.clone()).collect(),
    };
    ReportData {
        status,
        checks,
        judge,
        browser,
        in_flight: concurrency::InFlightSeries::default(),
    }
}

/// Writes both files from one build and returns what to print. Neither file is replaced unless
/// both were written.
pub fn execute(store: &Store, job: &ReportJob, cancel: &AtomicBool) -> Result<String> {
    job.check()?;
    let mut html_file = AtomicFile::create(&job.html)?;
    let mut json_file = AtomicFile::create(&job.json)?;
    let (data, dialogues) = build(store, job, cancel)?;
    html::write(html_file.writer(), &data, &dialogues)
        .with_context(|| format!("cannot write {}", job.html.display()))?;
    let w = json_file.writer();
    serde_json::to_writer_pretty(&mut *w, &data)
        .with_context(|| format!("cannot write {}", job.json.display()))?;
    writeln!(w)?;
    html_file.commit()?;
    json_file.commit()?;
    Ok(format!(
        "wrote {} and {}: {}\n",
        job.html.display(),
        job.json.display(),
        html::browser_note(&data.browser)
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use scraper::{Html, Selector};

    use super::sample::tests::{dialogue, score};
    use super::*;
    use crate::catalog::Catalog;
    use crate::metrics::coverage::Coverage;
    use crate::metrics::lexical::Lexical;
    use crate::metrics::spread::Spread;
    use crate::metrics::{Funnel, Metrics};
    use crate::quality::QualityRecord;
    use crate::status::{DatasetSummary, Distributions, RunReport};
    use crate::store::DialogueSink;

    /// A status report of an empty plan: the judge path needs no more (the binary cannot write
    /// judge scores yet, so this is where that path is tested).
    fn empty_status() -> Report {
        let dataset = || DatasetSummary {
            source: "fixtures".into(),
            format: "JSONL".into(),
            rows: 3,
            skipped: BTreeMap::new(),
        };
        Report {
            store: "s.redb".into(),
            store_bytes: 1,
            dgen_version: "0".into(),
            plan_fingerprint: "f".into(),
            seed: 9,
            total_items: 0,
            states: Vec::new(),
            dataset: dataset(),
            personas: dataset(),
            run: RunReport {
                model: None,
                dialogues: 3,
                imported: 0,
                calls: 0,
                prompt_tokens: 0,
                completion_tokens: 0,
                judge_calls: 0,
                judge_prompt_tokens: 0,
                judge_completion_tokens: 0,
                prices: None,
                estimated_cost: None,
                rejections: BTreeMap::new(),
                failures: BTreeMap::new(),
                checks: BTreeMap::new(),
                elapsed_seconds: 0.0,
                dialogues_per_second: None,
                eta_seconds: None,
            },
            distributions: Distributions::default(),
            metrics: Metrics {
                lexical: Lexical::default().report(),
                semantic_spread: Spread::new(0, 10).report(),
                coverage: Coverage::new(&Catalog::builtin()).report(),
                funnel: Funnel {
                    planned: 0,
                    attempted: 0,
                    rejected: BTreeMap::new(),
                    failed: 0,
                    accepted: 0,
                    tokens_per_accepted: None,
                    cost_per_accepted: None,
                },
                judge: crate::metrics::judge::JudgeStats::default()
                    .report(crate::metrics::judge::JudgeCosts::default()),
            },
        }
    }

    #[test]
    fn judge_scores_bring_a_histogram_and_a_judge_filter() {
        let never = AtomicBool::new(false);
        let mut collector = sample::Collector::new(9, BROWSER_CAP, &never);
        for (seq, judge) in [(0, Some(score(5, 4))), (1, Some(score(5, 2))), (2, None)] {
            let quality = QualityRecord {
                checks: Vec::new(),
                judge,
            };
            collector
                .dialogue(seq, dialogue(seq), &[], quality)
                .unwrap();
        }
        let (judge, dialogues, seen) = collector.finish();
        let data = assemble(empty_status(), judge, seen, 9, &dialogues);
        let mut page = Vec::new();
        html::write(&mut page, &data, &dialogues).unwrap();
        let page = Html::parse_document(std::str::from_utf8(&page).unwrap());
        let json = serde_json::to_value(&data).unwrap();
        let one = |css: &str| page.select(&Selector::parse(css).unwrap()).next();

        let bars: Vec<(String, String)> = page
            .select(&Selector::parse("svg#chart-judge rect").unwrap())
            .map(|r| {
                let key = r.value().attr("data-key").unwrap().to_string();
                (key, r.value().attr("data-value").unwrap().to_string())
            })
            .collect();
        let want: Vec<(String, String)> = (1..=5)
            .map(|s| {
                (
                    format!("/judge/overall/{s}"),
                    if s == 5 { "2" } else { "0" }.into(),
                )
            })
            .collect();
        assert_eq!(bars, want);
        for (key, value) in &bars {
            assert_eq!(json.pointer(key).unwrap().to_string(), *value);
        }
        let mean = one(r#"rect[data-key="/judge/criteria_means/naturalness"]"#).unwrap();
        assert_eq!(mean.value().attr("data-value"), Some("3.0"));
        let options: Vec<&str> = page
            .select(&Selector::parse("select#filter-judge option").unwrap())
            .map(|o| o.value().attr("value").unwrap())
            .collect();
        assert_eq!(options, ["", "(unscored)", "1", "2", "3", "4", "5"]);
        // The browser's data carries each dialogue's score, and `<` cannot end the block.
        let data_block: String = one("script#dialogue-data").unwrap().text().collect();
        let shown: Vec<serde_json::Value> = serde_json::from_str(&data_block).unwrap();
        assert_eq!(shown[0]["judge"]["overall"], 5);
        assert_eq!(shown[2]["judge"], serde_json::Value::Null);
        assert_eq!(
            shown[0]["turns"][0]["utterance"],
            "I need a taxi </script> now"
        );
        assert_eq!(json["judge"]["scored"], 2);
    }
}
