//! The dataset card (`README.md`): the YAML header the Hub reads — configs with each split's
//! files, the features matching the Parquet schema, size category, task and language — then
//! prose written from the store: how the data was made, what it holds, its quality figures and
//! its limitations. Deterministic: the same store gives the same card.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use arrow_schema::Schema;

use super::{columns, HfJob, Tally};
use crate::metrics::{self, coverage::CoverageReport};
use crate::quality::Check;
use crate::store::{Meta, Store};

/// An input as the card names it: its last path component, format and rows.
fn input(report: &crate::dataset::LoadReport) -> String {
    format!(
        "{} ({}, {} rows)",
        cell(&source_name(&report.source)),
        report.format,
        report.rows
    )
}

/// The last component of an input's path: the card is meant to be published, and the folders
/// of the machine that planned it are nobody's business.
fn source_name(source: &str) -> String {
    std::path::Path::new(source)
        .file_name()
        .map_or_else(|| source.to_string(), |n| n.to_string_lossy().into_owned())
}

fn size_category(n: u64) -> &'static str {
    match n {
        0..1_000 => "n<1K",
        1_000..10_000 => "1K<n<10K",
        10_000..100_000 => "10K<n<100K",
        100_000..1_000_000 => "100K<n<1M",
        1_000_000..10_000_000 => "1M<n<10M",
        _ => "10M<n<100M",
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0.0 %".to_string()
    } else {
        format!("{:.1} %", 100.0 * part as f64 / whole as f64)
    }
}

/// Markdown table cell text: no pipes or line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A two-column table of counts with shares, largest first (ties by name), at most `top` rows.
fn counts_table(
    out: &mut String,
    title: &str,
    counts: &BTreeMap<String, u64>,
    total: u64,
    top: usize,
) {
    let mut rows: Vec<(&String, &u64)> = counts.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let _ = writeln!(out, "| {title} | dialogues | share |\n|---|---:|---:|");
    for (name, count) in rows.iter().take(top) {
        let _ = writeln!(
            out,
            "| {} | {count} | {} |",
            cell(name),
            percent(**count, total)
        );
    }
    if rows.len() > top {
        let rest: u64 = rows[top..].iter().map(|(_, c)| **c).sum();
        let _ = writeln!(
            out,
            "| {} others | {rest} | {} |",
            rows.len() - top,
            percent(rest, total)
        );
    }
    out.push('\n');
}

/// The endpoint kind, from the wire format the store records: dgen sends the full JSON Schema
/// only to a llama-server (its own, or one named with `--schema full`).
fn endpoint_kind(prompt_version: &str) -> &'static str {
    match prompt_version.rsplit('/').next() {
        Some("json") => "a llama.cpp server enforcing the full JSON Schema (dgen's local model, or `--schema full`)",
        Some("json-strict") => "an OpenAI-compatible chat-completions endpoint, structured outputs (strict JSON Schema)",
        Some("tags") => "an OpenAI-compatible chat-completions endpoint, tagged text",
        _ => "an OpenAI-compatible chat-completions endpoint",
    }
}

pub fn render(
    store: &Store,
    meta: &Meta,
    job: &HfJob,
    schema: &Schema,
    tally: &Tally,
) -> Result<String> {
    let total = tally.rows();
    let settings = store.run_settings()?;
    let counters = store.counters()?;
    let coverage = metrics::coverage_of(store, &meta.catalog, meta.config.annotate.as_ref())?;
    let mut out = String::new();
    header(&mut out, job, schema, tally);
    let models: Vec<String> = tally
        .models
        .keys()
        .map(|m| format!("`{}`", cell(m)))
        .collect();
    let _ = writeln!(
        out,
        "# Synthetic task-oriented dialogues\n\n\
         {total} customer–assistant dialogues across {} service domains, generated with \
         dgen from MultiWOZ 2.2 base dialogues and FinePersonas-style personas \
         by {}. Each dialogue follows a planned scenario (services, scenario category, city, time of \
         day, persona, user and assistant emotions, outcome) and has 384-dimensional \
         all-MiniLM-L6-v2 embeddings{}.\n",
        meta.catalog.core_services.len(),
        if models.is_empty() { "no model yet".to_string() } else { models.join(", ") },
        if job.embeddings { "" } else { " (left out of this export)" },
    );
    let _ = writeln!(
        out,
        "## Loading\n\n```python\nfrom datasets import load_dataset\n\n\
         ds = load_dataset(\"path/to/this/folder\")  # or \"<user>/<dataset>\" once uploaded\n\
         print(ds)\n```\n"
    );
    made(&mut out, meta, job, settings.as_ref());
    splits(&mut out, job, tally);
    contents(&mut out, tally);
    // A plain store's card lists the text checks alone, as it did before the label checks.
    let checks: &[Check] = if meta.config.annotate.is_some() {
        &Check::ALL
    } else {
        &Check::TEXT
    };
    quality(&mut out, tally, &counters, &coverage, checks);
    columns_doc(
        &mut out,
        job,
        tally,
        schema.field_with_name("dgen_turns").is_ok(),
    );
    let _ = writeln!(
        out,
        "## Known limitations\n\n\
         - Every dialogue is model-written. It can state wrong facts about real places, prices, \
         timetables or policies, and it inherits the biases of the model, the personas and the \
         base dialogues.\n\
         - English only. Cities come from a fixed list of {} and services from {} domains; other \
         domains and languages are not represented.\n\
         - The quality checks are heuristics (cue words, keyword lists, n-gram overlap): a flag is \
         a reason to look, not a verdict, and a dialogue without flags is not proven good.\n\
         - Exact and near duplicates (cosine ≥ {}) were rejected during generation; paraphrases \
         below the threshold remain.\n\
         - Rejections can skew what got in: see the coverage table above for the dimensions whose \
         accepted share drifted from the plan.\n",
        meta.catalog.regions.len(),
        meta.catalog.core_services.len(),
        meta.config.similarity_threshold,
    );
    let _ = writeln!(
        out,
        "## License\n\n\
         The `license` field above is `unknown` on purpose: set it before you publish. The right \
         license depends on the terms of the model that wrote the dialogues, on the persona \
         dataset's license (FinePersonas: Llama 3.1 Community License) and on MultiWOZ's (MIT), \
         none of which dgen can decide for you."
    );
    Ok(out)
}

fn header(out: &mut String, job: &HfJob, schema: &Schema, tally: &Tally) {
    out.push_str(
        "---\n\
         # Written by `dgen export --hf`. Set `license` before publishing (see \"License\" below).\n\
         license: unknown\n\
         language:\n- en\n\
         pretty_name: Synthetic task-oriented dialogues\n\
         task_categories:\n- text-generation\n\
         tags:\n- conversational\n- dialogue\n- task-oriented-dialogue\n- synthetic\n- multiwoz\n- dgen\n",
    );
    let _ = writeln!(out, "size_categories:\n- {}", size_category(tally.rows()));
    // `datasets` keys its cache of a local folder on the folder's name and this header, not on
    // the files: the data's fingerprint makes a re-export (or another store exported to a
    // folder of the same name) a new cache entry instead of an earlier export's rows.
    let _ = writeln!(
        out,
        "configs:\n- config_name: default\n  \
         # The data's fingerprint: a re-export loads afresh, not from the datasets cache.\n  \
         description: \"dgen export, data fingerprint {}\"\n  data_files:",
        tally.data_fingerprint
    );
    for (name, shards) in job.splits.names().zip(&tally.shards_per_split) {
        // A split left out for want of rows has no files to name.
        if *shards > 0 {
            let _ = writeln!(out, "  - split: {name}\n    path: data/{name}-*");
        }
    }
    out.push_str("dataset_info:\n  features:\n");
    out.push_str(&columns::features_yaml(schema));
    out.push_str("---\n\n");
}

fn made(out: &mut String, meta: &Meta, job: &HfJob, settings: Option<&crate::store::RunSettings>) {
    let c = &meta.catalog;
    let combos = &c.logical_combinations;
    let categories: usize = c.scenario_categories.values().map(Vec::len).sum();
    let statuses: Vec<String> = c
        .resolution_statuses
        .iter()
        .map(|(name, w)| format!("{name} {w}"))
        .collect();
    let rows: Vec<(&str, String)> = vec![
        ("dgen version (plan)", meta.dgen_version.clone()),
        ("plan fingerprint", format!("`{}`", meta.plan_fingerprint)),
        ("seed", meta.config.seed.to_string()),
        ("planned dialogues", meta.config.total_generations.to_string()),
        (
            "model",
            settings.map_or("none recorded".into(), |s| format!("`{}`", cell(&s.model))),
        ),
        (
            "endpoint",
            settings.map_or("none recorded", |s| endpoint_kind(&s.prompt_version)).to_string(),
        ),
        (
            "prompt version",
            settings.map_or("none recorded".into(), |s| format!("`{}`", s.prompt_version)),
        ),
        (
            "embedding model",
            settings.map_or("none recorded".into(), |s| format!("`{}` (384 dimensions)", s.embedding)),
        ),
        (
            "near-duplicate threshold",
            format!("cosine ≥ {}", meta.config.similarity_threshold),
        ),
        (
            "turns per dialogue",
            format!(
                "planned minimum {}–{}, maximum {}–{}",
                meta.config.min_turns[0], meta.config.min_turns[1], meta.config.max_turns[0], meta.config.max_turns[1]
            ),
        ),
        ("base dialogues", input(&meta.datasets.dialogues)),
        ("personas", input(&meta.datasets.personas)),
        (
            "catalog",
            format!(
                "{} services, {} service combinations (2: {}, 3: {}, 4: {}), {categories} scenario categories, \
                 {} cities, {} time slots, {} user and {} assistant emotions; outcomes {}",
                c.core_services.len(),
                combos.double.len() + combos.triple.len() + combos.quadruple.len(),
                combos.double.len(),
                combos.triple.len(),
                combos.quadruple.len(),
                c.regions.len(),
                c.time_slots.len(),
                c.user_emotions.len(),
                c.assistant_emotions.len(),
                statuses.join(", ")
            ),
        ),
        (
            "splits",
            format!(
                "by a seeded hash of `dialogue_id` (seed {}): {}",
                job.split_seed, job.splits
            ),
        ),
    ];
    out.push_str("## How it was made\n\n| | |\n|---|---|\n");
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    out.push('\n');
}

fn splits(out: &mut String, job: &HfJob, tally: &Tally) {
    out.push_str("## Splits\n\n| split | dialogues | files |\n|---|---:|---:|\n");
    for ((name, rows), shards) in job
        .splits
        .names()
        .zip(&tally.rows_per_split)
        .zip(&tally.shards_per_split)
    {
        let _ = writeln!(out, "| {name} | {rows} | {shards} |");
    }
    if tally.imported > 0 {
        let _ = writeln!(
            out,
            "\n{} of the dialogues were brought in with `dgen import` rather than generated \
             (`imported` is true).",
            tally.imported
        );
    }
    out.push('\n');
}

fn contents(out: &mut String, tally: &Tally) {
    let total = tally.rows();
    out.push_str("## What is in it\n\n");
    if total > 0 {
        let _ = writeln!(
            out,
            "{:.1} turns per dialogue on average.\n",
            tally.turns as f64 / total as f64
        );
    }
    let sizes: BTreeMap<String, u64> = tally
        .service_count
        .iter()
        .map(|(n, c)| (format!("{n} service{}", if *n == 1 { "" } else { "s" }), *c))
        .collect();
    counts_table(out, "services per dialogue", &sizes, total, 10);
    counts_table(out, "service", &tally.services, total, 20);
    counts_table(out, "outcome", &tally.resolution_statuses, total, 10);
    counts_table(out, "time slot", &tally.time_slots, total, 10);
    counts_table(out, "scenario category", &tally.categories, total, 10);
    counts_table(out, "user emotion", &tally.user_emotions, total, 10);
    counts_table(
        out,
        "assistant emotion",
        &tally.assistant_emotions,
        total,
        10,
    );
}

fn quality(
    out: &mut String,
    tally: &Tally,
    counters: &BTreeMap<String, u64>,
    coverage: &CoverageReport,
    checks: &[Check],
) {
    let total = tally.rows();
    out.push_str("## Quality\n\n");
    let rejected: BTreeMap<String, u64> = checks
        .iter()
        .filter_map(|c| {
            counters
                .get(&format!("rejected/{}", c.name()))
                .map(|n| (c.name().to_string(), *n))
        })
        .collect();
    out.push_str(
        "Deterministic checks ran on every generated dialogue. A check set to `reject` sent the \
         attempt back to the model; one set to `flag` kept the dialogue and recorded the finding \
         in `quality_checks`.\n\n\
         | check | flagged dialogues in this dataset | attempts rejected during generation |\n|---|---:|---:|\n",
    );
    for check in checks {
        let name = check.name();
        let flagged = tally.flagged.get(name).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "| `{name}` | {flagged} ({}) | {} |",
            percent(flagged, total),
            rejected.get(name).copied().unwrap_or(0)
        );
    }
    out.push('\n');
    if tally.labelled > 0 {
        let _ = writeln!(
            out,
            "The label checks ran on {} of the dialogues: {} ({}) have every label grounded in \
             the text, {} ({}) realize their planned goal (every goal value in the final state), \
             {} ({}) both.\n",
            tally.labelled,
            tally.grounded,
            percent(tally.grounded, tally.labelled),
            tally.goal_realized,
            percent(tally.goal_realized, tally.labelled),
            tally.grounded_and_realized,
            percent(tally.grounded_and_realized, tally.labelled),
        );
    }
    if tally.judged > 0 {
        let mean = tally
            .judge_overall
            .iter()
            .enumerate()
            .map(|(i, n)| (i as u64 + 1) * n)
            .sum::<u64>() as f64
            / tally.judged as f64;
        let hist: Vec<String> = tally
            .judge_overall
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{}: {n}", i + 1))
            .collect();
        let _ = writeln!(
            out,
            "An LLM judge scored {} dialogues ({}): mean overall score {mean:.2} of 5 ({}). \
             Scores are in the `judge` column.\n",
            tally.judged,
            percent(tally.judged, total),
            hist.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "### Coverage of the plan\n\n\
         {} of {} planned items were accepted. For each dimension, the value whose share among \
         accepted dialogues is furthest from its planned share, and the planned values that no \
         accepted dialogue has:\n\n\
         | dimension | largest deviation | never accepted |\n|---|---|---|",
        coverage.accepted, coverage.planned
    );
    for (dimension, report) in &coverage.dimensions {
        let deviation = report
            .largest_deviation
            .as_ref()
            .map_or("–".to_string(), |d| {
                format!("{} ({:+.1} points)", cell(&d.value), d.deviation * 100.0)
            });
        let never = if report.never_accepted.is_empty() {
            "none".to_string()
        } else if report.never_accepted.len() > 8 {
            format!("{} values", report.never_accepted.len())
        } else {
            cell(&report.never_accepted.join(", "))
        };
        let _ = writeln!(out, "| {dimension} | {deviation} | {never} |");
    }
    out.push('\n');
}

/// `multiwoz`: the annotated layout, with `turns` as `multi_woz_v22` has it.
fn columns_doc(out: &mut String, job: &HfJob, tally: &Tally, multiwoz: bool) {
    let dgen_turns = "turn_number, utterance (user), intent (snake_case label), assistant_response, user_emotion, assistant_emotion";
    let mut rows = vec![
        (
            "dialogue_id",
            "`<base dialogue id>_generated_<uuid>`, stable across exports",
        ),
        (
            "services",
            "the services the dialogue covers, the first one leading",
        ),
    ];
    if multiwoz {
        rows.extend([
            ("turns", "MultiWOZ 2.2's layout, as the Hub's `multi_woz_v22` has it: one entry per utterance (USER, then SYSTEM), with `turn_id`, `speaker` (0 USER, 1 SYSTEM), `utterance`, `frames` (per service: `state` with `active_intent`, `requested_slots`, `slots_values`; `slots` with the values' character spans) and `dialogue_acts`; service calls and their results are in `dgen export --sgd`"),
            ("dgen_turns", dgen_turns),
            ("goals", "the user goals the dialogue was planned with: service, intent, the slots given with their values, the slots asked about"),
        ]);
    } else {
        rows.push(("turns", dgen_turns));
    }
    rows.extend([
        ("num_lines", "the number of turns"),
        ("user_emotion, assistant_emotion", "the planned emotions"),
        (
            "scenario_category, generated_scenario",
            "the planned category and the scenario the model wrote for it",
        ),
        (
            "time_slot, specific_time, regions",
            "when and where the scenario is set",
        ),
        (
            "resolution_status",
            "the planned outcome: Resolved, Failed or Escalated",
        ),
        ("persona", "the customer persona"),
        (
            "base_dialogue_id",
            "the MultiWOZ dialogue shown to the model as reference",
        ),
        (
            "item_index, imported",
            "the plan item the dialogue came from (null when imported)",
        ),
        (
            "model, temperature, top_p, frequency_penalty, presence_penalty, seed, attempt",
            "how it was generated",
        ),
        ("usage", "calls and tokens spent on the dialogue"),
        (
            "quality_checks",
            "the findings of the quality checks that flag (empty: none)",
        ),
    ]);
    if tally.judged > 0 {
        rows.push((
            "judge",
            "the LLM judge's scores, 1–5 (null where not judged)",
        ));
    }
    if job.embeddings {
        rows.push((
            "embedding",
            "384 float32, all-MiniLM-L6-v2 of the dialogue's text",
        ));
    }
    out.push_str("## Columns\n\n| column | meaning |\n|---|---|\n");
    for (k, v) in rows {
        let _ = writeln!(out, "| `{k}` | {v} |");
    }
    out.push('\n');
}
