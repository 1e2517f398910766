//! Stopping and resuming: Ctrl-C (once and twice) and kill -9 at arbitrary moments, then
//! `dgen run` again. Nothing committed may be lost and nothing generated twice.

mod common;

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use common::mock::MockServer;
use common::Env;

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
    std::thread::sleep(Duration::from_millis(2500));
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
    std::thread::sleep(Duration::from_millis(2500));
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
    mock.set_latency(Duration::from_millis(150));
    let n = 120;
    env.plan_for_run(n);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let pauses = [900u64, 350, 1300, 500, 1100];
    for pause in pauses {
        let mut child = env.spawn_run(&mock, &["--concurrency", "4"]);
        std::thread::sleep(Duration::from_millis(pause));
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
    env.run(&mock, &["--concurrency", "4"]).assert().success();
    let all = committed(&env);
    assert_eq!(all.len() as u64, n);
    for (id, hash) in &seen {
        assert_eq!(all.get(id), Some(hash));
    }
    assert_eq!(env.state_count("pending"), 0);
    // Each kill can waste at most the calls in flight (4), never committed work.
    let calls = mock.dialogue_calls() as u64;
    assert!(
        calls >= n && calls <= n + 4 * pauses.len() as u64,
        "{calls} dialogue calls"
    );
}
