//! `dgen status`'s text: the store, the plan, the run (cost, spent, cache, limiter,
//! endpoints, rejections), the batches, then each distribution next to its target and the
//! metrics' summary. `--json` writes the [`Report`] itself instead.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;

use super::{BatchSummary, Report, RunReport, Share};
use crate::catalog::SIZE_NAMES;
use crate::cost;
use crate::metrics;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Longest lists are cut to this many rows in text; `--json` has everything.
const TEXT_ROWS: usize = 12;

fn write_counts<K: std::fmt::Display>(
    out: &mut impl Write,
    title: &str,
    counts: &BTreeMap<K, u64>,
    total: u64,
    by_count: bool,
) -> Result<()> {
    writeln!(out, "{title} ({} distinct)", counts.len())?;
    let mut rows: Vec<(&K, &u64)> = counts.iter().collect();
    if by_count {
        rows.sort_by(|a, b| b.1.cmp(a.1));
    }
    for (key, count) in rows.iter().take(TEXT_ROWS) {
        let pct = 100.0 * **count as f64 / total.max(1) as f64;
        writeln!(out, "  {key:<28} {count:>9}  {pct:5.1}%")?;
    }
    if rows.len() > TEXT_ROWS {
        writeln!(
            out,
            "  ... {} more (dgen status --json)",
            rows.len() - TEXT_ROWS
        )?;
    }
    Ok(())
}

fn write_shares<'a>(
    out: &mut impl Write,
    title: &str,
    shares: impl Iterator<Item = (&'a String, &'a Share)>,
) -> Result<()> {
    writeln!(out, "{title}")?;
    for (name, s) in shares {
        writeln!(
            out,
            "  {name:<28} {:>9}  {:5.1}%  (target {:4.1}%)",
            s.count,
            100.0 * s.share,
            100.0 * s.target
        )?;
    }
    Ok(())
}

pub(super) fn write_text(out: &mut impl Write, r: &Report) -> Result<()> {
    writeln!(out, "store:       {} ({})", r.store, mib(r.store_bytes))?;
    writeln!(out, "plan:        {} items, seed {}", r.total_items, r.seed)?;
    writeln!(out, "fingerprint: {}", r.plan_fingerprint)?;
    if let Some(shard) = &r.shard {
        writeln!(
            out,
            "shard:       {}/{} of the full plan {}",
            shard.index, shard.count, shard.full_fingerprint
        )?;
    }
    if let Some(k) = r.merged_shards {
        writeln!(out, "merged:      from {k} shards (dgen merge)")?;
    }
    let states: Vec<String> = r
        .states
        .iter()
        .map(|s| format!("{} {}", s.state, s.count))
        .collect();
    writeln!(out, "items:       {}", states.join(", "))?;
    for (label, ds) in [("dataset", &r.dataset), ("personas", &r.personas)] {
        let skipped: u64 = ds.skipped.values().sum();
        write!(
            out,
            "{label:<12} {} ({}, {} rows",
            ds.source, ds.format, ds.rows
        )?;
        if skipped > 0 {
            let reasons: Vec<String> = ds.skipped.iter().map(|(k, v)| format!("{v} {k}")).collect();
            write!(out, ", skipped {skipped}: {}", reasons.join(", "))?;
        }
        writeln!(out, ")")?;
    }
    write_run(out, &r.run)?;
    write_batches(out, &r.batches)?;
    writeln!(out)?;
    let d = &r.distributions;
    let t = r.total_items;
    let sizes = SIZE_NAMES
        .iter()
        .filter_map(|n| d.service_count.get_key_value(*n));
    write_shares(out, "services per dialogue", sizes)?;
    write_counts(out, "combinations (usage)", &d.combinations, t, false)?;
    write_counts(out, "primary services", &d.primary_services, t, false)?;
    write_counts(out, "categories", &d.categories, t, true)?;
    write_counts(out, "regions", &d.regions, t, true)?;
    write_counts(out, "time slots", &d.time_slots, t, false)?;
    write_counts(out, "user emotions", &d.user_emotions, t, true)?;
    write_counts(out, "assistant emotions", &d.assistant_emotions, t, true)?;
    write_shares(out, "resolution statuses", d.resolution_statuses.iter())?;
    write_counts(out, "min turns", &d.min_turns, t, false)?;
    write_counts(out, "max turns", &d.max_turns, t, false)?;
    writeln!(out)?;
    metrics::write_summary(out, &r.metrics)?;
    Ok(())
}

fn write_batches(out: &mut impl Write, batches: &[BatchSummary]) -> Result<()> {
    if batches.is_empty() {
        return Ok(());
    }
    let open = batches.iter().filter(|b| !b.collected).count();
    let given_up = batches.iter().filter(|b| b.status == "given_up").count();
    write!(out, "batches:     {} ({open} in flight", batches.len())?;
    if given_up > 0 {
        write!(out, ", {given_up} given up, their requests pending again")?;
    }
    writeln!(out, ")")?;
    for b in batches {
        write!(
            out,
            "  batch #{} {} ({} requests): {}, {} done, {} failed",
            b.id, b.stage, b.requests, b.status, b.completed, b.failed
        )?;
        match (&b.note, b.collected) {
            (Some(note), _) => writeln!(out, "; {note}")?,
            (None, false) => writeln!(out, "; in flight")?,
            (None, true) => writeln!(out)?,
        }
    }
    Ok(())
}

fn write_run(out: &mut impl Write, r: &RunReport) -> Result<()> {
    if r.calls == 0 && r.dialogues == 0 {
        writeln!(out, "run:         not started (dgen run)")?;
        return Ok(());
    }
    write!(
        out,
        "run:         {} dialogues ({} imported), {} calls, {} prompt + {} completion tokens",
        r.dialogues, r.imported, r.calls, r.prompt_tokens, r.completion_tokens
    )?;
    match (r.estimated_cost, r.prices) {
        (Some(cost), Some((i, o))) => writeln!(
            out,
            ", about ${cost:.4}{} (at ${i}/${o} per 1M tokens{}{})",
            if r.judge_calls > 0 {
                " with the judge's"
            } else {
                ""
            },
            r.price_cached_input
                .map_or(String::new(), |c| format!(", ${c} cached")),
            if r.batch_prompt_tokens > 0 || r.batch_completion_tokens > 0 {
                "; Batch API calls at the batch price"
            } else {
                ""
            }
        )?,
        _ => writeln!(
            out,
            " ({})",
            r.price_note.as_deref().unwrap_or(
                "pass --price_input/--price_output (USD per 1M tokens) or --prices FILE for a cost estimate"
            )
        )?,
    }
    if let Some(share) = r.cache_hit_share {
        writeln!(
            out,
            "cache:       {} of {} prompt tokens served from the provider's cache ({:.1}%)",
            r.cached_tokens,
            r.prompt_tokens,
            100.0 * share
        )?;
    }
    if r.overloaded_calls > 0 || r.concurrency.is_some() {
        write!(
            out,
            "limiter:     {} calls answered 429/503",
            r.overloaded_calls
        )?;
        match &r.concurrency {
            Some(c) => writeln!(
                out,
                "; last sample {} in flight, limit {}",
                c.in_flight, c.limit
            )?,
            None => writeln!(out)?,
        }
    }
    if r.spent > 0.0 || r.max_cost.is_some() {
        write!(
            out,
            "spent:       ${} (recorded as calls were billed",
            cost::dollars(r.spent)
        )?;
        if r.timed_out_calls > 0 {
            write!(
                out,
                "; ${} of it the upper bound of {} tries that timed out and may have been billed",
                cost::dollars(r.spent_upper_bound),
                r.timed_out_calls
            )?;
        }
        write!(out, ")")?;
        match r.max_cost {
            Some(max) => writeln!(out, "; budget --max_cost ${}", cost::dollars(max))?,
            None => writeln!(out)?,
        }
    }
    if let Some(rate) = r.dialogues_per_second {
        write!(
            out,
            "throughput:  {rate:.2} dialogues/s over {:.0} s of running",
            r.elapsed_seconds
        )?;
        match r.eta_seconds {
            Some(eta) if eta > 0.0 => writeln!(out, ", ETA {eta:.0} s")?,
            _ => writeln!(out)?,
        }
    }
    for (name, e) in &r.endpoints {
        writeln!(
            out,
            "endpoint:    {name}: {} calls, {} errors, mean latency {}, {} prompt + {} completion tokens{}",
            e.calls,
            e.errors,
            e.mean_latency_ms
                .map_or_else(|| "-".to_string(), |ms| format!("{ms} ms")),
            e.prompt_tokens,
            e.completion_tokens,
            match e.taken_out {
                0 => String::new(),
                n => format!(", taken out {n} times"),
            }
        )?;
    }
    for (title, map) in [
        ("rejections", &r.rejections),
        ("failures", &r.failures),
        ("flagged", &r.checks),
    ] {
        if !map.is_empty() {
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(out, "{title:<12} {}", parts.join(", "))?;
        }
    }
    Ok(())
}
