//! `dgen run --batch` against the mock's Batch API: rounds of scenario and dialogue batches,
//! one pass at a time or `--wait`, expired / cancelled / failed batches, the per-file limits,
//! and kill -9 between upload and create, during a create, and during a download — after
//! which the next run re-attaches, never submits a request twice and loses nothing; a batch
//! the provider no longer knows, uploads a kill left unused, and the batch price in `status`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::mock::batch::BatchEnd;
use common::mock::MockServer;
use common::{count_in, Env};
use predicates::prelude::*;

/// Polls quickly: the mock moves a batch one step per read.
const FAST: [&str; 4] = ["--batch", "--wait", "--poll_interval", "0.05"];

/// Each custom_id submitted at most once, over every batch the mock was given.
fn assert_submitted_once(mock: &MockServer) -> Vec<String> {
    let submitted = mock.batches(|b| b.submitted.clone());
    let mut seen = HashMap::new();
    for id in &submitted {
        *seen.entry(id.clone()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "requests submitted twice: {twice:?}");
    submitted
}

/// A number of `dgen status --json`'s run report, by JSON pointer below `/run`.
fn counter(env: &Env, pointer: &str) -> u64 {
    env.status_json()["run"]
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

fn finished(env: &Env, n: u64) {
    let status = env.status_json();
    assert_eq!(count_in(&status, "done"), n, "{status}");
}

#[test]
fn wait_runs_scenario_then_dialogue_batches_to_the_end() {
    let env = Env::new();
    env.plan_for_run(6);
    let mock = MockServer::start();
    env.run(&mock, &FAST)
        .assert()
        .success()
        .stderr(predicate::str::contains("6/6 accepted"));
    finished(&env, 6);
    let submitted = assert_submitted_once(&mock);
    let scenarios = submitted
        .iter()
        .filter(|i| i.starts_with("scenario-"))
        .count();
    let dialogues = submitted
        .iter()
        .filter(|i| i.starts_with("dialogue-"))
        .count();
    assert_eq!((scenarios, dialogues), (6, 6), "{submitted:?}");
    // Two batches: the scenarios, then the dialogues; no chat call outside them.
    assert_eq!(mock.batches(|b| b.batches.len()), 2);
    assert_eq!(counter(&env, "/calls"), 12);
    // Spent is priced at the batch rate: half the online price of the same tokens.
    let run = &env.status_json()["run"];
    let (input, output) = (
        run["prices"][0].as_f64().unwrap(),
        run["prices"][1].as_f64().unwrap(),
    );
    let online = (run["prompt_tokens"].as_f64().unwrap() * input
        + run["completion_tokens"].as_f64().unwrap() * output)
        / 1e6;
    let spent = run["spent"].as_f64().unwrap();
    assert!(
        (spent - online / 2.0).abs() < 1e-6,
        "spent {spent}, online price {online}"
    );
    // The exports hold what the batches returned.
    let exported = env.export_all();
    assert_eq!(exported.records.len(), 6);
    assert_eq!(exported.embeddings.len(), 6);
    // Status names each batch and its end.
    let text = env.stdout(env.dgen().arg("status"));
    assert!(text.contains("batch #0 scenario"), "{text}");
    assert!(text.contains("batch #1 dialogue"), "{text}");
    let json = env.status_json();
    assert_eq!(json["batches"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(json["batches"][1]["status"], "completed");
}

#[test]
fn without_wait_each_pass_moves_on_and_exits() {
    let env = Env::new();
    env.plan_for_run(4);
    let mock = MockServer::start();
    env.run(&mock, &["--batch"])
        .assert()
        .success()
        .stderr(predicate::str::contains("batches in flight"));
    assert_eq!(env.state_count("done"), 0);
    assert_eq!(mock.batches(|b| b.batches.len()), 1);
    let mut passes = 1;
    while env.state_count("done") < 4 {
        passes += 1;
        assert!(passes < 12, "the passes made no progress");
        env.run(&mock, &["--batch"]).assert().success();
    }
    assert_submitted_once(&mock);
    // A pass with nothing left says so.
    env.run(&mock, &["--batch"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to do"));
}

#[test]
fn rejected_dialogues_go_into_a_later_round_with_their_next_attempt() {
    let env = Env::new();
    env.plan_for_run(4);
    let mock = MockServer::start();
    // The first dialogue answer has far too many turns: its item is re-attempted in a later
    // scenario and dialogue batch.
    mock.push([common::mock::Fault::WrongTurns]);
    env.run(&mock, &FAST).assert().success();
    finished(&env, 4);
    let submitted = assert_submitted_once(&mock);
    assert!(
        submitted
            .iter()
            .any(|i| i.starts_with("scenario-") && i.ends_with("-1")),
        "no second attempt: {submitted:?}"
    );
    assert_eq!(counter(&env, "/rejections/turn_count"), 1);
}

#[test]
fn expired_and_cancelled_batches_keep_their_answers_and_resend_the_rest() {
    let env = Env::new();
    env.plan_for_run(5);
    let mock = MockServer::start();
    mock.batch_ends([
        BatchEnd::Expired { answered: 2 },
        BatchEnd::Cancelled { answered: 1 },
    ]);
    env.run(&mock, &FAST).assert().success();
    finished(&env, 5);
    let submitted = mock.batches(|b| b.submitted.clone());
    // The two answered scenarios of the expired batch were never asked again; the three
    // unanswered ones were, with the same attempt.
    let count = |id: &str| submitted.iter().filter(|s| *s == id).count();
    let expired_input: Vec<String> = submitted[..5].to_vec();
    assert_eq!(count(&expired_input[0]), 1, "{submitted:?}");
    assert_eq!(count(&expired_input[1]), 1, "{submitted:?}");
    assert!(
        expired_input[2..].iter().all(|id| count(id) >= 2),
        "{submitted:?}"
    );
    let json = env.status_json();
    let notes: Vec<String> = json["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["note"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        notes[0].starts_with("expired: 2 answered, 3 left unanswered"),
        "{notes:?}"
    );
    assert!(notes[1].starts_with("cancelled: 1 answered"), "{notes:?}");
    assert_eq!(counter(&env, "/calls"), 10);
}

#[test]
fn an_enqueued_token_limit_waits_and_submits_again() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    mock.batch_ends([BatchEnd::Failed {
        code: "token_limit_exceeded".into(),
    }]);
    env.run(&mock, &FAST)
        .assert()
        .success()
        .stderr(predicate::str::contains("3/3 accepted"));
    let ids = mock.batches(|b| b.submitted.clone());
    assert_eq!(ids.iter().filter(|i| i.starts_with("scenario-")).count(), 6);
}

#[test]
fn two_refused_batches_in_a_row_stop_the_run_with_the_reason() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    let refused = || BatchEnd::Failed {
        code: "invalid_request".into(),
    };
    mock.batch_ends([refused(), refused()]);
    env.run(&mock, &FAST)
        .assert()
        .failure()
        .stderr(predicate::str::contains("refused two batches in a row"))
        .stderr(predicate::str::contains("invalid_request"));
    assert_eq!(env.state_count("pending"), 3);
}

#[test]
fn input_files_are_split_at_the_request_limit() {
    let env = Env::new();
    env.plan_for_run(5);
    let mock = MockServer::start();
    env.run(&mock, &[&FAST[..], &["--batch_max_requests", "2"]].concat())
        .assert()
        .success();
    finished(&env, 5);
    let sizes: Vec<usize> = mock.batches(|b| b.batches.iter().map(|b| b.total).collect());
    assert_eq!(sizes, vec![2, 2, 1, 2, 2, 1], "{sizes:?}");
    assert_submitted_once(&mock);
}

#[test]
fn batch_refuses_what_it_cannot_do() {
    let env = Env::new();
    env.plan_for_run(2);
    let mock = MockServer::start();
    env.run(&mock, &["--batch", "--judge"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("dgen judge"));
    env.run(&mock, &["--wait"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--batch"));
    env.run(&mock, &["--batch", "--batch_max_requests", "60000"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("50000"));
    assert_eq!(mock.batches(|b| b.uploads), 0);
}

/// Starts `dgen run --batch --wait` and kills it (-9) once `when` holds for the mock.
fn kill_when(env: &Env, mock: &MockServer, when: impl Fn(&MockServer) -> bool) {
    let mut child = env.spawn_run(mock, &FAST);
    let started = Instant::now();
    while !when(mock) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the moment to kill never came"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dgen ended ({status}) before the moment to kill");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn kill_between_upload_and_create_then_resume_creates_it_once() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    // The create hangs before the batch exists: the kill lands after the upload.
    mock.with_batches(|b| b.hang_create = Some((Duration::from_secs(3), false)));
    kill_when(&env, &mock, |m| m.batches(|b| b.create_requests == 1));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(mock.batches(|b| b.batches.len()), 0);
    let json = env.status_json();
    assert_eq!(json["batches"][0]["status"], "uploaded", "{json}");
    env.run(&mock, &FAST).assert().success();
    finished(&env, 3);
    assert_submitted_once(&mock);
    // The file uploaded before the kill was used: one upload per batch.
    assert_eq!(mock.batches(|b| (b.uploads, b.batches.len())), (2, 2));
}

#[test]
fn kill_while_a_create_is_answered_then_resume_attaches_to_it() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    // The batch exists, but its id never reaches dgen before the kill.
    mock.with_batches(|b| b.hang_create = Some((Duration::from_secs(30), true)));
    kill_when(&env, &mock, |m| m.batches(|b| b.batches.len() == 1));
    env.run(&mock, &FAST).assert().success();
    finished(&env, 3);
    let submitted = assert_submitted_once(&mock);
    assert_eq!(submitted.len(), 6);
    assert_eq!(mock.batches(|b| b.uploads), 2, "one upload per batch");
}

#[test]
fn kill_during_the_download_then_resume_commits_the_results_once() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    // Download 1 is the scenario batch's output; download 2, the dialogue batch's, hangs.
    mock.with_batches(|b| b.hang_download = Some((2, Duration::from_secs(30))));
    kill_when(&env, &mock, |m| m.batches(|b| b.downloads == 2));
    assert_eq!(env.state_count("done"), 0);
    env.run(&mock, &FAST).assert().success();
    finished(&env, 3);
    assert_submitted_once(&mock);
    // Six calls billed: the second download counted nothing twice.
    assert_eq!(counter(&env, "/calls"), 6);
    assert_eq!(mock.batches(|b| b.batches.len()), 2);
}

#[test]
fn a_refused_key_stops_the_run_without_printing_the_key() {
    let env = Env::new();
    env.plan_for_run(2);
    let mock = MockServer::start();
    mock.with_batches(|b| b.echo_key_401 = true);
    let key = "sk-batch-secret-0123456789";
    let out = env
        .run(&mock, &["--batch"])
        .env("OPENAI_API_KEY", key)
        .assert()
        .failure()
        .stderr(predicate::str::contains("HTTP 401"))
        .stderr(predicate::str::contains("check the API key"))
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(key), "{stderr}");
    let log = std::fs::read_to_string(env.path("dialogue_generation.log")).unwrap_or_default();
    assert!(!log.contains(key));
    let store = std::fs::read(env.path("dgen.redb")).unwrap();
    assert!(!store.windows(key.len()).any(|w| w == key.as_bytes()));
    // The job was prepared and stays for the next run, which uploads it again.
    assert_eq!(env.status_json()["batches"][0]["status"], "prepared");
}

#[test]
fn max_cost_holds_batches_to_the_budget_across_passes() {
    let env = Env::new();
    env.plan_for_run(20);
    let mock = MockServer::start();
    let out = env
        .run(
            &mock,
            &[
                &FAST[..],
                &["--model", "gpt-4o-mini", "--max_cost", "0.001"],
            ]
            .concat(),
        )
        .assert()
        .code(3)
        .stderr(predicate::str::contains("--max_cost $0.0010 reached"))
        .get_output()
        .clone();
    let status = env.status_json();
    let spent = status["run"]["spent"].as_f64().unwrap();
    assert!(
        spent > 0.0 && spent <= 0.001,
        "spent {spent}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = count_in(&status, "done");
    assert!(done > 0 && done < 20, "{done} accepted");
    assert_submitted_once(&mock);
    // A higher budget goes on from there.
    env.run(
        &mock,
        &[&FAST[..], &["--model", "gpt-4o-mini", "--max_cost", "1"]].concat(),
    )
    .assert()
    .success();
    finished(&env, 20);
}

#[test]
fn an_online_run_waits_for_the_batches_in_flight() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    env.run(&mock, &["--batch"]).assert().success();
    env.run(&mock, &[])
        .assert()
        .failure()
        .stderr(predicate::str::contains("in flight"))
        .stderr(predicate::str::contains("dgen run --batch --wait"));
    assert_eq!(mock.requests().len(), 0, "no chat call outside the batch");
    env.run(&mock, &FAST).assert().success();
    finished(&env, 3);
    // Once collected, online runs are allowed again (nothing left to do here).
    env.run(&mock, &["--max_attempts", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to do"));
}

#[test]
fn a_batch_the_provider_answers_404_for_goes_into_the_next_batch() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    env.run(&mock, &["--batch"]).assert().success();
    // The provider forgets the scenario batch in flight: reading it answers 404.
    mock.with_batches(|b| b.batches.clear());
    env.run(&mock, &FAST)
        .assert()
        .success()
        .stderr(predicate::str::contains("answers 404"))
        .stderr(predicate::str::contains("go into the next batch"));
    finished(&env, 3);
    let json = env.status_json();
    assert_eq!(json["batches"][0]["status"], "not_found", "{json}");
    assert_eq!(json["batches"][0]["collected"], true, "{json}");
    // Its three scenario requests were asked again, once each; nothing else twice.
    let submitted = mock.batches(|b| b.submitted.clone());
    let scenarios = submitted.iter().filter(|i| i.starts_with("scenario-"));
    assert_eq!(scenarios.count(), 6, "{submitted:?}");
    let dialogues = submitted.iter().filter(|i| i.starts_with("dialogue-"));
    assert_eq!(dialogues.count(), 3, "{submitted:?}");
}

#[test]
fn batches_and_files_both_unknown_mean_another_account_and_stop_the_run_sending_nothing_again() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    env.run(&mock, &["--batch"]).assert().success();
    let uploads = mock.batches(|b| b.uploads);
    // Another account or endpoint: it knows neither the batch nor the file dgen uploaded.
    mock.with_batches(|b| {
        b.batches.clear();
        b.files.clear();
    });
    env.run(&mock, &FAST)
        .assert()
        .failure()
        .stderr(predicate::str::contains("not the account or endpoint"))
        .stderr(predicate::str::contains("--base_url"));
    assert_eq!(
        mock.batches(|b| b.uploads),
        uploads,
        "nothing was sent again"
    );
    let json = env.status_json();
    assert_eq!(json["batches"][0]["collected"], false, "{json}");
}

#[test]
fn an_upload_cut_off_by_a_kill_is_deleted_when_the_run_re_attaches() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    let fingerprint = env.status_json()["plan_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let fp = &fingerprint[..12];
    // Files that are not this store's unused uploads: a user's, another store's of the same
    // plan, one named as dgen named them before the store's tag, and a result file.
    let kept: Vec<String> = {
        let mut s = mock.state.lock().unwrap();
        vec![
            s.batch.add_file("my-data.jsonl", "batch"),
            s.batch
                .add_file(&format!("dgen-{fp}-ffffffffffff-0-scenario.jsonl"), "batch"),
            s.batch
                .add_file(&format!("dgen-{fp}-0-scenario.jsonl"), "batch"),
            s.batch.add_file("results.jsonl", "batch_output"),
        ]
    };
    // The upload takes effect, but its answer never reaches dgen before the kill.
    mock.with_batches(|b| b.hang_upload = Some(Duration::from_secs(30)));
    kill_when(&env, &mock, |m| m.batches(|b| b.uploads == 1));
    assert_eq!(env.status_json()["batches"][0]["status"], "prepared");
    let orphan = mock.batches(|b| {
        b.files
            .iter()
            .filter(|(id, _)| !kept.contains(id))
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(orphan.len(), 1, "{orphan:?}");
    env.run(&mock, &FAST).assert().success();
    finished(&env, 3);
    assert_eq!(mock.batches(|b| b.deleted.clone()), orphan);
    mock.batches(|b| {
        for id in &kept {
            assert!(b.files.contains_key(id), "{id} was deleted");
        }
        for batch in &b.batches {
            assert!(b.files.contains_key(&batch.input_file_id));
        }
    });
    assert_submitted_once(&mock);
}

#[test]
fn status_prices_batch_calls_at_the_batch_price() {
    let env = Env::new();
    env.plan_for_run(4);
    let mock = MockServer::start();
    env.run(&mock, &FAST).assert().success();
    let run = &env.status_json()["run"];
    assert_eq!(run["batch_prompt_tokens"], run["prompt_tokens"], "{run}");
    assert_eq!(
        run["batch_completion_tokens"], run["completion_tokens"],
        "{run}"
    );
    // Spent was recorded at the batch price as each batch was collected; the estimate from
    // the counters agrees with it (not the online price, twice as much).
    let estimated = run["estimated_cost"].as_f64().unwrap();
    let spent = run["spent"].as_f64().unwrap();
    assert!(spent > 0.0, "{run}");
    assert!(
        (estimated - spent).abs() < 1e-6,
        "estimated {estimated}, spent {spent}"
    );
    let text = env.stdout(env.dgen().arg("status"));
    assert!(
        text.contains("Batch API calls at the batch price"),
        "{text}"
    );
}

#[test]
fn an_answer_for_an_item_given_up_meanwhile_is_billed() {
    let env = Env::new();
    env.plan_for_run(3);
    let mock = MockServer::start();
    // The first dialogue answer is rejected (its item's attempt 1 goes into a later scenario
    // batch); the dialogue batch expires before the third answer (that item's dialogue is
    // asked again), so two batches are in flight afterwards.
    mock.push([common::mock::Fault::WrongTurns]);
    mock.batch_ends([BatchEnd::Completed, BatchEnd::Expired { answered: 2 }]);
    let mut passes = 0;
    while env.state_count("done") < 1 {
        passes += 1;
        assert!(passes < 12, "the passes made no progress");
        env.run(&mock, &["--batch"]).assert().success();
    }
    let submitted = mock.batches(|b| b.submitted.clone());
    assert!(
        submitted
            .iter()
            .any(|i| i.starts_with("scenario-") && i.ends_with("-1")),
        "no second attempt in flight: {submitted:?}"
    );
    // A lower --max_attempts gives the rejected item up while its attempt 1 is in flight: the
    // provider answers it all the same, and bills it.
    let fast_one_attempt = [&FAST[..], &["--max_attempts", "1"]].concat();
    env.run(&mock, &fast_one_attempt).assert().success();
    assert_eq!(env.state_count("done"), 2);
    assert_eq!(env.state_count("failed"), 1);
    let answered = mock.requests().len() as u64;
    assert_eq!(answered, 7, "3 scenarios, 2 of 3 dialogues, then 1 of each");
    assert_eq!(counter(&env, "/calls"), answered, "every answer billed");
}

#[test]
fn batches_in_flight_are_collected_when_every_item_is_given_up() {
    let env = Env::new();
    env.plan_for_run(1);
    let mock = MockServer::start();
    // The item's first dialogue answer is rejected, so its attempt 1 goes into a second
    // scenario batch; a lower --max_attempts then gives the item up while that batch runs.
    mock.push([common::mock::Fault::WrongTurns]);
    let mut passes = 0;
    while !mock
        .batches(|b| b.submitted.clone())
        .iter()
        .any(|i| i.starts_with("scenario-") && i.ends_with("-1"))
    {
        passes += 1;
        assert!(passes < 12, "no second attempt went into a batch");
        env.run(&mock, &["--batch"]).assert().success();
    }
    let fast_one_attempt = [&FAST[..], &["--max_attempts", "1"]].concat();
    env.run(&mock, &fast_one_attempt).assert().success();
    assert_eq!(env.state_count("failed"), 1);
    let answered = mock.requests().len() as u64;
    assert_eq!(
        answered, 3,
        "the scenario, its dialogue, then the second scenario"
    );
    assert_eq!(counter(&env, "/calls"), answered, "every answer billed");
    // Nothing is left at the provider, so an online run is not refused.
    env.run(&mock, &["--max_attempts", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to do"));
}

/// Regression: a batch job prepared before a kill (its upload's answer lost) whose item was
/// then given up under a lower --max_attempts was still uploaded, created and paid for.
#[test]
fn a_prepared_batch_whose_items_moved_on_is_closed_unsent() {
    let env = Env::new();
    env.plan_for_run(1);
    let mock = MockServer::start();
    // The first dialogue answer is rejected; attempt 1's scenario goes into the third upload,
    // which takes effect but is never answered before the kill.
    mock.push([common::mock::Fault::WrongTurns]);
    mock.with_batches(|b| b.hang_upload_nth = Some((3, Duration::from_secs(30))));
    kill_when(&env, &mock, |m| m.batches(|b| b.uploads == 3));
    let json = env.status_json();
    let jobs = json["batches"].as_array().unwrap();
    assert_eq!(jobs.last().unwrap()["status"], "prepared", "{json}");
    let creates = mock.batches(|b| b.create_requests);
    let fast_one_attempt = [&FAST[..], &["--max_attempts", "1"]].concat();
    env.run(&mock, &fast_one_attempt).assert().success();
    assert_eq!(env.state_count("failed"), 1);
    assert_eq!(
        mock.batches(|b| (b.create_requests, b.uploads)),
        (creates, 3),
        "nothing uploaded or created for an item that moved on"
    );
    let json = env.status_json();
    let last = json["batches"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "given_up", "{json}");
    assert!(
        last["note"].as_str().unwrap().contains("moved on"),
        "{last}"
    );
}

/// Giving up a job whose create was cut off by a kill (a file id, no batch id) names the input
/// file to look for at the provider: the create may have made a batch that runs and is billed.
#[test]
fn giving_up_a_batch_whose_create_was_cut_off_names_its_input_file() {
    let env = Env::new();
    env.plan_for_run(2);
    let mock = MockServer::start();
    mock.with_batches(|b| b.hang_create = Some((Duration::from_secs(30), true)));
    kill_when(&env, &mock, |m| m.batches(|b| b.create_requests == 1));
    let file = mock.batches(|b| b.batches.first().map(|x| x.input_file_id.clone()));
    env.run(&mock, &["--batch_give_up", "0"])
        .assert()
        .success()
        .stderr(predicate::str::contains("its create may have gone through"))
        .stderr(predicate::str::contains(format!(
            "input file {}",
            file.unwrap_or_default()
        )));
}
