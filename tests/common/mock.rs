//! A chat-completions server on 127.0.0.1 for tests and benchmarks: it answers the scenario and
//! dialogue calls that dgen sends with text it composes from a word bank (so answers differ in
//! meaning, not only in spelling), and it can misbehave on request: HTTP errors with
//! `Retry-After`, hangs, malformed tags, wrong turn counts, empty content, exact and near
//! repeats of an earlier answer, 401s, and answers a quality check catches (the prompt's example
//! turn copied, an ending that contradicts the planned outcome). A normal answer names the
//! item's first service and ends with a cue of the planned outcome, as a real model's would.
//! Annotated requests get labelled dialogues that pursue the request's goals
//! (`mock_annotated.rs`), with wrong labels planted on request (`Fault::Labels`).
//!
//! It also answers the LLM judge's calls (recognised by the rubric's opening words) with
//! scores derived from the dialogue it is shown — lower for turns out of order, fewer than
//! three turns, an ending without a cue of the planned outcome, one side's words copied into
//! the other's — or, when switched (`JudgeMode`), with low scores or unusable answers.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "mock_annotated.rs"]
pub mod annotated;
#[path = "mock_batch.rs"]
pub mod batch;
#[path = "mock_rate.rs"]
pub mod rate;

pub use annotated::LabelFault;
pub use rate::RateLimit;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub enum Fault {
    /// A normal answer; queued to let one dialogue call through before later faults.
    Normal,
    /// An HTTP error status with an optional Retry-After header value.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// 401 whose message repeats the bearer token it received (servers do).
    EchoKey401,
    /// Sleep this long before answering normally.
    Hang(Duration),
    /// A dialogue whose last <Assistant> is never closed.
    Malformed,
    /// A dialogue with far more turns than any item allows.
    WrongTurns,
    /// 200 with empty content.
    Empty,
    /// The previous dialogue answer again, byte for byte.
    ExactRepeat,
    /// The previous dialogue answer with one word changed.
    NearRepeat,
    /// JSON mode: a body that is not JSON.
    BadJson,
    /// A dialogue cut in the middle, with `finish_reason: "length"`.
    Truncated,
    /// JSON mode: JSON whose turns lack required fields.
    SchemaViolation,
    /// A dialogue whose first user utterance is far over the field cap (400 characters).
    LongField,
    /// A dialogue whose first user utterance starts with a fixed prompt text (the tag format's
    /// description of the user slot), as small models write.
    CopyExample,
    /// A dialogue that ends as Resolved when another outcome was planned, and as Failed when
    /// Resolved was.
    WrongOutcome,
    /// What a 135M model writes at its worst: every turn the same one-word utterance and reply,
    /// with nouns for intents (`Sophia` / `Buses`, `Movie`, `Cars`, `Clouds`).
    Degenerate,
    /// An error status with OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
    ApiError {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// 429 with these headers, verbatim (hostile `Retry-After` values and the like).
    Headers(Vec<(String, String)>),
    /// A normal dialogue padded with spaces to this many bytes, with a `Content-Length`
    /// (`declared`) or without one, the body ending when the connection closes.
    Oversize { bytes: usize, declared: bool },
    /// An annotated answer with these wrong labels (a plain request gets a normal answer).
    Labels(Vec<LabelFault>),
}

impl Fault {
    /// Faults about the dialogue's content wait for a dialogue call.
    fn dialogue_only(&self) -> bool {
        matches!(
            self,
            Fault::Normal
                | Fault::Malformed
                | Fault::WrongTurns
                | Fault::Empty
                | Fault::ExactRepeat
                | Fault::NearRepeat
                | Fault::BadJson
                | Fault::Truncated
                | Fault::SchemaViolation
                | Fault::LongField
                | Fault::CopyExample
                | Fault::WrongOutcome
                | Fault::Degenerate
                | Fault::Oversize { .. }
                | Fault::Labels(_)
        )
    }
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub body: Value,
    pub authorization: Option<String>,
    pub dialogue: bool,
    /// A judge call (the rubric's system message).
    pub judge: bool,
}

/// How the mock answers judge calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JudgeMode {
    /// Scores derived from the dialogue shown.
    #[default]
    Fair,
    /// Every score 1.
    Low,
    /// Prose instead of JSON.
    InvalidJson,
    /// An overall score of 7.
    OutOfRange,
}

/// The rubric's opening words, by which the mock knows a judge call.
pub const JUDGE_MARKER: &str = "You judge customer-service dialogues";

#[derive(Default)]
pub struct State {
    pub faults: VecDeque<Fault>,
    /// Applied to every call while set (after the queue is empty).
    pub always: Option<Fault>,
    pub latency: Duration,
    pub requests: Vec<Recorded>,
    pub answers: Vec<String>,
    pub counter: u64,
    /// Turns per generated dialogue; `None` uses the prompt's minimum.
    pub turns: Option<usize>,
    /// Prompt tokens every answer claims, instead of an estimate (e.g. u64::MAX).
    pub prompt_tokens: Option<u64>,
    /// Extra latency of dialogue calls only (scenario calls answer at `latency`).
    pub dialogue_latency: Duration,
    /// Faults drawn at random (probability, fault) for calls nothing else applies to.
    pub random: Vec<(f64, Fault)>,
    /// State of the draws (a fixed-seed generator, so a test repeats the same sequence).
    pub draws: u64,
    /// Every n-th call (1-based count of all calls) gets this fault, before the queue.
    pub every: Option<(usize, Fault)>,
    /// Every n-th dialogue call (1-based count of dialogue calls) gets this fault, before the
    /// queue (and after `every`).
    pub every_dialogue: Option<(usize, Fault)>,
    /// Refuse a `json_schema` response format outside OpenAI's strict subset, as OpenAI does.
    pub openai_schema_rules: bool,
    pub judge_mode: JudgeMode,
    /// The next this many judge calls answer with every score 1 (before `judge_mode`).
    pub judge_low_first: usize,
    /// Report `prompt_tokens_details.cached_tokens` like a provider's prompt cache: the
    /// longest common prefix (in rough tokens, 4 characters each) of this request's messages
    /// with an earlier request's. No 1,024-token threshold, so short prompts show hits too.
    pub prompt_cache: bool,
    /// The messages of earlier requests, for `prompt_cache`.
    pub seen_prompts: Vec<String>,
    /// Requests and tokens per window, enforced with 429s.
    pub rate_limit: Option<RateLimit>,
    /// What the rate limit counted: 429s sent, calls admitted.
    pub rate: rate::RateState,
    /// A server that queues: this many calls served at once, each taking `service`.
    pub queue: Option<Queue>,
    pub busy: usize,
    /// Chat calls open now, the most ever, and the number open at each arrival (itself included).
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub arrivals: Vec<usize>,
    /// The first and the latest arrival of a chat call.
    pub first_arrival: Option<std::time::Instant>,
    pub last_arrival: Option<std::time::Instant>,
    /// The Batch API's files and batches.
    pub batch: batch::BatchState,
    /// A dialogue call that comes this long after the previous one repeats the previous answer
    /// exactly (when nothing else applies): the first dialogue of a process started after
    /// another finished, as shards run one after another, duplicates the other's last.
    pub repeat_after_idle: Option<Duration>,
    pub last_dialogue_at: Option<std::time::Instant>,
    /// Answer only calls bearing this key (401 otherwise), but `/health` and `/stats`, as
    /// llama-server with `--api-key` does.
    pub require_key: Option<String>,
}

/// A server that queues instead of refusing (llama.cpp, vLLM): `capacity` calls are served at
/// once, each for `service`; the others wait their turn, so latency grows with the queue.
#[derive(Debug, Clone, Copy)]
pub struct Queue {
    pub capacity: usize,
    pub service: Duration,
}

impl State {
    /// The next draw in [0, 1): SplitMix64, seeded by the zero state.
    fn draw(&mut self) -> f64 {
        self.draws = self.draws.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.draws;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random fault for this call, if one is drawn.
    fn random_fault(&mut self, dialogue: bool) -> Option<Fault> {
        let roll = self.draw();
        let mut edge = 0.0;
        for (p, fault) in &self.random {
            edge += p;
            if roll < edge {
                return (dialogue || !fault.dialogue_only()).then(|| fault.clone());
            }
        }
        None
    }
}

pub struct MockServer {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    port: u16,
    listener: Option<std::thread::JoinHandle<()>>,
    /// Connections open now, by number: [`MockServer::kill`] cuts them.
    open: Arc<Mutex<std::collections::HashMap<u64, TcpStream>>>,
}

impl MockServer {
    pub fn start() -> MockServer {
        MockServer::start_on(0)
    }

    /// On a given port of 127.0.0.1 (0: any free one).
    pub fn start_on(port: u16) -> MockServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = MockServer {
            url: format!("http://{addr}/v1"),
            state: Arc::new(Mutex::new(State::default())),
            stop: Arc::new(AtomicBool::new(false)),
            port: addr.port(),
            listener: None,
            open: Arc::default(),
        };
        server.listen(listener);
        server
    }

    fn listen(&mut self, listener: TcpListener) {
        let (s, st, open) = (self.state.clone(), self.stop.clone(), self.open.clone());
        self.listener = Some(std::thread::spawn(move || {
            let mut next = 0u64;
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                next += 1;
                let id = next;
                if let Ok(clone) = conn.try_clone() {
                    open.lock().unwrap().insert(id, clone);
                }
                let (s, open) = (s.clone(), open.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &s);
                    open.lock().unwrap().remove(&id);
                });
            }
        }));
    }

    /// Stops listening and cuts every open connection, as a server process killed would: the
    /// port refuses connections until [`MockServer::restart`]. The state (requests, faults)
    /// stays.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(listener) = self.listener.take() {
            listener.join().unwrap();
        }
        for (_, conn) in self.open.lock().unwrap().drain() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Listens again on the same port after [`MockServer::kill`], with the same state.
    pub fn restart(&mut self) {
        let started = std::time::Instant::now();
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(_) if started.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot listen on port {} again: {e}", self.port),
            }
        };
        self.stop = Arc::new(AtomicBool::new(false));
        self.listen(listener);
    }

    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    pub fn set_always(&self, fault: Option<Fault>) {
        self.state.lock().unwrap().always = fault;
    }

    pub fn set_every(&self, n: usize, fault: Fault) {
        self.state.lock().unwrap().every = Some((n, fault));
    }

    /// Every n-th dialogue call gets `fault` (scenario and judge calls are not counted).
    pub fn set_every_dialogue(&self, n: usize, fault: Fault) {
        self.state.lock().unwrap().every_dialogue = Some((n, fault));
    }

    /// From now on, answer a schema OpenAI's Structured Outputs would refuse with OpenAI's 400.
    pub fn refuse_unsupported_schemas(&self) {
        self.state.lock().unwrap().openai_schema_rules = true;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().unwrap().latency = latency;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn dialogue_calls(&self) -> usize {
        self.requests().iter().filter(|r| r.dialogue).count()
    }

    pub fn judge_calls(&self) -> usize {
        self.requests().iter().filter(|r| r.judge).count()
    }

    pub fn set_judge_mode(&self, mode: JudgeMode) {
        self.state.lock().unwrap().judge_mode = mode;
    }

    /// The next `n` judge calls answer with every score 1.
    pub fn judge_low_first(&self, n: usize) {
        self.state.lock().unwrap().judge_low_first = n;
    }

    pub fn set_rate_limit(&self, limit: RateLimit) {
        self.state.lock().unwrap().rate_limit = Some(limit);
    }

    pub fn set_queue(&self, queue: Queue) {
        self.state.lock().unwrap().queue = Some(queue);
    }

    /// How the next batches created end, in order (then completed).
    pub fn batch_ends(&self, ends: impl IntoIterator<Item = batch::BatchEnd>) {
        self.state.lock().unwrap().batch.ends.extend(ends);
    }

    /// Reads the Batch API's state.
    pub fn batches<T>(&self, read: impl FnOnce(&batch::BatchState) -> T) -> T {
        read(&self.state.lock().unwrap().batch)
    }

    /// Changes the Batch API's state (e.g. to set a one-shot hang).
    pub fn with_batches(&self, change: impl FnOnce(&mut batch::BatchState)) {
        change(&mut self.state.lock().unwrap().batch)
    }

    /// 429s sent for the rate limit.
    pub fn limited(&self) -> u64 {
        self.state.lock().unwrap().rate.limited
    }

    /// When the calls the rate limit admitted arrived, in order.
    pub fn admitted(&self) -> Vec<std::time::Instant> {
        self.state.lock().unwrap().rate.admitted.clone()
    }

    /// The most calls (refused or admitted) that arrived within any stretch of `window`.
    pub fn most_arrived_within(&self, window: Duration) -> usize {
        let arrived = self.state.lock().unwrap().rate.arrived.clone();
        (0..arrived.len())
            .map(|i| {
                arrived[i..]
                    .iter()
                    .take_while(|&&t| t.duration_since(arrived[i]) < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Chat calls open at each arrival, in arrival order.
    pub fn arrivals(&self) -> Vec<usize> {
        self.state.lock().unwrap().arrivals.clone()
    }

    /// What `GET /stats` answers: calls answered, 429s for the rate limit, the most calls open
    /// at once, and the number open at each arrival.
    pub fn stats(&self) -> Value {
        stats(&self.state.lock().unwrap())
    }
}

fn stats(s: &State) -> Value {
    json!({
        "answered": s.requests.len(),
        "batch_billed": s.batch.billed().len(),
        "batch_billed_twice": s.batch.billed_twice(),
        "limited": s.rate.limited,
        "max_in_flight": s.max_in_flight,
        "arrivals": s.arrivals,
        "span_seconds": match (s.first_arrival, s.last_arrival) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        },
    })
}

/// Counts a chat call open while it lives.
struct Open<'a>(&'a Mutex<State>);

impl<'a> Open<'a> {
    fn new(state: &'a Mutex<State>) -> Open<'a> {
        let mut s = state.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        let now = s.in_flight;
        s.arrivals.push(now);
        let at = std::time::Instant::now();
        s.first_arrival.get_or_insert(at);
        s.last_arrival = Some(at);
        Open(state)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            s.in_flight -= 1;
        }
    }
}

/// Under the rate limit, admits the call (its ticket, to bill its completion); else the 429's
/// headers.
fn admit(s: &mut State, prompt_tokens: u64) -> Result<Option<u64>, rate::Headers> {
    let Some(limit) = s.rate_limit else {
        return Ok(None);
    };
    s.rate
        .admit(&limit, prompt_tokens, std::time::Instant::now())
        .map(Some)
}

/// Waits for a free place in the queue, then holds it for the service time.
fn serve_queued(state: &Mutex<State>) {
    let Some(queue) = state.lock().unwrap().queue else {
        return;
    };
    loop {
        {
            let mut s = state.lock().unwrap();
            if s.busy < queue.capacity {
                s.busy += 1;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(queue.service);
    state.lock().unwrap().busy -= 1;
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut length = 0usize;
    let mut authorization = None;
    let mut content_type = None;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(v.trim().to_string()),
                "content-type" => content_type = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    if line.starts_with("GET") && line.contains("/health") {
        return respond(&mut conn, 200, &[], r#"{"status":"ok"}"#);
    }
    if line.starts_with("GET") && line.contains("/stats") {
        let body = stats(&state.lock().unwrap()).to_string();
        return respond(&mut conn, 200, &[], &body);
    }
    let required = state.lock().unwrap().require_key.clone();
    if let Some(key) = required {
        if authorization.as_deref() != Some(&format!("Bearer {key}")) {
            let msg = json!({"error": {"message": "Invalid API Key", "type": "authentication_error", "code": 401}});
            return respond(&mut conn, 401, &[], &msg.to_string());
        }
    }
    if line.starts_with("GET") && line.contains("/props") {
        return respond(&mut conn, 200, &[], "{}");
    }
    if let Some((code, answer, cut)) = batch::handle(
        state,
        &line,
        content_type.as_deref(),
        authorization.as_deref(),
        &body,
        conn.local_addr()?,
    ) {
        if cut {
            return respond_cut(&mut conn, code, &answer);
        }
        return respond(&mut conn, code, &[], &answer);
    }
    if !line.starts_with("POST") || !line.contains("/chat/completions") {
        return respond(
            &mut conn,
            404,
            &[],
            &json!({"error": {"message": "not found"}}).to_string(),
        );
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let system = body["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let dialogue = system.contains("dialogue generator");
    let judge = system.starts_with(JUDGE_MARKER);
    let shown = body["messages"][1]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let json_mode = body["response_format"]["type"] == "json_schema";
    let annotated = body["response_format"]["json_schema"]["name"] == annotated::FORMAT;
    let open = Open::new(state);
    let prompt_estimate = body["messages"].to_string().len() as u64 / 4;
    let admitted = admit(&mut state.lock().unwrap(), prompt_estimate);
    let window_seq = match admitted {
        Ok(seq) => seq,
        Err(headers) => {
            let msg = json!({"error": {"message": "Rate limit reached; try again later", "type": "requests", "code": "rate_limit_exceeded"}});
            return respond(&mut conn, 429, &headers, &msg.to_string());
        }
    };
    serve_queued(state);

    let mut finish_reason = "stop";
    let mut undeclared_length = false;
    let (fault, latency) = {
        let mut s = state.lock().unwrap();
        s.requests.push(Recorded {
            body: body.clone(),
            authorization: authorization.clone(),
            dialogue,
            judge,
        });
        let calls = s.requests.len();
        let dialogues = s.requests.iter().filter(|r| r.dialogue).count();
        let every = s
            .every
            .clone()
            .filter(|(n, _)| calls.is_multiple_of(*n))
            .map(|(_, f)| f)
            .or_else(|| {
                s.every_dialogue
                    .clone()
                    .filter(|(n, _)| dialogue && dialogues.is_multiple_of(*n))
                    .map(|(_, f)| f)
            });
        let schema_error = if s.openai_schema_rules && json_mode {
            openai_schema_error(
                &body["response_format"]["json_schema"]["schema"],
                &mut Vec::new(),
            )
        } else {
            None
        };
        let fault = match (schema_error, every, s.faults.front()) {
            (Some(message), _, _) => Some(Fault::ApiError {
                status: 400,
                code: None,
                message: format!(
                    "Invalid schema for response_format '{}': {message}",
                    body["response_format"]["json_schema"]["name"]
                        .as_str()
                        .unwrap_or("")
                ),
            }),
            (None, Some(f), _) => Some(f),
            (None, None, Some(f)) if dialogue || !f.dialogue_only() => s.faults.pop_front(),
            _ => s.always.clone().filter(|f| dialogue || !f.dialogue_only()),
        };
        let idle_repeat = dialogue
            && s.repeat_after_idle
                .is_some_and(|idle| s.last_dialogue_at.is_some_and(|at| at.elapsed() >= idle));
        if dialogue {
            s.last_dialogue_at = Some(std::time::Instant::now());
        }
        let fault = match fault {
            Some(f) => Some(f),
            None if idle_repeat => Some(Fault::ExactRepeat),
            None if !s.random.is_empty() => s.random_fault(dialogue),
            None => None,
        };
        let latency = if dialogue {
            s.latency + s.dialogue_latency
        } else {
            s.latency
        };
        (fault, latency)
    };
    if !latency.is_zero() {
        std::thread::sleep(latency);
    }
    let content = match fault {
        Some(Fault::Status { code, retry_after }) => {
            let headers: Vec<(&str, String)> = retry_after
                .map(|v| vec![("Retry-After", v)])
                .unwrap_or_default();
            let msg = json!({"error": {"message": format!("mock status {code}"), "type": "mock"}});
            return respond(&mut conn, code, &headers, &msg.to_string());
        }
        Some(Fault::ApiError {
            status,
            code,
            message,
        }) => {
            let msg = json!({"error": {"message": message, "type": "invalid_request_error",
                                       "param": null, "code": code}});
            return respond(&mut conn, status, &[], &msg.to_string());
        }
        Some(Fault::Headers(headers)) => {
            let headers: Vec<(&str, String)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            let msg = json!({"error": {"message": "slow down", "type": "rate_limit"}});
            return respond(&mut conn, 429, &headers, &msg.to_string());
        }
        Some(Fault::EchoKey401) => {
            let key = authorization
                .unwrap_or_default()
                .trim_start_matches("Bearer ")
                .to_string();
            let msg = json!({"error": {"message": format!("Incorrect API key provided: {key}"), "type": "invalid_request_error"}});
            return respond(&mut conn, 401, &[], &msg.to_string());
        }
        Some(Fault::Hang(d)) if judge => {
            std::thread::sleep(d);
            judge_answer(state, &shown)
        }
        Some(Fault::Hang(d)) => {
            std::thread::sleep(d);
            compose_any(state, &system, dialogue && annotated, &[])
        }
        Some(Fault::Normal) | None if judge => judge_answer(state, &shown),
        Some(Fault::Labels(faults)) => compose_any(state, &system, annotated, &faults),
        Some(Fault::CopyExample) => compose(state, &system, true).replacen(
            "<User>",
            &format!("<User>{} ", dgen::prompt::TAG_USER),
            1,
        ),
        Some(Fault::WrongOutcome) => compose_ending(state, &system, true, true),
        Some(Fault::Degenerate) => degenerate(state, &system),
        Some(Fault::Oversize { bytes, declared }) => {
            undeclared_length = !declared;
            let text = compose(state, &system, true);
            let pad = bytes.saturating_sub(text.len());
            text + &" ".repeat(pad)
        }
        Some(Fault::Malformed) => {
            let text = compose(state, &system, true);
            text.rsplit_once("</Assistant>")
                .map(|(a, b)| format!("{a}{b}"))
                .unwrap_or(text)
        }
        Some(Fault::WrongTurns) => {
            let one = compose(state, &system, true);
            one.repeat(40)
        }
        Some(Fault::Empty) => String::new(),
        Some(Fault::ExactRepeat) => {
            let s = state.lock().unwrap();
            s.answers.last().cloned().unwrap_or_default()
        }
        Some(Fault::NearRepeat) => {
            let s = state.lock().unwrap();
            let last = s.answers.last().cloned().unwrap_or_default();
            // Change one word of the first utterance.
            match last.find("<User>") {
                Some(at) => {
                    let (head, tail) = last.split_at(at + "<User>".len());
                    match tail.split_once(' ') {
                        Some((_, rest)) => format!("{head}Honestly {rest}"),
                        None => last.clone(),
                    }
                }
                None => last,
            }
        }
        Some(Fault::Truncated) => {
            finish_reason = "length";
            let text = compose(state, &system, true);
            text[..text.len() / 2].to_string()
        }
        Some(Fault::LongField) => {
            let text = compose(state, &system, true);
            text.replacen(
                "<User>",
                &format!("<User>{}", "I really mean it. ".repeat(30)),
                1,
            )
        }
        Some(Fault::BadJson) => "{\"turns\": [{\"user\": \"unfinished".to_string(),
        Some(Fault::SchemaViolation) => r#"{"turns": [{"user": "Hello?"}]}"#.to_string(),
        Some(Fault::Normal) | None => compose_any(state, &system, dialogue && annotated, &[]),
    };
    let content = if json_mode && dialogue {
        to_json(&content)
    } else {
        content
    };
    if dialogue && !content.is_empty() {
        state.lock().unwrap().answers.push(content.clone());
    }
    let messages = body["messages"].to_string();
    let (claimed, cached) = {
        let mut s = state.lock().unwrap();
        let cached = if s.prompt_cache {
            let longest = s
                .seen_prompts
                .iter()
                .map(|seen| {
                    seen.bytes()
                        .zip(messages.bytes())
                        .take_while(|(a, b)| a == b)
                        .count()
                })
                .max()
                .unwrap_or(0);
            s.seen_prompts.push(messages.clone());
            longest as u64 / 4
        } else {
            0
        };
        (s.prompt_tokens, cached)
    };
    let prompt_tokens = claimed.unwrap_or(prompt_estimate);
    let cached = cached.min(prompt_tokens);
    let headers = {
        let mut s = state.lock().unwrap();
        match (s.rate_limit, window_seq) {
            (Some(limit), Some(ticket)) => {
                s.rate.bill(&limit, ticket, content.len() as u64 / 4);
                s.rate.headers(&limit, std::time::Instant::now())
            }
            _ => Vec::new(),
        }
    };
    let response = json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "finish_reason": finish_reason,
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": content.len() / 4,
                  "total_tokens": prompt_tokens.saturating_add(content.len() as u64 / 4),
                  "prompt_tokens_details": {"cached_tokens": cached}}
    });
    // Open until its answer is ready, not until written: on a busy machine the thread that wrote
    // it may run again only after the client, answered, has sent its next call.
    drop(open);
    if undeclared_length {
        return respond_until_close(&mut conn, &response.to_string());
    }
    respond(&mut conn, 200, &headers, &response.to_string())
}

/// A 200 without `Content-Length`: the body ends when the connection closes.
fn respond_until_close(conn: &mut TcpStream, body: &str) -> std::io::Result<()> {
    let head = "HTTP/1.1 200 X\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
    conn.write_all(head.as_bytes())?;
    // The client may hang up once it has read enough.
    let _ = conn.write_all(body.as_bytes());
    let _ = conn.flush();
    Ok(())
}

fn respond(
    conn: &mut TcpStream,
    code: u16,
    headers: &[(&str, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body.as_bytes())?;
    conn.flush()
}

/// An answer whose body stops after its first bytes: the header promises all of it, then the
/// connection closes.
fn respond_cut(conn: &mut TcpStream, code: u16, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(&body.as_bytes()[..body.len().min(10)])?;
    conn.flush()?;
    conn.shutdown(std::net::Shutdown::Both)
}

const SUBJECTS: &[&str] = &[
    "my luggage",
    "the invoice",
    "our anniversary dinner",
    "a wheelchair ramp",
    "the night bus",
    "my daughter's school trip",
    "a vegan tasting menu",
    "the conference shuttle",
    "a lost passport",
    "the rooftop pool",
    "an emergency dental visit",
    "my grandmother's medication",
    "a cello case",
    "the parking permit",
    "a surfboard",
    "the museum's night opening",
    "a broken phone charger",
    "the wedding photographer",
    "a refund for the concert",
    "a dog crate",
    "my cycling tour",
    "the jazz brunch",
    "a bakery order",
    "the ferry timetable",
    "my insurance card",
    "a jetlag remedy",
    "the chess tournament",
    "a sushi workshop",
    "the hiking permit",
    "my laptop battery",
];
const PLACES: &[&str] = &[
    "the old harbour",
    "the central market",
    "the airport's terminal two",
    "the university hospital",
    "the riverside promenade",
    "the botanical garden",
    "the cathedral square",
    "the stadium",
    "the spice bazaar",
    "the tech park",
    "the opera house",
    "the fishing village",
    "the mountain lodge",
    "the night market",
    "the railway museum",
    "the science centre",
    "the beach boardwalk",
];
const CONCERNS: &[&str] = &[
    "it was charged twice",
    "nobody answered the phone",
    "the booking vanished",
    "the time changed",
    "the price doubled overnight",
    "the staff were rude",
    "the room smelled of smoke",
    "the driver never arrived",
    "the allergy note was ignored",
    "the app keeps crashing",
    "the seats were split up",
    "the confirmation email never came",
    "the queue took two hours",
    "the food arrived cold",
    "the tickets were for the wrong day",
    "the elevator was broken",
];
const ACTIONS: &[&str] = &[
    "I have reissued the voucher",
    "I moved your slot to the morning",
    "I logged a formal complaint",
    "I found an alternative route",
    "I applied a partial credit",
    "I booked a quieter room",
    "I contacted the duty manager",
    "I arranged a courier",
    "I reserved a later table",
    "I updated the passenger list",
    "I flagged the dietary request",
    "I cancelled the duplicate charge",
];

/// An annotated answer with `faults` planted when `annotated` (and the request is one the mock
/// can read), else a plain dialogue or scenario.
fn compose_any(
    state: &Mutex<State>,
    system: &str,
    annotated: bool,
    faults: &[LabelFault],
) -> String {
    let dialogue = system.contains("dialogue generator");
    annotated
        .then(|| annotated::compose(state, system, faults))
        .flatten()
        .unwrap_or_else(|| compose(state, system, dialogue))
}

/// A dialogue (or a scenario) that differs in meaning from the others.
fn compose(state: &Mutex<State>, system: &str, dialogue: bool) -> String {
    compose_ending(state, system, dialogue, false)
}

/// The prompt's minimum number of turns (or the state's fixed number).
fn turn_count(state: &Mutex<State>, system: &str) -> usize {
    let min = system
        .split("Length: between ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(3);
    state.lock().unwrap().turns.unwrap_or(min)
}

/// [`Fault::Degenerate`]'s dialogue: the right number of turns, nothing in them.
fn degenerate(state: &Mutex<State>, system: &str) -> String {
    let n = {
        let mut s = state.lock().unwrap();
        s.counter += 1;
        s.counter
    };
    // A name per call, so that two junk answers are not exact duplicates of each other.
    let name = ["Sophia", "Oliver", "Mia", "Lucas", "Emma"][n as usize % 5];
    (0..turn_count(state, system))
        .map(|t| {
            let intent = ["Movie", "Cars", "Clouds"][t % 3];
            format!(
                "<User>{name}</User>\n<Intent>{intent}</Intent>\n<Assistant>Buses</Assistant>\n"
            )
        })
        .collect()
}

/// What the dialogue prompt says after `label`, up to `end`.
fn prompt_says<'a>(system: &'a str, label: &str, end: char) -> &'a str {
    system
        .split(label)
        .nth(1)
        .and_then(|s| s.split(end).next())
        .unwrap_or("")
}

/// The last sentence of a dialogue that ends with `outcome`: a cue the outcome_mismatch check
/// recognizes, two wordings each.
fn closing(outcome: &str, variant: u64) -> &'static str {
    let pick = |a, b| if variant.is_multiple_of(2) { a } else { b };
    match outcome {
        "Resolved" => pick(
            " Everything is resolved now and you are all set.",
            " That is sorted and confirmed, so you are all set.",
        ),
        "Failed" => pick(
            " Unfortunately I am unable to fix this, and I know you are disappointed.",
            " Unfortunately this is not possible today; I am unable to change it and sorry you are disappointed.",
        ),
        "Escalated" => pick(
            " I am escalating this to a supervisor, who will contact you tomorrow.",
            " I have escalated your case to a specialist, who will contact you within a day.",
        ),
        _ => "",
    }
}

/// A dialogue about the prompt's first service that ends with the planned outcome, or (with
/// `wrong_outcome`) with a contradicting one.
fn compose_ending(
    state: &Mutex<State>,
    system: &str,
    dialogue: bool,
    wrong_outcome: bool,
) -> String {
    let n = {
        let mut s = state.lock().unwrap();
        s.counter += 1;
        s.counter
    };
    let mut rng = ChaCha8Rng::seed_from_u64(n * 7919 + u64::from(dialogue));
    let mut pick = |list: &[&'static str]| list[rng.random_range(0..list.len())];
    if !dialogue {
        return format!(
            "A traveller near {} needs help with {} because {}.",
            pick(PLACES),
            pick(SUBJECTS),
            pick(CONCERNS)
        );
    }
    let turns = turn_count(state, system);
    let service = prompt_says(system, "the conversation starts with ", '.');
    let planned = prompt_says(system, "Outcome: ", '.');
    let outcome = match (wrong_outcome, planned) {
        (false, planned) => planned,
        (true, "Resolved") => "Failed",
        (true, _) => "Resolved",
    };
    // Each turn about another subject: a real dialogue does not say the same thing twice.
    let first = SUBJECTS
        .iter()
        .position(|s| *s == pick(SUBJECTS))
        .unwrap_or(0);
    let mut out = String::new();
    for t in 0..turns {
        let subject = SUBJECTS[(first + t) % SUBJECTS.len()];
        let (place, concern, action) = (pick(PLACES), pick(CONCERNS), pick(ACTIONS));
        let about = if t == 0 {
            format!(", for my {service} booking")
        } else {
            String::new()
        };
        let ending = if t + 1 == turns {
            closing(outcome, n)
        } else {
            ""
        };
        out.push_str(&format!(
            "<User>About {subject} at {place}{about}: {concern}. What now? (call {n}, part {t})</User>\n\
             <Intent>ask_about_{}</Intent>\n\
             <Assistant>{action} for {subject}; check {place} again after {} o'clock.{ending}</Assistant>\n",
            subject.split(' ').next_back().unwrap_or("it").replace('\'', ""),
            1 + (n as usize + t) % 12
        ));
    }
    out
}

/// A judge's answer about the dialogue in `shown` (the rubric's user message: `Planned
/// outcome: X (…)` and numbered `N. USER: …` / `N. ASSISTANT: …` lines).
fn judge_answer(state: &Mutex<State>, shown: &str) -> String {
    let (mode, low) = {
        let mut s = state.lock().unwrap();
        let low = s.judge_low_first > 0;
        s.judge_low_first = s.judge_low_first.saturating_sub(1);
        (s.judge_mode, low)
    };
    let said = |who: &str| -> Vec<String> {
        shown
            .lines()
            .filter_map(|l| {
                l.split_once(&format!(". {who}: "))
                    .map(|(_, t)| t.to_lowercase())
            })
            .collect()
    };
    let (users, assistants) = (said("USER"), said("ASSISTANT"));
    let planned = prompt_says(shown, "Planned outcome: ", ' ');
    let cues: &[&str] = match planned {
        "Resolved" => &[
            "all set",
            "resolved",
            "confirmed",
            "booked",
            "bye",
            "thank",
            "welcome",
            "great day",
        ],
        "Failed" => &["unfortunately", "unable", "sorry", "not possible"],
        "Escalated" => &["escalat", "supervisor", "specialist"],
        _ => &[],
    };
    let ending = assistants.last().cloned().unwrap_or_default();
    let outcome = if cues.iter().any(|c| ending.contains(c)) {
        5
    } else {
        2
    };
    // The mock's own dialogues number their parts; a farewell before the end is out of order too.
    let parts: Vec<u32> = users
        .iter()
        .filter_map(|u| {
            u.split("part ")
                .nth(1)?
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .collect();
    let before_last = |v: &[String]| {
        v[..v.len().saturating_sub(1)]
            .iter()
            .any(|t| t.contains("goodbye"))
    };
    let early_farewell = before_last(&users) || before_last(&assistants);
    let coherence = if parts.windows(2).any(|w| w[0] > w[1]) || early_farewell {
        2
    } else {
        5
    };
    let task = if users.len() < 3 { 2 } else { 5 };
    let copied = users.iter().zip(&assistants).any(|(u, a)| u == a);
    let naturalness = if copied { 1 } else { 5 };
    let overall = [coherence, task, outcome, naturalness]
        .into_iter()
        .min()
        .unwrap_or(1);
    let mut scores = json!({
        "naturalness": naturalness, "coherence": coherence, "task_handling": task,
        "outcome_as_planned": outcome, "scenario_followed": 4, "emotions_shown": 4,
        "persona_consistent": 4
    });
    let mut overall = json!(overall);
    if low || mode == JudgeMode::Low {
        for v in scores.as_object_mut().unwrap().values_mut() {
            *v = json!(1);
        }
        overall = json!(1);
    }
    match mode {
        JudgeMode::InvalidJson => return "The dialogue is fine; I would give it a 4.".to_string(),
        JudgeMode::OutOfRange => overall = json!(7),
        JudgeMode::Fair | JudgeMode::Low => {}
    }
    json!({"reasoning": "Mock judgement from the dialogue's order, length, ending and sides.",
           "scores": scores, "overall": overall})
    .to_string()
}

/// Why OpenAI's strict Structured Outputs would refuse `schema`, in OpenAI's words: keywords
/// outside the supported subset, an object without `additionalProperties: false`, a property
/// that is not required.
fn openai_schema_error(schema: &Value, context: &mut Vec<String>) -> Option<String> {
    const REFUSED: &[&str] = &[
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "minProperties",
        "maxProperties",
        "patternProperties",
        "uniqueItems",
    ];
    let at = || {
        let parts: Vec<String> = context.iter().map(|p| format!("'{p}'")).collect();
        format!("In context=({})", parts.join(", "))
    };
    let Value::Object(map) = schema else {
        return None;
    };
    for key in map.keys() {
        if REFUSED.contains(&key.as_str()) {
            return Some(format!("{}, '{key}' is not permitted.", at()));
        }
    }
    if map.get("type") == Some(&json!("object")) {
        if map.get("additionalProperties") != Some(&json!(false)) {
            return Some(format!(
                "{}, 'additionalProperties' is required to be supplied and to be false.",
                at()
            ));
        }
        let properties = map.get("properties").and_then(Value::as_object);
        let required = map.get("required").and_then(Value::as_array);
        for name in properties.into_iter().flat_map(|p| p.keys()) {
            if !required.is_some_and(|r| r.contains(&json!(name))) {
                return Some(format!(
                    "{}, 'required' is required to be supplied and to be an array including every key in properties. Missing '{name}'.",
                    at()
                ));
            }
        }
    }
    if let Some(properties) = map.get("properties").and_then(Value::as_object) {
        for (name, sub) in properties {
            context.extend(["properties".to_string(), name.clone()]);
            if let Some(e) = openai_schema_error(sub, context) {
                return Some(e);
            }
            context.truncate(context.len() - 2);
        }
    }
    if let Some(items) = map.get("items") {
        context.push("items".to_string());
        if let Some(e) = openai_schema_error(items, context) {
            return Some(e);
        }
        context.pop();
    }
    None
}

/// The tag format turned into the JSON wire format (text that is not tags passes through).
fn to_json(tags: &str) -> String {
    let mut turns = Vec::new();
    for chunk in tags.split("<User>").skip(1) {
        let field = |open: &str, close: &str| -> Option<String> {
            let start = if open.is_empty() {
                0
            } else {
                chunk.find(open)? + open.len()
            };
            let end = chunk[start..].find(close)? + start;
            Some(chunk[start..end].to_string())
        };
        match (
            field("", "</User>"),
            field("<Intent>", "</Intent>"),
            field("<Assistant>", "</Assistant>"),
        ) {
            (Some(u), Some(i), Some(a)) => {
                turns.push(json!({"user": u, "intent": i, "assistant": a}))
            }
            _ => return tags.to_string(),
        }
    }
    if turns.is_empty() {
        return tags.to_string();
    }
    json!({ "turns": turns }).to_string()
}
