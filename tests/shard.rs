//! Shards and the global merge: `dgen plan --shard I/K` (or the scheduler's variables), runs of
//! each shard against the mock with real embeddings, `dgen merge` with cross-shard duplicates,
//! re-runs and kills of the merge, refused merges, and the top-up run on the merged store.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::mock::{Fault, MockServer};
use common::{count_in, Env, TURNS};
use predicates::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// `dgen plan` of `n` items into `store` for runs, with extra flags (the shard).
fn plan_into(env: &Env, store: &str, n: u64, extra: &[&str]) -> assert_cmd::Command {
    env.plan(n, &[&["--store", store][..], &TURNS[..], extra].concat())
}

fn index_of(line: &str) -> u64 {
    serde_json::from_str::<Value>(line).unwrap()["index"]
        .as_u64()
        .unwrap()
}

/// The store's dialogues as `dgen export` writes them, and their hashes.
fn exported(env: &Env, store: &str) -> (Vec<Value>, Vec<String>) {
    let (records, hashes, npy) = (
        env.path(&format!("{store}.json")),
        env.path(&format!("{store}.hashes.json")),
        env.path(&format!("{store}.npy")),
    );
    env.dgen()
        .args(["--store", store, "export", "--output_file"])
        .arg(&records)
        .arg("--hash_file")
        .arg(&hashes)
        .arg("--embedding_file")
        .arg(&npy)
        .assert()
        .success();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    (
        serde_json::from_str(&read(&records)).unwrap(),
        serde_json::from_str(&read(&hashes)).unwrap(),
    )
}

fn merge(env: &Env, shards: &[&str], into: &str) -> assert_cmd::Command {
    let mut cmd = env.dgen();
    cmd.arg("merge").args(shards).args(["--into", into]);
    cmd
}

fn shard_names(k: u32) -> Vec<String> {
    (0..k).map(|i| format!("s{i}.redb")).collect()
}

fn refs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

#[test]
fn shard_plans_together_are_the_full_plan_item_for_item() {
    let env = Env::new();
    let n = 11;
    let full = env.fingerprint(&mut plan_into(&env, "full.redb", n, &[]));
    let full_lines = env.plan_lines("full.redb");
    assert_eq!(full_lines.len() as u64, n);
    let k = 3u32;
    let mut union: Vec<String> = Vec::new();
    let mut shard_prints = BTreeSet::new();
    for i in 0..k {
        let store = format!("s{i}.redb");
        // Both spellings of the flag.
        let flags: Vec<String> = if i == 2 {
            vec![
                "--shard_index".into(),
                i.to_string(),
                "--shard_count".into(),
                k.to_string(),
            ]
        } else {
            vec!["--shard".into(), format!("{i}/{k}")]
        };
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = env.stdout(&mut plan_into(&env, &store, n, &flags));
        assert!(
            out.contains(&format!(
                "shard {i}/{k} of a plan of {n} items (full plan fingerprint: {full})"
            )),
            "{out}"
        );
        let print = out
            .lines()
            .find_map(|l| l.strip_prefix("plan fingerprint: "))
            .unwrap()
            .to_string();
        assert_ne!(print, full, "a shard store has a fingerprint of its own");
        shard_prints.insert(print);
        let lines = env.plan_lines(&store);
        let expected = (0..n).filter(|x| x % u64::from(k) == u64::from(i)).count();
        assert_eq!(lines.len(), expected, "shard {i}");
        for line in &lines {
            assert_eq!(index_of(line) % u64::from(k), u64::from(i), "{line}");
        }
        let status = env.status_json_of(&store);
        assert_eq!(status["shard"]["index"], i);
        assert_eq!(status["shard"]["count"], k);
        assert_eq!(status["shard"]["full_fingerprint"], full.as_str());
        union.extend(lines);
    }
    assert_eq!(shard_prints.len(), k as usize);
    union.sort_by_key(|l| index_of(l));
    assert_eq!(
        union, full_lines,
        "the shards' items are the full plan's, byte for byte"
    );
    // Planning a shard again is a no-op; another shard into the same store is refused.
    let again = env.stdout(&mut plan_into(&env, "s1.redb", n, &["--shard", "1/3"]));
    assert!(again.contains("already holds this plan"), "{again}");
    plan_into(&env, "s1.redb", n, &["--shard", "2/3"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already holds a different plan"));
}

/// Scheduler variables and flags `dgen plan` must refuse, with the message it must give.
type Refused = (
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
    &'static str,
);

#[test]
fn scheduler_variables_choose_the_shard() {
    let env = Env::new();
    let n = 10;
    let full = env.fingerprint(&mut plan_into(&env, "full.redb", n, &[]));
    let shard_of = |store: &str| {
        let s = env.status_json_of(store);
        (
            s["shard"]["index"].as_u64().unwrap(),
            s["shard"]["count"].as_u64().unwrap(),
        )
    };
    // A Slurm array submitted as --array=0-2.
    plan_into(&env, "slurm.redb", n, &[])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .env("SLURM_ARRAY_TASK_MIN", "0")
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "planning shard 1/3 (from SLURM_ARRAY_TASK_ID",
        ));
    assert_eq!(shard_of("slurm.redb"), (1, 3));
    assert!(env
        .plan_lines("slurm.redb")
        .iter()
        .all(|l| index_of(l) % 3 == 1));
    // A Kubernetes Indexed Job: the index from the variable, the count from the flag.
    plan_into(&env, "k8s.redb", n, &["--shard_count", "4"])
        .env("JOB_COMPLETION_INDEX", "3")
        .assert()
        .success()
        .stderr(predicate::str::contains("from JOB_COMPLETION_INDEX"));
    assert_eq!(shard_of("k8s.redb"), (3, 4));
    assert!(env
        .plan_lines("k8s.redb")
        .iter()
        .all(|l| index_of(l) % 4 == 3));
    // Task 3 of 4 run again alone (sbatch --array=3): Slurm says the array has one task, from
    // 3; the count comes from DGEN_SHARD_COUNT, the index is the task id. (It used to plan
    // shard 0/1, the whole plan.)
    const RERUN: [(&str, &str); 4] = [
        ("SLURM_ARRAY_TASK_ID", "3"),
        ("SLURM_ARRAY_TASK_COUNT", "1"),
        ("SLURM_ARRAY_TASK_MIN", "3"),
        ("SLURM_ARRAY_TASK_MAX", "3"),
    ];
    let mut cmd = plan_into(&env, "rerun.redb", n, &[]);
    cmd.envs(RERUN).env("DGEN_SHARD_COUNT", "4");
    cmd.assert().success().stderr(predicate::str::contains(
        "planning shard 3/4 (from SLURM_ARRAY_TASK_ID and --shard_count/DGEN_SHARD_COUNT)",
    ));
    assert_eq!(shard_of("rerun.redb"), (3, 4));
    assert_eq!(
        env.plan_lines("rerun.redb"),
        env.plan_lines("k8s.redb"),
        "the same shard as index 3 of an Indexed Job of 4"
    );
    // --shard 0/1 plans the whole plan inside an array.
    let whole = env.fingerprint(
        plan_into(&env, "whole.redb", n, &["--shard", "0/1"])
            .env("SLURM_ARRAY_TASK_ID", "1")
            .env("SLURM_ARRAY_TASK_COUNT", "3"),
    );
    assert_eq!(whole, full);

    let refused: [Refused; 8] = [
        (
            &[("JOB_COMPLETION_INDEX", "1")],
            &[],
            "JOB_COMPLETION_INDEX=1 is set (a Kubernetes Indexed Job) but --shard_count is not",
        ),
        (
            &[("JOB_COMPLETION_INDEX", "4")],
            &["--shard_count", "4"],
            "shard index 4 is outside 0..4",
        ),
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
            &[],
            "submit the array as --array=0-2",
        ),
        (
            &[("SLURM_ARRAY_TASK_ID", "1")],
            &[],
            "SLURM_ARRAY_TASK_ID=1 is set but SLURM_ARRAY_TASK_COUNT is not",
        ),
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "8"),
                ("SLURM_ARRAY_TASK_MAX", "7"),
            ],
            &["--shard_count", "4"],
            "this Slurm array reaches task 7 but there are 4 shards",
        ),
        // The rerun without the count: refused, not the whole plan.
        (
            &RERUN,
            &[],
            "one task of a larger array run again (sbatch --array=3) cannot tell how many shards there are; set DGEN_SHARD_COUNT=K",
        ),
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_MAX", "3"),
            ],
            &[],
            "this Slurm array's 3 tasks are not numbered 0 to 2",
        ),
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
                ("JOB_COMPLETION_INDEX", "1"),
            ],
            &[],
            "the shard is ambiguous",
        ),
    ];
    for (vars, flags, message) in refused {
        let mut cmd = plan_into(&env, "refused.redb", n, flags);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.assert()
            .failure()
            .stderr(predicate::str::contains(message));
        assert!(
            !env.path("refused.redb").exists(),
            "{message}: nothing written"
        );
    }
    plan_into(&env, "refused.redb", n, &["--shard", "3/3"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("outside 0..3"));
    plan_into(&env, "refused.redb", 2, &["--shard", "0/3"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("use at most 2 shards"));
}

/// Plans `k` shards of `n` items and runs each against `mock`, one request at a time so the
/// mock's repeat faults meet the previous shard's last answer. Before shard 1 the first
/// dialogue repeats the last answer exactly, before shard 2 with one word changed: one exact
/// and one near duplicate across shards, invisible to each shard's own dedup.
fn run_shards(env: &Env, mock: &MockServer, n: u64, k: u32) -> Vec<String> {
    let names = shard_names(k);
    for (i, store) in names.iter().enumerate() {
        plan_into(env, store, n, &["--shard", &format!("{i}/{k}")])
            .assert()
            .success();
        match i {
            1 => mock.push([Fault::ExactRepeat]),
            2 => mock.push([Fault::NearRepeat]),
            _ => {}
        }
        env.run(mock, &["--store", store, "--concurrency", "1"])
            .assert()
            .success();
        let status = env.status_json_of(store);
        assert_eq!(
            count_in(&status, "done"),
            (0..n).filter(|x| x % u64::from(k) == i as u64).count() as u64,
            "shard {i} finished on its own: {status}"
        );
    }
    names
}

/// What the hash covers: each turn's utterance, intent and reply (the emotions come from the
/// item).
fn turns(record: &Value) -> Vec<[String; 3]> {
    record["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            ["utterance", "intent", "assistant_response"]
                .map(|k| t[k].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn merge_drops_cross_shard_duplicates_and_a_run_tops_up_to_n() {
    let env = Env::new();
    let mock = MockServer::start();
    let n = 9;
    let names = run_shards(&env, &mock, n, 3);
    let shard_records: Vec<Vec<Value>> = names.iter().map(|s| exported(&env, s).0).collect();
    let out = env.stdout(&mut merge(&env, &refs(&names), "all.redb"));
    assert!(
        out.contains("merged 3 shards into all.redb: 7 dialogues; 2 cross-shard duplicates dropped (1 exact, 1 near)"),
        "{out}"
    );
    assert!(
        out.contains("exact duplicate of a stored dialogue"),
        "{out}"
    );
    assert!(out.contains("near-duplicate: cosine"), "{out}");
    assert!(out.contains("2 items are still to generate"), "{out}");

    let status = env.status_json_of("all.redb");
    assert_eq!(count_in(&status, "done"), 7, "{status}");
    assert_eq!(count_in(&status, "pending"), 2, "{status}");
    assert_eq!(status["merged_shards"], 3);
    assert!(
        status.get("shard").is_none(),
        "the merged store is not a shard"
    );
    // Counters add up: every shard's calls and tokens are in the merged store.
    let shard_calls: u64 = names
        .iter()
        .map(|s| env.status_json_of(s)["run"]["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(status["run"]["calls"].as_u64().unwrap(), shard_calls);

    // The dropped ones are shard 1's and shard 2's first dialogues: the first repeats
    // shard 0's last word for word.
    let (merged, hashes) = exported(&env, "all.redb");
    assert_eq!(merged.len(), 7);
    let merged_ids: BTreeSet<&str> = merged
        .iter()
        .map(|r| r["dialogue_id"].as_str().unwrap())
        .collect();
    let dropped: Vec<(usize, &Value)> = shard_records
        .iter()
        .enumerate()
        .flat_map(|(i, rs)| rs.iter().map(move |r| (i, r)))
        .filter(|(_, r)| !merged_ids.contains(r["dialogue_id"].as_str().unwrap()))
        .collect();
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    assert_eq!(dropped[0].0, 1);
    assert_eq!(turns(dropped[0].1), turns(shard_records[0].last().unwrap()));
    assert_eq!(dropped[1].0, 2);
    assert_ne!(turns(dropped[1].1), turns(shard_records[1].last().unwrap()));
    // Kept in shard then item order, with their provenance and usage.
    let expected: Vec<&Value> = shard_records
        .iter()
        .flatten()
        .filter(|r| merged_ids.contains(r["dialogue_id"].as_str().unwrap()))
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort_by_key(|r| r["dialogue_id"].as_str().unwrap().to_string());
    let mut merged_sorted: Vec<&Value> = merged.iter().collect();
    merged_sorted.sort_by_key(|r| r["dialogue_id"].as_str().unwrap().to_string());
    assert_eq!(
        merged_sorted, expected_sorted,
        "records carried over unchanged"
    );
    assert_eq!(hashes.iter().collect::<BTreeSet<_>>().len(), 7);

    // The merged store is an ordinary store: report works, and a run tops it up to N.
    env.dgen()
        .args(["--store", "all.redb", "report"])
        .assert()
        .success();
    env.run(&mock, &["--store", "all.redb", "--concurrency", "1"])
        .assert()
        .success();
    let status = env.status_json_of("all.redb");
    assert_eq!(count_in(&status, "done"), n, "{status}");
    let (records, hashes) = exported(&env, "all.redb");
    assert_eq!(records.len() as u64, n);
    assert_eq!(hashes.iter().collect::<BTreeSet<_>>().len() as u64, n);
    // The two regenerated items kept counting attempts, so they were re-drawn.
    let redone: Vec<&Value> = records
        .iter()
        .filter(|r| !merged_ids.contains(r["dialogue_id"].as_str().unwrap()))
        .collect();
    assert_eq!(redone.len(), 2);
    for r in redone {
        assert!(r["attempt"].as_u64().unwrap() >= 1, "{r}");
        assert_ne!(turns(r), turns(dropped[0].1));
    }
}

#[test]
fn merge_is_idempotent_and_a_killed_merge_goes_on_to_the_same_result() {
    let env = Env::new();
    let mock = MockServer::start();
    let names = run_shards(&env, &mock, 24, 3);
    let shards = refs(&names);
    let first = env.stdout(&mut merge(&env, &shards, "ref.redb"));
    let reference = exported(&env, "ref.redb");
    assert_eq!(reference.0.len(), 22, "{first}");

    // Merging the same shards again adds nothing and reports the same totals.
    let again = env.stdout(&mut merge(&env, &shards, "ref.redb"));
    assert!(
        again.contains("merged before (8 dialogues kept); skipped"),
        "{again}"
    );
    assert_eq!(first.lines().last(), again.lines().last());
    assert_eq!(exported(&env, "ref.redb"), reference);
    // Shards given in another order merge in shard order all the same.
    let reversed: Vec<&str> = shards.iter().rev().copied().collect();
    env.stdout(&mut merge(&env, &reversed, "reversed.redb"));
    assert_eq!(exported(&env, "reversed.redb"), reference);

    // kill -9 at random moments of a merge that commits every dialogue on its own.
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let bin = assert_cmd::cargo::cargo_bin("dgen");
    for _ in 0..12 {
        let mut child = std::process::Command::new(&bin)
            .current_dir(env.dir.path())
            .arg("merge")
            .args(&shards)
            .args(["--into", "crash.redb", "--chunk", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(5..300)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    env.stdout(&mut merge(&env, &shards, "crash.redb"));
    assert_eq!(exported(&env, "crash.redb"), reference);
    let (a, b) = (
        env.status_json_of("ref.redb"),
        env.status_json_of("crash.redb"),
    );
    for key in ["states", "run"] {
        let strip = |v: &Value| {
            let mut v = v[key].clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("dialogues_per_second");
                o.remove("eta_seconds");
            }
            v
        };
        assert_eq!(strip(&a), strip(&b), "{key}");
    }
}

#[test]
fn merges_of_mismatched_shards_are_refused() {
    let env = Env::new();
    let n = 6;
    for (store, extra) in [
        ("a0.redb", vec!["--shard", "0/2"]),
        ("a1.redb", vec!["--shard", "1/2"]),
        ("seed7.redb", vec!["--shard", "1/2", "--seed", "7"]),
        ("b1.redb", vec!["--shard", "1/3"]),
        ("whole.redb", vec![]),
    ] {
        plan_into(&env, store, n, &extra).assert().success();
    }
    let cases: [(&[&str], &str); 5] = [
        (&["a0.redb", "seed7.redb"], "are shards of different plans"),
        (
            &["a0.redb", "a1.redb", "a1.redb"],
            "are both shard 1/2: pass each shard once",
        ),
        (&["a0.redb"], "shard 1/2 missing"),
        (&["a0.redb", "b1.redb"], "the plan was split two ways"),
        (&["a0.redb", "whole.redb"], "is not a shard store"),
    ];
    for (shards, message) in cases {
        merge(&env, shards, "all.redb")
            .assert()
            .failure()
            .stderr(predicate::str::contains(message));
        assert!(!env.path("all.redb").exists(), "{message}: nothing written");
    }
    // Into a store that holds something else, or into a shard.
    merge(&env, &["a0.redb", "a1.redb"], "whole.redb")
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a merge of these shards"));
    merge(&env, &["a0.redb", "a1.redb"], "a1.redb")
        .assert()
        .failure()
        .stderr(predicate::str::contains("is one of the shards"));
    // The right pair merges, and the merged plan is the whole plan.
    env.stdout(&mut merge(&env, &["a1.redb", "a0.redb"], "all.redb"));
    assert_eq!(env.plan_lines("all.redb"), env.plan_lines("whole.redb"));
    assert_eq!(
        env.status_json_of("all.redb")["plan_fingerprint"],
        env.status_json_of("whole.redb")["plan_fingerprint"]
    );
}

/// The global `--store` names the merged store when `--into` is absent (`dgen merge` used to
/// ignore it); the two naming different files are refused, and nothing is written.
#[test]
fn merge_takes_the_global_store_as_the_merged_store_and_refuses_another_into() {
    let env = Env::new();
    for (store, extra) in [
        ("a0.redb", vec!["--shard", "0/2"]),
        ("a1.redb", vec!["--shard", "1/2"]),
        ("whole.redb", vec![]),
    ] {
        plan_into(&env, store, 6, &extra).assert().success();
    }
    let shards = ["merge", "a0.redb", "a1.redb"];
    env.dgen()
        .args(["--store", "both.redb"])
        .args(shards)
        .args(["--into", "other.redb"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "--store both.redb and --into other.redb name two different merged stores; pass one of them",
        ));
    assert!(!env.path("both.redb").exists() && !env.path("other.redb").exists());

    let out = env.stdout(env.dgen().args(["--store", "all.redb"]).args(shards));
    assert!(out.contains("merged 2 shards into all.redb"), "{out}");
    assert_eq!(env.plan_lines("all.redb"), env.plan_lines("whole.redb"));
    // One file under both names is one merged store.
    env.dgen()
        .args(["--store", "./same.redb"])
        .args(shards)
        .args(["--into", "same.redb"])
        .assert()
        .success();
    assert_eq!(env.plan_lines("same.redb"), env.plan_lines("whole.redb"));
}

#[test]
fn a_shard_that_grew_after_its_merge_is_named_and_not_taken_again() {
    let env = Env::new();
    let mock = MockServer::start();
    let names = run_shards(&env, &mock, 6, 2);
    let shards = refs(&names);
    env.stdout(&mut merge(&env, &shards, "all.redb"));
    let before = exported(&env, "all.redb");
    assert_eq!(
        before.0.len(),
        5,
        "shard 1's first dialogue repeats shard 0's last"
    );
    // Shard 1's dialogues imported into shard 0 after the merge: the one it shares with shard
    // 0 is skipped, two are new.
    exported(&env, "s1.redb");
    env.dgen()
        .args(["--store", "s0.redb", "import", "--output_file"])
        .arg(env.path("s1.redb.json"))
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 2 dialogues"));
    merge(&env, &shards, "all.redb")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "merged before (3 dialogues kept); skipped",
        ))
        .stderr(predicate::str::contains(
            "s0.redb holds 5 dialogues now, 3 when it was merged",
        ));
    assert_eq!(exported(&env, "all.redb"), before);
}

/// A shard Job that ran `dgen run --batch` without `--wait` completes after one pass, with its
/// batches still at the provider. The merge used to take their items as pending, and the
/// top-up run bought them online while the batches ran; now such a shard is refused by name,
/// nothing is written, and once its batches are collected the merge goes on.
#[test]
fn a_shard_with_batches_in_flight_is_refused_by_name_until_they_are_collected() {
    let env = Env::new();
    let mock = MockServer::start();
    let names = shard_names(2);
    for (i, store) in names.iter().enumerate() {
        plan_into(&env, store, 6, &["--shard", &format!("{i}/2")])
            .assert()
            .success();
    }
    env.run(&mock, &["--store", "s0.redb"]).assert().success();
    env.run(&mock, &["--store", "s1.redb", "--batch"])
        .assert()
        .success()
        .stderr(predicate::str::contains("batches in flight"));
    assert_eq!(mock.batches(|b| b.batches.len()), 1);

    merge(&env, &refs(&names), "all.redb")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "not merged: provider batches are in flight in these shards",
        ))
        .stderr(predicate::str::contains(
            "shard 1/2 (s1.redb): 3 requests in 1 batch in flight (#0 scenario",
        ))
        .stderr(predicate::str::contains("shard 0/2").not())
        .stderr(predicate::str::contains(
            "run `dgen --store SHARD.redb run --batch --wait`",
        ));
    assert!(!env.path("all.redb").exists(), "nothing written");

    env.run(
        &mock,
        &[
            "--store",
            "s1.redb",
            "--batch",
            "--wait",
            "--poll_interval",
            "0.05",
        ],
    )
    .assert()
    .success();
    env.stdout(&mut merge(&env, &refs(&names), "all.redb"));
    let status = env.status_json_of("all.redb");
    assert_eq!(count_in(&status, "done"), 6, "{status}");
    // Shard 1's items came from its batches: the top-up has nothing to buy.
    let calls = mock.requests().len();
    env.run(&mock, &["--store", "all.redb"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to do"));
    assert_eq!(mock.requests().len(), calls);
}
