//! `dgen plan`, `status`, `export --plan_file` and `extract`, driven through the binary.

mod common;

use std::collections::BTreeMap;

use common::{fixture, shared_data, Env};
use predicates::prelude::*;
use serde_json::Value;

/// The fingerprint of 50 items, seed 42, on the bundled fixtures. It changes only when the
/// sampling code, the catalog or the fixtures change on purpose.
const PINNED_FINGERPRINT: &str = "2b2b3829bafa36ca326cda5d3b321bcff4a68dcfae010379d4bd284e040e4c85";

#[test]
fn fixture_plan_fingerprint_is_pinned() {
    let env = Env::new();
    assert_eq!(env.fingerprint(&mut env.plan(50, &[])), PINNED_FINGERPRINT);
}

#[test]
fn same_seed_gives_identical_plan_and_other_seed_differs() {
    let env = Env::new();
    let a = env.fingerprint(&mut env.plan(300, &["--store", "a.redb"]));
    let b = env.fingerprint(&mut env.plan(300, &["--store", "b.redb"]));
    let c = env.fingerprint(&mut env.plan(300, &["--store", "c.redb", "--seed", "7"]));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let export = |store: &str| std::fs::read(env.path(store)).unwrap();
    env.plan_jsonl("a.redb");
    env.plan_jsonl("b.redb");
    env.plan_jsonl("c.redb");
    assert_eq!(export("a.redb.plan.jsonl"), export("b.redb.plan.jsonl"));
    assert_ne!(export("a.redb.plan.jsonl"), export("c.redb.plan.jsonl"));
}

#[test]
fn every_dataset_layout_gives_the_same_plan() {
    let env = Env::new();
    let layouts = [
        "multiwoz_hf",
        "multiwoz_hf_list",
        "multiwoz_json",
        "multiwoz.jsonl",
        "multiwoz.parquet",
    ];
    for (i, layout) in layouts.iter().enumerate() {
        let store = format!("s{i}.redb");
        let mut cmd = env.dgen();
        cmd.args(["--store", &store, "plan", "--total_generations", "50"])
            .arg("--dataset")
            .arg(fixture(layout))
            .arg("--persona_dataset")
            .arg(fixture("personas.jsonl"));
        assert_eq!(env.fingerprint(&mut cmd), PINNED_FINGERPRINT, "{layout}");
    }
}

#[test]
fn large_plan_matches_the_catalog_weights_and_rules() {
    let env = Env::new();
    env.plan(20_000, &[]).assert().success();
    let items = env.plan_jsonl("dgen.redb");
    assert_eq!(items.len(), 20_000);
    let catalog: Value = serde_json::from_str(include_str!("../assets/catalog.json")).unwrap();
    let n = items.len() as f64;

    // Service-count and resolution shares: with n = 20,000 one standard deviation is at most
    // 0.35 points, so a tolerance of 1.5 points is more than 4 sigma.
    let tolerance = 0.015;
    let mut sizes = [0.0; 4];
    let mut statuses: BTreeMap<String, f64> = BTreeMap::new();
    for item in &items {
        sizes[item["services"].as_array().unwrap().len() - 1] += 1.0;
        *statuses
            .entry(item["resolution_status"].as_str().unwrap().to_string())
            .or_default() += 1.0;
    }
    for (i, name) in ["single", "double", "triple", "quadruple"]
        .iter()
        .enumerate()
    {
        let want = catalog["service_count_weights"][name].as_f64().unwrap();
        assert!(
            (sizes[i] / n - want).abs() < tolerance,
            "{name}: {} vs {want}",
            sizes[i] / n
        );
    }
    for (name, want) in catalog["resolution_statuses"].as_object().unwrap() {
        let got = statuses[name] / n;
        assert!(
            (got - want.as_f64().unwrap()).abs() < tolerance,
            "{name}: {got}"
        );
    }

    // Combinations are balanced within each size: max - min usage <= 1.
    let mut usage: BTreeMap<usize, BTreeMap<String, u64>> = BTreeMap::new();
    for item in &items {
        let mut services: Vec<&str> = item["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        services.sort();
        *usage
            .entry(services.len())
            .or_default()
            .entry(services.join("+"))
            .or_default() += 1;
    }
    let expected_combos = [8, 17, 15, 9];
    for (size, combos) in &usage {
        assert_eq!(combos.len(), expected_combos[size - 1], "size {size}");
        let max = combos.values().max().unwrap();
        let min = combos.values().min().unwrap();
        assert!(max - min <= 1, "size {size}: {combos:?}");
    }

    // Per-item rules: category valid for the primary service, time inside the slot, turn bounds.
    let cats = &catalog["scenario_categories"];
    for item in &items {
        let primary = item["primary_service"].as_str().unwrap();
        assert_eq!(primary, item["services"][0].as_str().unwrap());
        let category = &item["scenario_category"];
        let valid = cats["general"].as_array().unwrap().contains(category)
            || cats[primary].as_array().unwrap().contains(category);
        assert!(valid, "{category} is not a {primary} category");

        let slot = item["time_slot"].as_array().unwrap();
        let (start, end) = (slot[0].as_u64().unwrap(), slot[1].as_u64().unwrap());
        let time = item["specific_time"].as_str().unwrap();
        let (h, m): (u64, u64) = (time[..2].parse().unwrap(), time[3..].parse().unwrap());
        assert_eq!(m % 5, 0, "{time}");
        let inside = if start < end {
            h >= start && h < end
        } else {
            h >= start || h < end
        };
        assert!(inside, "{time} outside {slot:?}");

        let (min, max) = (
            item["min_turns"].as_u64().unwrap(),
            item["max_turns"].as_u64().unwrap(),
        );
        assert!(
            (5..=10).contains(&min) && (7..=20).contains(&max) && max >= min,
            "{min} {max}"
        );
    }

    // Base dialogues: each primary service of the dataset gets an equal quota (+-1).
    let mut per_group: BTreeMap<String, u64> = BTreeMap::new();
    let fixture_dialogues: Vec<Value> = std::fs::read_to_string(fixture("multiwoz.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let primary_of: BTreeMap<&str, &str> = fixture_dialogues
        .iter()
        .map(|d| {
            (
                d["dialogue_id"].as_str().unwrap(),
                d["services"][0].as_str().unwrap(),
            )
        })
        .collect();
    for item in &items {
        let id = item["base_dialogue_id"].as_str().unwrap();
        *per_group.entry(primary_of[id].to_string()).or_default() += 1;
    }
    let max = per_group.values().max().unwrap();
    let min = per_group.values().min().unwrap();
    assert_eq!(per_group.len(), 8);
    assert!(max - min <= 1, "{per_group:?}");
}

#[test]
fn labelled_personas_use_clusters_and_summaries() {
    let env = Env::new();
    env.plan(2_000, &[]).assert().success();
    let items = env.plan_jsonl("dgen.redb");
    let used: std::collections::BTreeSet<u64> = items
        .iter()
        .map(|i| i["persona_index"].as_u64().unwrap())
        .collect();
    // 36 personas in 5 clusters and many summary groups: selection reaches nearly all of them.
    assert!(used.len() >= 30, "only {} personas used", used.len());
    for item in &items {
        assert!(!item["persona"].as_str().unwrap().is_empty());
    }
}

#[test]
fn replanning_is_a_noop_and_a_different_plan_needs_force() {
    let env = Env::new();
    env.plan(100, &[]).assert().success();
    env.plan(100, &[])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to do"));
    env.plan(100, &["--seed", "9"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--force"));
    let forced = env.fingerprint(&mut env.plan(100, &["--seed", "9", "--force"]));
    let status = env.stdout(env.dgen().args(["status", "--json"]));
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["plan_fingerprint"], forced.as_str());
    assert_eq!(status["seed"], 9);
}

#[test]
fn status_reports_states_and_distributions() {
    let env = Env::new();
    env.plan(500, &[]).assert().success();
    let text = env.stdout(env.dgen().arg("status"));
    assert!(text.contains("pending 500"), "{text}");
    assert!(text.contains("services per dialogue"), "{text}");
    let json: Value =
        serde_json::from_str(&env.stdout(env.dgen().args(["status", "--json"]))).unwrap();
    assert_eq!(json["total_items"], 500);
    assert_eq!(json["states"][0]["state"], "pending");
    assert_eq!(json["states"][0]["count"], 500);
    let d = &json["distributions"];
    let sum: u64 = d["service_count"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["count"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 500);
    let target = d["service_count"]["double"]["target"].as_f64().unwrap();
    assert!((target - 0.35).abs() < 1e-9, "{target}");
    for key in [
        "regions",
        "time_slots",
        "user_emotions",
        "assistant_emotions",
        "categories",
        "min_turns",
        "max_turns",
        "combinations",
        "primary_services",
    ] {
        let total: u64 = d[key]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(total, 500, "{key}");
    }
}

#[test]
fn extract_prints_the_base_conversation() {
    let env = Env::new();
    let mut cmd = env.dgen();
    cmd.args(["extract", "--index", "3", "--dataset"])
        .arg(fixture("multiwoz_hf"));
    let out = env.stdout(&mut cmd);
    assert!(out.contains("dialogue_id: SMP0003.json"), "{out}");
    assert!(out.contains("services: attraction"), "{out}");
    assert!(
        out.contains("\nUSER: What museums or galleries are there in the west?\nASSISTANT: "),
        "{out}"
    );

    // The original's spelling works too and agrees.
    let mut legacy = env.dgen();
    legacy
        .args(["--test_extraction", "--extraction_index", "3", "--dataset"])
        .arg(fixture("multiwoz_json"));
    assert_eq!(env.stdout(&mut legacy), out);

    let mut out_of_range = env.dgen();
    out_of_range
        .args(["extract", "--index", "40", "--dataset"])
        .arg(fixture("multiwoz_hf"));
    out_of_range
        .assert()
        .failure()
        .stderr(predicate::str::contains("out of range").and(predicate::str::contains("0..=39")));
}

#[test]
fn split_selection_and_missing_split() {
    let env = Env::new();
    let mut cmd = env.dgen();
    cmd.args(["extract", "--split", "validation", "--dataset"])
        .arg(fixture("multiwoz_hf"));
    assert!(env.stdout(&mut cmd).contains("SMPV0040.json"));
    let mut cmd = env.dgen();
    cmd.args(["extract", "--split", "validation", "--dataset"])
        .arg(fixture("multiwoz_json"));
    assert!(env.stdout(&mut cmd).contains("SMPV0040.json"));
    let mut cmd = env.dgen();
    cmd.args(["extract", "--split", "test", "--dataset"])
        .arg(fixture("multiwoz_hf"));
    cmd.assert().failure().stderr(
        predicate::str::contains("split \"test\" not found")
            .and(predicate::str::contains("train, validation")),
    );
}

#[test]
#[ignore = "needs ../shared/data (real MultiWOZ 2.2 and personas); .ci/run runs it with --ignored"]
fn real_multiwoz_data() {
    let data = shared_data();
    let env = Env::new();
    let mut hf = env.dgen();
    hf.args([
        "--store",
        "hf.redb",
        "plan",
        "--total_generations",
        "2000",
        "--split",
        "validation",
    ])
    .arg("--dataset")
    .arg(data.join("multiwoz22_dev_hf"))
    .arg("--persona_dataset")
    .arg(data.join("personas_spc_hf"));
    let mut json = env.dgen();
    json.args([
        "--store",
        "json.redb",
        "plan",
        "--total_generations",
        "2000",
    ])
    .arg("--dataset")
    .arg(data.join("multiwoz22_dev/dialogues.json"))
    .arg("--persona_dataset")
    .arg(data.join("personas_spc.jsonl"));
    assert_eq!(env.fingerprint(&mut hf), env.fingerprint(&mut json));
    let status: Value = serde_json::from_str(
        &env.stdout(env.dgen().args(["--store", "hf.redb", "status", "--json"])),
    )
    .unwrap();
    assert_eq!(status["dataset"]["rows"], 1000);
    assert_eq!(status["personas"]["rows"], 1868);

    let mut extract = env.dgen();
    extract
        .args([
            "extract",
            "--index",
            "0",
            "--split",
            "validation",
            "--dataset",
        ])
        .arg(data.join("multiwoz22_dev_hf"));
    let out = env.stdout(&mut extract);
    assert!(out.contains("dialogue_id: PMUL0698.json"), "{out}");
    assert!(
        out.contains("\nUSER: I'm looking for a local place to dine"),
        "{out}"
    );
}

/// `dgen plan` killed (SIGKILL) the moment anything appears under the new store's name or its
/// temporary name: the next `dgen plan` never meets a half-made file it refuses (redb sizes the
/// file before it marks it as a database), plans, and leaves no temporary file behind.
#[test]
fn a_plan_killed_while_creating_its_store_leaves_nothing_the_next_plan_refuses() {
    let env = Env::new();
    let bin = assert_cmd::cargo::cargo_bin("dgen");
    for i in 0..8 {
        let store = format!("s{i}.redb");
        let mut cmd = std::process::Command::new(&bin);
        for var in common::SCHEDULER_VARS {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .current_dir(env.dir.path())
            .env_remove("RUST_LOG")
            .args(["--store", &store, "plan", "--total_generations", "30"])
            .arg("--dataset")
            .arg(fixture("multiwoz_hf"))
            .arg("--persona_dataset")
            .arg(fixture("personas_hf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let appeared = || {
            std::fs::read_dir(env.dir.path())
                .unwrap()
                .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(&store))
        };
        while !appeared() && child.try_wait().unwrap().is_none() {}
        child.kill().unwrap();
        child.wait().unwrap();
        // A dead process's temporary store is removed once nobody has written it for an hour
        // (on a shared file system the process may live on another node): aged here.
        for entry in std::fs::read_dir(env.dir.path()).unwrap() {
            let entry = entry.unwrap();
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{store}.partial-"))
            {
                let two_hours_ago =
                    std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
                std::fs::File::options()
                    .write(true)
                    .open(entry.path())
                    .unwrap()
                    .set_modified(two_hours_ago)
                    .unwrap();
            }
        }
        let out = env.stdout(&mut env.plan(30, &["--store", &store]));
        assert!(out.contains("planned 30 work items"), "{out}");
    }
    // One written within the hour is left alone, whatever its number says here.
    std::fs::write(env.path("s8.redb.partial-4000000"), b"").unwrap();
    let out = env.stdout(&mut env.plan(30, &["--store", "s8.redb"]));
    assert!(out.contains("planned 30 work items"), "{out}");
    let mut names: Vec<String> = std::fs::read_dir(env.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..9).map(|i| format!("s{i}.redb")).collect();
    expected.push("s8.redb.partial-4000000".into());
    expected.sort();
    assert_eq!(names, expected);
}
