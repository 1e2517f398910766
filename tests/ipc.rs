//! `dgen export` and `dgen status` while a run holds the store: they ask the run over a Unix
//! socket beside the store, which only the store owner's processes may use. Nothing planted in
//! the store's folder steers the run, a killed client leaves nothing behind for a later run, and
//! a store held by anything else gets a clear answer at once.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::mock::MockServer;
use common::{read_npy, Env};
use predicates::prelude::*;

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the run listens on its socket (a connection, not a status call: a reader that
/// opens the store at the moment the run starts would keep the run out).
fn wait_for_socket(env: &Env, child: &mut Child) {
    wait_until("the run's socket", Duration::from_secs(60), || {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::os::unix::net::UnixStream::connect(env.path("dgen.redb.sock")).is_ok()
    });
}

/// A run over a store holding `fill` more dialogues, and an export to `output` asked of it.
fn run_and_export(env: &Env, mock: &MockServer, fill: u64, output: &str) -> (Child, Child) {
    env.dgen()
        .args(["bench-fill", "--dialogues", &fill.to_string()])
        .assert()
        .success();
    let mut run = env.spawn_run(mock, &["--concurrency", "2"]);
    wait_for_socket(env, &mut run);
    let client = std::process::Command::new(assert_cmd::cargo::cargo_bin("dgen"))
        .current_dir(env.dir.path())
        .args(["export", "--output_file", output])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (run, client)
}

fn sigterm(child: &Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn done_count(status: &serde_json::Value) -> u64 {
    status["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["state"] == "done")
        .unwrap()["count"]
        .as_u64()
        .unwrap()
}

/// Holds the store the way another writer would (not a `dgen run`), until dropped.
fn hold_store(path: &Path) -> redb::Database {
    redb::Database::open(path).unwrap()
}

#[test]
fn export_during_a_run_of_2000_items_is_whole_and_aligned() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2000);
    // Dialogues already in the store make the export long while the run keeps committing.
    env.dgen()
        .args(["bench-fill", "--dialogues", "20000"])
        .assert()
        .success();
    let mut child = env.spawn_run(&mock, &["--concurrency", "8"]);
    wait_for_socket(&env, &mut child);
    wait_until("a few dialogues", Duration::from_secs(120), || {
        done_count(&env.status_json()) >= 5
    });
    let out = env.export_all();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run is still going"
    );
    assert!(out.records.len() >= 20_005);
    assert_eq!(out.records.len(), out.hashes.len());
    assert_eq!(out.records.len(), out.embeddings.len());
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let after = env.export_all();
    assert!(after.records.len() >= out.records.len());
    assert_eq!(
        read_npy(&env.path("dialogue_embeddings.npy")).len(),
        after.records.len()
    );
}

#[test]
fn planted_request_files_and_symlinks_do_not_steer_the_run() {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_latency(Duration::from_millis(300));
    env.plan_for_run(6);
    let planted = env.path("planted.json");
    let victim = env.path("victim.txt");
    std::fs::write(&victim, "keep").unwrap();
    let request = serde_json::json!({"Export": {
        "output_file": planted, "hash_file": env.path("planted_hashes.json"),
        "embedding_file": env.path("planted.npy"), "jsonl": null, "only": null,
        "include_imported": false, "plan_file": null}});
    std::fs::write(env.path("dgen.redb.request-1-1.json"), request.to_string()).unwrap();
    std::os::unix::fs::symlink(&victim, env.path("dgen.redb.response-1-1.json.tmp")).unwrap();
    std::os::unix::fs::symlink(&victim, env.path("dgen.redb.sock")).unwrap();
    let mut child = env.spawn_run(&mock, &["--concurrency", "2"]);
    wait_for_socket(&env, &mut child);
    wait_until("a dialogue", Duration::from_secs(60), || {
        done_count(&env.status_json()) >= 1
    });
    env.export_all();
    // A connection that never sends a request does not hold up the run's exit.
    let silent = std::os::unix::net::UnixStream::connect(env.path("dgen.redb.sock")).unwrap();
    wait_until("the run to finish", Duration::from_secs(90), || {
        child.try_wait().unwrap().is_some()
    });
    drop(silent);
    assert!(child.wait().unwrap().success());
    assert!(!planted.exists(), "a planted request was executed");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert_eq!(env.export_all().records.len(), 6);
}

#[test]
fn a_killed_clients_request_is_not_executed_later() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(3);
    // Dialogues to export, so that an executed request leaves a file.
    env.dgen()
        .args(["bench-fill", "--dialogues", "10"])
        .assert()
        .success();
    let held = hold_store(&env.path("dgen.redb"));
    let mut client = std::process::Command::new(assert_cmd::cargo::cargo_bin("dgen"))
        .current_dir(env.dir.path())
        .args(["export", "--output_file", "killed.json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = client.kill();
    client.wait().unwrap();
    drop(held);
    mock.set_latency(Duration::from_millis(300));
    env.run(&mock, &["--concurrency", "1"]).assert().success();
    assert!(
        !env.path("killed.json").exists(),
        "a later run executed a killed client's request"
    );
}

#[test]
fn a_client_killed_mid_export_leaves_the_run_going() {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_latency(Duration::from_millis(200));
    env.plan_for_run(20);
    let (mut run, mut client) = run_and_export(&env, &mock, 20000, "killed.json");
    // Killed once the run is writing the export's temporary file.
    wait_until("the export to start", Duration::from_secs(60), || {
        std::fs::read_dir(env.dir.path())
            .unwrap()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".killed.json.tmp-")
            })
    });
    client.kill().unwrap();
    client.wait().unwrap();
    // The run still answers, and finishes its plan.
    let status = env.status_json();
    assert_eq!(status["total_items"], 20, "{status}");
    assert!(run.wait().unwrap().success());
    assert_eq!(done_count(&env.status_json()), 20);
    assert!(
        !env.path("killed.json").exists(),
        "the export of a killed client went on"
    );
    let leftovers = std::fs::read_dir(env.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .count();
    assert_eq!(leftovers, 0, "the cancelled export left temporary files");
    assert_eq!(env.export_all().records.len(), 20_020);
}

#[test]
fn a_store_held_by_another_process_gets_a_clear_answer_at_once() {
    let env = Env::new();
    env.plan_for_run(3);
    let _held = hold_store(&env.path("dgen.redb"));
    for args in [&["status"][..], &["export"][..]] {
        env.dgen()
            .args(args)
            .timeout(Duration::from_secs(20))
            .assert()
            .failure()
            .stderr(predicate::str::contains("is held by another process").and(
                predicate::str::contains("not a dgen run answering requests"),
            ));
    }
}

#[test]
fn a_stale_socket_from_a_killed_run_is_replaced_by_the_next_run() {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_latency(Duration::from_millis(300));
    env.plan_for_run(12);
    let mut run = env.spawn_run(&mock, &["--concurrency", "2"]);
    wait_for_socket(&env, &mut run);
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(
        env.path("dgen.redb.sock").exists(),
        "a SIGKILL leaves the socket"
    );
    // A stale socket and a store held by something else: the client says so.
    let held = hold_store(&env.path("dgen.redb"));
    env.dgen()
        .arg("status")
        .timeout(Duration::from_secs(20))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "not a dgen run answering requests",
        ));
    drop(held);
    let mut run = env.spawn_run(&mock, &["--concurrency", "2"]);
    wait_for_socket(&env, &mut run);
    let mode = std::fs::metadata(env.path("dgen.redb.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only the owner may use the socket");
    assert!(env.status_json()["total_items"] == 12);
    assert!(run.wait().unwrap().success());
    assert!(
        !env.path("dgen.redb.sock").exists(),
        "the run removes its socket"
    );
    assert_eq!(env.export_all().records.len(), 12);
}

#[test]
fn ctrl_c_while_the_ending_run_finishes_an_export_exits_at_once() {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_latency(Duration::from_millis(500));
    env.plan_for_run(2);
    // Enough stored dialogues that the export (about 7 s in a debug build) outlasts the two
    // items of the run (about 1.5 s once it listens).
    let (mut run, mut client) = run_and_export(&env, &mock, 60000, "late.json");
    // The run has finished its items when its socket is gone; the export is still being
    // answered.
    wait_until(
        "the run to finish its items",
        Duration::from_secs(120),
        || !env.path("dgen.redb.sock").exists(),
    );
    assert!(
        client.try_wait().unwrap().is_none(),
        "the export finished before the run did; the test needs a longer export"
    );
    let ok = std::process::Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "Ctrl-C was ignored while the run answered an export"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    assert!(
        !client.wait().unwrap().success(),
        "the export was cut short"
    );
    assert!(!env.path("late.json").exists(), "no half-written export");
    assert_eq!(done_count(&env.status_json()), 2);
}

/// Regression: a store path over ~103 bytes made `<store>.sock` too long for a socket address,
/// so the run could not bind it and was unreachable.
#[test]
fn a_store_path_too_long_for_a_socket_address_is_reached() {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_latency(Duration::from_millis(300));
    let folder = ["a-folder-with-a-long-name-for-a-deep-project-tree"; 3].join("/");
    std::fs::create_dir_all(env.path(&folder)).unwrap();
    let store = format!("{folder}/dgen.redb");
    let socket = env.path(&format!("{store}.sock"));
    assert!(socket.as_os_str().len() > 108, "{}", socket.display());
    env.plan_for_run_in(&store, 20);
    let mut run = env.spawn_run(&mock, &["--store", &store, "--concurrency", "1"]);
    wait_until("the run's socket", Duration::from_secs(60), || {
        assert!(run.try_wait().unwrap().is_none(), "the run ended early");
        socket.exists()
    });
    let status = env.status_json_of(&store);
    assert_eq!(status["total_items"], 20, "{status}");
    env.dgen()
        .args(["--store", &store, "export", "--plan_file", "plan.jsonl"])
        .assert()
        .success();
    let plan = std::fs::read_to_string(env.path("plan.jsonl")).unwrap();
    assert_eq!(plan.lines().count(), 20);
    run.kill().unwrap();
    run.wait().unwrap();
}

/// Regression: the run removed a socket at its path that another program was listening on.
#[test]
fn a_socket_another_program_listens_on_is_refused_not_removed() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2);
    let listener = std::os::unix::net::UnixListener::bind(env.path("dgen.redb.sock")).unwrap();
    env.run(&mock, &[])
        .assert()
        .failure()
        .stderr(predicate::str::contains("another program is listening on"))
        .stderr(predicate::str::contains("dgen will not remove it"));
    // Still there, still that program's.
    let _client = std::os::unix::net::UnixStream::connect(env.path("dgen.redb.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_ok(),
        "the program's socket was replaced"
    );
    assert_eq!(mock.requests().len(), 0, "the run did not start");
    drop(listener);
    // Once nothing listens, the socket is stale and the next run replaces it.
    env.run(&mock, &[]).assert().success();
    assert!(!env.path("dgen.redb.sock").exists());
}

/// Regression: the socket of a run on another host (a shared filesystem), where no connection
/// is possible, was reported as "held by another process"; the run's host is named now.
#[test]
fn a_run_on_another_host_is_named() {
    let env = Env::new();
    env.plan_for_run(2);
    // What a run on host gpu-node-7 leaves in the shared folder: its socket, which does not
    // connect from here, and its host beside it; and the store's lock, held.
    drop(std::os::unix::net::UnixListener::bind(env.path("dgen.redb.sock")).unwrap());
    std::fs::write(env.path("dgen.redb.sock.host"), "gpu-node-7\n4242\n").unwrap();
    let _held = hold_store(&env.path("dgen.redb"));
    env.dgen()
        .arg("status")
        .timeout(Duration::from_secs(20))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "held by a dgen run on host gpu-node-7 (pid 4242)",
        ))
        .stderr(predicate::str::contains("Run the command on gpu-node-7"));
}
