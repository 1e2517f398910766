//! A chat-completions server on 127.0.0.1 that composes answers to dgen's prompts (the one the
//! tests use): for trying `dgen run` without an API key or a model, for benchmarks, and as a
//! stand-in `--llama_server` (it accepts llama-server's flags and serves `/health`).
//!
//! `dgen-mock-llm --help` lists its flags. It prints its base URL and serves until killed.
//! `GET /stats` says how many calls it answered, refused with 429 and held open at once. It also
//! serves the OpenAI Batch API (`/files`, `/batches`) for `dgen run --batch`: each read of a
//! batch moves it one step (validating, in_progress, completed); `/stats` counts the batch
//! requests it bills (`batch_billed`, `batch_billed_twice`), and `--batch-faults` makes it
//! misbehave as providers do. Annotated requests (`dgen plan --annotate`) get labelled
//! dialogues that pursue their goals; `--annotated-faults` plants wrong labels for dgen's label
//! checks to catch.

#[path = "../../tests/common/mock.rs"]
mod mock;

use std::time::Duration;

use clap::Parser;

/// A chat-completions server on 127.0.0.1 that composes answers to dgen's prompts, for trying
/// and benchmarking `dgen run` without an API key or a model. Prints its base URL and serves
/// until killed; `GET /stats` says how many calls it answered and refused.
#[derive(Debug, Parser)]
#[command(name = "dgen-mock-llm", version)]
struct Args {
    /// Port on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Milliseconds every answer takes.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    latency_ms: u64,
    /// Turns per generated dialogue (default: the prompt's minimum).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    turns: Option<u64>,
    /// Where the call counter that answers are composed from starts, so several mocks serving
    /// one run do not answer alike.
    #[arg(long, default_value_t = 0, value_name = "N")]
    first_call: u64,
    /// Requests a minute, enforced with 429 + Retry-After over --window-s.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rpm: Option<u64>,
    /// Tokens a minute (prompt + completion), enforced with 429 + Retry-After over --window-s.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    tpm: Option<u64>,
    /// Seconds over which --rpm / --tpm are enforced, scaled to it (600 a minute over 1 s: 10
    /// a second): a sliding window, or with --bucket the bucket's refill time.
    #[arg(long, default_value_t = 60, value_name = "S",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    window_s: u64,
    /// Enforce --rpm / --tpm with a token bucket that holds a window's allowance and refills
    /// continuously, instead of a sliding window; its reset header says when it is full again.
    #[arg(long)]
    bucket: bool,
    /// Leave out the x-ratelimit-* headers (the limits are enforced all the same).
    #[arg(long)]
    no_ratelimit_headers: bool,
    /// Queue like llama.cpp or vLLM: this many calls served at once, the rest wait.
    #[arg(long, value_name = "C", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    capacity: Option<u64>,
    /// How long each queued call is served (with --capacity).
    #[arg(long, default_value_t = 100, value_name = "MS")]
    service_ms: u64,
    /// Answer a dialogue call that comes MS or more after the previous one with the previous
    /// answer, byte for byte: shards run one after another then duplicate each other's
    /// dialogues, for `dgen merge` to catch.
    #[arg(long, value_name = "MS")]
    repeat_after_idle_ms: Option<u64>,
    /// Answer every dialogue call with junk: one-word turns, nouns for intents (what the
    /// degenerate-output checks are for).
    #[arg(long)]
    degenerate: bool,
    /// Pad every dialogue answer with spaces to N bytes and send it without a Content-Length
    /// (the body ends when the connection closes): for dgen's cap on response bodies.
    #[arg(long, value_name = "N")]
    oversize_bytes: Option<usize>,
    /// Batch API faults, once each, comma-separated: create-late (a create answered 5 s after
    /// the batch exists), create-502, create-cut (a 2xx cut off), file-gone (the input file
    /// deleted before the create), late-output (a finished batch names its output file a read
    /// later), short-download (the first result file cut after its first line), lost-output
    /// (an output file that answers 404), error-line (an answered request repeated in the
    /// error file as a 500).
    #[arg(long, value_delimiter = ',', value_parser = [
        "create-late", "create-502", "create-cut", "file-gone", "late-output",
        "short-download", "lost-output", "error-line",
    ])]
    batch_faults: Vec<String>,
    /// Annotated answers with wrong labels, comma-separated (several are planted in one answer):
    /// ungrounded (a value in the state the text never says), unknown_slot (a slot not in the
    /// schema), categorical (a categorical value outside its possible values, where a service of
    /// the request has a categorical slot), dropped_slot (the turn after the first value is given
    /// drops it from the state), wrong_call (the call lacks a required slot), outcome_calls (the
    /// calls contradict the planned outcome). Every dialogue answer has them unless
    /// --annotated-faults-every or --annotated-faults-first says otherwise.
    #[arg(long, value_delimiter = ',', value_parser = [
        "ungrounded", "unknown_slot", "categorical", "dropped_slot", "wrong_call", "outcome_calls",
    ])]
    annotated_faults: Vec<String>,
    /// With --annotated-faults: only every N-th dialogue answer has them.
    #[arg(long, value_name = "N", requires = "annotated_faults",
          value_parser = clap::value_parser!(u64).range(1..))]
    annotated_faults_every: Option<u64>,
    /// With --annotated-faults: only the first K dialogue answers have them.
    #[arg(
        long,
        value_name = "K",
        requires = "annotated_faults",
        conflicts_with = "annotated_faults_every"
    )]
    annotated_faults_first: Option<usize>,
    /// llama-server's flags, accepted so the mock can stand in for it (`--llama_server`):
    /// the model file (ignored).
    #[arg(short = 'm', long, hide = true)]
    model: Option<String>,
    /// llama-server's host (the mock always listens on 127.0.0.1).
    #[arg(long, hide = true)]
    host: Option<String>,
    /// llama-server's context size (ignored).
    #[arg(short = 'c', long = "ctx-size", hide = true)]
    ctx_size: Option<u64>,
    /// llama-server's parallel slots, `-np` (ignored).
    #[arg(long = "np", alias = "parallel", hide = true)]
    parallel: Option<u64>,
    /// llama-server's threads (ignored).
    #[arg(short = 't', long, hide = true)]
    threads: Option<u64>,
    /// llama-server's key (`--api-key`, or `LLAMA_API_KEY` as dgen passes it): every call but
    /// `/health` and `/stats` must bear it, and `GET /props` answers.
    #[arg(
        long = "api-key",
        env = "LLAMA_API_KEY",
        hide_env_values = true,
        hide = true
    )]
    api_key: Option<String>,
}

fn main() {
    // llama-server spells its parallel slots `-np`, one dash and two letters, which clap
    // would read as `-n p`.
    let args = std::env::args().map(|a| if a == "-np" { "--np".into() } else { a });
    let args = Args::parse_from(args);
    let server = mock::MockServer::start_on(args.port);
    server.set_latency(Duration::from_millis(args.latency_ms));
    {
        let mut s = server.state.lock().unwrap();
        s.turns = args.turns.map(|t| t as usize);
        s.counter = args.first_call;
        s.repeat_after_idle = args.repeat_after_idle_ms.map(Duration::from_millis);
        s.require_key = args.api_key.filter(|k| !k.is_empty());
    }
    if args.rpm.is_some() || args.tpm.is_some() {
        let window = args.window_s;
        let scale = |per_minute: u64| (per_minute.saturating_mul(window) / 60).max(1);
        server.set_rate_limit(mock::RateLimit {
            window: Duration::from_secs(window),
            requests: args.rpm.map(scale),
            tokens: args.tpm.map(scale),
            headers: !args.no_ratelimit_headers,
            shape: if args.bucket {
                mock::rate::Shape::Bucket
            } else {
                mock::rate::Shape::Sliding
            },
        });
    }
    if let Some(capacity) = args.capacity {
        server.set_queue(mock::Queue {
            capacity: capacity as usize,
            service: Duration::from_millis(args.service_ms),
        });
    }
    {
        use mock::batch::CreateFault;
        let mut s = server.state.lock().unwrap();
        for fault in &args.batch_faults {
            let b = &mut s.batch;
            match fault.as_str() {
                "create-late" => b
                    .create_faults
                    .push_back(CreateFault::Late(Duration::from_secs(5))),
                "create-502" => b.create_faults.push_back(CreateFault::BadGateway),
                "create-cut" => b.create_faults.push_back(CreateFault::CutBody),
                "file-gone" => b.create_faults.push_back(CreateFault::FileGone),
                "late-output" => b.result_faults.late_output += 1,
                "short-download" => b.result_faults.short_download = Some((1, 1)),
                "lost-output" => b.result_faults.lost_output += 1,
                "error-line" => b.result_faults.error_line_for_answer += 1,
                _ => unreachable!("clap checks the names"),
            }
        }
    }
    if args.degenerate {
        server.state.lock().unwrap().always = Some(mock::Fault::Degenerate);
    }
    if let Some(bytes) = args.oversize_bytes {
        server.state.lock().unwrap().always = Some(mock::Fault::Oversize {
            bytes,
            declared: false,
        });
    }
    if !args.annotated_faults.is_empty() {
        let faults: Vec<mock::LabelFault> = args
            .annotated_faults
            .iter()
            .map(|name| mock::LabelFault::from_name(name).expect("clap checks the names"))
            .collect();
        let fault = mock::Fault::Labels(faults);
        match (args.annotated_faults_first, args.annotated_faults_every) {
            (Some(k), _) => server.push(std::iter::repeat_n(fault, k)),
            (None, every) => server.set_every_dialogue(every.unwrap_or(1) as usize, fault),
        }
    }
    println!("{}", server.url);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
