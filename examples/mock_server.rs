//! The tests' chat-completions mock as a standalone server, for benchmarks and demos:
//! `cargo run --release --example mock_server -- [LATENCY_MS] [TURNS]` prints its base URL on
//! stdout and serves until killed.

#[path = "../tests/common/mock.rs"]
mod mock;

use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let latency: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let turns: Option<usize> = args.next().and_then(|a| a.parse().ok());
    let server = mock::MockServer::start();
    server.set_latency(Duration::from_millis(latency));
    server.state.lock().unwrap().turns = turns;
    println!("{}", server.url);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
