//! `dgen status --json` metrics after a real run against the mock: every metric is present and
//! agrees with what `dgen export` and `dgen export --plan_file` write, recomputed here.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::mock::{Fault, MockServer};
use common::{count_in, Env};
use serde_json::Value;

/// The word split the README documents for distinct-n.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Distinct-n over the given utterances, n-grams not crossing utterances.
fn distinct(texts: &[String], n: usize) -> f64 {
    let (mut seen, mut total) = (HashSet::new(), 0usize);
    for t in texts {
        for gram in words(t).windows(n) {
            seen.insert(gram.to_vec());
            total += 1;
        }
    }
    seen.len() as f64 / total as f64
}

fn close(a: &Value, b: f64, what: &str) {
    let a = a
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {a}"));
    assert!(
        (a - b).abs() < 1e-4,
        "{what}: status says {a}, export gives {b}"
    );
}

fn utterances(records: &[Value], field: &str) -> Vec<String> {
    records
        .iter()
        .flat_map(|r| r["turns"].as_array().unwrap())
        .map(|t| t[field].as_str().unwrap().to_string())
        .collect()
}

/// Shares of `key(line)` over `lines`.
fn shares(lines: &[Value], key: impl Fn(&Value) -> String) -> BTreeMap<String, f64> {
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for l in lines {
        *counts.entry(key(l)).or_default() += 1.0;
    }
    counts.values_mut().for_each(|c| *c /= lines.len() as f64);
    counts
}

fn check_lexical(m: &Value, records: &[Value]) {
    let user = utterances(records, "utterance");
    let assistant = utterances(records, "assistant_response");
    for (n, key) in [(1, "distinct_1"), (2, "distinct_2"), (3, "distinct_3")] {
        close(&m["user"][key], distinct(&user, n), &format!("user {key}"));
        let what = format!("assistant {key}");
        close(&m["assistant"][key], distinct(&assistant, n), &what);
    }
    let user_words: usize = user.iter().map(|u| words(u).len()).sum();
    let mean_words = user_words as f64 / user.len() as f64;
    close(
        &m["user"]["words_per_utterance"]["mean"],
        mean_words,
        "words",
    );
    let turns: usize = records
        .iter()
        .map(|r| r["turns"].as_array().unwrap().len())
        .sum();
    let t = &m["turns_per_dialogue"];
    assert_eq!(t["count"], records.len());
    close(
        &t["mean"],
        turns as f64 / records.len() as f64,
        "turns mean",
    );
    for key in ["min", "p50", "p90", "p99", "max"] {
        assert!(t[key].is_u64(), "turns {key}: {t}");
    }
    let intents: HashSet<&str> = records
        .iter()
        .flat_map(|r| r["turns"].as_array().unwrap())
        .map(|t| t["intent"].as_str().unwrap())
        .collect();
    assert_eq!(m["intent_vocabulary"], intents.len());
}

fn check_spread(s: &Value, embeddings: &[Vec<f32>]) {
    let n = embeddings.len();
    assert_eq!(
        (s["dialogues"].as_u64(), s["sample_size"].as_u64()),
        (Some(n as u64), Some(n as u64))
    );
    assert_eq!(
        s["sampled"], false,
        "{n} dialogues are under the sample cap"
    );
    let dot =
        |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum() };
    let (mut sum, mut nearest) = (0.0, vec![f64::NEG_INFINITY; n]);
    for i in 0..n {
        for j in i + 1..n {
            let d = dot(&embeddings[i], &embeddings[j]);
            sum += d;
            nearest[i] = nearest[i].max(d);
            nearest[j] = nearest[j].max(d);
        }
    }
    close(
        &s["mean_pairwise_similarity"],
        sum / (n * (n - 1) / 2) as f64,
        "mean pairwise",
    );
    let near = &s["nearest_similarity"];
    close(
        &near["mean"],
        nearest.iter().sum::<f64>() / n as f64,
        "nearest mean",
    );
    let max = nearest.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    close(&near["max"], max, "nearest max");
}

/// How a plan line or an exported record gives a dimension's value.
type Key = Box<dyn Fn(&Value) -> String>;

fn check_coverage(c: &Value, plan: &[Value], records: &[Value]) {
    let slot = |l: &Value| l["time_slot"][2].as_str().unwrap().to_string();
    let field = |name: &'static str| move |l: &Value| l[name].as_str().unwrap().to_string();
    let first = |name: &'static str| move |l: &Value| l[name][0].as_str().unwrap().to_string();
    let dims: [(&str, Key, Key); 5] = [
        (
            "category",
            Box::new(field("scenario_category")),
            Box::new(field("scenario_category")),
        ),
        (
            "region",
            Box::new(field("region")),
            Box::new(first("regions")),
        ),
        ("time_slot", Box::new(slot), Box::new(slot)),
        (
            "user_emotion",
            Box::new(field("user_emotion")),
            Box::new(first("user_emotions")),
        ),
        (
            "outcome",
            Box::new(field("resolution_status")),
            Box::new(field("resolution_status")),
        ),
    ];
    for (dim, in_plan, in_export) in dims {
        let values = &c["dimensions"][dim]["values"];
        let planned = shares(plan, in_plan);
        let accepted = shares(records, in_export);
        for (value, share) in &planned {
            close(
                &values[value]["planned_share"],
                *share,
                &format!("{dim} {value} planned"),
            );
            let got = accepted.get(value).copied().unwrap_or(0.0);
            close(
                &values[value]["accepted_share"],
                got,
                &format!("{dim} {value} accepted"),
            );
            let never = c["dimensions"][dim]["never_accepted"].as_array().unwrap();
            assert_eq!(
                never.contains(&Value::from(value.as_str())),
                got == 0.0,
                "{dim} {value}"
            );
        }
    }
}

#[test]
fn status_metrics_agree_with_the_exported_dialogues_and_plan() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(12);
    // Rejections with one attempt an item: some items fail, so accepted shares move.
    mock.push([Fault::Malformed, Fault::Malformed, Fault::WrongTurns]);
    env.run(&mock, &["--concurrency", "1", "--max_attempts", "1"])
        .assert()
        .success();
    let status = env.status_json();
    let out = env.export_all();
    let plan = env.plan_jsonl("dgen.redb");
    let m = &status["metrics"];

    let f = &m["funnel"];
    let (done, failed) = (count_in(&status, "done"), count_in(&status, "failed"));
    assert!(failed > 0, "the faults failed some items: {status}");
    assert_eq!(f["planned"], 12);
    assert_eq!(f["attempted"], done + failed);
    assert_eq!(
        (f["accepted"].as_u64(), f["failed"].as_u64()),
        (Some(done), Some(failed))
    );
    assert_eq!(f["rejected"], status["run"]["rejections"]);
    let run = &status["run"];
    let tokens =
        run["prompt_tokens"].as_u64().unwrap() + run["completion_tokens"].as_u64().unwrap();
    close(
        &f["tokens_per_accepted"],
        tokens as f64 / done as f64,
        "tokens per accepted",
    );
    assert_eq!(out.records.len() as u64, done);

    check_lexical(&m["lexical"], &out.records);
    check_spread(&m["semantic_spread"], &out.embeddings);
    let c = &m["coverage"];
    assert_eq!(
        (c["planned"].as_u64(), c["accepted"].as_u64()),
        (Some(12), Some(done))
    );
    check_coverage(c, &plan, &out.records);
    let sizes = &c["dimensions"]["service_count"]["values"];
    let planned_sizes = shares(&plan, |l| {
        l["services"].as_array().unwrap().len().to_string()
    });
    for (size, name) in ["single", "double", "triple", "quadruple"]
        .iter()
        .enumerate()
    {
        let share = planned_sizes
            .get(&(size + 1).to_string())
            .copied()
            .unwrap_or(0.0);
        close(&sizes[name]["planned_share"], share, name);
    }
    for dim in ["combination", "assistant_emotion"] {
        assert!(
            c["dimensions"][dim]["largest_deviation"]["value"].is_string(),
            "{dim}"
        );
    }

    let text = env.stdout(env.dgen().arg("status"));
    for line in ["funnel:", "distinct-1/2/3", "similarity:", "coverage:"] {
        assert!(text.contains(line), "the text status lacks {line}: {text}");
    }
}
