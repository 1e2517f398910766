//! The mock Batch API's file endpoints: `POST /files` (multipart, `purpose=batch`, every line
//! checked as OpenAI checks it), `GET /files` (`?purpose=` filters), `GET /files/{id}` and
//! `DELETE /files/{id}`.

use std::collections::HashSet;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::super::State;
use super::{error, File};

pub(super) fn upload(
    state: &Mutex<State>,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let Some(boundary) = content_type
        .and_then(|c| c.split("boundary=").nth(1))
        .map(|b| b.trim_matches('"').to_string())
    else {
        return error(400, "expected multipart/form-data with a boundary");
    };
    let (mut purpose, mut file) = (None, None);
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut starts = Vec::new();
    let mut at = 0;
    while let Some(found) = find(&text[at..], delimiter.as_bytes()) {
        starts.push(at + found);
        at += found + delimiter.len();
    }
    for pair in starts.windows(2) {
        let part = &text[pair[0] + delimiter.len()..pair[1]];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(split) = find(part, b"\r\n\r\n") else {
            continue;
        };
        let headers = String::from_utf8_lossy(&part[..split]).to_string();
        let data = &part[split + 4..];
        if headers.contains("name=\"purpose\"") {
            purpose = Some(String::from_utf8_lossy(data).to_string());
        } else if headers.contains("name=\"file\"") {
            let filename = headers
                .split("filename=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string();
            file = Some(File {
                filename,
                purpose: "batch".into(),
                content: data.to_vec(),
            });
        }
    }
    if purpose.as_deref() != Some("batch") {
        return error(400, "purpose must be batch");
    }
    let Some(file) = file else {
        return error(400, "no file part");
    };
    if let Err(message) = validate(&file.content) {
        return error(400, &message);
    }
    state
        .lock()
        .unwrap()
        .batch
        .uploaded_bytes
        .push(file.content.len());
    if let Some(max) = state.lock().unwrap().batch.result_faults.max_file_bytes {
        if file.content.len() > max {
            return error(
                413,
                &format!(
                    "the file is {} bytes, over the limit of {max}",
                    file.content.len()
                ),
            );
        }
    }
    let (id, bytes, filename, hang) = {
        let mut s = state.lock().unwrap();
        s.batch.uploads += 1;
        let id = s.batch.id("file");
        let bytes = file.content.len();
        let filename = file.filename.clone();
        s.batch.files.insert(id.clone(), file);
        let nth = s.batch.uploads;
        let hang = s.batch.hang_upload.take().or_else(|| {
            s.batch
                .hang_upload_nth
                .filter(|(at, _)| *at == nth)
                .map(|(_, d)| d)
        });
        (id, bytes, filename, hang)
    };
    if let Some(d) = hang {
        // The file exists; its id never reaches a client killed meanwhile.
        std::thread::sleep(d);
    }
    (
        200,
        json!({"id": id, "object": "file", "bytes": bytes, "filename": filename, "purpose": "batch"})
            .to_string(),
    )
}

/// OpenAI's checks of an input file: JSON lines, unique custom_ids, the one endpoint, a model,
/// at most 50,000 requests.
fn validate(content: &[u8]) -> Result<(), String> {
    let mut ids = HashSet::new();
    let mut lines = 0;
    for line in content.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        lines += 1;
        let v: Value =
            serde_json::from_slice(line).map_err(|e| format!("line {lines} is not JSON: {e}"))?;
        let id = v["custom_id"]
            .as_str()
            .ok_or(format!("line {lines}: no custom_id"))?;
        if !ids.insert(id.to_string()) {
            return Err(format!("line {lines}: duplicate custom_id {id}"));
        }
        if v["method"] != "POST" || v["url"] != "/v1/chat/completions" {
            return Err(format!(
                "line {lines}: method/url must be POST /v1/chat/completions"
            ));
        }
        if !v["body"]["model"].is_string() || !v["body"]["messages"].is_array() {
            return Err(format!("line {lines}: body needs model and messages"));
        }
    }
    if lines == 0 || lines > 50_000 {
        return Err(format!("{lines} requests: a batch holds 1 to 50,000"));
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `GET /files`, newest first, `?purpose=` filtering.
pub(super) fn list_files(state: &Mutex<State>, target: &str) -> (u16, String) {
    let purpose = target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("purpose="));
    let s = state.lock().unwrap();
    let mut files: Vec<(&String, &File)> = s
        .batch
        .files
        .iter()
        .filter(|(_, f)| purpose.is_none_or(|p| p == f.purpose))
        .collect();
    files.sort_by(|a, b| b.0.cmp(a.0));
    let data: Vec<Value> = files
        .iter()
        .map(|(id, f)| {
            json!({"id": id, "object": "file", "bytes": f.content.len(), "created_at": 1_700_000_000,
                "filename": f.filename, "purpose": f.purpose})
        })
        .collect();
    (
        200,
        json!({"object": "list", "data": data, "has_more": false}).to_string(),
    )
}

/// `GET /files/{id}`: the file object, or 404.
pub(super) fn file(state: &Mutex<State>, id: &str) -> (u16, String) {
    let s = state.lock().unwrap();
    match s.batch.files.get(id) {
        Some(f) => (
            200,
            json!({"id": id, "object": "file", "bytes": f.content.len(), "created_at": 1_700_000_000,
                "filename": f.filename, "purpose": f.purpose})
            .to_string(),
        ),
        None => error(404, &format!("no file {id}")),
    }
}

pub(super) fn delete_file(state: &Mutex<State>, id: &str) -> (u16, String) {
    let mut s = state.lock().unwrap();
    if s.batch.files.remove(id).is_none() {
        return error(404, &format!("no file {id}"));
    }
    s.batch.deleted.push(id.to_string());
    (
        200,
        json!({"id": id, "object": "file", "deleted": true}).to_string(),
    )
}
