//! One run over several endpoints (`--endpoint URL` repeated, `--endpoints FILE`): three mock
//! servers on 127.0.0.1, one killed mid-run and restarted, one refusing the key; shares in
//! line with each endpoint's capacity; the file's errors; keys kept out of logs, store and
//! exports. Assertions are on counts the mocks and the store keep, never on wall time.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::mock::{Fault, MockServer};
use common::Env;
use predicates::prelude::*;

/// `dgen run` without `--base_url` or a key in the environment, with short retry delays.
fn run(env: &Env, extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = env.dgen();
    cmd.env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_KEY")
        .env_remove("OPENAI_BASE_URL")
        .args(["run", "--retry_base_ms", "20"])
        .args(extra)
        .timeout(Duration::from_secs(300));
    cmd
}

/// Mock servers whose answers differ from each other's: each composes from its own call
/// counter, so two starting at the same count would answer alike and their dialogues would be
/// rejected as duplicates.
fn mocks<const N: usize>() -> [MockServer; N] {
    std::array::from_fn(|i| {
        let m = MockServer::start();
        m.state.lock().unwrap().counter = i as u64 * 1_000_000;
        m
    })
}

/// The name `dgen status` gives an endpoint without a `name`: host, port and path.
fn name_of(mock: &MockServer) -> String {
    mock.url.trim_start_matches("http://").to_string()
}

fn endpoint_entry(url: &str, model: &str, key_env: Option<&str>, max_concurrency: usize) -> String {
    let key = key_env.map_or(String::new(), |k| format!("key_env = \"{k}\"\n"));
    format!(
        "[[endpoint]]\nurl = \"{url}\"\nmodel = \"{model}\"\n{key}max_concurrency = {max_concurrency}\n\n"
    )
}

/// Records per model in `generated_dialogues.json`, after checking each item is there once.
fn models_of_export(env: &Env, n: usize) -> BTreeMap<String, usize> {
    let out = env.export_all();
    assert_eq!(out.records.len(), n, "every item accepted, none twice");
    assert_eq!(out.hashes.len(), n);
    assert_eq!(out.embeddings.len(), n);
    let ids: BTreeSet<&str> = out
        .records
        .iter()
        .map(|r| r["dialogue_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), n, "each item once");
    let mut models = BTreeMap::new();
    for r in &out.records {
        *models
            .entry(r["model"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    models
}

#[test]
fn a_run_survives_an_endpoint_killed_and_restarted_and_one_refusing_its_key() {
    let env = Env::new();
    let [a, mut b, c] = mocks();
    for m in [&a, &b, &c] {
        m.set_latency(Duration::from_millis(30));
    }
    c.set_always(Some(Fault::EchoKey401));
    let keys = [
        ("DGEN_TEST_KEY_A", "sk-endpoint-a-NEVER-LOGGED-41f0"),
        ("DGEN_TEST_KEY_B", "sk-endpoint-b-NEVER-LOGGED-9c2e"),
        ("DGEN_TEST_KEY_C", "sk-endpoint-c-NEVER-LOGGED-77d1"),
    ];
    let file = [
        endpoint_entry(&a.url, "model-a", Some(keys[0].0), 4),
        endpoint_entry(&b.url, "model-b", Some(keys[1].0), 4),
        endpoint_entry(&c.url, "model-c", Some(keys[2].0), 2),
    ]
    .concat();
    std::fs::write(env.path("endpoints.toml"), file).unwrap();
    let n = 100;
    env.plan_for_run(n);
    let stderr = std::fs::File::create(env.path("stderr.txt")).unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("dgen"))
        .current_dir(env.dir.path())
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("RUST_LOG")
        .envs(keys)
        .args([
            "run",
            "--endpoints",
            "endpoints.toml",
            "--retry_base_ms",
            "20",
        ])
        .args(["--concurrency", "12", "--max_attempts", "10", "-v"])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();

    env.wait_for_status("10 accepted", |s| common::count_in(s, "done") >= 10);
    b.kill();
    let b_name = name_of(&b);
    env.wait_for_status("the killed endpoint taken out", |s| {
        s["run"]["endpoints"][&b_name]["taken_out"].as_u64() >= Some(1)
    });
    let before_restart = b.requests().len();
    b.restart();
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(env.path("stderr.txt")).unwrap();
    assert!(status.success(), "{stderr}");

    let run = env.status_json()["run"].clone();
    let failed_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("api_error"))
        .take(40)
        .collect();
    assert_eq!(
        env.state_count("done"),
        n,
        "{run}\n{}",
        failed_lines.join("\n")
    );
    let models = models_of_export(&env, n as usize);
    assert!(!models.contains_key("model-c"), "{models:?}");
    assert!(models["model-a"] > 0 && models["model-b"] > 0, "{models:?}");
    assert!(
        b.requests().len() > before_restart,
        "the restarted endpoint was probed and served again"
    );
    // Each endpoint got its own key, and only it.
    for (mock, (_, key)) in [&a, &b, &c].into_iter().zip(keys) {
        let expected = format!("Bearer {key}");
        assert!(mock
            .requests()
            .iter()
            .all(|r| r.authorization.as_deref() == Some(expected.as_str())));
    }
    // The endpoint refusing the key: out, probed now and then, every call refused.
    let status = env.status_json();
    let endpoints = &status["run"]["endpoints"];
    let refused = &endpoints[name_of(&c)];
    assert!(refused["taken_out"].as_u64().unwrap() >= 1, "{endpoints}");
    assert_eq!(refused["errors"], refused["calls"], "{endpoints}");
    assert_eq!(refused["calls"], c.requests().len(), "{endpoints}");
    assert!(
        endpoints[&b_name]["errors"].as_u64().unwrap() >= 1,
        "{endpoints}"
    );
    let calls: u64 = endpoints
        .as_object()
        .unwrap()
        .values()
        .map(|e| e["calls"].as_u64().unwrap())
        .sum();
    assert!(
        calls >= status["run"]["calls"].as_u64().unwrap(),
        "{status}"
    );
    // Status and the log say what each endpoint did.
    let text = env.stdout(env.dgen().arg("status"));
    for mock in [&a, &b, &c] {
        assert!(
            text.contains(&format!("endpoint:    {}: ", name_of(mock))),
            "{text}"
        );
    }
    let log = std::fs::read_to_string(env.path("dialogue_generation.log")).unwrap();
    assert!(log.contains("taken out of the run"), "{log}");
    assert!(log.contains(&format!("endpoint {b_name} is back")), "{log}");
    assert!(log.contains("(model model-a): "), "{log}");
    // No key anywhere: stderr (a 401 that echoes the key included), log, store, exports.
    assert!(stderr.contains("[redacted]"), "{stderr}");
    let mut haystacks = vec![stderr.into_bytes()];
    for file in [
        "dgen.redb",
        "dialogue_generation.log",
        "generated_dialogues.json",
        "dialogue_hashes.json",
        "dialogue_embeddings.npy",
    ] {
        haystacks.push(std::fs::read(env.path(file)).unwrap());
    }
    haystacks.push(text.into_bytes());
    for h in &haystacks {
        let h = String::from_utf8_lossy(h);
        for (_, key) in keys {
            assert!(!h.contains(key), "the key {key} leaked");
        }
    }
}

#[test]
fn each_endpoint_serves_a_share_in_line_with_its_capacity() {
    let env = Env::new();
    let mocks: [MockServer; 3] = mocks();
    let capacity = [1usize, 2, 5];
    let mut file = String::new();
    for (i, (m, cap)) in mocks.iter().zip(capacity).enumerate() {
        m.set_latency(Duration::from_millis(100));
        file.push_str(&endpoint_entry(&m.url, &format!("model-{i}"), None, cap));
    }
    std::fs::write(env.path("endpoints.toml"), file).unwrap();
    let n = 40;
    env.plan_for_run(n);
    run(
        &env,
        &[
            "--endpoints",
            "endpoints.toml",
            "--concurrency",
            "16",
            "--max_attempts",
            "10",
        ],
    )
    .assert()
    .success();
    assert_eq!(env.state_count("done"), n);
    let calls: Vec<usize> = mocks.iter().map(|m| m.requests().len()).collect();
    let total: usize = calls.iter().sum();
    let shares: Vec<f64> = calls.iter().map(|&c| c as f64 / total as f64).collect();
    // Capacity 1 : 2 : 5 is 12.5 % : 25 % : 62.5 %; loose bounds, not timings.
    for (share, (lo, hi)) in shares.iter().zip([(0.03, 0.3), (0.1, 0.45), (0.4, 0.85)]) {
        assert!(
            (lo..=hi).contains(share),
            "shares {shares:?} (calls {calls:?}) against capacity 1:2:5"
        );
    }
    assert!(calls[2] > calls[0], "{calls:?}");
    // The provenance names the model of the endpoint that wrote each dialogue.
    let models = models_of_export(&env, n as usize);
    assert_eq!(models.values().sum::<usize>(), n as usize);
    for (i, m) in mocks.iter().enumerate() {
        let served = m.dialogue_calls();
        assert!(
            models.get(&format!("model-{i}")).copied().unwrap_or(0) <= served,
            "{models:?}"
        );
        assert!(m
            .requests()
            .iter()
            .all(|r| r.body["model"] == format!("model-{i}")));
    }
    // The store records the set of models; status counts each endpoint's calls and tokens.
    let status = env.status_json();
    assert_eq!(status["run"]["model"], "model-0+model-1+model-2");
    for m in &mocks {
        let e = &status["run"]["endpoints"][name_of(m)];
        assert_eq!(e["calls"], m.requests().len(), "{e}");
        assert!(e["completion_tokens"].as_u64().unwrap() > 0, "{e}");
        assert!(e["mean_latency_ms"].as_u64().is_some(), "{e}");
    }
    // `dgen judge` afterwards goes to the first endpoint, with its model.
    env.dgen()
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_KEY")
        .env_remove("OPENAI_BASE_URL")
        .arg("judge")
        .assert()
        .success();
    let judged: Vec<_> = mocks[0]
        .requests()
        .into_iter()
        .filter(|r| r.judge)
        .collect();
    assert_eq!(judged.len(), n as usize);
    assert!(judged.iter().all(|r| r.body["model"] == "model-0"));
    assert_eq!(mocks[1].judge_calls() + mocks[2].judge_calls(), 0);
}

#[test]
fn repeated_endpoint_flags_share_one_run_and_the_judge_goes_to_the_first() {
    let env = Env::new();
    let [a, b] = mocks();
    for m in [&a, &b] {
        m.set_latency(Duration::from_millis(20));
    }
    env.plan_for_run(12);
    run(
        &env,
        &[
            "--endpoint",
            &a.url,
            "--endpoint",
            &b.url,
            "--concurrency",
            "8",
            "--max_attempts",
            "10",
            "--judge",
        ],
    )
    .assert()
    .success();
    assert_eq!(env.state_count("done"), 12);
    assert!(
        a.dialogue_calls() > 0 && b.dialogue_calls() > 0,
        "both served"
    );
    // Every candidate is judged before dedup, so a rejected attempt may be judged too.
    assert!(a.judge_calls() >= 12, "the judge is at the first endpoint");
    assert_eq!(b.judge_calls(), 0);
    let models = models_of_export(&env, 12);
    assert_eq!(models.keys().collect::<Vec<_>>(), ["gpt-4o-mini"]);
}

#[test]
fn a_run_stops_when_every_endpoint_refuses_the_key() {
    let env = Env::new();
    let (a, b) = (MockServer::start(), MockServer::start());
    for m in [&a, &b] {
        m.set_always(Some(Fault::Status {
            code: 401,
            retry_after: None,
        }));
    }
    env.plan_for_run(20);
    run(&env, &["--endpoint", &a.url, "--endpoint", &b.url])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("every endpoint is out of the run")
                .and(predicate::str::contains(name_of(&a)))
                .and(predicate::str::contains(name_of(&b)))
                .and(predicate::str::contains("HTTP 401")),
        );
    assert_eq!(env.state_count("pending"), 20);
    assert!(a.requests().len() + b.requests().len() <= 20);
}

#[test]
fn a_bad_endpoints_file_is_refused_naming_the_fix() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2);
    let url = &mock.url;
    let secret = "sk-pasted-into-the-file-0a1b";
    let cases: Vec<(String, &str)> = vec![
        (
            "[[endpoint]]\nmodel = \"m\"\n".into(),
            "endpoint 1 has no url; give each [[endpoint]] a url",
        ),
        (
            format!("[[endpoint]]\nurl = \"{url}\"\nweight = 0\n"),
            "weight = 0 is not allowed; give a number above 0",
        ),
        (
            format!("[[endpoint]]\nurl = \"{url}\"\n\n[[endpoint]]\nurl = \"{url}\"\nweight = -2.5\n"),
            "endpoint 2: weight = -2.5 is not allowed",
        ),
        (
            format!("[[endpoint]]\nurl = \"{url}\"\nweight = \"heavy\"\n"),
            "weight must be a number above 0",
        ),
        (
            format!("[[endpoint]]\nurl = \"{url}\"\nweight = nan\n"),
            "weight = NaN is not allowed",
        ),
        (
            format!("[[endpoint]]\nurl = \"{url}\"\nkey_env = \"DGEN_TEST_UNSET_KEY_VAR\"\n"),
            "DGEN_TEST_UNSET_KEY_VAR is not set in the environment; export DGEN_TEST_UNSET_KEY_VAR=",
        ),
        (
            format!("[[endpoint]]\nurl = \"{url}\"\napi_key = \"{secret}\"\n"),
            "unknown key `api_key` (an API key never goes in the file",
        ),
        (
            format!("[[endpoint]]\nurl = \"{url}\"\nmax_concurrency = 0\n"),
            "max_concurrency must be a whole number from 1 to 4096",
        ),
        (
            format!("[[endpoint]]\nurl = \"{url}\"\nkey = {secret}\n"),
            "is not valid TOML (line 3)",
        ),
        (
            "[[endpoint]]\nurl = \"http://user:pw@127.0.0.1:9/v1\"\n".into(),
            "carries credentials",
        ),
        ("".into(), "names no endpoint"),
    ];
    for (text, says) in cases {
        std::fs::write(env.path("endpoints.toml"), &text).unwrap();
        let out = run(&env, &["--endpoints", "endpoints.toml"])
            .assert()
            .failure()
            .stderr(predicate::str::contains(says).and(predicate::str::contains("endpoints.toml")))
            .get_output()
            .clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains(secret),
            "the file's key was echoed: {stderr}"
        );
    }
    run(&env, &["--endpoints", "missing.toml"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "cannot read --endpoints missing.toml",
        ));
    run(&env, &["--endpoint", url, "--local"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot be used with"));
    run(&env, &["--endpoint", "not a url"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "--endpoint not a url: is not a URL",
        ));
    assert!(mock.requests().is_empty());
    assert_eq!(env.state_count("pending"), 2);
}
