//! A chat-completions server on 127.0.0.1 that composes answers to dgen's prompts (the one the
//! tests use): for trying `dgen run` without an API key or a model, for benchmarks, and as a
//! stand-in `--llama_server` (it accepts llama-server's flags and serves `/health`).
//!
//! `dgen-mock-llm [--port N] [--latency-ms MS] [--turns N]` prints its base URL and serves until
//! killed.

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
    println!("{}", server.url);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
