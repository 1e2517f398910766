//! Stopping and resuming: Ctrl-C (once and twice) and kill -9 at arbitrary moments, then
//! `dgen run` again. Nothing committed may be lost and nothing generated twice.

mod common;

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use common::mock::{Fault, MockServer};
use common::{Env, TURNS};
use predicates::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "dgen did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut s).unwrap();
    s
}

/// Waits until a running run has accepted `n` items.
fn wait_until_done(env: &Env, n: u64) {
    env.wait_for_status(&format!("{n} accepted dialogues"), |s| {
        common::count_in(s, "done") >= n
    });
}

/// (dialogue id -> hash) of everything exported, after checking the three files agree.
fn committed(env: &Env) -> BTreeMap<String, String> {
    if env.state_count("done") == 0 {
        return BTreeMap::new();
    }
    let out = env.export_all();
    assert_eq!(out.records.len(), out.hashes.len());
    assert_eq!(out.records.len(), out.embeddings.len());
    let map: BTreeMap<String, String> = out
        .records
        .iter()
        .zip(&out.hashes)
        .map(|(r, h)| (r["dialogue_id"].as_str().unwrap().to_string(), h.clone()))
        .collect();
    assert_eq!(map.len(), out.records.len(), "dialogue ids are unique");
    let distinct: std::collections::BTreeSet<&String> = out.hashes.iter().collect();
    assert_eq!(distinct.len(), out.hashes.len(), "hashes are unique");
    let rows: std::collections::BTreeSet<Vec<u32>> = out
        .embeddings
        .iter()
        .map(|r| r.iter().map(|x| x.to_bits()).collect())
        .collect();
    assert_eq!(
        rows.len(),
        out.embeddings.len(),
        "embeddings are distinct rows"
    );
    assert_eq!(
        env.state_count("done") as usize,
        out.records.len(),
        "done items = dialogues"
    );
    map
}

#[test]
fn ctrl_c_finishes_in_flight_items_then_resume_completes_without_repeats() {
    stop_gracefully_then_resume("-INT");
}

#[test]
fn sigterm_stops_like_the_first_ctrl_c() {
    stop_gracefully_then_resume("-TERM");
}

fn stop_gracefully_then_resume(sig: &str) {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_latency(Duration::from_millis(250));
    // Enough work (about 10 s) that the signal always lands mid-run.
    env.plan_for_run(80);
    let mut child = env.spawn_run(&mock, &["--concurrency", "4"]);
    wait_until_done(&env, 8);
    signal(&child, sig);
    let status = wait(&mut child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(130));
    let stderr = stderr_of(&mut child);
    assert!(stderr.contains("interrupt"), "{stderr}");

    let first = committed(&env);
    assert!(
        !first.is_empty() && first.len() < 80,
        "{} accepted before the interrupt",
        first.len()
    );
    // In-flight items were allowed to finish: every dialogue call became a committed dialogue.
    assert_eq!(mock.dialogue_calls(), first.len());

    env.run(&mock, &["--concurrency", "4"]).assert().success();
    let all = committed(&env);
    assert_eq!(all.len(), 80);
    for (id, hash) in &first {
        assert_eq!(all.get(id), Some(hash), "{id} survived the interrupt");
    }
    assert_eq!(mock.dialogue_calls(), 80, "no item was generated twice");
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_leaves_a_consistent_store() {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_latency(Duration::from_millis(400));
    env.plan_for_run(60);
    let mut child = env.spawn_run(&mock, &["--concurrency", "4", "--shutdown_timeout", "60"]);
    wait_until_done(&env, 4);
    signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(100));
    signal(&child, "-INT");
    let status = wait(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
    let first = committed(&env);
    assert!(env.state_count("pending") > 0);
    env.run(&mock, &[]).assert().success();
    let all = committed(&env);
    assert_eq!(all.len(), 60);
    for (id, hash) in &first {
        assert_eq!(all.get(id), Some(hash));
    }
}

#[test]
fn kill_9_at_random_moments_loses_nothing_committed() {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_latency(Duration::from_millis(60));
    // 5 % of dialogue answers repeat the previous one exactly, 5 % with one word changed.
    mock.state.lock().unwrap().random = vec![(0.05, Fault::ExactRepeat), (0.05, Fault::NearRepeat)];
    let n = 300;
    env.plan_for_run(n);
    let args = ["--concurrency", "4", "--max_attempts", "10"];
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let kills = 30;
    for _ in 0..kills {
        let mut child = env.spawn_run(&mock, &args);
        std::thread::sleep(Duration::from_millis(rng.random_range(150..900)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let now = committed(&env);
        for (id, hash) in &seen {
            assert_eq!(
                now.get(id),
                Some(hash),
                "{id} was committed before a kill and is gone"
            );
        }
        seen = now;
    }
    assert!(
        (seen.len() as u64) < n,
        "the kills interrupted the run ({} done)",
        seen.len()
    );
    env.run(&mock, &args).assert().success();
    let all = committed(&env);
    assert_eq!(all.len() as u64, n);
    for (id, hash) in &seen {
        assert_eq!(all.get(id), Some(hash));
    }
    assert_eq!(env.state_count("pending"), 0);
    let out = env.export_all();
    assert_no_near_duplicates(&out.embeddings, 0.9);
    let status = env.status_json();
    let rejections = &status["run"]["rejections"];
    let duplicates =
        ["duplicate_exact", "duplicate_semantic"].map(|k| rejections[k].as_u64().unwrap_or(0));
    assert!(
        duplicates.iter().all(|d| *d > 0),
        "the mock's repeats were caught: {rejections}"
    );
    // Each kill can waste at most the calls in flight (4), never committed work.
    let attempts = n + duplicates.iter().sum::<u64>();
    let calls = mock.dialogue_calls() as u64;
    assert!(
        calls >= attempts && calls <= attempts + 4 * kills,
        "{calls} dialogue calls for {attempts} committed attempts"
    );
}

/// No two stored embeddings are as close as the plan's near-duplicate threshold.
fn assert_no_near_duplicates(rows: &[Vec<f32>], threshold: f32) {
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[..i] {
            let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            assert!(cos < threshold, "rows {i} and another have cosine {cos}");
        }
    }
}

#[test]
fn lowered_raised_and_retried_attempt_limits_agree_between_run_and_status() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(4);
    // One attempt each, then the breaker stops the run: 4 rejected items with 1 attempt.
    mock.set_always(Some(Fault::Malformed));
    env.run(
        &mock,
        &["--concurrency", "1", "--max_consecutive_failures", "4"],
    )
    .assert()
    .failure();
    assert_eq!(env.state_count("rejected"), 4);

    // A lowered limit: those items are out of attempts, for the run and for status alike.
    mock.set_always(None);
    env.run(&mock, &["--max_attempts", "1"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("0 accepted, 4 failed")
                .and(predicate::str::contains("--retry_failed")),
        );
    assert_eq!(env.state_count("failed"), 4);
    assert_eq!(env.state_count("rejected"), 0);
    let status = env.status_json();
    assert_eq!(status["run"]["failures"]["unclosed_tag"], 4, "{status}");

    // --retry_failed with --max_attempts 2: two more attempts each (limit 3, not 2); the first
    // six answers are malformed, so two items fail again and two are accepted on attempt 3.
    mock.push(std::iter::repeat_n(Fault::Malformed, 6));
    env.run(
        &mock,
        &[
            "--concurrency",
            "1",
            "--max_attempts",
            "2",
            "--retry_failed",
        ],
    )
    .assert()
    .success()
    .stderr(predicate::str::contains("2/4 accepted, 2 failed"));
    assert_eq!(env.state_count("failed"), 2);

    // A raised limit gives the two failed items their fourth attempt.
    env.run(&mock, &["--max_attempts", "4"]).assert().success();
    assert_eq!(env.state_count("done"), 4);
    let status = env.status_json();
    assert_eq!(status["run"]["failures"], serde_json::json!({}), "{status}");
    let mut attempts: Vec<u64> = env
        .export_all()
        .records
        .iter()
        .map(|r| r["attempt"].as_u64().unwrap())
        .collect();
    attempts.sort();
    assert_eq!(attempts, [2, 2, 3, 3], "0-based attempt of each record");
}

#[test]
fn plan_force_starts_the_counters_afresh() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(3);
    mock.set_always(Some(Fault::Malformed));
    env.run(&mock, &["--max_attempts", "1"]).assert().success();
    let before = env.status_json();
    assert_eq!(before["run"]["calls"], 6, "{before}");
    env.plan(3, &[&TURNS[..], &["--seed", "5", "--force"]].concat())
        .assert()
        .success();
    let after = env.status_json();
    assert_eq!(after["run"]["calls"], 0, "{after}");
    assert_eq!(after["run"]["prompt_tokens"], 0, "{after}");
    assert_eq!(after["run"]["rejections"], serde_json::json!({}), "{after}");
    assert_eq!(after["run"]["failures"], serde_json::json!({}), "{after}");
}

#[test]
fn calls_of_an_attempt_killed_in_flight_are_billed() {
    let env = Env::new();
    let mock = MockServer::start();
    // Scenario calls answer at once; dialogue calls hang until the kill.
    mock.state.lock().unwrap().dialogue_latency = Duration::from_secs(120);
    env.plan_for_run(4);
    let mut child = env.spawn_run(&mock, &["--concurrency", "4"]);
    let started = Instant::now();
    while mock.dialogue_calls() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no dialogue calls"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The four scenario calls have returned; their tokens are committed with the next batch.
    let billed = || env.status_json()["run"]["calls"].as_u64().unwrap();
    while billed() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the scenario calls were never billed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let status = env.status_json();
    assert_eq!(status["run"]["calls"], 4, "{status}");
    assert!(
        status["run"]["prompt_tokens"].as_u64().unwrap() > 0,
        "{status}"
    );
    assert_eq!(env.state_count("pending"), 4);
}
