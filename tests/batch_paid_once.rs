//! `dgen run --batch` pays for each request once, whatever the provider does after it took a
//! request: a create answered after the timeout, 502 or cut off once the batch exists; a batch
//! created behind a thousand newer ones; result files late, cut at a line boundary, padded past
//! what their requests can answer, or with an error line for a request that was answered. And a batch job the provider refuses for good
//! (its file too large or gone, a result file lost) is given up instead of blocking the store,
//! by dgen or with `dgen run --batch_give_up`. The mock counts what it bills, per request.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::mock::batch::{BatchEnd, CreateFault};
use common::mock::MockServer;
use common::{count_in, Env};
use predicates::prelude::*;

/// Polls quickly: the mock moves a batch one step per read.
const FAST: [&str; 4] = ["--batch", "--wait", "--poll_interval", "0.05"];

/// The mock bills each request of `n` items' two calls exactly once.
fn assert_paid_once(mock: &MockServer, n: usize) {
    let (billed, twice) = mock.batches(|b| (b.billed(), b.billed_twice()));
    assert!(twice.is_empty(), "requests paid twice: {twice:?}");
    assert_eq!(billed.len(), 2 * n, "{billed:?}");
}

fn finished(env: &Env, n: u64) {
    let status = env.status_json();
    assert_eq!(count_in(&status, "done"), n, "{status}");
}

/// Runs dgen with `args`, which must succeed; its stderr.
fn succeeds(env: &Env, mock: &MockServer, args: &[&str]) -> String {
    let out = env.run(mock, args).assert().success().get_output().clone();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `GET /stats` of the mock, over HTTP.
fn stats_over_http(mock: &MockServer) -> serde_json::Value {
    let addr = mock
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/v1");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(conn, "GET /stats HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}

#[test]
fn creates_answered_late_502_or_cut_off_and_a_truncated_result_file_pay_each_request_once() {
    let env = Env::new();
    env.plan_for_run(4);
    let mock = MockServer::start();
    // Four batches (two requests each): the first three creates take effect and are then
    // answered after dgen's timeout, with a 502, and with a body cut off. The first result
    // file downloaded holds one line of its two.
    mock.with_batches(|b| {
        b.create_faults.extend([
            CreateFault::Late(Duration::from_secs(4)),
            CreateFault::BadGateway,
            CreateFault::CutBody,
        ]);
        b.result_faults.short_download = Some((1, 1));
    });
    let args = [
        &FAST[..],
        &["--batch_max_requests", "2", "--request_timeout", "1"],
    ]
    .concat();
    let stderr = succeeds(&env, &mock, &args);
    assert_paid_once(&mock, 4);
    finished(&env, 4);
    assert!(stderr.contains("looked up by its input file"), "{stderr}");
    assert!(stderr.contains("nothing committed"), "{stderr}");
    assert_eq!(
        mock.batches(|b| (b.create_requests, b.batches.len())),
        (4, 4)
    );
    let stats = stats_over_http(&mock);
    assert_eq!(stats["batch_billed"], 8, "{stats}");
    assert_eq!(
        stats["batch_billed_twice"],
        serde_json::json!([]),
        "{stats}"
    );
}

#[test]
fn a_create_cut_off_by_a_kill_is_found_behind_a_thousand_newer_batches() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    // The batch exists, but its id never reaches dgen before the kill.
    mock.with_batches(|b| b.hang_create = Some((Duration::from_secs(30), true)));
    let mut child = env.spawn_run(&mock, &FAST);
    let started = Instant::now();
    while mock.batches(|b| b.batches.len()) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no create came"
        );
        assert!(child.try_wait().unwrap().is_none(), "dgen ended too soon");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Other users of the account create 1,100 batches meanwhile: the listing shows them first.
    mock.with_batches(|b| b.add_foreign_batches(1100));
    let stderr = succeeds(&env, &mock, &FAST);
    assert_paid_once(&mock, 3);
    finished(&env, 3);
    assert!(stderr.contains("attached to"));
}

#[test]
fn a_result_file_not_there_yet_is_read_again_not_paid_again() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    // The scenario batch says it completed before its output file is named.
    mock.with_batches(|b| b.result_faults.late_output = 1);
    let stderr = succeeds(&env, &mock, &FAST);
    assert_paid_once(&mock, 3);
    finished(&env, 3);
    assert!(stderr.contains("no output file yet"));
}

#[test]
fn a_result_file_cut_at_a_line_boundary_is_read_again_not_paid_again() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    // The first download (the scenario batch's output) ends after its second line.
    mock.with_batches(|b| b.result_faults.short_download = Some((1, 2)));
    let stderr = succeeds(&env, &mock, &FAST);
    assert_paid_once(&mock, 3);
    finished(&env, 3);
    assert!(stderr.contains("answer 2 and 0"));
    // The scenario batch's output was downloaded twice, then once each for the dialogues.
    assert_eq!(mock.batches(|b| b.downloads), 3);
}

#[test]
fn results_that_never_add_up_stop_the_run_until_the_user_gives_the_batch_up() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    mock.with_batches(|b| b.result_faults.short_every_download = Some(1));
    env.run(&mock, &FAST)
        .assert()
        .failure()
        .stderr(predicate::str::contains("at 5 downloads in a row"))
        .stderr(predicate::str::contains("dgen run --batch_give_up 0"));
    assert_eq!(env.state_count("done"), 0, "nothing of it committed");
    assert_eq!(env.status_json()["batches"][0]["collected"], false);
    env.run(&mock, &["--batch_give_up", "0"]).assert().success();
    mock.with_batches(|b| b.result_faults.short_every_download = None);
    env.run(&mock, &FAST).assert().success();
    finished(&env, 3);
    // Given up, its answers unread: its scenarios were asked again; nothing else twice.
    let billed = mock.batches(|b| b.billed());
    let scenarios = billed.iter().filter(|i| i.starts_with("scenario-")).count();
    assert_eq!((scenarios, billed.len()), (6, 9), "{billed:?}");
}

#[test]
fn a_result_file_longer_than_its_requests_can_answer_is_not_read() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    // The scenario batch's output comes padded to 64 MB the first time.
    mock.with_batches(|b| b.result_faults.padded_download = Some((1, 64 << 20)));
    env.run(&mock, &FAST)
        .assert()
        .failure()
        .stderr(predicate::str::contains("longer than"))
        .stderr(predicate::str::contains("re-attaches"));
    assert_eq!(env.state_count("done"), 0);
    assert_eq!(env.status_json()["batches"][0]["collected"], false);
    env.run(&mock, &FAST).assert().success();
    finished(&env, 3);
    assert_paid_once(&mock, 3);
}

#[test]
fn an_error_line_never_overwrites_an_answer_of_the_output_file() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    // The scenario batch's error file repeats its first answered request as a 500.
    mock.with_batches(|b| b.result_faults.error_line_for_answer = 1);
    env.run(&mock, &FAST).assert().success();
    finished(&env, 3);
    assert_paid_once(&mock, 3);
}

#[test]
fn a_result_file_answering_404_gives_the_batch_up_instead_of_blocking_the_store() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    mock.with_batches(|b| b.result_faults.lost_output = 1);
    env.run(&mock, &FAST)
        .assert()
        .success()
        .stderr(predicate::str::contains("given up"));
    finished(&env, 3);
    let json = env.status_json();
    assert_eq!(json["batches"][0]["status"], "given_up", "{json}");
    assert_eq!(json["batches"][0]["collected"], true, "{json}");
    let note = json["batches"][0]["note"].as_str().unwrap();
    assert!(note.contains("answers 404"), "{note}");
    // The answers were lost: the scenario requests were asked again (and paid again, the
    // only way on), the dialogues once.
    let billed = mock.batches(|b| b.billed());
    let scenarios = billed.iter().filter(|i| i.starts_with("scenario-")).count();
    let dialogues = billed.iter().filter(|i| i.starts_with("dialogue-")).count();
    assert_eq!((scenarios, dialogues), (6, 3), "{billed:?}");
    let text = env.stdout(env.dgen().arg("status"));
    assert!(text.contains("given up"), "{text}");
}

#[test]
fn an_input_file_over_the_providers_size_limit_is_given_up_and_re_split() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    mock.with_batches(|b| b.result_faults.max_file_bytes = Some(0));
    // Refused twice: the job is given up each time, and the run stops naming the fix.
    env.run(&mock, &FAST)
        .assert()
        .failure()
        .stderr(predicate::str::contains("--batch_max_mb"))
        .stderr(predicate::str::contains("HTTP 413"));
    let sizes = mock.batches(|b| b.uploaded_bytes.clone());
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    let json = env.status_json();
    for job in json["batches"].as_array().unwrap() {
        assert_eq!(job["status"], "given_up", "{json}");
    }
    // Smaller files fit: the same requests go out one per file.
    mock.with_batches(|b| b.result_faults.max_file_bytes = Some(sizes[0] - 1));
    env.run(&mock, &[&FAST[..], &["--batch_max_requests", "1"]].concat())
        .assert()
        .success();
    finished(&env, 3);
    assert_paid_once(&mock, 3);
}

#[test]
fn an_input_file_gone_before_the_create_gives_the_batch_up() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    mock.with_batches(|b| b.create_faults.push_back(CreateFault::FileGone));
    env.run(&mock, &FAST)
        .assert()
        .success()
        .stderr(predicate::str::contains("given up"));
    finished(&env, 3);
    let json = env.status_json();
    assert_eq!(json["batches"][0]["status"], "given_up", "{json}");
    assert!(json["batches"][0]["batch_id"].is_null(), "{json}");
    assert_paid_once(&mock, 3);
}

#[test]
fn batch_give_up_frees_the_store_for_an_online_run() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    env.run(&mock, &["--batch"]).assert().success();
    env.run(&mock, &[])
        .assert()
        .failure()
        .stderr(predicate::str::contains("dgen run --batch_give_up 0"));
    env.run(&mock, &["--batch_give_up", "5"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no batch #5"));
    let traffic = |m: &MockServer| {
        let batch_api = m.batches(|b| (b.uploads, b.create_requests, b.downloads));
        (batch_api, m.requests().len())
    };
    let before = traffic(&mock);
    env.run(&mock, &["--batch_give_up", "0"])
        .assert()
        .success()
        .stderr(predicate::str::contains("batch #0 given up"))
        .stderr(predicate::str::contains("cancel it there"));
    assert_eq!(traffic(&mock), before, "giving up sends nothing");
    let json = env.status_json();
    assert_eq!(json["batches"][0]["status"], "given_up", "{json}");
    let note = json["batches"][0]["note"].as_str().unwrap();
    assert!(note.contains("by the user"), "{note}");
    env.run(&mock, &["--batch_give_up", "0"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not in flight"));
    // The online run is allowed again and finishes the items.
    env.run(&mock, &[]).assert().success();
    finished(&env, 3);
}

/// Regression: after a create that may have taken effect (a 502 once the batch exists), a
/// lookup the provider refused gave the job up, and its requests went into a second batch.
#[test]
fn a_refused_lookup_after_an_uncertain_create_keeps_the_job() {
    let env = Env::new();
    env.plan_for_run(2);
    let mock = MockServer::start();
    mock.with_batches(|b| {
        b.create_faults.push_back(CreateFault::BadGateway);
        b.result_faults.refused_listings = 1;
    });
    env.run(&mock, &FAST)
        .timeout(Duration::from_secs(120))
        .assert()
        .failure()
        .stderr(predicate::str::contains("may exist from an earlier try"));
    let json = env.status_json();
    assert_eq!(json["batches"][0]["collected"], false, "{json}");
    assert_ne!(json["batches"][0]["status"], "given_up", "{json}");
    assert_eq!(mock.batches(|b| b.create_requests), 1);
    // The next run finds the batch by its file and goes on with it.
    env.run(&mock, &FAST).assert().success();
    finished(&env, 2);
    assert_paid_once(&mock, 2);
}

/// Regression: a batch the provider answered 404 for was taken as lost and its requests put
/// into a new batch, at every poll, even while the provider listed the batch (a proxy that
/// passes `GET /batches` but not `GET /batches/ID`): a new batch paid for each time.
#[test]
fn a_batch_the_provider_lists_but_cannot_read_is_not_sent_again() {
    let env = Env::new();
    env.plan_for_run(2);
    let mock = MockServer::start();
    mock.with_batches(|b| b.result_faults.unreadable_batches = true);
    env.run(&mock, &FAST)
        .timeout(Duration::from_secs(60))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "cannot follow a batch it cannot read",
        ));
    assert_eq!(
        mock.batches(|b| b.create_requests),
        1,
        "one batch, never sent again"
    );
    let json = env.status_json();
    assert_eq!(json["batches"][0]["collected"], false, "{json}");
}

/// Regression: with its error file gone (404), a batch whose output download was cut short was
/// collected from the part read and given up, so the answers cut off were asked and paid again.
#[test]
fn an_error_file_gone_does_not_collect_an_output_file_read_short() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    // The scenario batch expires after two answers (the third request goes to the error file,
    // which answers 404); the first download, its output file, holds one line of its two.
    mock.batch_ends([BatchEnd::Expired { answered: 2 }]);
    mock.with_batches(|b| {
        b.result_faults.lost_errors = 1;
        b.result_faults.short_download = Some((1, 1));
    });
    env.run(&mock, &FAST).assert().success();
    finished(&env, 3);
    // The two answered scenarios once; the expired one asked again, once.
    assert_paid_once(&mock, 3);
    let json = env.status_json();
    assert_eq!(json["batches"][0]["status"], "given_up", "{json}");
}
