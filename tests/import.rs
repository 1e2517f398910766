//! `dgen import` reads its files one element at a time: a large array imports whole, and an
//! element that is not JSON is named by its index, with nothing imported. (How much memory a
//! large import takes is measured in BENCHMARKS.md, not asserted here.)

mod common;

use common::Env;
use predicates::prelude::*;
use serde_json::{json, Value};

/// A record of the original script's shape, distinct per `i`.
fn record(i: usize) -> Value {
    json!({
        "dialogue_id": format!("import-{i}"),
        "services": ["taxi"],
        "turns": [
            {"utterance": format!("I need a taxi to the station, booking {i}."),
             "intent": "book_taxi",
             "assistant_response": format!("Your taxi {i} is booked for noon.")},
            {"utterance": "Thanks, that is all.", "intent": "thank",
             "assistant_response": "You are welcome."}
        ],
        "time_slot": [9, 12, "Late Morning"],
    })
}

fn import(env: &Env, records: &str, npy: &str) -> assert_cmd::Command {
    let mut cmd = env.dgen();
    cmd.args(["import", "--output_file", records, "--embedding_file", npy]);
    cmd
}

#[test]
fn a_large_json_array_imports_element_by_element() {
    let env = Env::new();
    env.plan(3, &[]).assert().success();
    let n = 5000;
    let records: Vec<Value> = (0..n).map(record).collect();
    std::fs::write(
        env.path("records.json"),
        serde_json::to_string_pretty(&records).unwrap(),
    )
    .unwrap();
    env.one_hot_embeddings("embeddings.npy", n);
    import(&env, "records.json", "embeddings.npy")
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 5000 dialogues"));
    assert_eq!(env.status_json()["run"]["imported"], 5000);
    // The same records as JSONL, led by white space, are all known already.
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(
        env.path("records.jsonl"),
        format!("\n  {}\n", lines.join("\n\n")),
    )
    .unwrap();
    import(&env, "records.jsonl", "embeddings.npy")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "imported 0 dialogues from records.jsonl",
        ))
        .stdout(predicate::str::contains("5000 already there"));
}

#[test]
fn a_malformed_element_mid_file_is_named_by_its_index_and_nothing_is_imported() {
    let env = Env::new();
    env.plan(3, &[]).assert().success();
    let n = 100;
    env.one_hot_embeddings("embeddings.npy", n);
    let mut elements: Vec<String> = (0..n).map(|i| record(i).to_string()).collect();
    let good = elements.clone();
    elements[57] = r#"{"dialogue_id": "import-57", "turns": [nope]}"#.into();
    std::fs::write(
        env.path("broken.json"),
        format!("[{}]", elements.join(",\n")),
    )
    .unwrap();
    import(&env, "broken.json", "embeddings.npy")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "broken.json record 57 is not valid JSON",
        ));
    // JSON, but not a record: named by its index as before.
    let mut elements = good.clone();
    elements[80] = r#"{"dialogue_id": "import-80"}"#.into();
    std::fs::write(env.path("shape.json"), format!("[{}]", elements.join(","))).unwrap();
    import(&env, "shape.json", "embeddings.npy")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "shape.json record 80: has no turns",
        ));
    // Something after the array.
    std::fs::write(env.path("trailing.json"), format!("[{}] [", good.join(","))).unwrap();
    import(&env, "trailing.json", "embeddings.npy")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "trailing.json is not a valid JSON array",
        ));
    // A hash file that breaks off after its first rows.
    std::fs::write(env.path("good.json"), format!("[{}]", good.join(","))).unwrap();
    std::fs::write(
        env.path("hashes.json"),
        format!("[\"{}\", \"ab", "0".repeat(64)),
    )
    .unwrap();
    let mut cmd = import(&env, "good.json", "embeddings.npy");
    cmd.args(["--hash_file", "hashes.json"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "hashes.json row 1 is not valid JSON",
        ));
    assert_eq!(
        env.status_json()["run"]["dialogues"],
        0,
        "nothing was imported"
    );
}
