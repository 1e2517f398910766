//! `dgen export` and `dgen import`: round trips, alignment, atomicity, export during a run,
//! and precise errors.

mod common;

use std::time::Duration;

use common::mock::{Fault, MockServer};
use common::{count_in, read_npy, Env};
use predicates::prelude::*;

/// The first occurrence of `from` (in the NPY header) replaced by `to` of the same length.
fn replace_bytes(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

fn read(env: &Env, name: &str) -> Vec<u8> {
    std::fs::read(env.path(name)).unwrap()
}

#[test]
fn run_export_import_export_round_trips_byte_for_byte() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(6);
    env.run(&mock, &["--concurrency", "1"]).assert().success();
    env.dgen()
        .args(["export", "--jsonl", "dialogues.jsonl"])
        .assert()
        .success();

    // A fresh store (planned, then importing), exported again with the imported dialogues.
    env.plan(6, &["--store", "fresh.redb"]).assert().success();
    env.dgen()
        .args([
            "--store",
            "fresh.redb",
            "import",
            "--output_file",
            "generated_dialogues.json",
        ])
        .args([
            "--hash_file",
            "dialogue_hashes.json",
            "--embedding_file",
            "dialogue_embeddings.npy",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 6 dialogues"));
    // Without --include_imported, imported dialogues are not exported again.
    env.dgen()
        .args([
            "--store",
            "fresh.redb",
            "export",
            "--output_file",
            "none.json",
            "--only",
            "dialogues",
        ])
        .assert()
        .success();
    assert!(
        read(&env, "none.json") == b"[]\n",
        "imported dialogues are left out by default"
    );
    let status: serde_json::Value = serde_json::from_str(&env.stdout(env.dgen().args([
        "--store",
        "fresh.redb",
        "status",
        "--json",
    ])))
    .unwrap();
    assert_eq!(status["run"]["imported"], 6);
    env.dgen()
        .args(["--store", "fresh.redb", "export", "--include_imported"])
        .args([
            "--output_file",
            "again.json",
            "--hash_file",
            "again_hashes.json",
        ])
        .args(["--embedding_file", "again.npy", "--jsonl", "again.jsonl"])
        .assert()
        .success();
    for (a, b) in [
        ("again.json", "generated_dialogues.json"),
        ("again_hashes.json", "dialogue_hashes.json"),
        ("again.npy", "dialogue_embeddings.npy"),
        ("again.jsonl", "dialogues.jsonl"),
    ] {
        assert!(read(&env, a) == read(&env, b), "{a} differs from {b}");
    }

    // JSONL import works too, and a second import of the same files adds nothing.
    env.plan(6, &["--store", "third.redb"]).assert().success();
    let import_jsonl = || {
        let mut cmd = env.dgen();
        cmd.args([
            "--store",
            "third.redb",
            "import",
            "--output_file",
            "dialogues.jsonl",
        ])
        .args(["--embedding_file", "dialogue_embeddings.npy"]);
        cmd
    };
    import_jsonl().assert().success();
    import_jsonl().assert().success().stdout(
        predicate::str::contains("imported 0").and(predicate::str::contains("6 already there")),
    );
}

#[test]
fn one_exported_record_matches_its_snapshot() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2);
    env.run(&mock, &["--concurrency", "1"]).assert().success();
    let out = env.export_all();
    let record = serde_json::to_string_pretty(&out.records[0]).unwrap() + "\n";
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/export_record.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &record).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).expect("snapshot exists (UPDATE_SNAPSHOTS=1 writes it)");
    assert_eq!(record, expected);
}

#[test]
fn embedding_rows_belong_to_their_dialogues() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(8);
    env.run(&mock, &["--concurrency", "4"]).assert().success();
    let out = env.export_all();
    // Re-embed every exported dialogue (import computes embeddings when none are given) and
    // compare row by row.
    env.plan(8, &["--store", "re.redb"]).assert().success();
    env.dgen()
        .args([
            "--store",
            "re.redb",
            "import",
            "--output_file",
            "generated_dialogues.json",
        ])
        .assert()
        .success();
    env.dgen()
        .args([
            "--store",
            "re.redb",
            "export",
            "--include_imported",
            "--embedding_file",
            "re.npy",
            "--only",
            "embeddings",
        ])
        .assert()
        .success();
    let again = read_npy(&env.path("re.npy"));
    assert_eq!(again.len(), out.embeddings.len());
    for (i, (a, b)) in out.embeddings.iter().zip(&again).enumerate() {
        let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        assert!(cos > 0.999, "row {i}: cosine {cos}");
    }
    assert_eq!(out.hashes.len(), out.records.len());

    // numpy reads the file.
    assert_eq!(
        numpy_describe(&env.path("dialogue_embeddings.npy")),
        "float32 (8, 384) True"
    );
}

#[test]
fn imported_dialogues_count_for_dedup() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(3);
    env.run(&mock, &["--concurrency", "1"]).assert().success();
    env.export_all();
    // The original script's files: turns without emotions, no provenance.
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&read(&env, "generated_dialogues.json")).unwrap();
    let original: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let turns: Vec<serde_json::Value> = r["turns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| serde_json::json!({"turn_number": t["turn_number"], "utterance": t["utterance"], "intent": t["intent"], "assistant_response": t["assistant_response"]}))
                .collect();
            serde_json::json!({"dialogue_id": r["dialogue_id"], "services": r["services"], "turns": turns,
                "num_lines": r["num_lines"], "user_emotions": r["user_emotions"], "assistant_emotions": r["assistant_emotions"],
                "scenario_category": r["scenario_category"], "generated_scenario": r["generated_scenario"],
                "time_slot": r["time_slot"], "regions": r["regions"], "resolution_status": r["resolution_status"]})
        })
        .collect();
    std::fs::write(
        env.path("original.json"),
        serde_json::to_string_pretty(&original).unwrap(),
    )
    .unwrap();

    env.plan(
        3,
        &[
            "--store",
            "b.redb",
            "--seed",
            "5",
            "--min_turns",
            "3",
            "3",
            "--max_turns",
            "6",
            "6",
        ],
    )
    .assert()
    .success();
    env.dgen()
        .args([
            "--store",
            "b.redb",
            "import",
            "--output_file",
            "original.json",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 3"));
    // The next answer repeats the last dialogue of the first run, which b.redb only knows by import.
    mock.push([Fault::ExactRepeat]);
    env.run(&mock, &["--store", "b.redb", "--concurrency", "1"])
        .assert()
        .success();
    let status = env.status_json_of("b.redb");
    assert_eq!(
        status["run"]["rejections"]["duplicate_exact"], 1,
        "{}",
        status["run"]
    );
}

#[test]
fn bad_import_sets_are_rejected_precisely_and_import_nothing() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(3);
    env.run(&mock, &[]).assert().success();
    env.export_all();
    env.plan(3, &["--store", "b.redb"]).assert().success();
    let import = |args: &[&str]| {
        let mut cmd = env.dgen();
        cmd.args(["--store", "b.redb", "import"]).args(args);
        cmd
    };
    std::fs::write(env.path("two_hashes.json"), r#"["00", "11"]"#).unwrap();
    import(&[
        "--output_file",
        "generated_dialogues.json",
        "--hash_file",
        "two_hashes.json",
    ])
    .assert()
    .failure()
    .stderr(
        predicate::str::contains("two_hashes.json has 2 hashes but")
            .and(predicate::str::contains("3 records")),
    );
    let mut hashes: Vec<String> =
        serde_json::from_slice(&read(&env, "dialogue_hashes.json")).unwrap();
    hashes[1] = "xyz".into();
    std::fs::write(
        env.path("bad_hash.json"),
        serde_json::to_string(&hashes).unwrap(),
    )
    .unwrap();
    import(&[
        "--output_file",
        "generated_dialogues.json",
        "--hash_file",
        "bad_hash.json",
    ])
    .assert()
    .failure()
    .stderr(predicate::str::contains("bad_hash.json row 1"));
    let mut records: Vec<serde_json::Value> =
        serde_json::from_slice(&read(&env, "generated_dialogues.json")).unwrap();
    records[2]["turns"][0]["intent"] = serde_json::json!("");
    std::fs::write(
        env.path("bad_record.json"),
        serde_json::to_string(&records).unwrap(),
    )
    .unwrap();
    import(&[
        "--output_file",
        "bad_record.json",
        "--embedding_file",
        "dialogue_embeddings.npy",
    ])
    .assert()
    .failure()
    .stderr(predicate::str::contains(
        "bad_record.json record 2: turn 1 has no intent",
    ));
    // NPY of the wrong dtype and of the wrong shape.
    let npy = read(&env, "dialogue_embeddings.npy");
    std::fs::write(env.path("f8.npy"), replace_bytes(&npy, b"<f4", b"<f8")).unwrap();
    import(&[
        "--output_file",
        "generated_dialogues.json",
        "--embedding_file",
        "f8.npy",
    ])
    .assert()
    .failure()
    .stderr(predicate::str::contains(
        "f8.npy: dtype <f8, expected float32",
    ));
    std::fs::write(
        env.path("shape.npy"),
        replace_bytes(&npy, b"(3, 384)", b"(3, 100)"),
    )
    .unwrap();
    import(&[
        "--output_file",
        "generated_dialogues.json",
        "--embedding_file",
        "shape.npy",
    ])
    .assert()
    .failure()
    .stderr(predicate::str::contains(
        "shape [3, 100], expected (N, 384)",
    ));
    let status = env.status_json_of("b.redb");
    assert_eq!(status["run"]["dialogues"], 0, "nothing was imported");
}

#[test]
fn export_errors_and_the_nothing_yet_note() {
    let env = Env::new();
    env.plan_for_run(2);
    env.dgen()
        .arg("export")
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to export yet"));
    assert!(!env.path("generated_dialogues.json").exists());
    let mock = MockServer::start();
    env.run(&mock, &[]).assert().success();
    env.dgen()
        .args(["export", "--output_file", "no/such/dir/out.json"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "folder no/such/dir does not exist",
        ));
    std::fs::create_dir(env.path("a_dir")).unwrap();
    env.dgen()
        .args(["export", "--hash_file", "a_dir"])
        .assert()
        .failure();
}

#[test]
fn a_killed_export_leaves_the_previous_files_intact() {
    let env = Env::new();
    env.plan_for_run(2);
    env.dgen()
        .args(["bench-fill", "--dialogues", "40000"])
        .assert()
        .success();
    env.dgen().arg("export").assert().success();
    let before: Vec<Vec<u8>> = [
        "generated_dialogues.json",
        "dialogue_hashes.json",
        "dialogue_embeddings.npy",
    ]
    .iter()
    .map(|f| read(&env, f))
    .collect();
    env.dgen()
        .args(["bench-fill", "--dialogues", "100", "--seed", "8"])
        .assert()
        .success();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dgen"))
        .current_dir(env.dir.path())
        .arg("export")
        .spawn()
        .unwrap();
    // Wait until the export is writing its temporary files, then kill it.
    let started = std::time::Instant::now();
    loop {
        let writing = std::fs::read_dir(env.dir.path())
            .unwrap()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".generated_dialogues.json.tmp-")
            });
        if writing || started.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let after: Vec<Vec<u8>> = [
        "generated_dialogues.json",
        "dialogue_hashes.json",
        "dialogue_embeddings.npy",
    ]
    .iter()
    .map(|f| read(&env, f))
    .collect();
    assert!(
        before == after,
        "the previous files were touched by a killed export"
    );
    // The next export completes and cleans the dead export's temporary files.
    env.dgen().arg("export").assert().success();
    let leftovers = std::fs::read_dir(env.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .count();
    assert_eq!(leftovers, 0);
    assert_eq!(read_npy(&env.path("dialogue_embeddings.npy")).len(), 40_100);
}

#[test]
fn export_and_status_while_a_run_is_going() {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_latency(Duration::from_millis(300));
    env.plan_for_run(16);
    let mut child = env.spawn_run(&mock, &["--concurrency", "2"]);
    let status = env.wait_for_status("two accepted dialogues", |s| count_in(s, "done") >= 2);
    let done_then = count_in(&status, "done");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run is still going"
    );
    let out = env.export_all();
    assert!(!out.records.is_empty());
    assert_eq!(out.records.len(), out.hashes.len());
    assert_eq!(out.records.len(), out.embeddings.len());
    assert!(out.records.len() as u64 >= done_then);
    let status = child.wait().unwrap();
    assert!(status.success());
    assert_eq!(env.export_all().records.len(), 16);
}

/// `numpy.load` of an NPY file: (dtype, shape, C-contiguous), as numpy prints them. The tests
/// need numpy (`pip install numpy`); without it they fail rather than pass unchecked.
fn numpy_describe(path: &std::path::Path) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import numpy,sys; a=numpy.load(sys.argv[1]); print(a.dtype, a.shape, a.flags['C_CONTIGUOUS'])",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "numpy.load failed on {} (is numpy installed? `pip install numpy`): {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn npy_shape_counts_the_rows_written_when_imported_dialogues_are_left_out() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(3);
    env.run(&mock, &["--concurrency", "1"]).assert().success();
    env.export_all();
    // A new store that imports those 3, then generates 4 of its own.
    env.plan_for_run_in("mixed.redb", 4);
    env.dgen()
        .args(["--store", "mixed.redb", "import"])
        .args(["--output_file", "generated_dialogues.json"])
        .args(["--hash_file", "dialogue_hashes.json"])
        .args(["--embedding_file", "dialogue_embeddings.npy"])
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 3 dialogues"));
    env.run(&mock, &["--store", "mixed.redb", "--concurrency", "1"])
        .assert()
        .success();
    for (flags, rows) in [(&[][..], 4usize), (&["--include_imported"][..], 7)] {
        env.dgen()
            .args(["--store", "mixed.redb", "export"])
            .args(flags)
            .args(["--output_file", "m.json", "--hash_file", "m_hashes.json"])
            .args(["--embedding_file", "m.npy"])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "exported {rows} dialogues"
            )));
        let records: Vec<serde_json::Value> =
            serde_json::from_slice(&read(&env, "m.json")).unwrap();
        let hashes: Vec<String> = serde_json::from_slice(&read(&env, "m_hashes.json")).unwrap();
        assert_eq!(records.len(), rows, "{flags:?}");
        assert_eq!(hashes.len(), rows, "{flags:?}");
        assert_eq!(read_npy(&env.path("m.npy")).len(), rows, "{flags:?}");
        assert_eq!(
            numpy_describe(&env.path("m.npy")),
            format!("float32 ({rows}, 384) True"),
            "{flags:?}"
        );
    }
}

/// Regression: `dgen export --jsonl dgen.redb` renamed the export over the store (a run holding
/// it went on writing into the unlinked file), and two outputs with one path replaced each
/// other. Both are refused, with or without a run holding the store, and nothing is written.
#[test]
fn an_output_that_is_the_store_or_another_output_is_refused() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(3);
    env.run(&mock, &[]).assert().success();
    let store = read(&env, "dgen.redb");
    let refused = |args: &[&str], says: &str| {
        env.dgen()
            .arg("export")
            .args(args)
            .assert()
            .failure()
            .stderr(predicate::str::contains(says));
    };
    refused(&["--jsonl", "dgen.redb"], "--jsonl dgen.redb is the store");
    refused(&["--plan_file", "./dgen.redb"], "is the store");
    std::fs::hard_link(env.path("dgen.redb"), env.path("linked.redb")).unwrap();
    refused(
        &["--only", "hashes", "--hash_file", "linked.redb"],
        "is the store",
    );
    // Not written yet, spelled two ways; and the default --output_file named again.
    std::fs::create_dir(env.path("sub")).unwrap();
    refused(
        &["--output_file", "out.json", "--jsonl", "sub/../out.json"],
        "are one file",
    );
    refused(&["--jsonl", "generated_dialogues.json"], "are one file");
    assert_eq!(read(&env, "dgen.redb"), store, "the store is untouched");
    assert!(!env.path("out.json").exists());
    assert!(!env.path("generated_dialogues.json").exists());

    // A run holding the store answers the export, and refuses it the same way.
    let env = Env::new();
    mock.set_latency(Duration::from_millis(300));
    env.plan_for_run(20);
    let mut child = env.spawn_run(&mock, &["--concurrency", "1"]);
    env.wait_for_status("the run going", |s| s["run"]["calls"].as_u64() >= Some(1));
    let abs = env.path("dgen.redb").display().to_string();
    env.dgen()
        .args(["export", "--jsonl", &abs])
        .assert()
        .failure()
        .stderr(predicate::str::contains("is the store"));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run is still going"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The store is whole: it opens and its plan is all there.
    let status = env.status_json();
    assert_eq!(status["total_items"], 20, "{status}");
}
