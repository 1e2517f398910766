//! A chat-completions server on 127.0.0.1 that composes answers to dgen's prompts (the one the
//! tests use): for trying `dgen run` without an API key or a model, for benchmarks, and as a
//! stand-in `--llama_server` (it accepts llama-server's flags and serves `/health`).
//!
//! `dgen-mock-llm [--port N] [--latency-ms MS] [--turns N] [--rpm N] [--tpm N] [--window-s S]
//! [--no-ratelimit-headers] [--capacity C --service-ms MS] [--first-call N]
//! [--repeat-after-idle-ms MS]` prints its base URL and serves until killed. Answers are
//! composed from a call counter; `--first-call` sets where it starts, so several mocks serving
//! one run do not answer alike. `--rpm` / `--tpm` enforce limits with 429s over a sliding window
//! of `--window-s` seconds (default 60; the limits are per minute, scaled to the window);
//! `--capacity` makes it queue like llama.cpp or vLLM: C calls served at once, each for
//! `--service-ms`, the rest wait. `--repeat-after-idle-ms MS` answers a dialogue call that comes
//! MS or more after the previous one with the previous answer, byte for byte: shards run one
//! after another then duplicate each other's dialogues, for `dgen merge` to catch.
//! `--degenerate` answers every dialogue call with junk (one-word turns, nouns for intents).
//! `GET /stats` says how many calls it answered, refused with 429 and held open at once. It also
//! serves the OpenAI Batch API (`/files`, `/batches`) for `dgen run --batch`: each read of a
//! batch moves it one step (validating, in_progress, completed).

#[path = "../../tests/common/mock.rs"]
mod mock;

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Option<u64> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
    };
    let server = mock::MockServer::start_on(value("--port").unwrap_or(0) as u16);
    server.set_latency(Duration::from_millis(value("--latency-ms").unwrap_or(0)));
    server.state.lock().unwrap().turns = value("--turns").map(|t| t as usize);
    server.state.lock().unwrap().counter = value("--first-call").unwrap_or(0);
    let (rpm, tpm) = (value("--rpm"), value("--tpm"));
    if rpm.is_some() || tpm.is_some() {
        let window = value("--window-s").unwrap_or(60).max(1);
        let scale = |per_minute: u64| (per_minute * window / 60).max(1);
        server.set_rate_limit(mock::RateLimit {
            window: Duration::from_secs(window),
            requests: rpm.map(scale),
            tokens: tpm.map(scale),
            headers: !args.iter().any(|a| a == "--no-ratelimit-headers"),
        });
    }
    if let Some(capacity) = value("--capacity") {
        server.set_queue(mock::Queue {
            capacity: capacity.max(1) as usize,
            service: Duration::from_millis(value("--service-ms").unwrap_or(100)),
        });
    }
    if let Some(ms) = value("--repeat-after-idle-ms") {
        server.state.lock().unwrap().repeat_after_idle = Some(Duration::from_millis(ms));
    }
    if args.iter().any(|a| a == "--degenerate") {
        server.state.lock().unwrap().always = Some(mock::Fault::Degenerate);
    }
    println!("{}", server.url);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
