//! `dgen status` and `dgen report` on an annotated store: the plan's user goals as coverage
//! dimensions and the label checks' figures, checked against the dry run's goals and the
//! exported labels of a run against the mock with planted label faults; a plain store's output
//! has neither.

mod common;

use common::mock::{Fault, LabelFault, MockServer};
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

/// A hotel-only catalog, so every planted label fault has a place (as tests/annotated.rs).
fn hotel_catalog(env: &Env, file: &str) {
    let builtin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/catalog.json");
    let mut catalog: Value =
        serde_json::from_str(&std::fs::read_to_string(builtin).unwrap()).unwrap();
    catalog["core_services"] = serde_json::json!(["hotel"]);
    catalog["service_count_weights"] =
        serde_json::json!({"single": 1.0, "double": 0.0, "triple": 0.0, "quadruple": 0.0});
    catalog["logical_combinations"] =
        serde_json::json!({"double": [], "triple": [], "quadruple": []});
    catalog["scenario_categories"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "general" || k == "hotel");
    catalog["resolution_statuses"] = serde_json::json!({"Resolved": 1.0});
    std::fs::write(env.path(file), catalog.to_string()).unwrap();
}

#[test]
fn label_figures_count_what_the_checks_found_in_the_stored_dialogues_and_the_rejections() {
    let env = Env::new();
    hotel_catalog(&env, "hotel.json");
    env.plan(
        6,
        &[&["--annotate", "--catalog", "hotel.json"][..], &TURNS[..]].concat(),
    )
    .assert()
    .success();
    let mock = MockServer::start();
    // One answer kept with an ungrounded value (flagged), one rejected for a dropped slot, one
    // with both rejected for its dropped slot; each rejected item is re-attempted cleanly.
    mock.push([
        Fault::Labels(vec![LabelFault::Ungrounded]),
        Fault::Labels(vec![LabelFault::DroppedSlot]),
        Fault::Labels(vec![LabelFault::Ungrounded, LabelFault::DroppedSlot]),
    ]);
    env.run(
        &mock,
        &[
            "--concurrency",
            "1",
            "--checks",
            "ungrounded=flag,dropped_slot=reject",
        ],
    )
    .assert()
    .success();
    let records = env.export_all().records;
    assert_eq!(records.len(), 6);
    let count = |f: &dyn Fn(&Value) -> bool| records.iter().filter(|r| f(r)).count() as u64;
    let labels = |r: &Value, key: &str| r["annotation"]["labels"][key] == true;
    let grounded = count(&|r| labels(r, "grounded"));
    let realized = count(&|r| labels(r, "goal_realized"));
    let both = count(&|r| labels(r, "grounded") && labels(r, "goal_realized"));
    let flagged = |check: &str| {
        count(&|r| {
            r["quality"]["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["check"] == check)
        })
    };
    assert_eq!(grounded, 5, "the planted ungrounded value");

    let status = env.status_json();
    let l = &status["metrics"]["labels"];
    assert_eq!(
        (l["annotated"].as_u64(), l["checked"].as_u64()),
        (Some(6), Some(6))
    );
    assert_eq!(l["grounded"], grounded);
    assert_eq!(l["goal_realized"], realized);
    assert_eq!(l["grounded_and_realized"], both);
    assert_eq!(l["grounded_share"], grounded as f64 / 6.0);
    assert_eq!(l["goal_realized_share"], realized as f64 / 6.0);
    let by: std::collections::BTreeMap<String, (u64, u64)> = l["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let n = |k: &str| c[k].as_u64().unwrap();
            (
                c["check"].as_str().unwrap().to_string(),
                (n("flagged"), n("rejected")),
            )
        })
        .collect();
    assert_eq!(by["ungrounded"], (1, 0));
    assert_eq!(by["dropped_slot"], (0, 2));
    assert_eq!(by["goal_unrealized"].0, flagged("goal_unrealized"));
    assert_eq!(by["invalid_call"], (0, 0));
    let text = env.stdout(env.dgen().arg("status"));
    let line = format!(
        "labels:      6 annotated dialogues, 6 checked: {grounded} grounded ({:.1}%)",
        100.0 * grounded as f64 / 6.0
    );
    assert!(text.contains(&line), "{line:?} in:\n{text}");
    assert!(text.contains("ungrounded 1 flagged/0 rejected"), "{text}");
    assert!(text.contains("dropped_slot 0 flagged/2 rejected"), "{text}");
}
