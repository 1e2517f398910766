//! The sections about the dialogues themselves: lexical diversity, the embeddings' spread,
//! the plan's coverage and its distributions.

use std::collections::BTreeMap;

use super::super::ReportData;
use super::*;

pub(super) fn diversity(out: &mut String, r: &ReportData) {
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

pub(super) fn spread(out: &mut String, r: &ReportData) {
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

pub(super) fn coverage(out: &mut String, r: &ReportData) {
    let c = &r.status.metrics.coverage;
    section(out, "coverage", "Plan coverage");
    out.push_str(&format!(
        "<p>Each value's share of the {} planned items next to its share of the {} accepted ones.</p>",
        num("/metrics/coverage/planned", &c.planned, &int(c.planned)),
        num("/metrics/coverage/accepted", &c.accepted, &int(c.accepted))
    ));
    out.push_str("<div class=\"dims\">");
    // An annotated plan's goal dimensions follow the catalog's (a plain plan has none).
    for dim in DIMENSIONS.iter().chain(&GOAL_DIMENSIONS) {
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

pub(super) fn distributions(out: &mut String, r: &ReportData) {
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
