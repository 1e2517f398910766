//! The store failing under a run: the real cause is reported, the run exits non-zero, what was
//! committed stays, and a later run on a healthy file system continues.

mod common;

use std::collections::BTreeSet;

use common::mock::MockServer;
use common::Env;

/// Dialogue ids in the store, read through an export.
fn committed_ids(env: &Env) -> BTreeSet<String> {
    if env.state_count("done") == 0 {
        return BTreeSet::new();
    }
    env.export_all()
        .records
        .iter()
        .map(|r| r["dialogue_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_full_disk_names_the_cause_keeps_committed_work_and_a_later_run_continues() {
    let env = Env::new();
    let mock = MockServer::start();
    let n = 250;
    env.plan_for_run(n);
    let size = std::fs::metadata(env.path("dgen.redb")).unwrap().len();
    // A file-size limit (in KiB blocks) a little above the planned store: some batches fit,
    // then a commit fails with EFBIG, as it would with ENOSPC on a full disk.
    let limit = size / 1024 + 640;
    let out = under_file_limit(
        &env,
        limit,
        &format!(
            "run --base_url {} --retry_base_ms 20 --concurrency 8",
            mock.url
        ),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("committing to the store dgen.redb failed")
            && stderr.contains("File too large")
            && stderr.contains("run `dgen run` again"),
        "{stderr}"
    );
    assert!(!stderr.contains("stopped unexpectedly"), "{stderr}");

    let before = committed_ids(&env);
    assert!(
        !before.is_empty() && (before.len() as u64) < n,
        "{} dialogues committed before the limit",
        before.len()
    );
    env.run(&mock, &["--concurrency", "8"]).assert().success();
    let after = committed_ids(&env);
    assert_eq!(after.len() as u64, n);
    assert!(
        before.is_subset(&after),
        "everything committed before is kept"
    );
}

#[test]
fn a_full_disk_under_dgen_judge_stops_the_pass_instead_of_judging_everything_unsaved() {
    let env = Env::new();
    let mock = MockServer::start();
    let n = 120;
    env.plan_for_run(n);
    env.run(&mock, &["--concurrency", "8"]).assert().success();
    let size = std::fs::metadata(env.path("dgen.redb")).unwrap().len();
    // No room to grow: the pass's first commits fail with EFBIG, as with ENOSPC.
    let limit = size / 1024;
    mock.set_latency(std::time::Duration::from_millis(20));
    let out = under_file_limit(
        &env,
        limit,
        &format!(
            "judge --judge_base_url {} --retry_base_ms 20 --concurrency 2",
            mock.url
        ),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("committing judge scores to dgen.redb failed")
            && stderr.contains("File too large"),
        "{stderr}"
    );
    let scored = env.status_json()["metrics"]["judge"]["judged"]
        .as_u64()
        .unwrap_or(0);
    let calls = mock.judge_calls() as u64;
    assert!(
        calls < n / 2,
        "{calls} judge calls for {n} dialogues, {scored} scores committed: the pass went on after its writer failed"
    );
}

/// `dgen ARGS` in the test's folder with files limited to `limit_kib` KiB (`ulimit -f`), no
/// key in the environment.
fn under_file_limit(env: &Env, limit_kib: u64, args: &str) -> std::process::Output {
    let dgen = assert_cmd::cargo::cargo_bin("dgen");
    std::process::Command::new("sh")
        .current_dir(env.dir.path())
        .arg("-c")
        .arg(format!(
            "ulimit -f {limit_kib}; exec '{}' {args}",
            dgen.display()
        ))
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}
