//! The HTTP client: one POST to `{base_url}/chat/completions` per try, classified by status.

use std::time::Duration;

use serde_json::Value;

use std::sync::Arc;

use super::limiter::{Feedback, Limiter, Limits, Permit, RateHeaders};
use super::retry::{retry_hint, RetryPolicy};
use super::{CallError, CallFailure, ChatRequest, Completion, Secret, Usage};

/// Where and how to call.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// The ceiling of requests in flight and explicit per-minute limits.
    pub limits: Limits,
}

pub struct LlmClient {
    http: reqwest::Client,
    url: String,
    key: Option<Secret>,
    retry: RetryPolicy,
    limiter: Arc<Limiter>,
}

impl LlmClient {
    /// A client with its own limiter.
    pub fn new(endpoint: &Endpoint) -> anyhow::Result<LlmClient> {
        LlmClient::with_limiter(endpoint, Limiter::new(endpoint.limits))
    }

    /// A client sharing another's limiter: both call the same server, within the same limits.
    pub fn sharing(endpoint: &Endpoint, other: &LlmClient) -> anyhow::Result<LlmClient> {
        LlmClient::with_limiter(endpoint, other.limiter.clone())
    }

    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    pub(super) fn with_limiter(
        endpoint: &Endpoint,
        limiter: Arc<Limiter>,
    ) -> anyhow::Result<LlmClient> {
        let http = reqwest::Client::builder()
            .timeout(endpoint.timeout)
            .connect_timeout(endpoint.timeout.min(Duration::from_secs(30)))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(LlmClient {
            http,
            url: format!(
                "{}/chat/completions",
                endpoint.base_url.trim_end_matches('/')
            ),
            key: endpoint.api_key.clone(),
            retry: endpoint.retry,
            limiter,
        })
    }

    /// One completion, retrying what is worth retrying. Tokens of every answered try count.
    pub async fn complete(&self, request: &ChatRequest) -> Result<Completion, CallFailure> {
        let mut usage = Usage::default();
        let mut retry = 0;
        let mut timed_out = 0;
        loop {
            match self.try_once(request).await {
                Ok(mut completion) => {
                    completion.usage += usage;
                    return Ok(completion);
                }
                Err((error, billed)) => {
                    usage += billed;
                    timed_out += u32::from(error.timed_out());
                    let hint = match &error {
                        CallError::Retryable { retry_after, .. }
                            if retry < self.retry.max_retries =>
                        {
                            *retry_after
                        }
                        _ => {
                            return Err(CallFailure {
                                error,
                                usage,
                                timed_out,
                            })
                        }
                    };
                    let wait = self.retry.delay(retry, hint);
                    tracing::debug!("call failed ({error}); retry {} in {wait:?}", retry + 1);
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
            }
        }
    }

    /// One try, within the limiter: it waits for a permit and reports what the server said.
    async fn try_once(&self, request: &ChatRequest) -> Result<Completion, (CallError, Usage)> {
        let encoded = Encoded::new(request).map_err(|e| (e, Usage::default()))?;
        let permit = self
            .limiter
            .acquire(encoded.estimate, encoded.max_tokens)
            .await;
        self.send_with(encoded.body, permit).await
    }

    /// One try with a permit of this client's limiter, which it hands back with what the
    /// server said.
    pub(super) async fn send_with(
        &self,
        body: Vec<u8>,
        permit: Permit,
    ) -> Result<Completion, (CallError, Usage)> {
        let (result, headers) = self.send(body).await;
        let feedback = match &result {
            Ok(c) => Feedback::Success {
                billed: (c.usage.prompt_tokens > 0 || c.usage.completion_tokens > 0).then(|| {
                    c.usage
                        .prompt_tokens
                        .saturating_add(c.usage.completion_tokens)
                }),
                completion: c.usage.completion_tokens,
            },
            Err((CallError::Retryable { retry_after, .. }, _))
                if matches!(headers.status, Some(429 | 503)) =>
            {
                Feedback::Overloaded {
                    retry_after: *retry_after,
                }
            }
            Err(_) => Feedback::Other,
        };
        permit.finish(feedback, &headers.rate);
        result
    }

    async fn send(&self, body: Vec<u8>) -> (Result<Completion, (CallError, Usage)>, Answered) {
        let mut answered = Answered::default();
        let result = self.send_inner(body, &mut answered).await;
        (result, answered)
    }

    async fn send_inner(
        &self,
        body: Vec<u8>,
        answered: &mut Answered,
    ) -> Result<Completion, (CallError, Usage)> {
        let mut builder = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.key {
            builder = builder.bearer_auth(key.expose());
        }
        let scrub = |text: String| match &self.key {
            Some(key) => key.scrub(&text),
            None => text,
        };
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                let message = scrub(format!("{kind}: {}", error_chain(&e)));
                let mut error = retryable(None, message, None);
                mark_timed_out(&mut error, e.is_timeout() && !e.is_connect());
                return Err((error, Usage::default()));
            }
        };
        let status = response.status();
        let hint = retry_hint(response.headers());
        answered.status = Some(status.as_u16());
        answered.rate = RateHeaders::parse(response.headers());
        let body = match read_capped(response, MAX_RESPONSE_BYTES).await {
            Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                let message = scrub(format!("reading the response failed: {}", error_chain(&e)));
                let mut error = retryable(None, message, hint);
                mark_timed_out(&mut error, e.is_timeout());
                return Err((error, Usage::default()));
            }
            Ok(None) => {
                // Answered, so counted as a call; its tokens are in the part left unread.
                let error = CallError::Rejected {
                    status: status.as_u16(),
                    code: Some("response_too_large".into()),
                    message: format!(
                        "HTTP {}: the response body is larger than {} MiB, the most dgen reads of a chat completion; this try is given up unread. Check what answers at the endpoint (a proxy's page, a runaway generation)",
                        status.as_u16(),
                        MAX_RESPONSE_BYTES >> 20
                    ),
                };
                let usage = Usage {
                    calls: 1,
                    ..Usage::default()
                };
                return Err((error, usage));
            }
        };
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        // Every answered request counts as a call, whatever its body; tokens when it says.
        let usage = parsed.as_ref().map_or(
            Usage {
                calls: 1,
                ..Usage::default()
            },
            usage_of,
        );
        if !status.is_success() {
            let error = classify(status, parsed.as_ref(), &body, scrub, hint);
            return Err((error, usage));
        }
        let Some(value) = parsed else {
            let message = scrub(format!(
                "the endpoint answered 200 with a body that is not JSON: {}",
                body.chars().take(200).collect::<String>()
            ));
            return Err((retryable(Some(200), message, None), usage));
        };
        // Lenient on purpose: OpenAI-compatible servers differ in the optional fields.
        let content = value["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let truncated = value["choices"][0]["finish_reason"] == "length";
        Ok(Completion {
            content,
            usage,
            truncated,
        })
    }
}

/// The most of a chat-completion response body that is read. An answer of the largest
/// `max_tokens` any model offers is a few hundred kilobytes of JSON; a body past this comes from
/// something else answering (a proxy's page, a server streaming without end), and reading on
/// would hold all of it in memory.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The body of an answer, chunk by chunk; `None` when it is longer than `limit` (said by its
/// Content-Length, or found while reading: the rest is never read). The Batch API's downloads
/// read through it too.
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> reqwest::Result<Option<Vec<u8>>> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A request as sent: its body, the tokens it may cost (for the limiter's pacing) and its
/// `max_tokens` (the limiter's kind of call).
pub(super) struct Encoded {
    pub body: Vec<u8>,
    pub estimate: u64,
    pub max_tokens: u32,
}

impl Encoded {
    pub fn new(request: &ChatRequest) -> Result<Encoded, CallError> {
        let body = serde_json::to_vec(request).map_err(|e| CallError::Rejected {
            status: 0,
            code: None,
            message: format!("the request could not be encoded: {e}"),
        })?;
        let max_tokens = request.max_tokens();
        // About four bytes a token, plus every token the answer may take.
        let estimate = body.len() as u64 / 4 + u64::from(max_tokens);
        Ok(Encoded {
            body,
            estimate,
            max_tokens,
        })
    }
}

/// What the server's answer said about its load.
#[derive(Default)]
struct Answered {
    status: Option<u16>,
    rate: RateHeaders,
}

/// 400 codes that say the key or the model is wrong, so every request would be refused.
const FATAL_CODES: &[&str] = &[
    "invalid_api_key",
    "model_not_found",
    "invalid_model",
    "account_deactivated",
];

/// What an error status means for the run. The server's error code (`error.code` of OpenAI's
/// error body) goes into the message, so a rejection says what kind of refusal it was.
fn classify(
    status: reqwest::StatusCode,
    parsed: Option<&Value>,
    body: &str,
    scrub: impl Fn(String) -> String,
    hint: Option<Duration>,
) -> CallError {
    let error = parsed.map(|v| &v["error"]);
    let detail = error
        .and_then(|e| e["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect());
    let code = error.and_then(|e| match &e["code"] {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let number = status.as_u16();
    let message = match &code {
        Some(code) => format!("HTTP {number} {code}: {}", detail.trim()),
        None => format!("HTTP {number}: {}", detail.trim()),
    };
    let message = scrub(message);
    let fatal_code = code.as_deref().is_some_and(|c| FATAL_CODES.contains(&c));
    match number {
        408 | 409 | 425 | 429 => retryable(Some(number), message, hint),
        _ if status.is_server_error() => retryable(Some(number), message, hint),
        // About the key, the account or the endpoint; a redirect left unfollowed too.
        401..=405 => CallError::Fatal {
            status: number,
            message,
        },
        _ if fatal_code || !status.is_client_error() => CallError::Fatal {
            status: number,
            message,
        },
        _ => CallError::Rejected {
            status: number,
            code: code.map(scrub),
            message,
        },
    }
}

fn retryable(status: Option<u16>, message: String, retry_after: Option<Duration>) -> CallError {
    CallError::Retryable {
        status,
        message,
        retry_after,
        timed_out: false,
    }
}

fn mark_timed_out(error: &mut CallError, sent: bool) {
    if let CallError::Retryable { timed_out, .. } = error {
        *timed_out = sent;
    }
}

/// The tokens a chat-completion body says it used (one call).
pub fn usage_of(value: &Value) -> Usage {
    let u = &value["usage"];
    let prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0);
    Usage {
        calls: 1,
        prompt_tokens,
        completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
        // Never more than the prompt: the cached share is priced as a part of it.
        cached_tokens: u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0)
            .min(prompt_tokens),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
