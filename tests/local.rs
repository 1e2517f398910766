//! The embedded default: structured JSON output against the mock, the llama-server child's
//! lifecycle (with the mock standing in for llama-server), and an end-to-end run through the
//! real local model when its assets are present.

mod common;

use std::time::{Duration, Instant};

use common::mock::{Fault, MockServer};
use common::{Env, TURNS};
use predicates::prelude::*;

#[test]
fn json_schema_mode_against_the_mock() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(4);
    mock.push([Fault::BadJson, Fault::SchemaViolation]);
    // The mock as a server of one's own that enforces full JSON Schema (a remote endpoint gets
    // the strict subset by default: tests/run.rs).
    env.run(
        &mock,
        &[
            "--structured",
            "json",
            "--schema",
            "full",
            "--concurrency",
            "1",
        ],
    )
    .assert()
    .success();
    assert_eq!(env.state_count("done"), 4);
    let r = env.status_json()["run"]["rejections"].clone();
    assert_eq!(r["invalid_json"], 1, "{r}");
    assert_eq!(r["schema_violation"], 1, "{r}");
    let dialogue = mock.requests().into_iter().find(|q| q.dialogue).unwrap();
    let format = &dialogue.body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["strict"], true);
    let turns = &format["json_schema"]["schema"]["properties"]["turns"];
    assert_eq!(turns["minItems"], 3);
    assert_eq!(turns["maxItems"], 6);
    assert_eq!(turns["items"]["properties"]["user"]["maxLength"], 400);
    let system = dialogue.body["messages"][0]["content"].as_str().unwrap();
    // The fields are described in words; no example turn for a small model to copy.
    assert!(
        system.contains("an object with a \"turns\" list"),
        "{system}"
    );
    assert!(!system.to_lowercase().contains("example"), "{system}");
}

#[test]
fn the_tag_format_is_constrained_by_a_grammar_on_llama_server() {
    let env = Env::new();
    env.plan_for_run(1);
    let mut args = vec![
        "run".to_string(),
        "--dry_run".into(),
        "--structured".into(),
        "tags".into(),
    ];
    args.extend(stand_in(&env));
    let out = env.stdout(env.dgen().args(&args));
    // The request's JSON, up to where the dry run's next block (another request or the cost
    // estimate) begins.
    let rest = out
        .split("dialogue request\n")
        .nth(1)
        .unwrap()
        .split_once('\n')
        .unwrap()
        .1;
    let dialogue: serde_json::Value = serde_json::Deserializer::from_str(rest)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let grammar = dialogue["grammar"].as_str().unwrap();
    assert!(grammar.starts_with("root ::= turn{3,6}"), "{grammar}");
    assert!(grammar.contains("\"<User>\" text \"</User>"), "{grammar}");
    // A remote endpoint gets no grammar (it is llama.cpp's extension).
    let out =
        env.stdout(
            env.dgen()
                .args(["run", "--dry_run", "--base_url", "http://127.0.0.1:9/v1"]),
        );
    assert!(!out.contains("\"grammar\""));
}

#[test]
fn tags_and_json_give_the_same_records_and_hashes() {
    let env = Env::new();
    let mut results = Vec::new();
    for mode in ["tags", "json"] {
        let store = format!("{mode}.redb");
        env.plan_for_run_in(&store, 3);
        let mock = MockServer::start();
        env.run(
            &mock,
            &[
                "--store",
                &store,
                "--concurrency",
                "1",
                "--structured",
                mode,
            ],
        )
        .assert()
        .success();
        let (json, hashes) = (format!("{mode}.json"), format!("{mode}.hashes.json"));
        env.dgen()
            .args([
                "--store",
                &store,
                "export",
                "--output_file",
                &json,
                "--hash_file",
                &hashes,
            ])
            .args(["--embedding_file", &format!("{mode}.npy")])
            .assert()
            .success();
        let mut records: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(env.path(&json)).unwrap()).unwrap();
        for r in &mut records {
            r["usage"] = serde_json::Value::Null; // the prompts differ in length
        }
        results.push((records, std::fs::read(env.path(&hashes)).unwrap()));
    }
    assert!(
        results[0].0 == results[1].0,
        "records differ between wire formats"
    );
    assert!(
        results[0].1 == results[1].1,
        "hashes differ between wire formats"
    );
}

/// A stand-in llama-server: the mock binary, which takes llama-server's flags.
fn stand_in(env: &Env) -> Vec<String> {
    std::fs::write(env.path("fake.gguf"), b"GGUF stand-in").unwrap();
    vec![
        "--local_model".into(),
        env.path("fake.gguf").display().to_string(),
        "--llama_server".into(),
        assert_cmd::cargo::cargo_bin("dgen-mock-llm")
            .display()
            .to_string(),
    ]
}

/// The port of the server dgen started, from its log.
fn server_port(env: &Env) -> u16 {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(env.path("dialogue_generation.log")).unwrap_or_default();
        if let Some(rest) = log.split("ready on 127.0.0.1:").nth(1) {
            return rest.split(' ').next().unwrap().parse().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no server start in the log: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_gone(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the local server outlived dgen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn local_run(env: &Env, extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = env.dgen();
    cmd.env_remove("OPENAI_API_KEY")
        .arg("run")
        .args(stand_in(env))
        .args(extra);
    cmd.timeout(Duration::from_secs(120));
    cmd
}

#[test]
fn the_server_stops_when_the_run_ends_normally_or_with_an_error() {
    let env = Env::new();
    env.plan_for_run(3);
    local_run(&env, &[]).assert().success();
    assert_eq!(env.state_count("done"), 3);
    assert_gone(server_port(&env));
    let log = std::fs::read_to_string(env.path("dialogue_generation.log")).unwrap();
    assert!(log.contains("ready on"), "{log}");

    // A model file that does not exist: a clear error, no server.
    let env = Env::new();
    env.plan_for_run(2);
    env.dgen()
        .args(["run", "--local_model", "missing.gguf"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("model missing.gguf does not exist")
                .and(predicate::str::contains("setup-local-model.sh")),
        );
    // A server binary that exits at once: its log is shown.
    let env = Env::new();
    env.plan_for_run(2);
    std::fs::write(env.path("fake.gguf"), b"x").unwrap();
    env.dgen()
        .args([
            "run",
            "--local_model",
            "fake.gguf",
            "--llama_server",
            "/bin/false",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("exited before it was ready"));
}

fn spawn_local(env: &Env) -> std::process::Child {
    let mut args = vec!["run".to_string()];
    args.extend(stand_in(env));
    std::process::Command::new(assert_cmd::cargo::cargo_bin("dgen"))
        .current_dir(env.dir.path())
        .env_remove("OPENAI_API_KEY")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn the_server_stops_on_ctrl_c_and_does_not_outlive_kill_9() {
    for signal in ["-INT", "-KILL"] {
        let env = Env::new();
        env.plan_for_run(200);
        let mut child = spawn_local(&env);
        let port = server_port(&env);
        env.wait_for_status("a call to the local server", |s| {
            s["run"]["calls"].as_u64() > Some(0)
        });
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run is still going"
        );
        let ok = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let status = child.wait().unwrap();
        if signal == "-INT" {
            assert_eq!(status.code(), Some(130));
        }
        assert_gone(port);
    }
}

#[test]
#[ignore = "needs the local model from scripts/setup-local-model.sh; .ci/run runs it with --ignored"]
fn end_to_end_through_the_real_local_model() {
    let cache = dgen::embed::assets_dir(None);
    let model = cache.join(dgen::llm::local_server::DEFAULT_MODEL);
    let server = cache.join(dgen::llm::local_server::DEFAULT_SERVER);
    assert!(
        model.is_file() && server.is_file(),
        "the local model is not set up ({} / {}); run scripts/setup-local-model.sh",
        model.display(),
        server.display()
    );
    let env = Env::new();
    env.plan(2, &TURNS).assert().success();
    env.dgen()
        .env_remove("OPENAI_API_KEY")
        .args([
            "run",
            "--local",
            "--max_attempts",
            "6",
            "--max_consecutive_failures",
            "12",
            // This test is about the pipeline through the real model, not the 135M model's
            // quality: its frequent copies of the prompt's example and its one-word or looping
            // turns would only make it slow and flaky, so those checks flag here instead.
            "--checks",
            "copied_example=flag,repetitive=flag,placeholder=flag,short_utterances=flag,repeated_reply=flag",
        ])
        .timeout(Duration::from_secs(600))
        .assert()
        .success();
    assert_eq!(env.state_count("done"), 2);
    let out = env.export_all();
    assert_eq!(out.records.len(), 2);
    for r in &out.records {
        assert_eq!(r["model"], "SmolLM2-135M-Instruct.Q4_1");
        let n = r["turns"].as_array().unwrap().len();
        assert!((3..=6).contains(&n), "{n} turns");
    }
}

/// A stand-in llama-server that is a shell script: it records its environment and command
/// line beside itself, runs `prelude`, then becomes the mock with llama-server's flags.
fn scripted_stand_in(env: &Env, prelude: &str) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut args = stand_in(env);
    let mock = args.pop().unwrap();
    let script = env.path("llama-server.sh");
    let dir = env.dir.path().display();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nMOCK='{mock}'\nenv > '{dir}/server-env.txt'\necho \"$@\" > '{dir}/server-args.txt'\n{prelude}\nexec \"$MOCK\" \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    args.push(script.display().to_string());
    args
}

/// Regression: the llama-server dgen started inherited OPENAI_API_KEY, and dgen called it with
/// that key, so whoever held the port got the user's key.
#[test]
fn the_local_server_gets_a_key_of_its_own_and_never_the_openai_key() {
    let env = Env::new();
    env.plan_for_run(2);
    let secret = "sk-never-for-the-local-server";
    let mut cmd = env.dgen();
    cmd.env("OPENAI_API_KEY", secret)
        .env("OPENAI_KEY", secret)
        .arg("run")
        .args(scripted_stand_in(&env, ""))
        .timeout(Duration::from_secs(120));
    // The mock refuses every call without the key dgen gave it in LLAMA_API_KEY.
    cmd.assert().success();
    assert_eq!(env.state_count("done"), 2);
    let server_env = std::fs::read_to_string(env.path("server-env.txt")).unwrap();
    let server_args = std::fs::read_to_string(env.path("server-args.txt")).unwrap();
    assert!(
        !server_env.contains(secret),
        "the key reached the server's environment"
    );
    assert!(!server_env.contains("OPENAI_API_KEY=") && !server_env.contains("OPENAI_KEY="));
    assert!(!server_args.contains(secret));
    let key = server_env
        .lines()
        .find_map(|l| l.strip_prefix("LLAMA_API_KEY="))
        .expect("the server was given a key of its own");
    assert_eq!(key.len(), 64, "{key}");
    assert!(!server_args.contains(key), "the key is on the process list");
}

/// Regression: another program that bound the port dgen picked before llama-server did was
/// called as if it were the local server.
#[test]
fn a_server_on_the_port_that_is_not_ours_fails_the_start() {
    for (prelude, says) in [
        // Serves without any key: someone else's server.
        (
            "unset LLAMA_API_KEY",
            "without the key dgen gave its llama-server",
        ),
        // Wants another key.
        (
            "LLAMA_API_KEY=someone-elses; export LLAMA_API_KEY",
            "refused the key",
        ),
        // Answers exactly as ours would (it has our key), but from another process: the child
        // never binds the port.
        (
            "timeout 60 \"$MOCK\" \"$@\" &\nsleep 1\nexec sleep 60",
            "listens from another process",
        ),
    ] {
        let env = Env::new();
        env.plan_for_run(2);
        let mut cmd = env.dgen();
        cmd.env("OPENAI_API_KEY", "sk-not-for-them")
            .arg("run")
            .args(scripted_stand_in(&env, prelude))
            .timeout(Duration::from_secs(120));
        let out = cmd.assert().failure().get_output().clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            stderr.contains("the server on 127.0.0.1:")
                && stderr.contains("is not the llama-server dgen started"),
            "{stderr}"
        );
        assert_eq!(env.state_count("done"), 0);
    }
}
