//! Bad input: each case exits non-zero with a message naming the problem and the fix, and
//! writes nothing.

mod common;

use common::{fixture, Env};
use predicates::prelude::*;
use serde_json::Value;

fn refused(env: &Env, mut cmd: assert_cmd::Command, needles: &[&str]) {
    let out = cmd.assert().failure().get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
    assert!(
        !env.path("dgen.redb").exists(),
        "a refused plan wrote a store"
    );
}

#[test]
fn plan_settings_are_validated_before_anything_is_written() {
    let env = Env::new();
    refused(
        &env,
        env.plan(0, &[]),
        &["--total_generations", "at least 1"],
    );
    refused(
        &env,
        env.plan(5, &["--similarity_threshold", "0"]),
        &["--similarity_threshold", "(0, 1]"],
    );
    refused(
        &env,
        env.plan(5, &["--similarity_threshold", "1.5"]),
        &["1.5 is outside (0, 1]"],
    );
    refused(
        &env,
        env.plan(5, &["--min_turns", "10", "5"]),
        &["--min_turns 10 5", "reversed"],
    );
    refused(
        &env,
        env.plan(5, &["--max_turns", "3", "4"]),
        &["--max_turns 3 4", "below --min_turns"],
    );
    refused(
        &env,
        env.plan(5, &["--top_p", "0.9", "1.5"]),
        &["--top_p", "1.5 is outside [0, 1]"],
    );
    refused(
        &env,
        env.plan(5, &["--temperature", "3"]),
        &["--temperature", "3 is outside [0, 2]"],
    );
    for (flag, values, reason) in [
        (
            "--similarity_threshold",
            &["nan"][..],
            "nan is not a finite number",
        ),
        (
            "--temperature",
            &["0.7", "inf"],
            "inf is not a finite number",
        ),
        ("--top_p", &["NaN"], "NaN is not a finite number"),
        (
            "--frequency_penalty",
            &["0.2", "infinity"],
            "infinity is not a finite number",
        ),
        ("--presence_penalty", &["-2.5"], "-2.5 is outside [-2, 2]"),
        ("--min_turns", &["0", "5"], "at least 1"),
        ("--max_turns", &["5", "-1"], "not a whole number"),
    ] {
        let mut args = vec![flag];
        args.extend(values);
        refused(&env, env.plan(5, &args), &[flag, reason]);
    }
    // An empty list is refused by the flag parser itself.
    let mut cmd = env.plan(5, &["--temperature"]);
    cmd.assert()
        .failure()
        .stderr(predicate::str::contains("--temperature"));
}

#[test]
fn status_prices_must_be_finite_and_not_negative() {
    let env = Env::new();
    for (flag, value, reason) in [
        ("--price_input", "nan", "nan is not a finite number"),
        ("--price_output", "inf", "inf is not a finite number"),
        ("--price_input", "-1", "-1 is outside [0, 1000000]"),
        (
            "--price_cached_input",
            "2e6",
            "2000000 is outside [0, 1000000]",
        ),
    ] {
        refused(
            &env,
            {
                let mut cmd = env.dgen();
                cmd.args(["status", flag, value]);
                cmd
            },
            &[flag, reason],
        );
    }
}

fn builtin_catalog() -> Value {
    serde_json::from_str(include_str!("../assets/catalog.json")).unwrap()
}

fn with_catalog(env: &Env, name: &str, catalog: &Value) -> assert_cmd::Command {
    let path = env.path(name);
    std::fs::write(&path, serde_json::to_string_pretty(catalog).unwrap()).unwrap();
    env.plan(5, &["--catalog", path.to_str().unwrap()])
}

#[test]
fn inconsistent_catalogs_are_refused_naming_the_entry() {
    let env = Env::new();
    let mut c = builtin_catalog();
    c["logical_combinations"]["double"][3][1] = "spa".into();
    refused(
        &env,
        with_catalog(&env, "a.json", &c),
        &["logical_combinations.double[3]", "unknown service \"spa\""],
    );

    let mut c = builtin_catalog();
    c["service_count_weights"]["triple"] = (-0.25).into();
    refused(
        &env,
        with_catalog(&env, "b.json", &c),
        &["service_count_weights.triple is -0.25", "not negative"],
    );

    let mut c = builtin_catalog();
    for k in ["Resolved", "Failed", "Escalated"] {
        c["resolution_statuses"][k] = 0.0.into();
    }
    refused(
        &env,
        with_catalog(&env, "c.json", &c),
        &["resolution_statuses weights sum to 0"],
    );

    let mut c = builtin_catalog();
    c["regions"] = Value::Array(vec![]);
    refused(
        &env,
        with_catalog(&env, "d.json", &c),
        &["regions is an empty list"],
    );

    let mut c = builtin_catalog();
    c["time_slots"][2][1] = 24.into();
    refused(
        &env,
        with_catalog(&env, "e.json", &c),
        &["time_slots[2]", "Afternoon", "hour 24", "0-23"],
    );

    let mut c = builtin_catalog();
    c["scenario_categories"]["spa"] = serde_json::json!(["massage"]);
    refused(
        &env,
        with_catalog(&env, "f.json", &c),
        &["scenario_categories.spa", "unknown service"],
    );

    std::fs::write(env.path("g.json"), "{not json").unwrap();
    refused(
        &env,
        env.plan(5, &["--catalog", env.path("g.json").to_str().unwrap()]),
        &["not valid JSON"],
    );
}

/// A work item numbers its time slot with a `u8`: a 257th slot would wrap to slot 0.
#[test]
fn a_catalog_with_more_time_slots_than_a_plan_can_number_is_refused() {
    let env = Env::new();
    let mut c = builtin_catalog();
    c["time_slots"] = (0..257)
        .map(|i| serde_json::json!([i % 24, (i + 1) % 24, format!("slot {i}")]))
        .collect();
    refused(
        &env,
        with_catalog(&env, "slots.json", &c),
        &["slots.json", "time_slots has 257 entries", "256"],
    );
    // 256 slots plan.
    c["time_slots"].as_array_mut().unwrap().pop();
    with_catalog(&env, "slots.json", &c).assert().success();
}

#[test]
fn a_toml_catalog_plans_like_the_json_one() {
    let env = Env::new();
    let json_fp = env.fingerprint(&mut env.plan(200, &["--store", "json.redb"]));
    let toml_text = toml::to_string(&builtin_catalog()).unwrap();
    std::fs::write(env.path("catalog.toml"), toml_text).unwrap();
    let toml_fp = env.fingerprint(&mut env.plan(
        200,
        &[
            "--store",
            "toml.redb",
            "--catalog",
            env.path("catalog.toml").to_str().unwrap(),
        ],
    ));
    assert_eq!(json_fp, toml_fp);

    // A changed catalog changes the plan.
    let mut c = builtin_catalog();
    c["regions"] = serde_json::json!(["Reykjavik", "Nairobi"]);
    std::fs::write(env.path("small.json"), c.to_string()).unwrap();
    let fp = env.fingerprint(&mut env.plan(
        200,
        &[
            "--store",
            "small.redb",
            "--catalog",
            env.path("small.json").to_str().unwrap(),
        ],
    ));
    assert_ne!(fp, json_fp);
}

#[test]
fn missing_default_dataset_says_how_to_create_it() {
    let env = Env::new();
    let mut cmd = env.dgen();
    cmd.args(["plan", "--total_generations", "5"]);
    refused(
        &env,
        cmd,
        &[
            "local_datasets/multi_woz_v22",
            "save_to_disk",
            "load_dataset('pfb30/multi_woz_v22')",
            "--dataset",
        ],
    );
    let mut cmd = env.dgen();
    cmd.args(["plan", "--total_generations", "5", "--dataset"])
        .arg(fixture("multiwoz_hf"));
    refused(
        &env,
        cmd,
        &[
            "persona dataset",
            "FinePersonas-v0.1-clustering-100k",
            "--persona_dataset",
        ],
    );
}

#[test]
fn unreadable_files_are_clear_errors() {
    let env = Env::new();
    let dir = env.path("broken_hf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixture("multiwoz_hf/train/state.json"),
        dir.join("state.json"),
    )
    .unwrap();
    std::fs::write(dir.join("data-00000-of-00001.arrow"), b"this is not arrow").unwrap();
    let mut cmd = env.dgen();
    cmd.args(["plan", "--total_generations", "5", "--dataset"])
        .arg(&dir)
        .arg("--persona_dataset")
        .arg(fixture("personas_hf"));
    refused(
        &env,
        cmd,
        &["cannot read dialogues from", "not an Arrow IPC stream file"],
    );

    std::fs::write(env.path("d.parquet"), b"PAR1 nonsense").unwrap();
    let mut cmd = env.dgen();
    cmd.args(["plan", "--total_generations", "5", "--dataset"])
        .arg(env.path("d.parquet"))
        .arg("--persona_dataset")
        .arg(fixture("personas_hf"));
    refused(&env, cmd, &["not a readable Parquet file"]);

    let mut cmd = env.dgen();
    cmd.args(["plan", "--total_generations", "5", "--dataset"])
        .arg(env.path("nope"))
        .arg("--persona_dataset")
        .arg(fixture("personas_hf"));
    refused(&env, cmd, &["does not exist"]);
}

#[test]
fn malformed_rows_are_skipped_and_counted() {
    let env = Env::new();
    let good = std::fs::read_to_string(fixture("multiwoz.jsonl")).unwrap();
    let bad = [
        r#"{"dialogue_id": "B1", "services": ["hotel"], "turns": []}"#,
        r#"{"dialogue_id": "B2", "services": ["hotel"], "turns": [{"speaker": 5, "utterance": "hi"}]}"#,
        r#"{"dialogue_id": "B3", "services": ["hotel"], "turns": [{"speaker": "USER", "utterance": ""}]}"#,
        r#"not json at all"#,
    ];
    let text = format!("{}{}\n", good, bad.join("\n"));
    std::fs::write(env.path("mixed.jsonl"), text).unwrap();
    let mut cmd = env.dgen();
    cmd.args(["plan", "--total_generations", "20", "--dataset"])
        .arg(env.path("mixed.jsonl"))
        .arg("--persona_dataset")
        .arg(fixture("personas_hf"));
    cmd.assert().success().stderr(predicate::str::contains(
        "skipped 4 malformed dialogues of 44",
    ));
    let status: Value =
        serde_json::from_str(&env.stdout(env.dgen().args(["status", "--json"]))).unwrap();
    let skipped = &status["dataset"]["skipped"];
    assert_eq!(skipped["no turns"], 1, "{skipped}");
    assert_eq!(skipped["invalid JSON line"], 1, "{skipped}");
    assert_eq!(skipped["unknown speaker"], 1, "{skipped}");
    assert_eq!(skipped["empty utterance"], 1, "{skipped}");
    let text = env.stdout(env.dgen().arg("status"));
    assert!(text.contains("skipped 4"), "{text}");
}

#[test]
fn foreign_files_are_never_overwritten() {
    let env = Env::new();
    std::fs::write(env.path("notes.txt"), "precious notes\n").unwrap();
    env.plan(5, &["--store", "notes.txt"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a dgen store"));
    assert_eq!(
        std::fs::read_to_string(env.path("notes.txt")).unwrap(),
        "precious notes\n"
    );

    // A redb database of someone else's.
    {
        let db = redb::Database::create(env.path("other.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let def: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("users");
        txn.open_table(def).unwrap().insert("a", "b").unwrap();
        txn.commit().unwrap();
    }
    env.plan(5, &["--store", "other.redb"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "redb database but not a dgen store",
        ));
    env.dgen()
        .args(["--store", "other.redb", "status"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a dgen store"));
}

#[test]
fn a_store_from_a_newer_schema_is_refused() {
    let env = Env::new();
    env.plan(5, &[]).assert().success();
    {
        let db = redb::Database::create(env.path("dgen.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let def: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("meta");
        txn.open_table(def)
            .unwrap()
            .insert("schema_version", "99")
            .unwrap();
        txn.commit().unwrap();
    }
    for args in [vec!["status"], vec!["export", "--plan_file", "p.jsonl"]] {
        env.dgen().args(&args).assert().failure().stderr(
            predicate::str::contains("newer dgen (schema 99)")
                .and(predicate::str::contains("upgrade dgen")),
        );
    }
    env.plan(5, &["--force"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("newer dgen"));
}

#[test]
fn commands_on_a_missing_store_say_how_to_make_one() {
    let env = Env::new();
    env.dgen().arg("status").assert().failure().stderr(
        predicate::str::contains("no store at dgen.redb")
            .and(predicate::str::contains("dgen plan")),
    );
    env.plan(5, &[]).assert().success();
    env.dgen()
        .args(["export", "--plan_file", "missing/dir/plan.jsonl"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("does not exist"));
}
