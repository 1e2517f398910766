//! Pacing under per-minute limits that a server enforces over short windows, as OpenAI does (a
//! 600-a-minute limit enforced as 10 a second): `dgen run` against the mock's sliding windows
//! and refilling bucket. Assertions are on what the mock counted — calls refused, and the most
//! calls that arrived within one window — never on wall time (the rates are BENCHMARKS.md's,
//! from scripts/bench-adaptive.sh).

mod common;

use std::time::Duration;

use common::mock::rate::Shape;
use common::mock::{MockServer, RateLimit};
use common::Env;

/// A run of `items` dialogues against a mock allowing 10 calls a second (600 a minute) in the
/// given shape, stating its limits in headers or not (dgen then told `--rpm 600`).
fn run_against(shape: Shape, headers: bool, items: u64) -> MockServer {
    let env = Env::new();
    let mock = MockServer::start();
    mock.set_rate_limit(RateLimit {
        window: Duration::from_secs(1),
        requests: Some(10),
        tokens: None,
        headers,
        shape,
    });
    env.plan_for_run(items);
    let mut args = vec!["--concurrency", "64"];
    if !headers {
        args.extend(["--rpm", "600"]);
    }
    env.run(&mock, &args).assert().success();
    assert_eq!(env.state_count("done"), items);
    mock
}

/// Regression: dgen let a second's worth of calls go at once whenever its bucket was full (at
/// the start, and again after each wait a 429 asked for), then went on at the full rate, so a
/// one-second window saw nearly twice its allowance and refused the excess, time after time.
#[test]
fn calls_are_spread_so_no_second_sees_more_than_its_allowance() {
    for headers in [false, true] {
        let mock = run_against(Shape::Sliding, headers, 25);
        // 5 allowed in half a second at the pace; 2 more for calls a busy machine sent late
        // and so together.
        let most = mock.most_arrived_within(Duration::from_millis(500));
        let (limited, answered) = (mock.limited(), mock.requests().len());
        assert!(
            most <= 7,
            "headers {headers}: {most} calls within half a second ({limited} refused, {answered} answered)"
        );
        assert!(
            limited * 20 <= answered as u64,
            "headers {headers}: {limited} refused of {answered} answered"
        );
    }
}
