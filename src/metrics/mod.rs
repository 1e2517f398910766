//! Diversity and coverage metrics of a store, for `dgen status`: lexical diversity
//! (`lexical`), semantic spread (`spread`), plan coverage (`coverage`) and the funnel from
//! planned items to accepted dialogues. Everything is computed in one pass over the item states,
//! one over the items and one over the dialogues, from one snapshot each, so memory stays flat
//! however many dialogues the store holds (see each module for what it keeps).

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::plan::Annotate;
use crate::quality::QualityRecord;
use crate::record::GeneratedDialogue;
use crate::store::{DialogueSink, State, Store};

pub mod coverage;
pub mod judge;
pub mod labels;
pub mod lexical;
pub mod spread;
mod text;

use coverage::{Coverage, CoverageReport};
use judge::{JudgeCosts, JudgeReport, JudgeStats};
use labels::{LabelReport, LabelStats};
use lexical::{Lexical, LexicalReport};
use spread::{Spread, SpreadReport, SAMPLE_CAP};
pub use text::write_summary;

#[derive(Debug, Serialize)]
pub struct Metrics {
    /// Over every stored dialogue, imported ones included.
    pub lexical: LexicalReport,
    /// Over every stored dialogue, imported ones included.
    pub semantic_spread: SpreadReport,
    /// Over the plan's items; imported dialogues have none and are left out.
    pub coverage: CoverageReport,
    pub funnel: Funnel,
    /// The LLM judge's scores over every stored dialogue, and what judging cost.
    pub judge: JudgeReport,
    /// The annotated mode's label checks (absent for a plain store).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelReport>,
}

/// From planned items to accepted dialogues.
#[derive(Debug, Serialize)]
pub struct Funnel {
    pub planned: u64,
    /// Items with at least one attempt.
    pub attempted: u64,
    /// Rejected attempts by reason (an item may be rejected several times before it is
    /// accepted or fails).
    pub rejected: BTreeMap<String, u64>,
    /// Items that ran out of attempts.
    pub failed: u64,
    /// Items accepted (state done); imported dialogues are not counted.
    pub accepted: u64,
    /// Prompt plus completion tokens over accepted items.
    pub tokens_per_accepted: Option<f64>,
    /// The cost estimate over accepted items (when prices are known).
    pub cost_per_accepted: Option<f64>,
}

/// What the funnel takes from the run's counters.
pub struct RunTotals {
    pub rejections: BTreeMap<String, u64>,
    /// Generation and judge tokens.
    pub tokens: u64,
    pub estimated_cost: Option<f64>,
    pub judge: JudgeCosts,
}

/// The metrics' own sink, which hands every dialogue on to `also` after it.
struct Dialogues<'a, S> {
    lexical: Lexical,
    spread: Spread,
    also: &'a mut S,
    judge: JudgeStats,
    labels: LabelStats,
}

impl<S: DialogueSink> DialogueSink for Dialogues<'_, S> {
    fn dialogue(
        &mut self,
        seq: u64,
        record: GeneratedDialogue,
        embedding: &[u8],
        quality: QualityRecord,
    ) -> Result<()> {
        self.judge.add(quality.judge.as_ref());
        self.labels.add(&quality);
        self.lexical.add(&record.turns);
        self.spread.add(embedding);
        self.also.dialogue(seq, record, embedding, quality)
    }
}

/// A sink that keeps nothing: `compute` without a second reader of the dialogues.
pub struct NoSink;

impl DialogueSink for NoSink {
    fn dialogue(&mut self, _: u64, _: GeneratedDialogue, _: &[u8], _: QualityRecord) -> Result<()> {
        Ok(())
    }
}

/// The metrics of `store`; `seed` (the plan's) seeds the similarity sample. Every dialogue is
/// also handed to `also` during the same pass (the report's browser sample), so a caller that
/// needs more than the metrics reads the dialogues once, from the same snapshot.
pub fn compute(
    store: &Store,
    catalog: &Catalog,
    annotate: Option<&Annotate>,
    seed: u64,
    run: RunTotals,
    also: &mut impl DialogueSink,
) -> Result<Metrics> {
    let Items {
        coverage,
        attempted,
        failed,
    } = items(store, catalog, annotate)?;
    let mut dialogues = Dialogues {
        lexical: Lexical::default(),
        spread: Spread::new(seed, SAMPLE_CAP),
        also,
        judge: JudgeStats::default(),
        labels: LabelStats::default(),
    };
    store.for_each_dialogue(&mut dialogues)?;
    let coverage = coverage.report();
    let accepted = coverage.accepted;
    let per_accepted = |x: f64| (accepted > 0).then(|| x / accepted as f64);
    let labels = dialogues.labels.report(&run.rejections, annotate.is_some());
    Ok(Metrics {
        labels,
        lexical: dialogues.lexical.report(),
        semantic_spread: dialogues.spread.report(),
        funnel: Funnel {
            planned: coverage.planned,
            attempted,
            rejected: run.rejections,
            failed,
            accepted,
            tokens_per_accepted: per_accepted(run.tokens as f64),
            cost_per_accepted: run.estimated_cost.and_then(per_accepted),
        },
        coverage,
        judge: dialogues.judge.report(run.judge),
    })
}

/// Plan coverage alone (no dialogue read), for the dataset card.
pub fn coverage_of(
    store: &Store,
    catalog: &Catalog,
    annotate: Option<&Annotate>,
) -> Result<CoverageReport> {
    Ok(items(store, catalog, annotate)?.coverage.report())
}

/// What one pass over the item states and one over the items give.
struct Items {
    coverage: Coverage,
    /// Items with at least one attempt.
    attempted: u64,
    /// Items that ran out of attempts.
    failed: u64,
}

/// `annotate`: the plan's, whose user goals are counted beside the catalog's dimensions.
fn items(store: &Store, catalog: &Catalog, annotate: Option<&Annotate>) -> Result<Items> {
    let mut done: Vec<bool> = Vec::new();
    let (mut attempted, mut failed) = (0u64, 0u64);
    store.for_each_state(|index, state| {
        let i = index as usize;
        if done.len() <= i {
            done.resize(i + 1, false);
        }
        done[i] = state.state == State::Done;
        attempted += u64::from(state.attempts > 0);
        failed += u64::from(state.state == State::Failed);
    })?;
    let mut coverage = Coverage::new(catalog);
    if let Some(a) = annotate {
        coverage = coverage.with_goals(&a.schema, &catalog.core_services);
    }
    store.for_each_item(|item| {
        let accepted = done.get(item.index as usize).copied().unwrap_or(false);
        coverage.add(&item, accepted);
        if let Some(a) = annotate {
            coverage.add_goals(&a.goals(&item), accepted);
        }
        Ok(())
    })?;
    Ok(Items {
        coverage,
        attempted,
        failed,
    })
}
