//! The text summary of the metrics in `dgen status`: a few lines; `--json` has everything.

use std::io::Write;

use anyhow::Result;

use super::coverage::GOAL_DIMENSIONS;
use super::Metrics;

/// Goal values listed per dimension in text; `--json` has all of them.
const GOAL_ROWS: usize = 12;

/// A few lines of the metrics; `--json` has all of them.
pub fn write_summary(out: &mut impl Write, m: &Metrics) -> Result<()> {
    write_funnel(out, m)?;
    if m.lexical.turns_per_dialogue.count > 0 {
        write_diversity(out, m)?;
    }
    write_coverage(out, m)?;
    write_goals(out, m)?;
    write_labels(out, m)?;
    write_judge(out, m)
}

/// An annotated plan's goal dimensions: each value's planned items and, of those, the done ones.
fn write_goals(out: &mut impl Write, m: &Metrics) -> Result<()> {
    let titles = ["goal intents", "goal slots given", "goal slots asked"];
    for (dim, title) in GOAL_DIMENSIONS.iter().zip(titles) {
        let Some(d) = m.coverage.dimensions.get(dim) else {
            continue;
        };
        let mut rows: Vec<_> = d.values.iter().filter(|(_, v)| v.planned > 0).collect();
        rows.sort_by(|a, b| b.1.planned.cmp(&a.1.planned).then(a.0.cmp(b.0)));
        writeln!(
            out,
            "{title} ({} planned of {} in the schema; items planned, done)",
            rows.len(),
            d.values.len()
        )?;
        for (value, v) in rows.iter().take(GOAL_ROWS) {
            writeln!(out, "  {value:<36} {:>9} {:>9}", v.planned, v.accepted)?;
        }
        if rows.len() > GOAL_ROWS {
            writeln!(
                out,
                "  ... {} more (dgen status --json)",
                rows.len() - GOAL_ROWS
            )?;
        }
    }
    Ok(())
}

/// The annotated mode's label checks: the grounded and goal-realized shares, and each check's
/// findings.
fn write_labels(out: &mut impl Write, m: &Metrics) -> Result<()> {
    let Some(l) = &m.labels else {
        return Ok(());
    };
    let pct = |share: Option<f64>| share.map_or("-".to_string(), |s| format!("{:.1}%", 100.0 * s));
    writeln!(
        out,
        "labels:      {} annotated dialogues, {} checked: {} grounded ({}), {} goal realized ({}), {} both ({})",
        l.annotated,
        l.checked,
        l.grounded,
        pct(l.grounded_share),
        l.goal_realized,
        pct(l.goal_realized_share),
        l.grounded_and_realized,
        pct(l.grounded_and_realized_share)
    )?;
    let found: Vec<String> = l
        .checks
        .iter()
        .filter(|c| c.flagged > 0 || c.rejected > 0)
        .map(|c| format!("{} {} flagged/{} rejected", c.check, c.flagged, c.rejected))
        .collect();
    if found.is_empty() {
        writeln!(out, "             no label check found anything")?;
    } else {
        writeln!(out, "             {}", found.join(", "))?;
    }
    Ok(())
}

fn write_judge(out: &mut impl Write, m: &Metrics) -> Result<()> {
    let j = &m.judge;
    if j.judged == 0 && j.costs.calls == 0 {
        return Ok(());
    }
    let by: Vec<String> = j
        .by_judge
        .iter()
        .map(|b| format!("{} {}: {}", b.model, b.prompt_version, b.judged))
        .collect();
    writeln!(
        out,
        "judge:       {}/{} dialogues judged ({})",
        j.judged,
        j.dialogues,
        by.join(", ")
    )?;
    if let Some(mean) = j.mean_overall {
        let histogram: Vec<String> = j
            .overall_histogram
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect();
        writeln!(
            out,
            "             overall mean {mean:.2}, histogram {}",
            histogram.join(" ")
        )?;
        let criteria: Vec<String> = j
            .criteria
            .iter()
            .filter_map(|c| Some(format!("{c} {:.2}", j.mean_scores.get(*c)?)))
            .collect();
        writeln!(out, "             {}", criteria.join(", "))?;
    }
    let c = &j.costs;
    write!(
        out,
        "             {} judge calls, {} prompt + {} completion tokens",
        c.calls, c.prompt_tokens, c.completion_tokens
    )?;
    if !c.errors.is_empty() {
        let errors: Vec<String> = c.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        write!(out, "; not scored: {}", errors.join(", "))?;
    }
    writeln!(out)?;
    Ok(())
}

fn write_funnel(out: &mut impl Write, m: &Metrics) -> Result<()> {
    let f = &m.funnel;
    let rejected: u64 = f.rejected.values().sum();
    write!(
        out,
        "funnel:      {} planned, {} attempted, {} rejected attempts, {} failed, {} accepted",
        f.planned, f.attempted, rejected, f.failed, f.accepted
    )?;
    if let Some(tokens) = f.tokens_per_accepted {
        write!(out, "; {tokens:.0} tokens")?;
        if let Some(cost) = f.cost_per_accepted {
            write!(out, ", ${cost:.5}")?;
        }
        write!(out, " per accepted")?;
    }
    writeln!(out)?;
    Ok(())
}

fn write_diversity(out: &mut impl Write, m: &Metrics) -> Result<()> {
    let l = &m.lexical;
    for (label, side) in [("user", &l.user), ("assistant", &l.assistant)] {
        writeln!(
            out,
            "{label:<12} distinct-1/2/3 {:.3}/{:.3}/{:.3}, {:.1} words per utterance (p50 {}, p90 {})",
            side.distinct_1,
            side.distinct_2,
            side.distinct_3,
            side.words_per_utterance.mean,
            side.words_per_utterance.p50,
            side.words_per_utterance.p90
        )?;
    }
    let t = &l.turns_per_dialogue;
    writeln!(
        out,
        "turns:       {:.1} per dialogue (p50 {}, p90 {}), {} intents",
        t.mean, t.p50, t.p90, l.intent_vocabulary
    )?;
    let s = &m.semantic_spread;
    if let (Some(n), Some(mean)) = (&s.nearest_similarity, s.mean_pairwise_similarity) {
        let over = if s.sampled { "a seeded sample of " } else { "" };
        writeln!(
            out,
            "similarity:  nearest other p50 {:.3}, p90 {:.3}, max {:.3}; mean pairwise {mean:.3} (over {over}{} dialogues)",
            n.p50, n.p90, n.max, s.sample_size
        )?;
    }
    Ok(())
}

fn write_coverage(out: &mut impl Write, m: &Metrics) -> Result<()> {
    let dims = &m.coverage.dimensions;
    let deviations: Vec<String> = dims
        .iter()
        .filter_map(|(name, d)| {
            let dev = d.largest_deviation.as_ref()?;
            Some(format!(
                "{name} {} {:+.1}%",
                dev.value,
                100.0 * dev.deviation
            ))
        })
        .collect();
    if !deviations.is_empty() {
        let never: usize = dims.values().map(|d| d.never_accepted.len()).sum();
        writeln!(
            out,
            "coverage:    largest accepted-vs-planned share shift: {}",
            deviations.join(", ")
        )?;
        writeln!(
            out,
            "             {never} planned values never accepted (dgen status --json)"
        )?;
    }
    Ok(())
}
