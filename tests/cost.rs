//! Cost before, during and after a run: the plan's estimate, `--max_cost` across resumes,
//! cached prompt tokens, and the price table.

mod common;

use common::mock::MockServer;
use common::{Env, TURNS};

fn dollars_after(out: &str, label: &str) -> f64 {
    let rest = out
        .split(label)
        .nth(1)
        .unwrap_or_else(|| panic!("no {label:?} in {out}"));
    rest.trim_start_matches('$')
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no amount after {label:?} in {out}"))
}

#[test]
fn plan_prints_online_and_batch_cost_for_a_known_model() {
    let env = Env::new();
    let out = env.stdout(&mut env.plan(20, &TURNS));
    assert!(out.contains("estimate for 20 items (40 calls"), "{out}");
    assert!(out.contains("o200k_base, gpt-4o-mini's tokenizer"), "{out}");
    assert!(out.contains("prices of 2025-08-01"), "{out}");
    let online = dollars_after(&out, "online $");
    let batch = dollars_after(&out, "batch $");
    assert!(online > 0.0, "{out}");
    assert!((batch - online * 0.5).abs() <= 0.0001, "{out}");
    assert!(out.contains("static prompt prefix:"), "{out}");

    // A dearer model costs more for the same plan.
    let other = env.stdout(&mut env.plan(
        20,
        &[&["--store", "b.redb", "--model", "gpt-4o"][..], &TURNS[..]].concat(),
    ));
    assert!(dollars_after(&other, "online $") > online * 10.0, "{other}");
}

#[test]
fn plan_says_the_price_is_unknown_for_a_model_without_one() {
    let env = Env::new();
    let out = env.stdout(&mut env.plan(5, &["--model", "my-local-model"]));
    assert!(out.contains("prompt tokens:"), "{out}");
    assert!(
        out.contains("unknown price: no price for model my-local-model; pass --price_input/--price_output (USD per 1M tokens) or --prices FILE"),
        "{out}"
    );
    assert!(!out.contains("online $"), "{out}");

    // Both flags give it one.
    let out = env.stdout(&mut env.plan(
        5,
        &[
            "--store",
            "b.redb",
            "--model",
            "my-local-model",
            "--price_input",
            "1",
            "--price_output",
            "2",
        ],
    ));
    assert!(out.contains("online $"), "{out}");
}

#[test]
fn max_cost_stops_before_the_budget_and_holds_across_resumes() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(10);
    let budget = "0.002";
    let stopped = env
        .run(&mock, &["--concurrency", "1", "--max_cost", budget])
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&stopped.get_output().stderr).to_string();
    assert!(stderr.contains("--max_cost $0.0020 reached"), "{stderr}");
    let done = env.state_count("done");
    assert!((1..10).contains(&done), "done {done}");
    let status = env.status_json();
    let spent = status["run"]["spent"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= 0.002, "spent {spent}");
    assert_eq!(status["run"]["max_cost"].as_f64(), Some(0.002));

    // The spent amount is in the store: the same budget dispatches nothing more.
    let calls = mock.requests().len();
    env.run(&mock, &["--concurrency", "1", "--max_cost", budget])
        .assert()
        .code(3);
    assert_eq!(
        mock.requests().len(),
        calls,
        "no call under the same budget"
    );
    assert_eq!(env.state_count("done"), done);

    // A raised budget goes on to the end.
    env.run(&mock, &["--concurrency", "2", "--max_cost", "1"])
        .assert()
        .success();
    assert_eq!(env.state_count("done"), 10);
    let text = env.stdout(env.dgen().arg("status"));
    assert!(text.contains("budget --max_cost $1.0000"), "{text}");
}

#[test]
fn max_cost_without_a_price_is_refused_before_any_call() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2);
    let out = env
        .run(&mock, &["--model", "my-local-model", "--max_cost", "1"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("no price for model my-local-model; pass --price_input/--price_output"),
        "{stderr}"
    );
    assert_eq!(mock.requests().len(), 0);
}

#[test]
fn cached_tokens_are_counted_and_priced_at_the_cached_rate() {
    let env = Env::new();
    let mock = MockServer::start();
    mock.state.lock().unwrap().prompt_cache = true;
    env.plan_for_run(6);
    env.run(&mock, &["--concurrency", "1"]).assert().success();
    let run = &env.status_json()["run"];
    let prompt = run["prompt_tokens"].as_u64().unwrap();
    let completion = run["completion_tokens"].as_u64().unwrap();
    let cached = run["cached_tokens"].as_u64().unwrap();
    // The static prefix repeats from the second call of each kind on.
    assert!(cached > 0 && cached < prompt, "cached {cached} of {prompt}");
    let share = run["cache_hit_share"].as_f64().unwrap();
    assert!((share - cached as f64 / prompt as f64).abs() < 1e-9);
    let expected =
        ((prompt - cached) as f64 * 0.15 + cached as f64 * 0.075 + completion as f64 * 0.6) / 1e6;
    let cost = run["estimated_cost"].as_f64().unwrap();
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    // Recorded as billed, at the same prices (rounded up to nano-dollars per commit).
    let spent = run["spent"].as_f64().unwrap();
    assert!((spent - expected).abs() < 1e-6, "{spent} vs {expected}");
    let text = env.stdout(env.dgen().arg("status"));
    assert!(
        text.contains(&format!("cache:       {cached} of {prompt} prompt tokens")),
        "{text}"
    );
}

#[test]
fn a_prices_file_overrides_the_table_and_bad_content_is_refused() {
    let env = Env::new();
    let good = env.path("prices.json");
    std::fs::write(
        &good,
        r#"{"as_of": "2030-01-01", "models": {"my-model": {"input": 1, "cached_input": 0.5, "output": 4, "batch_factor": 0.5}}}"#,
    )
    .unwrap();
    let out = env.stdout(&mut env.plan(
        5,
        &["--model", "my-model", "--prices", good.to_str().unwrap()],
    ));
    assert!(out.contains("prices of 2030-01-01"), "{out}");
    assert!(out.contains("online $"), "{out}");

    for (content, says) in [
        ("not json", "is not a price table"),
        (
            r#"{"as_of": "x", "models": {"m": {"input": -1, "cached_input": 0, "output": 1, "batch_factor": 0.5}}}"#,
            "input is -1",
        ),
        (
            r#"{"as_of": "x", "models": {"m": {"input": 1, "cached_input": 0, "output": 1, "batch_factor": 2}}}"#,
            "batch_factor is 2",
        ),
        (r#"{"as_of": "x", "models": {}}"#, "it names no model"),
    ] {
        let bad = env.path("bad.json");
        std::fs::write(&bad, content).unwrap();
        let out = env
            .plan(5, &["--store", "c.redb", "--prices", bad.to_str().unwrap()])
            .assert()
            .failure();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(stderr.contains("--prices"), "{stderr}");
        assert!(stderr.contains(says), "{content}: {stderr}");
        assert!(!env.path("c.redb").exists(), "nothing planned");
    }
}

/// USD of `prompt`/`completion` tokens at `input`/`output` USD per 1M tokens.
fn usd(prompt: u64, completion: u64, input: f64, output: f64) -> f64 {
    (prompt as f64 * input + completion as f64 * output) / 1e6
}

#[test]
fn judge_calls_are_charged_at_the_judge_models_price_not_the_runs() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(3);
    env.run(
        &mock,
        &[
            "--model",
            "gpt-4o-mini",
            "--judge",
            "--judge_model",
            "gpt-4o",
            "--max_cost",
            "5",
        ],
    )
    .assert()
    .success();
    let run = &env.status_json()["run"];
    let tokens = |k: &str| run[k].as_u64().unwrap();
    assert!(tokens("judge_prompt_tokens") > 0);
    let generation = usd(
        tokens("prompt_tokens"),
        tokens("completion_tokens"),
        0.15,
        0.6,
    );
    let judge = usd(
        tokens("judge_prompt_tokens"),
        tokens("judge_completion_tokens"),
        2.5,
        10.0,
    );
    let spent = run["spent"].as_f64().unwrap();
    assert!(
        (spent - (generation + judge)).abs() < 1e-6,
        "spent {spent}: generation {generation} + judge {judge} at gpt-4o's price"
    );
}

#[test]
fn max_cost_with_a_judge_model_without_a_price_is_refused_before_any_call() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2);
    let out = env
        .run(
            &mock,
            &[
                "--judge",
                "--judge_model",
                "my-judge",
                "--price_input",
                "1",
                "--price_output",
                "1",
                "--max_cost",
                "1",
            ],
        )
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("no price for model my-judge (--judge_model)")
            && stderr.contains("--prices FILE"),
        "{stderr}"
    );
    assert_eq!(mock.requests().len(), 0);
}

/// The amount after `label` in the `--max_cost` message, e.g. "$0.0012 spent".
fn amount_before(message: &str, label: &str) -> f64 {
    let head = message
        .split(label)
        .next()
        .unwrap_or_else(|| panic!("no {label:?} in {message}"));
    let amount = head.rsplit('$').next().unwrap();
    amount
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no amount before {label:?} in {message}"))
}

#[test]
fn max_cost_with_attempts_in_flight_waits_for_them_instead_of_stopping() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(40);
    // Room for about four attempts' upper bounds; each costs far less than its bound.
    let budget = "0.004";
    let out = env
        .run(&mock, &["--concurrency", "4", "--max_cost", budget])
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let message = stderr
        .lines()
        .find(|l| l.contains("--max_cost $0.0040 reached"))
        .unwrap_or_else(|| panic!("{stderr}"));
    // It stopped with nothing in flight, when the next attempt could not fit beside what was
    // spent — not at the first attempt that did not fit beside the reservations.
    assert!(message.contains("$0.0000 reserved"), "{message}");
    let spent = amount_before(message, " spent");
    let next = message
        .rsplit('$')
        .next()
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert!(spent + next > 0.004, "{message}");
    let done = env.state_count("done");
    assert!(done > 4, "only {done} accepted: {message}");
    let recorded = env.status_json()["run"]["spent"].as_f64().unwrap();
    assert!(recorded <= 0.004, "spent {recorded}");
}

#[test]
fn max_cost_counts_tokens_of_an_earlier_run_without_a_price() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(3);
    // One item fails its only attempt and is left for --retry_failed.
    mock.push([common::mock::Fault::Malformed]);
    env.run(
        &mock,
        &[
            "--model",
            "my-model",
            "--concurrency",
            "1",
            "--max_attempts",
            "1",
        ],
    )
    .assert()
    .success();
    assert_eq!(env.state_count("failed"), 1);
    let before = env.status_json()["run"].clone();
    assert_eq!(
        before["spent"].as_f64(),
        Some(0.0),
        "no price, nothing recorded"
    );
    let tokens_before =
        before["prompt_tokens"].as_u64().unwrap() + before["completion_tokens"].as_u64().unwrap();
    assert!(tokens_before > 0);

    env.run(
        &mock,
        &[
            "--model",
            "my-model",
            "--price_input",
            "1",
            "--price_output",
            "1",
            "--max_cost",
            "1",
            "--retry_failed",
        ],
    )
    .assert()
    .success();
    let run = &env.status_json()["run"];
    let tokens =
        run["prompt_tokens"].as_u64().unwrap() + run["completion_tokens"].as_u64().unwrap();
    let spent = run["spent"].as_f64().unwrap();
    // Every token of both runs at $1 per 1M, the first run's included.
    assert!(
        (spent - tokens as f64 / 1e6).abs() < 1e-6,
        "spent {spent} for {tokens} tokens ({tokens_before} before the price)"
    );
}

#[test]
fn dgen_judge_adds_its_calls_to_spent_at_the_judge_models_price() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(3);
    env.run(&mock, &["--concurrency", "1"]).assert().success();
    let before = env.status_json()["run"]["spent"].as_f64().unwrap();
    env.dgen()
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_KEY")
        .env_remove("OPENAI_BASE_URL")
        .args(["judge", "--retry_base_ms", "20", "--judge_model", "gpt-4o"])
        .assert()
        .success();
    let run = &env.status_json()["run"];
    let judge = usd(
        run["judge_prompt_tokens"].as_u64().unwrap(),
        run["judge_completion_tokens"].as_u64().unwrap(),
        2.5,
        10.0,
    );
    assert!(judge > 0.0);
    let spent = run["spent"].as_f64().unwrap();
    assert!(
        (spent - before - judge).abs() < 1e-6,
        "spent {before} then {spent}; the judge's calls cost {judge}"
    );
}

#[test]
fn a_timed_out_try_is_charged_its_upper_bound_and_status_says_so() {
    let env = Env::new();
    let mock = MockServer::start();
    env.plan_for_run(2);
    // The first call hangs past the timeout: the provider may have billed it, so spent
    // carries its prompt and max_tokens at the price; the retry answers.
    mock.push([common::mock::Fault::Hang(std::time::Duration::from_secs(3))]);
    env.run(&mock, &["--concurrency", "1", "--request_timeout", "1"])
        .assert()
        .success();
    assert_eq!(env.state_count("done"), 2);
    let run = &env.status_json()["run"];
    let tokens = |k: &str| run[k].as_u64().unwrap();
    let billed = usd(
        tokens("prompt_tokens"),
        tokens("completion_tokens"),
        0.15,
        0.6,
    );
    assert_eq!(run["timed_out_calls"], 1, "{run}");
    let bound = run["spent_upper_bound"].as_f64().unwrap();
    // At least the scenario call's max_tokens at the output price.
    assert!(bound > 0.0, "{run}");
    let spent = run["spent"].as_f64().unwrap();
    assert!(
        (spent - (billed + bound)).abs() < 1e-6,
        "spent {spent}: billed tokens {billed} + upper bound {bound}"
    );
    let text = env.stdout(env.dgen().arg("status"));
    assert!(
        text.contains("of it the upper bound of 1 tries that timed out"),
        "{text}"
    );
}
