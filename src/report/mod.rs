//! `dgen report`: one self-contained `report.html` (inline CSS, charts as inline SVG, a
//! dialogue browser in vanilla JS, no network) and `report.json` with every number the page
//! shows.
//!
//! The numbers are `dgen status --json`'s: the report is the status [`Report`] itself (flattened
//! into `report.json`; the judge's figures are its `metrics.judge`), plus the per-check counts
//! taken from it and the browser's sample, gathered by [`sample::Collector`] during the metrics'
//! one pass over the dialogues. Memory stays bounded however many dialogues the store holds: the browser
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

pub use sample::BrowserDialogue;

/// The most dialogues the browser holds; above it, a sample drawn with the plan's seed.
pub const BROWSER_CAP: usize = 2_000;

/// Everything the page shows, as `report.json` holds it.
#[derive(Debug, Serialize)]
pub struct ReportData {
    /// `dgen status --json`, key for key.
    #[serde(flatten)]
    pub status: Report,
    /// Per quality check, in [`Check::ALL`] order (the text checks alone for a plain store,
    /// whose report stays what it was): the status report's `run.checks` (accepted
    /// dialogues flagged) and `run.rejections` (attempts rejected) under the check's name.
    pub checks: Vec<CheckCount>,
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportJob {
    pub html: PathBuf,
    pub json: PathBuf,
    pub price_input: Option<f64>,
    pub price_output: Option<f64>,
    pub price_cached_input: Option<f64>,
    /// `--prices FILE`; a report asked of a running `dgen run` uses the built-in table.
    pub prices_file: Option<PathBuf>,
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
        price_cached_input: job.price_cached_input,
        prices_file: job.prices_file.clone(),
    };
    let mut collector = sample::Collector::new(seed, BROWSER_CAP, cancel);
    let status = status::report_with(store, &options, &mut collector)?;
    let (dialogues, seen) = collector.finish();
    let mut data = assemble(status, seen, seed, &dialogues);
    data.in_flight = concurrency::series(&store.in_flight_series()?);
    Ok((data, dialogues))
}

/// The report around a status report and what the collector gathered.
pub fn assemble(status: Report, seen: u64, seed: u64, dialogues: &[BrowserDialogue]) -> ReportData {
    let shown: &[Check] = if status.metrics.labels.is_some() {
        &Check::ALL
    } else {
        &Check::TEXT
    };
    let checks = shown
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
        browser,
        in_flight: concurrency::InFlightSeries::default(),
    }
}

/// Writes both files from one build and returns what to print. Neither file is replaced unless
/// both were written.
pub fn execute(store: &Store, job: &ReportJob, cancel: &AtomicBool) -> Result<String> {
    job.check()?;
    crate::output::atomic_file::refuse_overlaps(
        store.path(),
        &[("--out", &job.html), ("--json", &job.json)],
    )?;
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
    use crate::metrics::judge::{JudgeCosts, JudgeReport, JudgeStats};
    use crate::metrics::lexical::Lexical;
    use crate::metrics::spread::Spread;
    use crate::metrics::{Funnel, Metrics};
    use crate::quality::QualityRecord;
    use crate::status::{DatasetSummary, Distributions, RunReport};
    use crate::store::DialogueSink;

    /// A status report of three stored dialogues with `judge` as its judge section.
    fn status_with(judge: JudgeReport) -> Report {
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
            batches: Vec::new(),
            plan_fingerprint: "f".into(),
            shard: None,
            merged_shards: None,
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
                judge_calls: judge.costs.calls,
                judge_prompt_tokens: judge.costs.prompt_tokens,
                judge_completion_tokens: judge.costs.completion_tokens,
                overloaded_calls: 0,
                concurrency: None,
                cached_tokens: 0,
                cache_hit_share: None,
                prices: None,
                price_cached_input: None,
                price_note: None,
                estimated_cost: None,
                batch_prompt_tokens: 0,
                batch_completion_tokens: 0,
                spent: 0.0,
                spent_upper_bound: 0.0,
                timed_out_calls: 0,
                max_cost: None,
                rejections: BTreeMap::new(),
                failures: BTreeMap::new(),
                checks: BTreeMap::new(),
                elapsed_seconds: 0.0,
                dialogues_per_second: None,
                eta_seconds: None,
                endpoints: BTreeMap::new(),
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
                judge,
                labels: None,
            },
        }
    }

    #[test]
    fn judge_scores_bring_a_histogram_and_a_judge_filter() {
        let never = AtomicBool::new(false);
        let mut collector = sample::Collector::new(9, BROWSER_CAP, &never);
        let mut stats = JudgeStats::default();
        for (seq, judge) in [(0, Some(score(5, 4))), (1, Some(score(5, 2))), (2, None)] {
            stats.add(judge.as_ref());
            let quality = QualityRecord {
                checks: Vec::new(),
                judge,
                annotation: None,
            };
            collector
                .dialogue(seq, dialogue(seq), &[], quality)
                .unwrap();
        }
        let (dialogues, seen) = collector.finish();
        let costs = JudgeCosts {
            calls: 3,
            prompt_tokens: 30,
            completion_tokens: 15,
            errors: [("invalid_answer".to_string(), 1)].into(),
        };
        let data = assemble(status_with(stats.report(costs)), seen, 9, &dialogues);
        let mut page = Vec::new();
        html::write(&mut page, &data, &dialogues).unwrap();
        let page = Html::parse_document(std::str::from_utf8(&page).unwrap());
        let json = serde_json::to_value(&data).unwrap();
        let one = |css: &str| page.select(&Selector::parse(css).unwrap()).next();

        // Every judge figure on the page is the status report's `metrics.judge`.
        let judge_keys: Vec<&str> = page
            .select(&Selector::parse("section#judge [data-key]").unwrap())
            .map(|e| e.value().attr("data-key").unwrap())
            .collect();
        assert!(!judge_keys.is_empty());
        for key in &judge_keys {
            assert!(key.starts_with("/metrics/judge/"), "{key}");
            let value = one(&format!(r#"section#judge [data-key="{key}"]"#)).unwrap();
            assert_eq!(
                json.pointer(key).unwrap().to_string(),
                value.value().attr("data-value").unwrap(),
                "{key}"
            );
        }
        assert!(json.get("judge").is_none(), "no summary of its own");
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
                    format!("/metrics/judge/overall_histogram/{s}"),
                    if s == 5 { "2" } else { "0" }.into(),
                )
            })
            .collect();
        assert_eq!(bars, want);
        let mean = one(r#"rect[data-key="/metrics/judge/mean_scores/naturalness"]"#).unwrap();
        assert_eq!(mean.value().attr("data-value"), Some("3.0"));
        let shown = |key: &str| -> String {
            one(&format!(r#"span[data-key="{key}"]"#))
                .unwrap_or_else(|| panic!("{key}"))
                .text()
                .collect()
        };
        assert_eq!(shown("/metrics/judge/judged"), "2");
        assert_eq!(shown("/metrics/judge/mean_overall"), "5.00");
        assert_eq!(shown("/metrics/judge/by_judge/0/judged"), "2");
        assert_eq!(shown("/metrics/judge/calls"), "3");
        assert_eq!(shown("/metrics/judge/errors/invalid_answer"), "1");
        // The summary counts the judge's calls and tokens beside generation's.
        assert_eq!(shown("/run/judge_calls"), "3");
        assert_eq!(shown("/run/judge_prompt_tokens"), "30");

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
    }

    #[test]
    fn without_judged_dialogues_no_judge_chart_or_filter_but_its_failures_are_shown() {
        let mut stats = JudgeStats::default();
        for _ in 0..3 {
            stats.add(None);
        }
        let costs = JudgeCosts {
            calls: 3,
            prompt_tokens: 30,
            completion_tokens: 15,
            errors: [("api_error".to_string(), 3)].into(),
        };
        let data = assemble(status_with(stats.report(costs)), 0, 9, &[]);
        let mut page = Vec::new();
        html::write(&mut page, &data, &[]).unwrap();
        let page = Html::parse_document(std::str::from_utf8(&page).unwrap());
        let any = |css: &str| page.select(&Selector::parse(css).unwrap()).next().is_some();
        assert!(!any("svg#chart-judge"));
        assert!(!any("svg#chart-judge-criteria"));
        assert!(!any("select#filter-judge"));
        assert!(any(
            r#"section#judge span[data-key="/metrics/judge/errors/api_error"]"#
        ));
    }
}
