//! The text summary of the metrics in `dgen status`: a few lines; `--json` has everything.

use std::io::Write;

use anyhow::Result;

use super::Metrics;

/// A few lines of the metrics; `--json` has all of them.
pub fn write_summary(out: &mut impl Write, m: &Metrics) -> Result<()> {
    write_funnel(out, m)?;
    if m.lexical.turns_per_dialogue.count > 0 {
        write_diversity(out, m)?;
    }
    write_coverage(out, m)?;
    write_judge(out, m)
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
