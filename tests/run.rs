//! `dgen run` against a chat-completions server on 127.0.0.1, with real embeddings and a real
//! redb store: full runs, dedup, every fault, fatal errors, the breaker, secrets.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::mock::{Fault, MockServer};
use common::{fixture, shared_data, Env, TURNS};
use predicates::prelude::*;

fn rejections(env: &Env) -> serde_json::Value {
    env.status_json()["run"]["rejections"].clone()
}

#[test]
fn a_full_run_reaches_n_accepted_and_exports_aligned_files() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(12);
    env.run(&mock, &["--concurrency", "4"]).assert().success();
    assert_eq!(env.state_count("done"), 12);

    let out = env.export_all();
    assert_eq!(out.records.len(), 12);
    assert_eq!(out.hashes.len(), 12);
    assert_eq!(out.embeddings.len(), 12);
    let ids: BTreeSet<&str> = out
        .records
        .iter()
        .map(|r| r["dialogue_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 12, "dialogue ids are unique");
    assert_eq!(
        out.hashes.iter().collect::<BTreeSet<_>>().len(),
        12,
        "hashes are unique"
    );
    for (record, row) in out.records.iter().zip(&out.embeddings) {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-3,
            "embeddings are unit length: {norm}"
        );
        let turns = record["turns"].as_array().unwrap();
        assert_eq!(turns.len(), 3);
        assert_eq!(record["num_lines"], 3);
        for (i, t) in turns.iter().enumerate() {
            assert_eq!(t["turn_number"], i + 1);
            assert_eq!(t["user_emotion"], record["user_emotions"][0]);
            assert_eq!(t["assistant_emotion"], record["assistant_emotions"][0]);
        }
        assert!(record["dialogue_id"]
            .as_str()
            .unwrap()
            .contains("_generated_"));
    }

    // Two calls an item: a scenario call, then a dialogue call with the item's sampling and seed.
    let requests = mock.requests();
    assert_eq!(requests.len(), 24);
    let plan = env.plan_jsonl("dgen.redb");
    for record in &out.records {
        let seed = record["seed"].as_u64().unwrap();
        let item = plan
            .iter()
            .find(|i| i["seed"].as_u64() == Some(seed))
            .expect("attempt 0 uses the plan's seed");
        let request = requests
            .iter()
            .find(|r| r.dialogue && r.body["seed"].as_u64() == Some(seed & 0x7FFF_FFFF))
            .expect("the dialogue request carries the item seed");
        assert_eq!(
            request.body["temperature"].as_f64().unwrap() as f32,
            item["temperature"].as_f64().unwrap() as f32
        );
        assert_eq!(request.body["max_tokens"], 1500);
        let system = request.body["messages"][0]["content"].as_str().unwrap();
        assert!(
            system.contains(item["region"].as_str().unwrap()),
            "{system}"
        );
        assert!(system.contains(item["resolution_status"].as_str().unwrap()));
        assert!(
            request.authorization.is_none(),
            "no key is sent to a loopback server without one"
        );
    }
    let status = env.status_json();
    assert_eq!(status["run"]["calls"], 24);
    assert!(status["run"]["prompt_tokens"].as_u64().unwrap() > 0);

    // Finished: a second run says so and calls nothing.
    env.run(&mock, &[])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to do"));
    assert_eq!(mock.requests().len(), 24);
}

#[test]
fn exact_and_near_duplicates_are_rejected_and_reattempted() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(4);
    // Dialogue calls 2 and 3 repeat the previous answer exactly, then with one word changed.
    mock.push([Fault::Normal, Fault::ExactRepeat, Fault::NearRepeat]);
    env.run(&mock, &["--concurrency", "1"]).assert().success();
    assert_eq!(env.state_count("done"), 4);
    let r = rejections(&env);
    assert_eq!(r["duplicate_exact"], 1, "{r}");
    assert_eq!(r["duplicate_semantic"], 1, "{r}");
    assert_eq!(mock.dialogue_calls(), 6);
    let out = env.export_all();
    let retried: Vec<_> = out
        .records
        .iter()
        .filter(|r| r["attempt"].as_u64().unwrap() > 0)
        .collect();
    assert!(
        !retried.is_empty(),
        "a rejected item is accepted on a later attempt"
    );
    let plan = env.plan_jsonl("dgen.redb");
    let sent: Vec<u64> = mock
        .requests()
        .iter()
        .filter(|q| q.dialogue)
        .filter_map(|q| q.body["seed"].as_u64())
        .collect();
    for r in &retried {
        // The record's item, found through its dialogue id (derived from the plan's seed).
        let item = plan
            .iter()
            .find(|i| {
                let id = dgen::record::dialogue_id(
                    i["base_dialogue_id"].as_str().unwrap(),
                    i["seed"].as_u64().unwrap(),
                );
                r["dialogue_id"] == id.as_str()
            })
            .expect("every record belongs to a planned item");
        let first = item["seed"].as_u64().unwrap() & 0x7FFF_FFFF;
        let again = r["seed"].as_u64().unwrap() & 0x7FFF_FFFF;
        assert_ne!(first, again, "a new attempt re-draws the request seed");
        assert!(
            sent.contains(&first),
            "attempt 0 was sent with the plan's seed"
        );
        assert!(
            sent.contains(&again),
            "the retry was sent with its own seed"
        );
    }
}

#[test]
fn every_fault_is_survived_and_counted() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(3);
    mock.push([
        Fault::Status {
            code: 429,
            retry_after: Some("1".into()),
        },
        Fault::Status {
            code: 500,
            retry_after: None,
        },
        Fault::Hang(Duration::from_secs(4)),
        Fault::Malformed,
        Fault::WrongTurns,
        Fault::Empty,
        Fault::Truncated,
    ]);
    let started = Instant::now();
    env.run(
        &mock,
        &[
            "--concurrency",
            "1",
            "--request_timeout",
            "1.5",
            "--max_attempts",
            "5",
        ],
    )
    .assert()
    .success();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(env.state_count("done"), 3);
    let r = rejections(&env);
    assert_eq!(r["unclosed_tag"], 1, "{r}");
    assert_eq!(r["turn_count"], 1, "{r}");
    assert_eq!(r["empty_response"], 1, "{r}");
    assert_eq!(r["truncated"], 1, "{r}");
    // 429, 500 and the hang were retried inside their calls: no attempt was lost to them.
    assert!(r.get("api_error").is_none(), "{r}");
}

#[test]
fn calls_that_keep_failing_use_up_attempts_then_the_item_fails() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2);
    mock.set_always(Some(Fault::Status {
        code: 503,
        retry_after: None,
    }));
    env.run(
        &mock,
        &[
            "--max_retries",
            "1",
            "--max_attempts",
            "2",
            "--max_consecutive_failures",
            "100",
        ],
    )
    .assert()
    .success()
    .stderr(predicate::str::contains("2 failed"));
    assert_eq!(env.state_count("failed"), 2);
    let status = env.status_json();
    assert_eq!(status["run"]["failures"]["api_error"], 2);
    assert_eq!(status["run"]["rejections"]["api_error"], 4);
    // 2 items x 2 attempts x (1 try + 1 retry) scenario calls.
    assert_eq!(mock.requests().len(), 8);
}

#[test]
fn a_401_stops_the_run_promptly_and_keeps_items_pending() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(50);
    mock.set_always(Some(Fault::Status {
        code: 401,
        retry_after: None,
    }));
    let started = Instant::now();
    env.run(&mock, &["--concurrency", "4"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("HTTP 401").and(predicate::str::contains("API key")));
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        mock.requests().len() <= 4,
        "no more calls after the first refusal: {}",
        mock.requests().len()
    );
    assert_eq!(env.state_count("pending"), 50);
}

#[test]
fn many_consecutive_failures_trip_the_breaker() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(40);
    mock.set_always(Some(Fault::Malformed));
    env.run(
        &mock,
        &[
            "--concurrency",
            "2",
            "--max_consecutive_failures",
            "5",
            "--max_attempts",
            "10",
        ],
    )
    .assert()
    .failure()
    .stderr(
        predicate::str::contains("consecutive failures")
            .and(predicate::str::contains("not closed")),
    );
    assert!(mock.dialogue_calls() < 20, "{}", mock.dialogue_calls());
}

#[test]
fn the_api_key_never_reaches_logs_store_or_exports() {
    let env = Env::new();
    let mock = MockServer::start();
    let key = "sk-test-DO-NOT-LEAK-7f3a9c";
    env.plan_for_run(3);
    let out = env
        .run(&mock, &["--concurrency", "2"])
        .env("OPENAI_API_KEY", key)
        .arg("-v")
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(mock
        .requests()
        .iter()
        .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {key}"))));
    // A server that echoes the key in its error.
    env.plan(3, &["--store", "second.redb"]).assert().success();
    mock.set_always(Some(Fault::EchoKey401));
    let refused = env
        .run(&mock, &["--store", "second.redb"])
        .env("OPENAI_API_KEY", key)
        .assert()
        .failure()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("[redacted]"), "{stderr}");
    env.export_all();
    let mut haystacks = vec![out.stdout, out.stderr, refused.stdout, refused.stderr];
    for file in [
        "dgen.redb",
        "second.redb",
        "dialogue_generation.log",
        "generated_dialogues.json",
        "dialogue_hashes.json",
        "dialogue_embeddings.npy",
    ] {
        haystacks.push(std::fs::read(env.path(file)).unwrap());
    }
    for h in haystacks {
        assert!(!String::from_utf8_lossy(&h).contains(key), "the key leaked");
    }
}

#[test]
fn a_remote_endpoint_without_a_key_is_refused_before_any_work() {
    let env = Env::new();
    env.plan_for_run(2);
    env.dgen()
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_KEY")
        .args(["run", "--base_url", "https://api.example.invalid/v1"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("no API key").and(predicate::str::contains("OPENAI_API_KEY")),
        );
    assert_eq!(env.state_count("pending"), 2);
    // .env.local is read as a dotenv file: comments, `export`, quotes.
    std::fs::write(
        env.path(".env.local"),
        "# keys for the team\nexport OTHER='x y'\nOPENAI_KEY=sk-from-dotenv # the team key\n",
    )
    .unwrap();
    let mock = MockServer::start();
    env.run(&mock, &[]).assert().success();
    assert_eq!(
        mock.requests()[0].authorization.as_deref(),
        Some("Bearer sk-from-dotenv")
    );
}

#[test]
fn an_unloadable_onnx_runtime_is_a_clear_error_not_a_panic() {
    let env = Env::new();
    env.plan_for_run(2);
    let mock = MockServer::start();
    let bogus = env.path("libonnxruntime.so");
    std::fs::write(&bogus, "not a library").unwrap();
    for lib in [bogus, env.path("missing.so")] {
        env.run(&mock, &[])
            .env("ORT_DYLIB_PATH", &lib)
            .assert()
            .code(1)
            .stderr(
                predicate::str::contains(lib.display().to_string())
                    .and(predicate::str::contains("ONNX Runtime"))
                    .and(predicate::str::contains("panicked").not()),
            );
    }
    assert_eq!(env.state_count("pending"), 2);
    assert!(mock.requests().is_empty(), "nothing was sent");
}

#[test]
fn dry_run_prints_the_exact_requests_and_calls_nothing() {
    let env = Env::new();
    env.plan(5, &TURNS).assert().success();
    let out = env.stdout(env.dgen().args([
        "run",
        "--dry_run",
        "--limit",
        "2",
        "--base_url",
        "http://127.0.0.1:9/v1",
    ]));
    let snapshot_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/dry_run.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(snapshot_path.parent().unwrap()).unwrap();
        std::fs::write(&snapshot_path, &out).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot_path)
        .expect("snapshot exists (UPDATE_SNAPSHOTS=1 writes it)");
    if out != expected {
        let line = out
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "the rendered prompts changed at line {}: {:?} (snapshot: {:?}); if on purpose, bump PROMPT_VERSION and rerun with UPDATE_SNAPSHOTS=1",
            line + 1,
            out.lines().nth(line),
            expected.lines().nth(line)
        );
    }
    assert_eq!(out.matches("scenario request").count(), 2);
    assert!(!env.path("dialogue_generation.log").exists());
}

#[test]
fn an_altered_plan_is_refused() {
    let env = Env::new();
    env.plan_for_run(3);
    {
        let db = redb::Database::create(env.path("dgen.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let def: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("meta");
        txn.open_table(def)
            .unwrap()
            .insert("plan_fingerprint", "0000")
            .unwrap();
        txn.commit().unwrap();
    }
    let mock = MockServer::start();
    env.run(&mock, &[])
        .assert()
        .failure()
        .stderr(predicate::str::contains("does not match its fingerprint"));
    assert!(mock.requests().is_empty());
}

#[test]
#[ignore = "needs ../shared/data (real MultiWOZ 2.2 and personas); .ci/run runs it with --ignored"]
fn real_multiwoz_dialogues_as_reference() {
    let data = shared_data();
    let env = Env::new();
    let mut plan = env.dgen();
    plan.args(["plan", "--total_generations", "6"])
        .args(TURNS)
        .arg("--dataset")
        .arg(data.join("multiwoz22_dev/dialogues.json"))
        .arg("--persona_dataset")
        .arg(data.join("personas_spc.jsonl"));
    plan.assert().success();
    let mock = MockServer::start();
    env.run(&mock, &["--concurrency", "3"]).assert().success();
    assert_eq!(env.state_count("done"), 6);
    let reference = mock.requests().iter().filter(|r| r.dialogue).all(|r| {
        r.body["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("\nUSER: ")
    });
    assert!(
        reference,
        "the base conversation is in every dialogue prompt"
    );
    let _ = fixture("multiwoz_hf");
}

fn context_length_exceeded() -> Fault {
    Fault::ApiError {
        status: 400,
        code: Some("context_length_exceeded".into()),
        message: "This model's maximum context length is 128000 tokens.".into(),
    }
}

#[test]
fn a_per_request_400_rejects_that_attempt_and_the_run_goes_on() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(20);
    // 5 % of all calls.
    mock.set_every(20, context_length_exceeded());
    let out = env
        .run(&mock, &["--concurrency", "2", "-v"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(env.state_count("done"), 20);
    let r = rejections(&env);
    assert!(r["api_error"].as_u64().unwrap() >= 1, "{r}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HTTP 400 context_length_exceeded"),
        "the rejection names the server's code: {stderr}"
    );
}

#[test]
fn an_item_refused_on_every_attempt_fails_and_blocks_no_later_run() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2);
    mock.set_always(Some(context_length_exceeded()));
    env.run(&mock, &["--max_attempts", "2"])
        .assert()
        .success()
        .stderr(predicate::str::contains("2 failed"));
    assert_eq!(env.state_count("failed"), 2);
    let status = env.status_json();
    assert_eq!(status["run"]["failures"]["api_error"], 2);
    // Not retried inside the call: one scenario call per attempt.
    assert_eq!(mock.requests().len(), 4);
    env.run(&mock, &["--max_attempts", "2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to do"));
    assert_eq!(mock.requests().len(), 4);
    // A higher limit gives them one more attempt each; refused again, the run still finishes.
    env.run(&mock, &["--max_attempts", "3"])
        .assert()
        .success()
        .stderr(predicate::str::contains("0/2 accepted, 2 failed"));
    assert_eq!(mock.requests().len(), 6);
}

#[test]
fn a_400_about_the_model_or_the_key_stops_the_run() {
    for code in ["model_not_found", "invalid_api_key"] {
        let env = Env::new();
        let mock = MockServer::start();
        env.plan_for_run(10);
        mock.set_always(Some(Fault::ApiError {
            status: 400,
            code: Some(code.into()),
            message: "no such model or key".into(),
        }));
        env.run(&mock, &["--concurrency", "1"])
            .assert()
            .failure()
            .stderr(
                predicate::str::contains(format!("HTTP 400 {code}"))
                    .and(predicate::str::contains("--model")),
            );
        assert_eq!(mock.requests().len(), 1, "{code}");
        assert_eq!(env.state_count("pending"), 10, "{code}");
    }
}

#[test]
fn hostile_retry_headers_are_survived_without_a_panic() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2);
    let header = |name: &str, value: &str| Fault::Headers(vec![(name.into(), value.into())]);
    let huge = format!("{}s", "9".repeat(400));
    mock.push([
        header("Retry-After", "inf"),
        header("Retry-After", "NaN"),
        header("Retry-After", "-5"),
        header("retry-after-ms", "-1"),
        header("retry-after-ms", "inf"),
        header("Retry-After", "Thu, 01 Jan 1920 00:00:00 GMT"),
        header(
            "Retry-After",
            "Sun, 99 Jan 99999999999999999999 99:99:99 GMT",
        ),
        header("x-ratelimit-reset-tokens", &huge),
    ]);
    let started = Instant::now();
    env.run(&mock, &["--concurrency", "1", "--max_retries", "10"])
        .assert()
        .success()
        .stderr(predicate::str::contains("panicked").not());
    assert_eq!(env.state_count("done"), 2);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "unusable hints fall back to the backoff"
    );
}

#[test]
fn non_finite_and_out_of_range_run_flags_are_refused_before_any_work() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2);
    let cases: &[(&str, &str, &str)] = &[
        ("--request_timeout", "inf", "not a finite number of seconds"),
        ("--request_timeout", "nan", "not a finite number of seconds"),
        ("--request_timeout", "0", "more than 0 seconds"),
        ("--request_timeout", "-1", "more than 0 seconds"),
        ("--request_timeout", "1e12", "at most 86400 seconds"),
        (
            "--shutdown_timeout",
            "nan",
            "not a finite number of seconds",
        ),
        (
            "--shutdown_timeout",
            "inf",
            "not a finite number of seconds",
        ),
        ("--shutdown_timeout", "-1", "0 seconds or more"),
        ("--concurrency", "0", "at least 1"),
        (
            "--concurrency",
            "99999999999999999999",
            "not a whole number",
        ),
        ("--concurrency", "1000000", "at most 4096"),
        ("--slots", "0", "at least 1"),
        ("--threads", "0", "at least 1"),
        ("--ctx", "0", "at least 1"),
        ("--max_attempts", "0", "at least 1"),
        ("--max_tokens", "0", "at least 1"),
        ("--max_consecutive_failures", "0", "at least 1"),
        ("--max_retries", "-1", "not a whole number"),
    ];
    for (flag, value, reason) in cases {
        let out = env
            .run(&mock, &[flag, value])
            .assert()
            .code(2)
            .get_output()
            .clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(flag) && stderr.contains(reason) && !stderr.contains("panicked"),
            "{flag} {value}: {stderr}"
        );
    }
    assert!(mock.requests().is_empty());
    assert!(!env.path("dialogue_generation.log").exists());
    assert_eq!(env.state_count("pending"), 2);
}

#[test]
fn json_mode_sends_a_schema_openai_accepts_and_checks_the_bounds_itself() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(3);
    mock.refuse_unsupported_schemas();
    mock.push([Fault::Normal, Fault::WrongTurns, Fault::LongField]);
    env.run(&mock, &["--structured", "json", "--concurrency", "1"])
        .assert()
        .success();
    assert_eq!(env.state_count("done"), 3);
    let r = rejections(&env);
    assert_eq!(r["turn_count"], 1, "{r}");
    assert_eq!(r["field_too_long"], 1, "{r}");
    assert!(r.get("api_error").is_none(), "{r}");
    for request in mock.requests().iter().filter(|r| r.dialogue) {
        let format = &request.body["response_format"];
        assert_eq!(format["type"], "json_schema");
        assert_eq!(format["json_schema"]["strict"], true);
        let schema = format["json_schema"]["schema"].to_string();
        assert!(schema.contains("Between 3 and 6 turns"), "{schema}");
        for keyword in ["minItems", "maxItems", "minLength", "maxLength"] {
            assert!(!schema.contains(keyword), "{keyword} in {schema}");
        }
    }
}

#[test]
fn the_full_schema_is_for_llama_server_or_an_explicit_opt_in() {
    let env = Env::new();
    env.plan_for_run(2);
    let dry = |extra: &[&str]| {
        let mut cmd = env.dgen();
        cmd.args(["run", "--dry_run", "--base_url", "http://127.0.0.1:9/v1"])
            .args(extra);
        env.stdout(&mut cmd)
    };
    let strict = dry(&["--structured", "json"]);
    assert!(strict.contains("\"strict\": true") && !strict.contains("minItems"));
    let full = dry(&["--structured", "json", "--schema", "full"]);
    assert!(full.contains("\"minItems\": 3") && full.contains("\"maxLength\": 400"));
    // The llama-server dgen starts gets the full schema without asking.
    let local = dry(&["--local", "--assets_dir", "no-such-dir"]);
    assert!(local.contains("\"minItems\": 3"), "{local}");

    // A server of one's own that refuses the full schema: each call is refused, like OpenAI does.
    let mock = MockServer::start();
    mock.refuse_unsupported_schemas();
    env.run(
        &mock,
        &[
            "--structured",
            "json",
            "--schema",
            "full",
            "--max_consecutive_failures",
            "2",
        ],
    )
    .assert()
    .failure()
    .stderr(predicate::str::contains(
        "In context=('properties', 'turns'), 'minItems' is not permitted.",
    ));
}

#[test]
fn absurd_token_counts_from_the_server_saturate_instead_of_crashing() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2);
    mock.state.lock().unwrap().prompt_tokens = Some(u64::MAX);
    env.run(&mock, &[]).assert().success();
    assert_eq!(env.state_count("done"), 2);
    let status = env.status_json();
    assert_eq!(status["run"]["prompt_tokens"], u64::MAX, "{status}");
    assert_eq!(status["run"]["calls"], 4, "{status}");
}

#[test]
fn a_response_body_over_the_cap_rejects_that_attempt_unread() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(1);
    let bytes = dgen::llm::MAX_RESPONSE_BYTES + 1024;
    // Once with a Content-Length that says so, once without one (read until the cap).
    mock.push([
        Fault::Oversize {
            bytes,
            declared: true,
        },
        Fault::Oversize {
            bytes,
            declared: false,
        },
    ]);
    let out = env
        .run(&mock, &["--max_attempts", "3", "-v"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(env.state_count("done"), 1);
    assert_eq!(rejections(&env)["api_error"], 2, "{}", rejections(&env));
    // Not retried inside the call: one dialogue call per attempt.
    assert_eq!(mock.dialogue_calls(), 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("response body is larger than 4 MiB"),
        "the rejection names the cap: {stderr}"
    );
    // The oversize answers were answered calls: counted, and nothing of them was kept.
    assert_eq!(env.status_json()["run"]["calls"], 6);
    let exported = env.export_all();
    assert!(exported.records[0]["turns"].to_string().len() < 100_000);
}
