//! `dgen status` and `dgen report` on an annotated store: the plan's user goals as coverage
//! dimensions and the label checks' figures; a plain store's output has neither.

mod common;

use common::{Env, TURNS};
use serde_json::Value;

const GOAL_DIMENSIONS: [&str; 3] = ["goal_intent", "goal_inform_slot", "goal_request_slot"];

fn plan_annotated(env: &Env, n: u64) {
    env.plan(n, &[&["--annotate"][..], &TURNS[..]].concat())
        .assert()
        .success();
}

/// The goals of every item, as the dry run's dialogue requests give them to the model, as
/// (dimension, `service/name`) per item.
fn planned_goals(env: &Env, n: u64) -> Vec<Vec<(&'static str, String)>> {
    let out = env.stdout(
        env.dgen()
            .args(["run", "--dry_run", "--limit", &n.to_string()]),
    );
    let marker = "User goal (JSON): ";
    let mut items = Vec::new();
    for at in out.match_indices(marker).map(|(i, _)| i + marker.len()) {
        // The line inside the request's JSON string: escaped, up to the next `\n`.
        let escaped = &out[at..at + out[at..].find("\\n").unwrap()];
        let line: String = serde_json::from_str(&format!("\"{escaped}\"")).unwrap();
        let goals: Value = serde_json::from_str(&line).unwrap();
        let mut values = Vec::new();
        for g in goals.as_array().unwrap() {
            let service = g["service"].as_str().unwrap();
            let q = |name: &str| format!("{service}/{name}");
            values.push(("goal_intent", q(g["intent"].as_str().unwrap())));
            for pair in g["inform"].as_array().unwrap() {
                values.push(("goal_inform_slot", q(pair[0].as_str().unwrap())));
            }
            for slot in g["request"].as_array().unwrap() {
                values.push(("goal_request_slot", q(slot.as_str().unwrap())));
            }
        }
        values.sort();
        values.dedup();
        items.push(values);
    }
    items
}

#[test]
fn an_annotated_plan_counts_goal_intents_and_slots_as_coverage_and_shows_empty_label_figures() {
    let env = Env::new();
    plan_annotated(&env, 30);
    let status = env.status_json();
    let dims = &status["metrics"]["coverage"]["dimensions"];

    // Each value's planned count is the number of items whose goals have it.
    let items = planned_goals(&env, 30);
    assert_eq!(items.len(), 30);
    let mut want: std::collections::BTreeMap<(&str, String), u64> = Default::default();
    for item in &items {
        for v in item {
            *want.entry(v.clone()).or_default() += 1;
        }
    }
    assert!(
        want.keys().any(|(d, _)| *d == "goal_request_slot"),
        "{want:?}"
    );
    for ((dim, value), n) in &want {
        let got = &dims[*dim]["values"][value];
        assert_eq!(got["planned"], *n, "{dim} {value}");
        assert_eq!(got["accepted"], 0, "{dim} {value}");
    }
    for dim in GOAL_DIMENSIONS {
        // Values of the schema no item has are listed too, as never planned.
        let values = dims[dim]["values"].as_object().unwrap();
        let never = dims[dim]["never_planned"].as_array().unwrap();
        let planned = want.keys().filter(|(d, _)| *d == dim).count();
        assert_eq!(values.len(), planned + never.len(), "{dim}");
    }
    let labels = &status["metrics"]["labels"];
    assert_eq!(labels["annotated"], 0);
    assert_eq!(labels["grounded_share"], Value::Null);
    assert_eq!(labels["checks"].as_array().unwrap().len(), 7);

    let text = env.stdout(env.dgen().arg("status"));
    for needle in [
        "goal intents (",
        "goal slots given (",
        "goal slots asked (",
        "labels:      0 annotated dialogues, 0 checked",
    ] {
        assert!(text.contains(needle), "status lacks {needle:?}:\n{text}");
    }

    // The report shows the same figures: goal coverage charts and the labels section.
    env.dgen()
        .args(["report", "--out", "r.html", "--json", "r.json"])
        .assert()
        .success();
    let page = std::fs::read_to_string(env.path("r.html")).unwrap();
    for needle in [
        r#"id="coverage-goal_intent""#,
        r#"id="chart-coverage-goal_inform_slot""#,
        r#"<section id="labels">"#,
        r#"data-key="/metrics/labels/annotated""#,
    ] {
        assert!(page.contains(needle), "report lacks {needle}");
    }
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("r.json")).unwrap()).unwrap();
    assert_eq!(json["metrics"]["labels"], *labels);
    // Its per-check table and the browser's filter have the label checks after the text ones.
    let checks: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(checks.len(), 16, "{checks:?}");
    assert_eq!(
        checks[9..],
        [
            "unknown_label",
            "categorical_value",
            "ungrounded",
            "dropped_slot",
            "goal_unrealized",
            "invalid_call",
            "outcome_calls"
        ]
    );
    assert!(page.contains(r#"<option value="outcome_calls">"#));
}

#[test]
fn a_plain_store_has_no_goal_coverage_and_no_label_figures() {
    let env = Env::new();
    env.plan_for_run(10);
    let status = env.status_json();
    let dims = status["metrics"]["coverage"]["dimensions"]
        .as_object()
        .unwrap();
    assert_eq!(dims.len(), 8, "{:?}", dims.keys().collect::<Vec<_>>());
    assert!(status["metrics"].get("labels").is_none());
    let text = env.stdout(env.dgen().arg("status"));
    assert!(
        !text.contains("goal intents") && !text.contains("labels:"),
        "{text}"
    );
    env.dgen()
        .args(["report", "--out", "r.html", "--json", "r.json"])
        .assert()
        .success();
    let page = std::fs::read_to_string(env.path("r.html")).unwrap();
    assert!(!page.contains(r#"id="labels""#) && !page.contains("goal_intent"));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("r.json")).unwrap()).unwrap();
    assert_eq!(
        json["checks"].as_array().unwrap().len(),
        9,
        "the text checks alone"
    );
    assert!(!page.contains(r#"<option value="ungrounded">"#));
}
