//! The mock's OpenAI Batch API: `POST /files` (multipart, `purpose=batch`; every line checked
//! as OpenAI checks it), `POST /batches`, `GET /batches/{id}` (each read moves the batch on:
//! validating → in_progress → its end), `GET /batches` (newest first), and
//! `GET /files/{id}/content`, `GET /files` (`?purpose=` filters, as OpenAI's does) and
//! `DELETE /files/{id}`. A batch's requests are answered by sending each line's body to
//! the mock's own chat endpoint, so faults and word banks apply as online.
//!
//! Its end is set per batch, in creation order (`BatchEnd`): completed, expired or cancelled
//! after a number of answered requests (the rest go to the error file as `batch_expired` /
//! `batch_cancelled`), or failed at validation with an error code. One-shot hangs let a test
//! kill dgen at a chosen moment: before or after a create takes effect, during a download,
//! after an upload took effect but before it was answered. A batch removed from `batches`
//! answers 404, as one the provider no longer knows.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use super::State;

#[path = "mock_batch_faults.rs"]
mod faults;
#[path = "mock_batch_files.rs"]
mod files;
pub use faults::{CreateFault, ResultFaults};
use files::{delete_file, file, list_files, upload};

/// Unix seconds now.
fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How a batch ends.
#[derive(Debug, Clone)]
pub enum BatchEnd {
    Completed,
    /// The window ran out after this many requests were answered.
    Expired {
        answered: usize,
    },
    Cancelled {
        answered: usize,
    },
    /// Refused at validation, with this error code (e.g. `token_limit_exceeded`).
    Failed {
        code: String,
    },
}

#[derive(Debug, Clone)]
pub struct File {
    pub filename: String,
    /// `batch` for input files, `batch_output` for results, or whatever a test puts there.
    pub purpose: String,
    pub content: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Batch {
    pub id: String,
    pub input_file_id: String,
    pub status: String,
    pub end: BatchEnd,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub completed: usize,
    pub failed: usize,
    pub total: usize,
    pub errors: Vec<(String, String)>,
    pub metadata: Value,
    /// Unix seconds.
    pub created_at: u64,
    /// The custom_ids of its input file, in order.
    pub ids: Vec<String>,
    /// The custom_ids it executed, once it ran.
    pub billed: Option<Vec<String>>,
    /// Its output file is held back until the next read.
    pub output_late: bool,
}

impl Batch {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "errors": if self.errors.is_empty() { Value::Null } else {
                json!({"object": "list", "data": self.errors.iter().map(|(c, m)| json!({"code": c, "message": m})).collect::<Vec<_>>()})
            },
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
            "created_at": self.created_at,
        })
    }
}

#[derive(Debug, Default)]
pub struct BatchState {
    pub files: HashMap<String, File>,
    pub batches: Vec<Batch>,
    /// Ends of the next batches created, in order; then `Completed`.
    pub ends: VecDeque<BatchEnd>,
    /// Hang the next create this long, then answer 503 without creating the batch (false), or
    /// create it and then hang before answering (true).
    pub hang_create: Option<(Duration, bool)>,
    /// Hang the next upload this long after storing the file, before answering.
    pub hang_upload: Option<Duration>,
    /// The same for the n-th upload (1-based).
    pub hang_upload_nth: Option<(usize, Duration)>,
    /// Hang the n-th file download (1-based) this long before answering.
    pub hang_download: Option<(usize, Duration)>,
    /// Requests received: uploads, creates (also those cut off), downloads.
    pub uploads: usize,
    /// The size of every file uploaded (refused ones too), in order.
    pub uploaded_bytes: Vec<usize>,
    pub create_requests: usize,
    pub downloads: usize,
    /// Files deleted (`DELETE /files/{id}`), in order.
    pub deleted: Vec<String>,
    /// Answer every Batch API request 401, repeating the bearer token (servers do).
    pub echo_key_401: bool,
    /// Every custom_id of every batch created, in order.
    pub submitted: Vec<String>,
    /// How the next creates misbehave once the batch exists, in order.
    pub create_faults: VecDeque<CreateFault>,
    pub result_faults: ResultFaults,
    /// The answer being written is to be cut off after its first bytes.
    cut_reply: bool,
    next: u64,
}

impl BatchState {
    /// Puts a file there, as if uploaded by someone; its id.
    pub fn add_file(&mut self, filename: &str, purpose: &str) -> String {
        let id = self.id("file");
        self.files.insert(
            id.clone(),
            File {
                filename: filename.into(),
                purpose: purpose.into(),
                content: b"{}\n".to_vec(),
            },
        );
        id
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{:04}", self.next)
    }
}

/// Answers a Batch API request: status, body, and whether to cut the body off; `None` when
/// the path is not one of the Batch API's.
pub fn handle(
    state: &Mutex<State>,
    request_line: &str,
    content_type: Option<&str>,
    authorization: Option<&str>,
    body: &[u8],
    addr: SocketAddr,
) -> Option<(u16, String, bool)> {
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if !matches!(segments.first(), Some(&"files") | Some(&"batches")) {
        return None;
    }
    if state.lock().unwrap().batch.echo_key_401 {
        let key = authorization.unwrap_or("").trim_start_matches("Bearer ");
        let (code, body) = error(401, &format!("Incorrect API key provided: {key}"));
        return Some((code, body, false));
    }
    let (code, body) = match (method, segments.as_slice()) {
        ("POST", ["files"]) => upload(state, content_type, body),
        ("GET", ["files"]) => list_files(state, target),
        ("DELETE", ["files", id]) => delete_file(state, id),
        ("GET", ["files", id]) => file(state, id),
        ("GET", ["files", id, "content"]) => content(state, id),
        ("POST", ["batches"]) => create(state, body),
        ("GET", ["batches"]) if refuse_listing(state) => error(404, "no listing here"),
        ("GET", ["batches"]) => list(state, target),
        ("GET", ["batches", id])
            if state.lock().unwrap().batch.result_faults.unreadable_batches =>
        {
            error(404, &format!("no batch {id}"))
        }
        ("GET", ["batches", id]) => advance(state, id, authorization, addr),
        _ => return None,
    };
    let cut = std::mem::take(&mut state.lock().unwrap().batch.cut_reply);
    Some((code, body, cut))
}

fn error(code: u16, message: &str) -> (u16, String) {
    (
        code,
        json!({"error": {"message": message, "type": "invalid_request_error"}}).to_string(),
    )
}

fn create(state: &Mutex<State>, body: &[u8]) -> (u16, String) {
    let (hang, fault) = {
        let mut s = state.lock().unwrap();
        s.batch.create_requests += 1;
        (
            s.batch.hang_create.take(),
            s.batch.create_faults.pop_front(),
        )
    };
    if let Some((d, false)) = hang {
        // The create never takes effect: the test kills the client meanwhile.
        std::thread::sleep(d);
        return error(503, "the create was cut off");
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if v["endpoint"] != "/v1/chat/completions" || v["completion_window"] != "24h" {
        return error(
            400,
            "endpoint must be /v1/chat/completions and completion_window 24h",
        );
    }
    let input = v["input_file_id"].as_str().unwrap_or("").to_string();
    if matches!(fault, Some(CreateFault::FileGone)) {
        state.lock().unwrap().batch.files.remove(&input);
    }
    let answer = {
        let mut s = state.lock().unwrap();
        let Some(file) = s.batch.files.get(&input) else {
            return error(404, &format!("no file {input}"));
        };
        let ids: Vec<String> = file
            .content
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
            .filter_map(|l| l["custom_id"].as_str().map(String::from))
            .collect();
        let id = s.batch.id("batch");
        let end = s.batch.ends.pop_front().unwrap_or(BatchEnd::Completed);
        let batch = Batch {
            id,
            input_file_id: input,
            status: "validating".into(),
            end,
            output_file_id: None,
            error_file_id: None,
            completed: 0,
            failed: 0,
            total: ids.len(),
            errors: Vec::new(),
            metadata: v["metadata"].clone(),
            created_at: now_s(),
            ids: ids.clone(),
            billed: None,
            output_late: false,
        };
        s.batch.submitted.extend(ids);
        let answer = batch.json().to_string();
        s.batch.batches.push(batch);
        answer
    };
    if let Some((d, true)) = hang {
        std::thread::sleep(d);
    }
    match fault {
        Some(CreateFault::Late(d)) => std::thread::sleep(d),
        Some(CreateFault::BadGateway) => return error(502, "bad gateway"),
        Some(CreateFault::CutBody) => state.lock().unwrap().batch.cut_reply = true,
        Some(CreateFault::FileGone) | None => {}
    }
    (200, answer)
}

/// Whether this listing is one of the refused ones (`refused_listings`).
fn refuse_listing(state: &Mutex<State>) -> bool {
    let faults = &mut state.lock().unwrap().batch.result_faults;
    let refuse = faults.refused_listings > 0;
    faults.refused_listings = faults.refused_listings.saturating_sub(1);
    refuse
}

/// `GET /batches`, newest first, a page of `limit` (default 20, at most 100) after the batch
/// `after`.
fn list(state: &Mutex<State>, target: &str) -> (u16, String) {
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let limit = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let s = state.lock().unwrap();
    let newest_first: Vec<&Batch> = s.batch.batches.iter().rev().collect();
    let start = match param("after") {
        Some(after) => match newest_first.iter().position(|b| b.id == after) {
            Some(at) => at + 1,
            None => return error(400, &format!("no batch {after}")),
        },
        None => 0,
    };
    let page = &newest_first[start.min(newest_first.len())..];
    let data: Vec<Value> = page.iter().take(limit).map(|b| b.json()).collect();
    (
        200,
        json!({"object": "list", "data": data, "has_more": page.len() > limit}).to_string(),
    )
}

fn content(state: &Mutex<State>, id: &str) -> (u16, String) {
    let (hang, short, pad) = {
        let mut s = state.lock().unwrap();
        s.batch.downloads += 1;
        let n = s.batch.downloads;
        let faults = &s.batch.result_faults;
        let short = faults
            .short_download
            .filter(|(at, _)| *at == n)
            .map(|(_, keep)| keep)
            .or(faults.short_every_download);
        let pad = faults.padded_download;
        (
            s.batch.hang_download.filter(|(at, _)| *at == n),
            short,
            pad.filter(|(at, _)| *at == n).map(|(_, bytes)| bytes),
        )
    };
    if let Some((_, d)) = hang {
        std::thread::sleep(d);
    }
    let s = state.lock().unwrap();
    match s.batch.files.get(id) {
        Some(f) => {
            let text = String::from_utf8_lossy(&f.content);
            match (short, pad) {
                (Some(keep), _) => (200, text.split_inclusive('\n').take(keep).collect()),
                (None, Some(bytes)) => (200, format!("{text}{}", "\n".repeat(bytes))),
                (None, None) => (200, text.to_string()),
            }
        }
        None => error(404, &format!("no file {id}")),
    }
}

/// Each read moves a batch one step: validating → in_progress (or failed) → its end, when its
/// requests are answered.
fn advance(
    state: &Mutex<State>,
    id: &str,
    authorization: Option<&str>,
    addr: SocketAddr,
) -> (u16, String) {
    let (status, end, input) = {
        let s = state.lock().unwrap();
        let Some(b) = s.batch.batches.iter().find(|b| b.id == id) else {
            return error(404, &format!("no batch {id}"));
        };
        let input = s
            .batch
            .files
            .get(&b.input_file_id)
            .map(|f| f.content.clone())
            .unwrap_or_default();
        (b.status.clone(), b.end.clone(), input)
    };
    match (status.as_str(), &end) {
        ("validating", BatchEnd::Failed { code }) => {
            let message = if code == "token_limit_exceeded" {
                "Enqueued token limit reached for this model. Please try again once some in_progress batches have been completed."
            } else {
                "The batch was refused."
            };
            update(state, id, |b| {
                b.status = "failed".into();
                b.errors = vec![(code.clone(), message.into())];
            });
        }
        ("validating", _) => update(state, id, |b| b.status = "in_progress".into()),
        ("in_progress", _) => {
            let answered_limit = match end {
                BatchEnd::Completed | BatchEnd::Failed { .. } => usize::MAX,
                BatchEnd::Expired { answered } | BatchEnd::Cancelled { answered } => answered,
            };
            let (unanswered_code, final_status) = match end {
                BatchEnd::Cancelled { .. } => ("batch_cancelled", "cancelled"),
                BatchEnd::Expired { .. } => ("batch_expired", "expired"),
                _ => ("", "completed"),
            };
            let (mut output, mut errors) = (String::new(), String::new());
            let (mut completed, mut failed) = (0, 0);
            let mut executed = Vec::new();
            let lines: Vec<Value> = input
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .filter_map(|l| serde_json::from_slice(l).ok())
                .collect();
            for (n, line) in lines.iter().enumerate() {
                let custom_id = &line["custom_id"];
                if n >= answered_limit {
                    let row = json!({"id": format!("batch_req_{n}"), "custom_id": custom_id, "response": null,
                        "error": {"code": unanswered_code, "message": "This request could not be executed before the batch ended."}});
                    errors.push_str(&format!("{row}\n"));
                    continue;
                }
                let (code, body) = chat(addr, authorization, &line["body"]);
                executed.push(custom_id.as_str().unwrap_or("").to_string());
                let row = json!({"id": format!("batch_req_{n}"), "custom_id": custom_id,
                    "response": {"status_code": code, "request_id": format!("req_{n}"), "body": body}, "error": null});
                if code == 200 {
                    completed += 1;
                    output.push_str(&format!("{row}\n"));
                } else {
                    failed += 1;
                    errors.push_str(&format!("{row}\n"));
                }
            }
            let mut s = state.lock().unwrap();
            let faults = &mut s.batch.result_faults;
            if faults.error_line_for_answer > 0 && completed > 0 {
                faults.error_line_for_answer -= 1;
                let first: Value = serde_json::from_str(output.lines().next().unwrap_or("{}"))
                    .unwrap_or(Value::Null);
                let row = json!({"id": "batch_req_repeat", "custom_id": first["custom_id"],
                    "response": {"status_code": 500, "body": {"error": {"message": "The server had an error"}}}, "error": null});
                errors.push_str(&format!("{row}\n"));
            }
            let lose_output = faults.lost_output > 0 && !output.is_empty();
            if lose_output {
                faults.lost_output -= 1;
            }
            let lose_errors = faults.lost_errors > 0 && !errors.is_empty();
            if lose_errors {
                faults.lost_errors -= 1;
            }
            let late = faults.late_output > 0 && !output.is_empty();
            if late {
                faults.late_output -= 1;
            }
            let out_id = (!output.is_empty()).then(|| s.batch.id("file"));
            let err_id = (!errors.is_empty()).then(|| s.batch.id("file"));
            for (fid, text) in [(&out_id, output), (&err_id, errors)] {
                if (lose_output && fid == &out_id) || (lose_errors && fid == &err_id) {
                    continue;
                }
                if let Some(fid) = fid {
                    s.batch.files.insert(
                        fid.clone(),
                        File {
                            filename: format!("{fid}.jsonl"),
                            purpose: "batch_output".into(),
                            content: text.into_bytes(),
                        },
                    );
                }
            }
            drop(s);
            update(state, id, |b| {
                b.status = final_status.into();
                b.output_file_id = out_id;
                b.error_file_id = err_id;
                b.completed = completed;
                b.failed = failed;
                b.billed = Some(executed);
                b.output_late = late;
            });
        }
        _ => {}
    }
    let mut s = state.lock().unwrap();
    let b = s.batch.batches.iter_mut().find(|b| b.id == id).unwrap();
    if std::mem::take(&mut b.output_late) {
        let mut shown = b.clone();
        shown.output_file_id = None;
        return (200, shown.json().to_string());
    }
    (200, b.json().to_string())
}

fn update(state: &Mutex<State>, id: &str, f: impl FnOnce(&mut Batch)) {
    let mut s = state.lock().unwrap();
    if let Some(b) = s.batch.batches.iter_mut().find(|b| b.id == id) {
        f(b);
    }
}

/// One request to the mock's own chat endpoint: status and body.
fn chat(addr: SocketAddr, authorization: Option<&str>, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut conn = TcpStream::connect(addr).unwrap();
    let mut head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(a) = authorization {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body.as_bytes()).unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(500);
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (code, body)
}
