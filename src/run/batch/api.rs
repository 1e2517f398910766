//! The OpenAI Batch API over HTTP: upload an input file (`POST /files`, `purpose=batch`),
//! create a batch (`POST /batches`), read it (`GET /batches/{id}`), list recent batches (to
//! find one whose creation was cut off before its id was recorded), download a file's
//! content (`GET /files/{id}/content`), list the input files (`GET /files?purpose=batch`) and
//! delete one (`DELETE /files/{id}`). Transient failures (connection errors, timeouts, 408,
//! 429, 5xx, a body cut off) are retried with backoff, except a create's: the batch may exist,
//! so it is looked up by its input file first. Answers are read up to a limit (result files:
//! what their requests can hold). The API key never appears in an error.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use crate::llm::{read_capped, Secret};

/// A batch as the provider describes it.
#[derive(Debug, Clone, Default)]
pub struct BatchObject {
    pub id: String,
    pub status: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub completed: u64,
    pub failed: u64,
    /// `errors.data[].code` and messages, for a batch that failed validation.
    pub errors: Vec<(String, String)>,
}

impl BatchObject {
    fn parse(v: &Value) -> Result<BatchObject> {
        let id = v["id"]
            .as_str()
            .ok_or_else(|| anyhow!("the batch API answered without a batch id: {v}"))?;
        let text = |key: &str| v[key].as_str().filter(|s| !s.is_empty()).map(String::from);
        let errors = v["errors"]["data"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| {
                        (
                            e["code"].as_str().unwrap_or("").to_string(),
                            e["message"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let counts = &v["request_counts"];
        Ok(BatchObject {
            id: id.to_string(),
            status: v["status"].as_str().unwrap_or("unknown").to_string(),
            output_file_id: text("output_file_id"),
            error_file_id: text("error_file_id"),
            completed: counts["completed"].as_u64().unwrap_or(0),
            failed: counts["failed"].as_u64().unwrap_or(0),
            errors,
        })
    }

    /// The provider will not change this batch any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "expired" | "cancelled" | "failed"
        )
    }
}

pub struct BatchApi {
    http: reqwest::Client,
    base: String,
    key: Option<Secret>,
    /// Tries per request for transient failures.
    tries: u32,
    /// `--request_timeout`, for the requests with a small answer; uploads and downloads get at
    /// least two minutes (the client's own timeout).
    timeout: Duration,
}

/// The most bytes an answer other than a result file may have (a page of 100 batches is
/// some 100 KB).
const SMALL_ANSWER: usize = 16 << 20;

/// What one try of a request came to.
enum Try {
    Answered(bytes_body::Body),
    Refused(Refused),
    /// The answer is longer than it may be: not read past the limit, not tried again.
    Oversized(String),
    /// No answer to rely on (a connection error, a timeout, a 429 or 5xx, a body cut off): the
    /// request may or may not have taken effect.
    Failed {
        message: String,
        retry_after: Option<Duration>,
        /// A success status came, and then the body failed: the request took effect.
        took_effect: bool,
    },
}

/// A batch [`BatchApi::create`] created, or found created by an earlier try.
pub struct Created {
    pub batch: BatchObject,
    /// Found by its input file instead of created by this call's answer.
    pub attached: bool,
}

/// A refusal that another try would not change (a bad key, a malformed file).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

/// An uploaded file as `GET /files` lists it.
#[derive(Debug, Clone)]
pub struct FileObject {
    pub id: String,
    pub filename: String,
}

impl BatchApi {
    pub fn new(base_url: &str, key: Option<Secret>, timeout: Duration) -> Result<BatchApi> {
        let http = reqwest::Client::builder()
            .timeout(timeout.max(Duration::from_secs(120)))
            .connect_timeout(Duration::from_secs(30))
            .build()?;
        Ok(BatchApi {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            key,
            tries: 6,
            timeout,
        })
    }

    /// An error quoting the provider's answer, with the key taken out of it.
    fn scrubbed(&self, e: anyhow::Error) -> anyhow::Error {
        anyhow!(self.scrub(format!("{e:#}")))
    }

    fn scrub(&self, text: String) -> String {
        match &self.key {
            Some(k) => k.scrub(&text),
            None => text,
        }
    }

    /// One try of a request: its answer, a refusal, or a failure that says nothing of whether
    /// the request took effect.
    async fn try_once(
        &self,
        what: &str,
        limit: usize,
        mut request: reqwest::RequestBuilder,
    ) -> Try {
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.expose());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Try::Failed {
                    message: self.scrub(format!("{what}: {e}")),
                    retry_after: None,
                    took_effect: false,
                }
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, 600.0)));
        let body = match read_capped(response, limit).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Try::Oversized(format!(
                    "{what}: HTTP {}: the answer is longer than {} MB, more than it can hold; nothing of it was used",
                    status.as_u16(),
                    limit >> 20
                ))
            }
            Err(e) => {
                return Try::Failed {
                    message: self.scrub(format!(
                        "{what}: HTTP {}, reading the answer: {e}",
                        status.as_u16()
                    )),
                    retry_after,
                    took_effect: status.is_success(),
                }
            }
        };
        if status.is_success() {
            return Try::Answered(bytes_body::Body(body));
        }
        let detail = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
        let message = self.scrub(format!("{what}: HTTP {}: {detail}", status.as_u16()));
        if matches!(status.as_u16(), 408 | 429) || status.is_server_error() {
            return Try::Failed {
                message,
                retry_after,
                took_effect: false,
            };
        }
        let hint = if matches!(status.as_u16(), 401 | 403) {
            "; check the API key"
        } else if status.as_u16() == 404 {
            "; does --base_url point at an API with the Batch API (OpenAI's /v1)?"
        } else {
            ""
        };
        Try::Refused(Refused {
            status: status.as_u16(),
            message: format!("{message}{hint}"),
        })
    }

    /// Sends a request (rebuilt for each try), retrying transient failures; the body of a
    /// success. Only for requests that may take effect twice without harm: a create goes
    /// through [`BatchApi::create`].
    async fn send(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<bytes_body::Body> {
        self.send_capped(what, SMALL_ANSWER, build).await
    }

    /// [`BatchApi::send`] with the most bytes the answer may have.
    async fn send_capped(
        &self,
        what: &str,
        limit: usize,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<bytes_body::Body> {
        let mut wait = Duration::from_millis(500);
        let mut last = String::new();
        for _ in 0..self.tries {
            match self.try_once(what, limit, build()).await {
                Try::Answered(body) => return Ok(body),
                Try::Refused(r) => return Err(r.into()),
                Try::Oversized(message) => bail!(message),
                Try::Failed {
                    message,
                    retry_after,
                    ..
                } => {
                    last = message;
                    wait = wait.max(retry_after.unwrap_or_default());
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        bail!("{last} (gave up after {} tries)", self.tries)
    }

    /// Uploads a JSONL input file; its file id.
    pub async fn upload(&self, filename: &str, content: Vec<u8>) -> Result<String> {
        let boundary = format!("dgen-{}", uuid::Uuid::new_v4().simple());
        let body = multipart(&boundary, filename, &content);
        let url = format!("{}/files", self.base);
        let answer = self
            .send("uploading the batch input file", || {
                self.http
                    .post(&url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        format!("multipart/form-data; boundary={boundary}"),
                    )
                    .body(body.clone())
            })
            .await?
            .json()
            .map_err(|e| self.scrubbed(e))?;
        answer["id"].as_str().map(String::from).ok_or_else(|| {
            anyhow!(self.scrub(format!(
                "the file upload answered without a file id: {answer}"
            )))
        })
    }

    /// Creates a batch over an uploaded file, with dgen's metadata, or finds the one an earlier
    /// try created. A create is never sent again blindly: a timeout, a reset, a 5xx or an
    /// answer cut off may come after the batch was created, so before each further try (and
    /// before the first, with `look_first`, after a restart) the batch is looked up by its
    /// input file among those created since `since` (Unix seconds).
    pub async fn create(
        &self,
        input_file_id: &str,
        metadata: Value,
        since: u64,
        look_first: bool,
    ) -> Result<Created> {
        let url = format!("{}/batches", self.base);
        let body = json!({
            "input_file_id": input_file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": metadata,
        });
        let mut wait = Duration::from_millis(500);
        let mut last = String::new();
        // A 2xx whose body was lost: the batch exists, whether a listing shows it yet or not.
        let mut exists = false;
        for n in 0..self.tries {
            if n > 0 || look_first {
                let found = self
                    .find_by_input(input_file_id, since)
                    .await
                    .map_err(|e| maybe_created(e, input_file_id))?;
                if let Some(batch) = found {
                    return Ok(Created {
                        batch,
                        attached: true,
                    });
                }
            }
            if exists {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
                continue;
            }
            let request = self.http.post(&url).timeout(self.timeout).json(&body);
            match self
                .try_once("creating the batch", SMALL_ANSWER, request)
                .await
            {
                Try::Answered(answer) => match answer.json().and_then(|v| BatchObject::parse(&v)) {
                    Ok(batch) => {
                        return Ok(Created {
                            batch,
                            attached: false,
                        })
                    }
                    // The batch exists, but its answer is unreadable: looked up below.
                    Err(e) => {
                        exists = true;
                        last = self.scrub(format!("creating the batch: {e:#}"));
                    }
                },
                // After an earlier try that may have created the batch, a refusal says nothing
                // about the job: it is kept, not given up.
                Try::Refused(r) if n > 0 => return Err(maybe_created(r.into(), input_file_id)),
                Try::Refused(r) => return Err(r.into()),
                Try::Oversized(message) => {
                    exists = true;
                    last = message;
                }
                Try::Failed {
                    message,
                    retry_after,
                    took_effect,
                } => {
                    exists |= took_effect;
                    last = message;
                    wait = wait.max(retry_after.unwrap_or_default());
                }
            }
            tracing::warn!(
                "{last}; the batch may exist all the same: it is looked up by its input file {input_file_id} before another try"
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        bail!(
            "{last} (gave up after {} tries, and no batch over {input_file_id} was found)",
            self.tries
        )
    }

    /// The batch, or `None` when the provider answers 404: it no longer knows the batch.
    pub async fn get(&self, batch_id: &str) -> Result<Option<BatchObject>> {
        let url = format!("{}/batches/{batch_id}", self.base);
        match self
            .send("reading the batch", || {
                self.http.get(&url).timeout(self.timeout)
            })
            .await
        {
            Ok(body) => body
                .json()
                .and_then(|v| BatchObject::parse(&v))
                .map(Some)
                .map_err(|e| self.scrubbed(e)),
            Err(e) if e.downcast_ref::<Refused>().is_some_and(|r| r.status == 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the provider knows the file: `false` on a 404. A batch answered 404 whose input
    /// file is known was lost by the provider; when the file is unknown too, dgen is talking to
    /// another account or endpoint than the one it uploaded to.
    pub async fn file_known(&self, file_id: &str) -> Result<bool> {
        let url = format!("{}/files/{file_id}", self.base);
        match self
            .send("reading the input file", || {
                self.http.get(&url).timeout(self.timeout)
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.downcast_ref::<Refused>().is_some_and(|r| r.status == 404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The batch created over `input_file_id`, if any: the listing (newest first) is read page
    /// by page until a batch created before `since` (Unix seconds) shows that nothing older can
    /// be it, or the listing ends.
    pub async fn find_by_input(
        &self,
        input_file_id: &str,
        since: u64,
    ) -> Result<Option<BatchObject>> {
        let mut found = None;
        self.list("batches?limit=100", "listing batches", usize::MAX, |b| {
            if b["input_file_id"] == input_file_id {
                found = Some(BatchObject::parse(b));
                return false;
            }
            // A provider that leaves out created_at is read to the end.
            b["created_at"].as_u64().is_none_or(|t| t >= since)
        })
        .await?;
        found.transpose().map_err(|e| self.scrubbed(e))
    }

    /// The input files of the most recent batches.
    pub async fn batch_inputs(&self) -> Result<std::collections::HashSet<String>> {
        let mut inputs = std::collections::HashSet::new();
        self.list("batches?limit=100", "listing batches", 10, |b| {
            if let Some(id) = b["input_file_id"].as_str() {
                inputs.insert(id.to_string());
            }
            true
        })
        .await?;
        Ok(inputs)
    }

    /// The uploaded files of purpose `batch` (batch input files).
    pub async fn input_files(&self) -> Result<Vec<FileObject>> {
        let mut files = Vec::new();
        self.list("files?purpose=batch", "listing files", 10, |f| {
            if let (Some(id), Some(filename)) = (f["id"].as_str(), f["filename"].as_str()) {
                files.push(FileObject {
                    id: id.to_string(),
                    filename: filename.to_string(),
                });
            }
            true
        })
        .await?;
        Ok(files)
    }

    pub async fn delete_file(&self, file_id: &str) -> Result<()> {
        let url = format!("{}/files/{file_id}", self.base);
        self.send("deleting a file", || {
            self.http.delete(&url).timeout(self.timeout)
        })
        .await?;
        Ok(())
    }

    /// Hands each object of a listing to `visit` (newest first), page by page, until `visit`
    /// answers false, the listing ends, or `pages` pages were read.
    async fn list(
        &self,
        query: &str,
        what: &str,
        pages: usize,
        mut visit: impl FnMut(&Value) -> bool,
    ) -> Result<()> {
        let mut after: Option<String> = None;
        for _ in 0..pages {
            let mut url = format!("{}/{query}", self.base);
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let page = self
                .send(what, || self.http.get(&url).timeout(self.timeout))
                .await?
                .json()
                .map_err(|e| self.scrubbed(e))?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            for object in &data {
                if !visit(object) {
                    return Ok(());
                }
            }
            let next = data.last().and_then(|b| b["id"].as_str().map(String::from));
            // A server that hands the same page again would be read forever.
            if page["has_more"] != true || next.is_none() || next == after {
                break;
            }
            after = next;
        }
        Ok(())
    }

    /// A file's content (a batch's output or error file), of at most `limit` bytes: a longer
    /// one is refused before it fills the memory.
    pub async fn content(&self, file_id: &str, limit: usize) -> Result<Vec<u8>> {
        let url = format!("{}/files/{file_id}/content", self.base);
        Ok(self
            .send_capped("downloading batch results", limit, || self.http.get(&url))
            .await?
            .0)
    }
}

mod bytes_body {
    pub struct Body(pub Vec<u8>);

    impl Body {
        pub fn json(self) -> anyhow::Result<serde_json::Value> {
            serde_json::from_slice(&self.0).map_err(|e| {
                anyhow::anyhow!(
                    "the batch API answered with something that is not JSON ({e}): {}",
                    String::from_utf8_lossy(&self.0)
                        .chars()
                        .take(200)
                        .collect::<String>()
                )
            })
        }
    }
}

/// A `multipart/form-data` body with `purpose=batch` and the file.
fn multipart(boundary: &str, filename: &str, content: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(content.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/jsonl\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// A refusal met while the batch over `file` may exist (an earlier try may have created it)
/// becomes a plain error: the run stops and the job stays, since giving it up would send its
/// requests again while the batch may run and be billed.
fn maybe_created(e: anyhow::Error, file: &str) -> anyhow::Error {
    match e.downcast::<Refused>() {
        Ok(r) => anyhow::anyhow!(
            "{} — the batch over {file} may exist from an earlier try, so its job is kept (giving it up could pay for its requests twice); the same `dgen run --batch` looks it up again",
            r.message
        ),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_failed_batch_with_its_errors() {
        let v = json!({"id": "batch_1", "status": "failed", "input_file_id": "file-1",
            "output_file_id": null, "request_counts": {"total": 3, "completed": 0, "failed": 0},
            "errors": {"data": [{"code": "token_limit_exceeded", "message": "Enqueued token limit reached"}]}});
        let b = BatchObject::parse(&v).unwrap();
        assert!(b.is_terminal());
        assert_eq!(b.output_file_id, None);
        assert_eq!(b.errors[0].0, "token_limit_exceeded");
        assert_eq!((b.completed, b.failed), (0, 0));
    }

    #[test]
    fn multipart_body_carries_purpose_and_file() {
        let body = multipart("XX", "in.jsonl", b"{\"a\":1}\n");
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with("--XX\r\n"));
        assert!(text.contains("name=\"purpose\"\r\n\r\nbatch\r\n"));
        assert!(text.contains("filename=\"in.jsonl\""));
        assert!(text.ends_with("{\"a\":1}\n\r\n--XX--\r\n"));
    }

    #[test]
    fn answers_quoted_in_errors_lose_the_key() {
        let key = "sk-proxy-echoes-this-key";
        let api = BatchApi::new(
            "http://127.0.0.1:9/v1",
            Some(Secret::new(key.into())),
            Duration::from_secs(5),
        )
        .unwrap();
        // A proxy's page that echoes the request, read as a batch answer.
        let page = format!("<html>Authorization: Bearer {key}</html>");
        let not_json = bytes_body::Body(page.into_bytes()).json().unwrap_err();
        let text = format!("{:#}", api.scrubbed(not_json));
        assert!(!text.contains(key) && text.contains("[redacted]"), "{text}");
        let no_id = BatchObject::parse(&serde_json::json!({"echo": key})).unwrap_err();
        assert!(!format!("{:#}", api.scrubbed(no_id)).contains(key));
    }
}
