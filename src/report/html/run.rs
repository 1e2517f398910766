//! The sections about the run: summary, progress, the funnel from items to accepted
//! dialogues, the quality checks, and the judge's scores and costs.

use super::super::ReportData;
use super::*;

pub(super) fn summary(out: &mut String, r: &ReportData) {
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

pub(super) fn progress(out: &mut String, r: &ReportData) {
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

pub(super) fn funnel(out: &mut String, r: &ReportData) {
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

pub(super) fn checks(out: &mut String, r: &ReportData) {
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

/// The annotated mode's label checks: the status report's `metrics.labels` (a plain store has
/// none, and no such section).
pub(super) fn labels(out: &mut String, r: &ReportData) {
    let Some(l) = &r.status.metrics.labels else {
        return;
    };
    let at = |path: &[&str]| ptr(&[&["metrics", "labels"][..], path].concat());
    section(out, "labels", "Label checks");
    out.push_str(&format!(
        "<p>{} annotated dialogues, {} of them checked (imported ones are not).</p>",
        num(&at(&["annotated"]), &l.annotated, &int(l.annotated)),
        num(&at(&["checked"]), &l.checked, &int(l.checked))
    ));
    out.push_str("<table class=\"counts\"><thead><tr><th>checked dialogues</th><th>count</th><th>share</th></tr></thead><tbody>");
    let mut rows = Vec::new();
    for (label, field, n, share) in [
        (
            "every label grounded",
            "grounded",
            l.grounded,
            l.grounded_share,
        ),
        (
            "goal realized",
            "goal_realized",
            l.goal_realized,
            l.goal_realized_share,
        ),
        (
            "both",
            "grounded_and_realized",
            l.grounded_and_realized,
            l.grounded_and_realized_share,
        ),
    ] {
        let share_field = format!("{field}_share");
        let shown = match share {
            Some(v) => num(&at(&[&share_field]), &v, &pct(v)),
            None => "-".to_string(),
        };
        out.push_str(&format!(
            "<tr><td>{label}</td><td>{}</td><td>{shown}</td></tr>",
            num(&at(&[field]), &n, &int(n))
        ));
        if let Some(v) = share {
            rows.push(Row {
                label: label.to_string(),
                cells: vec![share_cell(at(&[&share_field]), v)],
            });
        }
    }
    out.push_str("</tbody></table>");
    if !rows.is_empty() {
        chart(
            out,
            "Share of checked dialogues",
            bar_chart("chart-labels", "Label checks", &["share"], &rows),
        );
    }
    out.push_str("<table class=\"counts\"><thead><tr><th>label check</th><th>dialogues flagged</th><th>attempts rejected</th></tr></thead><tbody>");
    for (i, c) in l.checks.iter().enumerate() {
        let i = i.to_string();
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(c.check),
            num(&at(&["checks", &i, "flagged"]), &c.flagged, &int(c.flagged)),
            num(
                &at(&["checks", &i, "rejected"]),
                &c.rejected,
                &int(c.rejected)
            )
        ));
    }
    out.push_str(
        "</tbody></table></section>
",
    );
}

/// The judge's figures: the status report's `metrics.judge`.
pub(super) fn judge(out: &mut String, r: &ReportData) {
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
