//! The page: one HTML file with inline CSS, the charts as inline SVG (static, so they show
//! without JavaScript) and the dialogue browser (its data a JSON `<script>` block, its filters
//! vanilla JavaScript). Nothing is fetched from anywhere.
//!
//! Every number shown is a `data-key` (a JSON pointer into `report.json`) with a `data-value`
//! (the number as `report.json` spells it), so tests and readers can tie each one to its source.
//! The script marks `<html data-ready="1">` once the browser is drawn and `data-error` on any
//! uncaught error, which `scripts/report-screenshot.sh` checks.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use super::svg::{bar_chart, esc, Cell, Row};
use super::{BrowserDialogue, BrowserSummary, ReportData};
use crate::catalog::SIZE_NAMES;
use crate::metrics::coverage::{DimensionReport, DIMENSIONS};
use crate::metrics::lexical::Summary;
use crate::quality::Check;
use crate::status::Share;

/// Charts list at most this many values (the most planned first); `report.json` has all.
const CHART_ROWS: usize = 30;

/// A JSON pointer from its reference tokens (RFC 6901).
fn ptr(tokens: &[&str]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// A number as `report.json` writes it.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("numbers serialize")
}

/// A count with thousands separators: 12,345.
pub fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pct(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

/// A number shown in the text, tied to its place in `report.json`.
fn num<T: Serialize>(key: &str, value: &T, text: &str) -> String {
    format!(
        r#"<span class="num" data-key="{}" data-value="{}">{}</span>"#,
        esc(key),
        esc(&json(value)),
        esc(text)
    )
}

fn count_cell(key: String, n: u64) -> Cell {
    Cell {
        value: n as f64,
        key,
        json: json(&n),
        text: int(n),
    }
}

fn share_cell(key: String, share: f64) -> Cell {
    Cell {
        value: share,
        key,
        json: json(&share),
        text: pct(share),
    }
}

fn real_cell<T: Serialize + Into<f64> + Copy>(key: String, v: T, decimals: usize) -> Cell {
    let value: f64 = v.into();
    Cell {
        value,
        key,
        json: json(&v),
        text: format!("{value:.decimals$}"),
    }
}

/// One bar per entry of a count map.
fn count_rows<K: ToString>(base: &[&str], map: &BTreeMap<K, u64>) -> Vec<Row> {
    map.iter()
        .map(|(k, n)| {
            let k = k.to_string();
            let key = ptr(&[base, &[k.as_str()]].concat());
            Row {
                label: k,
                cells: vec![count_cell(key, *n)],
            }
        })
        .collect()
}

/// The rows of a count map, cut to [`CHART_ROWS`] (most first) with a note of the rest.
fn top_rows<K: ToString>(base: &[&str], map: &BTreeMap<K, u64>) -> (Vec<Row>, String) {
    let mut rows = count_rows(base, map);
    if rows.len() <= CHART_ROWS {
        return (rows, String::new());
    }
    rows.sort_by(|a, b| b.cells[0].value.total_cmp(&a.cells[0].value));
    let more = rows.len() - CHART_ROWS;
    rows.truncate(CHART_ROWS);
    (rows, more_note(more))
}

fn more_note(more: usize) -> String {
    format!(
        r#"<p class="note">The {CHART_ROWS} largest are shown; {more} more are in report.json.</p>"#
    )
}

fn share_rows<'a>(
    base: &[&str],
    shares: impl Iterator<Item = (&'a String, &'a Share)>,
) -> Vec<Row> {
    shares
        .map(|(name, s)| {
            let at = |field: &str| ptr(&[base, &[name.as_str(), field]].concat());
            Row {
                label: name.clone(),
                cells: vec![
                    share_cell(at("share"), s.share),
                    share_cell(at("target"), s.target),
                ],
            }
        })
        .collect()
}

/// Rows of a summary's statistics (count aside), one cell per side.
fn summary_rows(sides: &[(&[&str], &Summary)]) -> Vec<Row> {
    ["mean", "min", "p50", "p90", "p99", "max"]
        .iter()
        .map(|name| Row {
            label: name.to_string(),
            cells: sides
                .iter()
                .map(|(base, s)| {
                    let key = ptr(&[*base, &[name]].concat());
                    match *name {
                        "mean" => real_cell(key, s.mean, 2),
                        "min" => count_cell(key, s.min),
                        "p50" => count_cell(key, s.p50),
                        "p90" => count_cell(key, s.p90),
                        "p99" => count_cell(key, s.p99),
                        _ => count_cell(key, s.max),
                    }
                })
                .collect(),
        })
        .collect()
}

fn section(out: &mut String, id: &str, title: &str) {
    out.push_str(&format!(r#"<section id="{id}"><h2>{}</h2>"#, esc(title)));
}

fn chart(out: &mut String, heading: &str, svg: String) {
    out.push_str(&format!(
        r#"<figure><figcaption>{}</figcaption>{svg}</figure>"#,
        esc(heading)
    ));
}

/// The browser's coverage in words, for the page and the command's output.
pub fn browser_note(b: &BrowserSummary) -> String {
    if b.dialogues == 0 {
        "no dialogues yet".to_string()
    } else if b.sampled {
        format!(
            "showing {} of {} dialogues (seeded sample, seed {})",
            int(b.shown),
            int(b.dialogues),
            b.seed
        )
    } else {
        format!("showing all {} dialogues", int(b.shown))
    }
}

/// Writes the page.
pub fn write(out: &mut impl Write, r: &ReportData, dialogues: &[BrowserDialogue]) -> Result<()> {
    let s = &r.status;
    let mut page = String::with_capacity(256 << 10);
    page.push_str(&format!(
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>dgen report: {}</title>
<style>{CSS}</style>
<script>window.addEventListener("error",function(e){{document.documentElement.setAttribute("data-error",String(e.message||e.type));}});</script>
</head><body>
<header><h1>dgen report</h1><p>{} &middot; dgen {} &middot; plan {} &middot; seed {}</p>
<nav><a href="#summary">Summary</a><a href="#progress">Progress</a><a href="#funnel">Funnel</a><a href="#checks">Checks</a><a href="#judge">Judge</a><a href="#diversity">Diversity</a><a href="#spread">Spread</a><a href="#coverage">Coverage</a><a href="#distributions">Distributions</a><a href="#browser">Dialogues</a></nav></header>
<main>
"##,
        esc(&s.store),
        esc(&s.store),
        esc(&s.dgen_version),
        esc(&s.plan_fingerprint),
        num("/seed", &s.seed, &s.seed.to_string()),
    ));
    summary(&mut page, r);
    progress(&mut page, r);
    super::concurrency::section(&mut page, &r.in_flight);
    funnel(&mut page, r);
    checks(&mut page, r);
    judge(&mut page, r);
    diversity(&mut page, r);
    spread(&mut page, r);
    coverage(&mut page, r);
    distributions(&mut page, r);
    browser_head(&mut page, r, dialogues);
    out.write_all(page.as_bytes())?;
    // The data: `<` escaped as \u003c, so no `</script>` or `<!--` in a dialogue ends the block.
    out.write_all(br#"<script type="application/json" id="dialogue-data">"#)?;
    serde_json::to_writer(EscapeLt(&mut *out), dialogues)?;
    out.write_all(b"</script>\n<script>")?;
    out.write_all(SCRIPT.as_bytes())?;
    out.write_all(b"</script>\n</section>\n</main></body></html>\n")?;
    Ok(())
}

/// Writes JSON with every `<` as `\u003c` (valid JSON, and inert inside `<script>`).
struct EscapeLt<W>(W);

impl<W: Write> Write for EscapeLt<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|b| *b == b'<') {
            self.0.write_all(&rest[..i])?;
            self.0.write_all(br"\u003c")?;
            rest = &rest[i + 1..];
        }
        self.0.write_all(rest)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn fact(out: &mut String, label: &str, value: String) {
    out.push_str(&format!(
        r#"<div class="fact"><dt>{}</dt><dd>{value}</dd></div>"#,
        esc(label)
    ));
}

fn summary(out: &mut String, r: &ReportData) {
    let s = &r.status;
    let run = &s.run;
    section(out, "summary", "Summary");
    out.push_str("<dl class=\"facts\">");
    fact(
        out,
        "planned items",
        num("/total_items", &s.total_items, &int(s.total_items)),
    );
    let accepted = s.metrics.funnel.accepted;
    fact(
        out,
        "accepted",
        num("/metrics/funnel/accepted", &accepted, &int(accepted)),
    );
    fact(
        out,
        "stored dialogues",
        num("/run/dialogues", &run.dialogues, &int(run.dialogues)),
    );
    fact(
        out,
        "imported",
        num("/run/imported", &run.imported, &int(run.imported)),
    );
    fact(out, "calls", num("/run/calls", &run.calls, &int(run.calls)));
    fact(
        out,
        "prompt tokens",
        num(
            "/run/prompt_tokens",
            &run.prompt_tokens,
            &int(run.prompt_tokens),
        ),
    );
    fact(
        out,
        "completion tokens",
        num(
            "/run/completion_tokens",
            &run.completion_tokens,
            &int(run.completion_tokens),
        ),
    );
    if run.judge_calls > 0 {
        fact(
            out,
            "judge calls",
            num("/run/judge_calls", &run.judge_calls, &int(run.judge_calls)),
        );
        fact(
            out,
            "judge tokens (prompt + completion)",
            format!(
                "{} + {}",
                num(
                    "/run/judge_prompt_tokens",
                    &run.judge_prompt_tokens,
                    &int(run.judge_prompt_tokens)
                ),
                num(
                    "/run/judge_completion_tokens",
                    &run.judge_completion_tokens,
                    &int(run.judge_completion_tokens)
                )
            ),
        );
    }
    let cost = match run.estimated_cost {
        Some(c) => num("/run/estimated_cost", &c, &format!("${c:.4}")),
        None => "unknown (pass --price_input and --price_output)".to_string(),
    };
    let label = if run.judge_calls > 0 && run.estimated_cost.is_some() {
        "estimated cost (USD, the judge's included)"
    } else {
        "estimated cost (USD)"
    };
    fact(out, label, cost);
    fact(
        out,
        "model",
        esc(run.model.as_deref().unwrap_or("not run yet")),
    );
    fact(
        out,
        "store size (bytes)",
        num("/store_bytes", &s.store_bytes, &int(s.store_bytes)),
    );
    out.push_str("</dl></section>\n");
}

fn progress(out: &mut String, r: &ReportData) {
    let s = &r.status;
    let run = &s.run;
    section(out, "progress", "Progress");
    let rows: Vec<Row> = s
        .states
        .iter()
        .enumerate()
        .map(|(i, st)| Row {
            label: st.state.to_string(),
            cells: vec![count_cell(
                ptr(&["states", &i.to_string(), "count"]),
                st.count,
            )],
        })
        .collect();
    chart(
        out,
        "Work items per state",
        bar_chart("chart-states", "Work items per state", &["items"], &rows),
    );
    out.push_str("<p>");
    out.push_str(&format!(
        "{} s of running",
        num(
            "/run/elapsed_seconds",
            &run.elapsed_seconds,
            &format!("{:.1}", run.elapsed_seconds)
        )
    ));
    if let Some(rate) = run.dialogues_per_second {
        out.push_str(&format!(
            ", {} dialogues/s",
            num("/run/dialogues_per_second", &rate, &format!("{rate:.2}"))
        ));
    }
    if let Some(eta) = run.eta_seconds.filter(|eta| *eta > 0.0) {
        out.push_str(&format!(
            ", about {} s left",
            num("/run/eta_seconds", &eta, &format!("{eta:.0}"))
        ));
    }
    out.push_str(".</p>");
    for (label, base, d) in [
        ("Dataset", "dataset", &s.dataset),
        ("Personas", "personas", &s.personas),
    ] {
        out.push_str(&format!(
            "<p>{label}: {} ({}), {} rows",
            esc(&d.source),
            esc(&d.format),
            num(&ptr(&[base, "rows"]), &d.rows, &int(d.rows))
        ));
        for (reason, n) in &d.skipped {
            out.push_str(&format!(
                ", {} skipped ({})",
                num(&ptr(&[base, "skipped", reason]), n, &int(*n)),
                esc(reason)
            ));
        }
        out.push_str(".</p>");
    }
    out.push_str("</section>\n");
}

fn funnel(out: &mut String, r: &ReportData) {
    let f = &r.status.metrics.funnel;
    section(out, "funnel", "Funnel");
    let base = ["metrics", "funnel"];
    let at = |field: &str| ptr(&[&base[..], &[field]].concat());
    let mut rows = vec![
        Row {
            label: "planned".into(),
            cells: vec![count_cell(at("planned"), f.planned)],
        },
        Row {
            label: "attempted".into(),
            cells: vec![count_cell(at("attempted"), f.attempted)],
        },
    ];
    for (reason, n) in &f.rejected {
        rows.push(Row {
            label: format!("rejected: {reason}"),
            cells: vec![count_cell(
                ptr(&["metrics", "funnel", "rejected", reason]),
                *n,
            )],
        });
    }
    rows.push(Row {
        label: "failed".into(),
        cells: vec![count_cell(at("failed"), f.failed)],
    });
    rows.push(Row {
        label: "accepted".into(),
        cells: vec![count_cell(at("accepted"), f.accepted)],
    });
    chart(
        out,
        "Planned items, attempts rejected by reason (an item may be rejected several times), failed and accepted items",
        bar_chart("chart-funnel", "Funnel", &["items"], &rows),
    );
    out.push_str("<p>Per accepted dialogue: ");
    let judged = if r.status.run.judge_calls > 0 {
        " (the judge's included)"
    } else {
        ""
    };
    match f.tokens_per_accepted {
        Some(t) => out.push_str(&format!(
            "{} tokens{judged}",
            num(&at("tokens_per_accepted"), &t, &format!("{t:.0}"))
        )),
        None => out.push_str("no tokens yet"),
    }
    if let Some(c) = f.cost_per_accepted {
        out.push_str(&format!(
            ", {}",
            num(&at("cost_per_accepted"), &c, &format!("${c:.5}"))
        ));
    }
    out.push_str(".</p>");
    let failures = &r.status.run.failures;
    if failures.is_empty() {
        out.push_str("<p>No item has run out of attempts.</p>");
    } else {
        chart(
            out,
            "Items that ran out of attempts, by the reason of their last one",
            bar_chart(
                "chart-failures",
                "Failures by reason",
                &["items"],
                &count_rows(&["run", "failures"], failures),
            ),
        );
    }
    out.push_str("</section>\n");
}

fn checks(out: &mut String, r: &ReportData) {
    section(out, "checks", "Quality checks");
    out.push_str("<table class=\"counts\"><thead><tr><th>check</th><th>accepted dialogues flagged</th><th>attempts rejected</th></tr></thead><tbody>");
    let mut rows = Vec::new();
    for (i, c) in r.checks.iter().enumerate() {
        let at = |field: &str| ptr(&["checks", &i.to_string(), field]);
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(c.check),
            num(&at("flagged"), &c.flagged, &int(c.flagged)),
            num(&at("rejected"), &c.rejected, &int(c.rejected))
        ));
        rows.push(Row {
            label: c.check.to_string(),
            cells: vec![
                count_cell(at("flagged"), c.flagged),
                count_cell(at("rejected"), c.rejected),
            ],
        });
    }
    out.push_str("</tbody></table>");
    chart(
        out,
        "Per check: accepted dialogues flagged, attempts rejected",
        bar_chart(
            "chart-checks",
            "Quality checks",
            &["flagged", "rejected"],
            &rows,
        ),
    );
    out.push_str("</section>\n");
}

/// The judge's figures: the status report's `metrics.judge`.
fn judge(out: &mut String, r: &ReportData) {
    let j = &r.status.metrics.judge;
    let at = |path: &[&str]| ptr(&[&["metrics", "judge"][..], path].concat());
    section(out, "judge", "Judge scores");
    if j.judged == 0 {
        out.push_str(
            "<p class=\"note\">No dialogue has a judge score yet (dgen judge adds them).</p>",
        );
        judge_costs(out, r);
        out.push_str("</section>\n");
        return;
    }
    out.push_str(&format!(
        "<p>{} of {} dialogues judged",
        num(&at(&["judged"]), &j.judged, &int(j.judged)),
        num(&at(&["dialogues"]), &j.dialogues, &int(j.dialogues))
    ));
    if let Some(mean) = j.mean_overall {
        out.push_str(&format!(
            ", mean overall score {}",
            num(&at(&["mean_overall"]), &mean, &format!("{mean:.2}"))
        ));
    }
    let judges: Vec<String> = j
        .by_judge
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "{} by {} (rubric {})",
                num(
                    &at(&["by_judge", &i.to_string(), "judged"]),
                    &b.judged,
                    &int(b.judged)
                ),
                esc(&b.model),
                esc(&b.prompt_version)
            )
        })
        .collect();
    out.push_str(&format!("; {}.</p>", judges.join(", ")));
    chart(
        out,
        "Dialogues per overall score (1 to 5)",
        bar_chart(
            "chart-judge",
            "Overall judge scores",
            &["dialogues"],
            &count_rows(
                &["metrics", "judge", "overall_histogram"],
                &j.overall_histogram,
            ),
        ),
    );
    let rows: Vec<Row> = j
        .criteria
        .iter()
        .filter_map(|name| {
            let mean = *j.mean_scores.get(*name)?;
            Some(Row {
                label: name.to_string(),
                cells: vec![real_cell(at(&["mean_scores", name]), mean, 2)],
            })
        })
        .collect();
    chart(
        out,
        "Mean score per criterion",
        bar_chart("chart-judge-criteria", "Judge criteria", &["mean"], &rows),
    );
    judge_costs(out, r);
    out.push_str("</section>\n");
}

/// What judging cost, and the judgements that failed; nothing when the judge never ran.
fn judge_costs(out: &mut String, r: &ReportData) {
    let j = &r.status.metrics.judge;
    let c = &j.costs;
    if c.calls == 0 && c.errors.is_empty() {
        return;
    }
    let at = |path: &[&str]| ptr(&[&["metrics", "judge"][..], path].concat());
    out.push_str(&format!(
        "<p>{} judge calls, {} prompt + {} completion tokens",
        num(&at(&["calls"]), &c.calls, &int(c.calls)),
        num(
            &at(&["prompt_tokens"]),
            &c.prompt_tokens,
            &int(c.prompt_tokens)
        ),
        num(
            &at(&["completion_tokens"]),
            &c.completion_tokens,
            &int(c.completion_tokens)
        )
    ));
    if r.status.run.estimated_cost.is_some() {
        out.push_str(" (in the estimated cost)");
    }
    for (kind, n) in &c.errors {
        out.push_str(&format!(
            "; {} judgements failed ({})",
            num(&at(&["errors", kind]), n, &int(*n)),
            esc(kind)
        ));
    }
    out.push_str(".</p>");
}

fn diversity(out: &mut String, r: &ReportData) {
    let l = &r.status.metrics.lexical;
    section(out, "diversity", "Lexical diversity");
    let side = |name: &str| ["metrics", "lexical", name].map(str::to_string);
    let (user, assistant) = (side("user"), side("assistant"));
    let rows: Vec<Row> = ["distinct_1", "distinct_2", "distinct_3"]
        .iter()
        .map(|field| Row {
            label: field.replace('_', "-"),
            cells: [(&user, &l.user), (&assistant, &l.assistant)]
                .iter()
                .map(|(base, s)| {
                    let v = match *field {
                        "distinct_1" => s.distinct_1,
                        "distinct_2" => s.distinct_2,
                        _ => s.distinct_3,
                    };
                    let b: Vec<&str> = base.iter().map(String::as_str).collect();
                    real_cell(ptr(&[&b[..], &[field]].concat()), v, 3)
                })
                .collect(),
        })
        .collect();
    chart(
        out,
        "Distinct n-grams over all n-grams, within utterances",
        bar_chart(
            "chart-distinct",
            "Distinct-n",
            &["user", "assistant"],
            &rows,
        ),
    );
    out.push_str("<table class=\"counts\"><thead><tr><th></th><th>1-grams</th><th>distinct</th><th>2-grams</th><th>distinct</th><th>3-grams</th><th>distinct</th></tr></thead><tbody>");
    for (name, s) in [("user", &l.user), ("assistant", &l.assistant)] {
        out.push_str(&format!("<tr><td>{name}</td>"));
        for n in 0..3 {
            let i = n.to_string();
            for (field, v) in [
                ("ngrams", s.ngrams[n]),
                ("distinct_ngrams", s.distinct_ngrams[n]),
            ] {
                out.push_str(&format!(
                    "<td>{}</td>",
                    num(&ptr(&["metrics", "lexical", name, field, &i]), &v, &int(v))
                ));
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out.push_str(&format!(
        "<p>{} distinct intent labels over {} dialogues.</p>",
        num(
            "/metrics/lexical/intent_vocabulary",
            &l.intent_vocabulary,
            &int(l.intent_vocabulary)
        ),
        num(
            "/metrics/lexical/turns_per_dialogue/count",
            &l.turns_per_dialogue.count,
            &int(l.turns_per_dialogue.count)
        )
    ));
    let turns = ["metrics", "lexical", "turns_per_dialogue"];
    chart(
        out,
        "Turns per dialogue",
        bar_chart(
            "chart-turns",
            "Turns per dialogue",
            &["turns"],
            &summary_rows(&[(&turns, &l.turns_per_dialogue)]),
        ),
    );
    let words = |side: &'static str| ["metrics", "lexical", side, "words_per_utterance"];
    let (uw, aw) = (words("user"), words("assistant"));
    chart(
        out,
        "Words per utterance",
        bar_chart(
            "chart-words",
            "Words per utterance",
            &["user", "assistant"],
            &summary_rows(&[
                (&uw, &l.user.words_per_utterance),
                (&aw, &l.assistant.words_per_utterance),
            ]),
        ),
    );
    out.push_str("</section>\n");
}

fn spread(out: &mut String, r: &ReportData) {
    let s = &r.status.metrics.semantic_spread;
    section(out, "spread", "Semantic spread");
    let base = ["metrics", "semantic_spread"];
    let at = |field: &str| ptr(&[&base[..], &[field]].concat());
    let over = if s.sampled {
        format!(
            "a seeded sample of {} of the {} dialogues",
            num(&at("sample_size"), &s.sample_size, &int(s.sample_size)),
            num(&at("dialogues"), &s.dialogues, &int(s.dialogues))
        )
    } else {
        format!(
            "all {} dialogues",
            num(&at("dialogues"), &s.dialogues, &int(s.dialogues))
        )
    };
    match (&s.nearest_similarity, s.mean_pairwise_similarity) {
        (Some(n), Some(mean)) => {
            out.push_str(&format!(
                "<p>Over {over}: mean pairwise cosine similarity {}.</p>",
                num(
                    &at("mean_pairwise_similarity"),
                    &mean,
                    &format!("{mean:.3}")
                )
            ));
            let near =
                |field: &str| ptr(&["metrics", "semantic_spread", "nearest_similarity", field]);
            let rows = vec![
                ("mean", real_cell(near("mean"), n.mean, 3)),
                ("min", real_cell(near("min"), n.min, 3)),
                ("p10", real_cell(near("p10"), n.p10, 3)),
                ("p50", real_cell(near("p50"), n.p50, 3)),
                ("p90", real_cell(near("p90"), n.p90, 3)),
                ("p99", real_cell(near("p99"), n.p99, 3)),
                ("max", real_cell(near("max"), n.max, 3)),
            ]
            .into_iter()
            .map(|(label, cell)| Row {
                label: label.into(),
                cells: vec![cell],
            })
            .collect::<Vec<_>>();
            chart(
                out,
                "Each dialogue's highest cosine similarity to any other",
                bar_chart(
                    "chart-spread",
                    "Nearest-neighbour similarity",
                    &["cosine"],
                    &rows,
                ),
            );
        }
        _ => out.push_str(&format!(
            "<p class=\"note\">Over {over}: fewer than two dialogues, no spread yet.</p>"
        )),
    }
    out.push_str("</section>\n");
}

fn coverage(out: &mut String, r: &ReportData) {
    let c = &r.status.metrics.coverage;
    section(out, "coverage", "Plan coverage");
    out.push_str(&format!(
        "<p>Each value's share of the {} planned items next to its share of the {} accepted ones.</p>",
        num("/metrics/coverage/planned", &c.planned, &int(c.planned)),
        num("/metrics/coverage/accepted", &c.accepted, &int(c.accepted))
    ));
    out.push_str("<div class=\"dims\">");
    for dim in DIMENSIONS {
        if let Some(d) = c.dimensions.get(dim) {
            dimension(out, dim, d);
        }
    }
    out.push_str("</div></section>\n");
}

fn dimension(out: &mut String, dim: &str, d: &DimensionReport) {
    let base = ["metrics", "coverage", "dimensions", dim];
    out.push_str(&format!(
        "<div class=\"dimension\" id=\"coverage-{}\"><h3>{}</h3>",
        esc(dim),
        esc(&dim.replace('_', " "))
    ));
    let mut values: Vec<(&String, _)> = d.values.iter().collect();
    values.sort_by(|a, b| b.1.planned.cmp(&a.1.planned).then(a.0.cmp(b.0)));
    let more = values.len().saturating_sub(CHART_ROWS);
    let rows: Vec<Row> = values
        .iter()
        .take(CHART_ROWS)
        .map(|(value, v)| {
            let at = |field: &str| ptr(&[&base[..], &["values", value.as_str(), field]].concat());
            Row {
                label: value.to_string(),
                cells: vec![
                    share_cell(at("planned_share"), v.planned_share),
                    share_cell(at("accepted_share"), v.accepted_share),
                ],
            }
        })
        .collect();
    chart(
        out,
        &format!("{}: planned and accepted shares", dim.replace('_', " ")),
        bar_chart(
            &format!("chart-coverage-{dim}"),
            &format!("Coverage of {dim}"),
            &["planned", "accepted"],
            &rows,
        ),
    );
    if more > 0 {
        out.push_str(&more_note(more));
    }
    let at = |field: &str| ptr(&[&base[..], &[field]].concat());
    match &d.largest_deviation {
        Some(dev) => out.push_str(&format!(
            "<p>Largest shift: {} {} (accepted share minus planned share).</p>",
            esc(&dev.value),
            num(
                &format!("{}/deviation", at("largest_deviation")),
                &dev.deviation,
                &format!("{:+.1}%", 100.0 * dev.deviation)
            )
        )),
        None => out.push_str("<p>Nothing accepted yet.</p>"),
    }
    for (label, list) in [
        ("Planned, never accepted", &d.never_accepted),
        ("In the catalog, never planned", &d.never_planned),
    ] {
        if !list.is_empty() {
            let names: Vec<String> = list.iter().map(|v| esc(v)).collect();
            out.push_str(&format!(
                "<p class=\"list\">{label} ({}): {}</p>",
                list.len(),
                names.join(", ")
            ));
        }
    }
    out.push_str("</div>");
}

fn distributions(out: &mut String, r: &ReportData) {
    let d = &r.status.distributions;
    section(out, "distributions", "Plan distributions");
    out.push_str("<div class=\"dims\">");
    let sizes = SIZE_NAMES
        .iter()
        .filter_map(|n| d.service_count.get_key_value(*n));
    chart(
        out,
        "Services per dialogue: share of the plan and target",
        bar_chart(
            "chart-dist-service_count",
            "Services per dialogue",
            &["share", "target"],
            &share_rows(&["distributions", "service_count"], sizes),
        ),
    );
    chart(
        out,
        "Resolution statuses: share of the plan and target",
        bar_chart(
            "chart-dist-resolution_statuses",
            "Resolution statuses",
            &["share", "target"],
            &share_rows(
                &["distributions", "resolution_statuses"],
                d.resolution_statuses.iter(),
            ),
        ),
    );
    let counts: [(&str, &str, &BTreeMap<String, u64>); 7] = [
        (
            "combinations",
            "Service combinations (usage)",
            &d.combinations,
        ),
        ("primary_services", "Primary services", &d.primary_services),
        ("categories", "Scenario categories", &d.categories),
        ("regions", "Regions", &d.regions),
        ("time_slots", "Time slots", &d.time_slots),
        ("user_emotions", "User emotions", &d.user_emotions),
        (
            "assistant_emotions",
            "Assistant emotions",
            &d.assistant_emotions,
        ),
    ];
    for (name, title, map) in counts {
        let (rows, note) = top_rows(&["distributions", name], map);
        out.push_str("<div>");
        chart(
            out,
            title,
            bar_chart(&format!("chart-dist-{name}"), title, &["items"], &rows),
        );
        out.push_str(&note);
        out.push_str("</div>");
    }
    for (name, title, map) in [
        ("min_turns", "Minimum turns", &d.min_turns),
        ("max_turns", "Maximum turns", &d.max_turns),
    ] {
        let (rows, note) = top_rows(&["distributions", name], map);
        out.push_str("<div>");
        chart(
            out,
            title,
            bar_chart(&format!("chart-dist-{name}"), title, &["items"], &rows),
        );
        out.push_str(&note);
        out.push_str("</div>");
    }
    out.push_str("</div></section>\n");
}

fn select(out: &mut String, name: &str, label: &str, any: &str, options: &[String]) {
    out.push_str(&format!(
        r#"<label>{} <select id="filter-{name}"><option value="">{}</option>"#,
        esc(label),
        esc(any)
    ));
    for o in options {
        out.push_str(&format!(
            r#"<option value="{}">{}</option>"#,
            esc(o),
            esc(o)
        ));
    }
    out.push_str("</select></label>");
}

fn distinct<'a>(values: impl Iterator<Item = &'a String>) -> Vec<String> {
    let set: std::collections::BTreeSet<&String> = values.collect();
    set.into_iter().cloned().collect()
}

/// The browser's heading, note and filters; the data and script follow.
fn browser_head(out: &mut String, r: &ReportData, dialogues: &[BrowserDialogue]) {
    let b = &r.browser;
    section(out, "browser", "Dialogues");
    let note = if b.dialogues == 0 {
        "No dialogues yet.".to_string()
    } else if b.sampled {
        format!(
            "Showing {} of {} dialogues (seeded sample, seed {}).",
            num("/browser/shown", &b.shown, &int(b.shown)),
            num("/browser/dialogues", &b.dialogues, &int(b.dialogues)),
            b.seed
        )
    } else {
        format!(
            "Showing all {} dialogues.",
            num("/browser/shown", &b.shown, &int(b.shown))
        )
    };
    out.push_str(&format!(r#"<p id="browser-note">{note}</p>"#));
    out.push_str(r#"<noscript><p class="note">The dialogue browser needs JavaScript; the charts above do not.</p></noscript>"#);
    out.push_str(r#"<form id="filters" onsubmit="return false">"#);
    let services = distinct(dialogues.iter().flat_map(|d| d.services.iter()));
    select(out, "service", "service", "any service", &services);
    let outcomes = distinct(dialogues.iter().map(|d| &d.resolution_status));
    select(out, "outcome", "outcome", "any outcome", &outcomes);
    let user = distinct(dialogues.iter().map(|d| &d.user_emotion));
    select(out, "user-emotion", "user emotion", "any", &user);
    let assistant = distinct(dialogues.iter().map(|d| &d.assistant_emotion));
    select(
        out,
        "assistant-emotion",
        "assistant emotion",
        "any",
        &assistant,
    );
    let mut checks = vec!["(none)".to_string()];
    checks.extend(Check::ALL.iter().map(|c| c.name().to_string()));
    select(out, "check", "check", "any", &checks);
    if r.status.metrics.judge.judged > 0 {
        let mut scores = vec!["(unscored)".to_string()];
        scores.extend((1..=5).map(|s: u8| s.to_string()));
        select(out, "judge", "judge score", "any", &scores);
    }
    out.push_str("</form>");
    out.push_str(r#"<p id="browser-count"></p><div class="browser"><div class="list"><table id="dialogue-list"><thead><tr><th>#</th><th>dialogue</th><th>services</th><th>outcome</th><th>emotions (user / assistant)</th><th>checks</th><th>judge</th></tr></thead><tbody id="dialogue-rows"></tbody></table><button type="button" id="more" hidden>show more</button></div><div id="dialogue-detail"></div></div>"#);
    out.push('\n');
}

const CSS: &str = r##"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#23395b;color:#fff;padding:12px 24px}header h1{margin:0;font-size:22px}header p{margin:4px 0;opacity:.85;word-break:break-all}
nav a{color:#fff;margin-right:14px;text-decoration:none;font-weight:600}
main{padding:14px 24px 40px;display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:14px;align-items:start}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 18px 14px;min-width:0}
#coverage,#distributions,#browser{grid-column:1/-1}
#coverage .dims,#distributions .dims{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:4px 24px}
svg.chart{max-width:100%;height:auto}
h2{font-size:18px;margin:8px 0}h3{font-size:15px;margin:12px 0 4px}
.facts{display:flex;flex-wrap:wrap;gap:10px;margin:0}.fact{border:1px solid #e3e3e3;border-radius:5px;padding:6px 12px;min-width:130px}
.fact dt{font-size:12px;color:#666}.fact dd{margin:0;font-size:18px;font-weight:600}
figure{margin:8px 0}figcaption{font-size:13px;color:#444;margin-bottom:2px}
.chart text{font-size:11px;fill:#333}.chart .legend{font-size:12px}
.note{color:#666;font-style:italic}.list{font-size:12px;color:#555}
table.counts{border-collapse:collapse;margin:6px 0}table.counts td,table.counts th{border-bottom:1px solid #eee;padding:3px 10px;text-align:right}
table.counts td:first-child,table.counts th:first-child{text-align:left}
#filters label{margin-right:12px;white-space:nowrap}#filters select{margin-left:4px}
.browser{display:flex;gap:16px;align-items:flex-start}.browser .list{flex:1 1 50%;max-height:900px;overflow:auto}
#dialogue-list{border-collapse:collapse;width:100%;font-size:12px}#dialogue-list th{position:sticky;top:0;background:#f0f0f0;text-align:left}
#dialogue-list td,#dialogue-list th{padding:3px 6px;border-bottom:1px solid #eee}#dialogue-list tbody tr{cursor:pointer}
#dialogue-list tbody tr:hover,#dialogue-list tr.selected{background:#e8f0fb}
#dialogue-detail{flex:1 1 50%;font-size:13px}#dialogue-detail dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:4px 0}
#dialogue-detail dt{color:#666}#dialogue-detail dd{margin:0}
.turn{border-left:3px solid #4c78a8;padding:2px 8px;margin:6px 0}.turn .assistant{border-left:3px solid #f58518;padding-left:8px;margin-top:3px}
.intent{color:#777;font-size:11px;margin-left:6px}
"##;

const SCRIPT: &str = r##"
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("dialogue-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var PAGE = 200, limit = PAGE, selected = null;
  function value(name) { var e = $("filter-" + name); return e ? e.value : ""; }
  function matches(d) {
    var v = value("service");
    if (v && d.services.indexOf(v) < 0) return false;
    v = value("outcome");
    if (v && d.resolution_status !== v) return false;
    v = value("user-emotion");
    if (v && d.user_emotion !== v) return false;
    v = value("assistant-emotion");
    if (v && d.assistant_emotion !== v) return false;
    v = value("check");
    if (v === "(none)") { if (d.checks.length) return false; }
    else if (v && !d.checks.some(function (c) { return c.check === v; })) return false;
    v = value("judge");
    if (v === "(unscored)") { if (d.judge) return false; }
    else if (v && !(d.judge && String(d.judge.overall) === v)) return false;
    return true;
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function facts(parent, pairs) {
    var dl = el("dl");
    pairs.forEach(function (p) { dl.appendChild(el("dt", p[0])); dl.appendChild(el("dd", p[1])); });
    parent.appendChild(dl);
  }
  function show(d, row) {
    selected = d.seq;
    Array.prototype.forEach.call(document.querySelectorAll("#dialogue-rows tr"), function (tr) {
      tr.classList.toggle("selected", tr === row);
    });
    var box = $("dialogue-detail");
    box.textContent = "";
    box.appendChild(el("h3", d.dialogue_id));
    box.appendChild(el("h4", "Scenario"));
    box.appendChild(el("p", d.generated_scenario));
    facts(box, [
      ["category", d.scenario_category], ["services", d.services.join(", ")],
      ["outcome", d.resolution_status], ["user emotion", d.user_emotion],
      ["assistant emotion", d.assistant_emotion], ["regions", d.regions.join(", ")],
      ["time", d.time_slot + ", " + d.specific_time]
    ]);
    box.appendChild(el("h4", "Persona"));
    box.appendChild(el("p", d.persona));
    box.appendChild(el("h4", "Provenance"));
    facts(box, [
      ["store sequence", d.seq],
      ["work item", d.item_index === null ? "imported (dgen import)" : d.item_index],
      ["attempt", d.attempt], ["base dialogue", d.base_dialogue_id], ["model", d.model],
      ["temperature", d.temperature], ["top_p", d.top_p],
      ["frequency / presence penalty", d.frequency_penalty + " / " + d.presence_penalty],
      ["seed", d.seed],
      ["tokens", d.usage.prompt_tokens + " prompt + " + d.usage.completion_tokens + " completion in " + d.usage.calls + " calls"]
    ]);
    box.appendChild(el("h4", "Checks"));
    if (d.checks.length) {
      var ul = el("ul");
      d.checks.forEach(function (c) { ul.appendChild(el("li", c.check + ": " + c.detail)); });
      box.appendChild(ul);
    } else box.appendChild(el("p", "none flagged", "note"));
    box.appendChild(el("h4", "Judge"));
    if (d.judge) {
      var pairs = [["overall", d.judge.overall]];
      Object.keys(d.judge.scores).forEach(function (k) { pairs.push([k, d.judge.scores[k]]); });
      pairs.push(["reasoning", d.judge.reasoning], ["judge model", d.judge.model], ["rubric version", d.judge.prompt_version]);
      facts(box, pairs);
    } else box.appendChild(el("p", "not scored", "note"));
    box.appendChild(el("h4", "Turns"));
    d.turns.forEach(function (t, i) {
      var div = el("div", null, "turn");
      var user = el("div", (i + 1) + ". USER: " + t.utterance);
      user.appendChild(el("span", t.intent, "intent"));
      div.appendChild(user);
      div.appendChild(el("div", "ASSISTANT: " + t.assistant_response, "assistant"));
      box.appendChild(div);
    });
  }
  function render() {
    var body = $("dialogue-rows");
    body.textContent = "";
    var hits = data.filter(matches);
    $("browser-count").textContent = hits.length + " of " + data.length + " dialogues match the filters";
    var first = null;
    hits.slice(0, limit).forEach(function (d) {
      var tr = el("tr");
      tr.tabIndex = 0;
      [d.seq, d.dialogue_id, d.services.join(", "), d.resolution_status,
       d.user_emotion + " / " + d.assistant_emotion,
       d.checks.map(function (c) { return c.check; }).join(", ") || "-",
       d.judge ? d.judge.overall : "-"].forEach(function (t) { tr.appendChild(el("td", t)); });
      tr.addEventListener("click", function () { show(d, tr); });
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter") show(d, tr); });
      body.appendChild(tr);
      if (first === null || d.seq === selected) first = [d, tr];
    });
    $("more").hidden = hits.length <= limit;
    if (first) show(first[0], first[1]); else $("dialogue-detail").textContent = "";
  }
  ["service", "outcome", "user-emotion", "assistant-emotion", "check", "judge"].forEach(function (f) {
    var e = $("filter-" + f);
    if (e) e.addEventListener("change", function () { limit = PAGE; render(); });
  });
  $("more").addEventListener("click", function () { limit += PAGE; render(); });
  render();
  document.documentElement.setAttribute("data-ready", "1");
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_thousands_separators_and_pointers_escape_slashes() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(ptr(&["a", "b/c", "d~e"]), "/a/b~1c/d~0e");
    }

    #[test]
    fn json_in_the_page_cannot_close_its_script_block() {
        let mut out = Vec::new();
        serde_json::to_writer(EscapeLt(&mut out), &["</script><!--", "a<b"]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('<'), "{text}");
        let back: Vec<String> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ["</script><!--", "a<b"]);
    }
}
