//! Talking to an OpenAI-compatible chat-completions endpoint.
//!
//! Requests are async-openai's `CreateChatCompletionRequest` (so the wire format is exactly the
//! one async-openai sends); the transport is our own reqwest client because the run needs what
//! async-openai's client does not expose: the HTTP status (to tell a bad key from a busy
//! server) and the `Retry-After` / `x-ratelimit-reset-*` headers (to wait as long as the server
//! asks). Every call reports the tokens it was billed, also when its output is later rejected.
//! Every try goes through the endpoint's [`Limiter`], which adapts the requests in flight.

mod client;
pub mod credentials;
pub mod limiter;
pub mod local_server;
mod pool;
mod retry;

use std::time::Duration;

pub use client::{read_capped, usage_of, Endpoint, LlmClient, MAX_RESPONSE_BYTES};
pub use limiter::{Limiter, Limits};
pub use pool::{EndpointStats, Pool, PoolEndpoint, Served};
pub use retry::RetryPolicy;

/// Most tasks, request slots or threads one run may use: far beyond any endpoint's limits,
/// and low enough that buffers sized from it cannot overflow.
pub const MAX_PARALLEL: usize = 4096;

/// How each call is retried and timed out (`run`, `judge`).
#[derive(Debug, Clone, Copy)]
pub struct CallSettings {
    pub retry: RetryPolicy,
    /// One try's deadline.
    pub timeout: Duration,
}

/// Whether rising latency shrinks an endpoint's concurrency limit (`--latency_backoff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LatencyBackoff {
    On,
    Off,
    Auto,
}

impl LatencyBackoff {
    /// Whether the rule applies to the endpoint at `base_url` (the llama-server dgen starts is
    /// on 127.0.0.1): a loopback server queues its requests, a hosted API's latency moves with
    /// load dgen does not cause.
    pub fn applies_to(self, base_url: &str) -> bool {
        match self {
            LatencyBackoff::On => true,
            LatencyBackoff::Off => false,
            LatencyBackoff::Auto => credentials::is_loopback(base_url),
        }
    }
}

/// One request: async-openai's chat request, plus llama.cpp's `grammar` extension when the
/// tag format is constrained on a local llama-server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChatRequest {
    #[serde(flatten)]
    pub chat: async_openai::types::chat::CreateChatCompletionRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grammar: Option<String>,
}

impl ChatRequest {
    /// The most completion tokens the request allows (`max_completion_tokens`, else the older
    /// `max_tokens`; 0 when it sets neither).
    pub fn max_tokens(&self) -> u32 {
        #[allow(deprecated)]
        self.chat
            .max_completion_tokens
            .or(self.chat.max_tokens)
            .unwrap_or(0)
    }
}

/// Tokens billed for one or more calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, those the provider served from its prompt cache
    /// (`usage.prompt_tokens_details.cached_tokens`). Not serialized: stored dialogues keep the
    /// bincode layout they were written with, and the run's total lives in the `tokens/cached`
    /// counter.
    #[serde(skip)]
    pub cached_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        // Saturating: the counts come from the server, which may send anything.
        self.calls = self.calls.saturating_add(other.calls);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(other.cached_tokens);
    }
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub content: String,
    pub usage: Usage,
    /// The server stopped at `max_tokens` (`finish_reason: "length"`).
    pub truncated: bool,
}

/// Why a call did not produce a completion.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// 429, 5xx, timeouts, connection errors, unreadable bodies: worth another try.
    #[error("{message}")]
    Retryable {
        /// The HTTP status; `None` when the server did not answer (connection failed, timed
        /// out, or the answer broke off).
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
        /// The request was sent and no answer came in time: the provider may still have
        /// processed (and billed) it.
        timed_out: bool,
    },
    /// 401-405, or a 400 whose code names the key or the model: every further call would
    /// fail the same way.
    #[error("{message}")]
    Fatal { status: u16, message: String },
    /// Other 4xx: the server refused this request (`context_length_exceeded`, a content-policy
    /// refusal, a value it does not accept). Sending it again would not help; other requests
    /// may well succeed.
    #[error("{message}")]
    Rejected {
        status: u16,
        code: Option<String>,
        message: String,
    },
}

impl CallError {
    pub fn is_fatal(&self) -> bool {
        matches!(self, CallError::Fatal { .. })
    }

    /// A try that was sent and timed out: billed or not, nobody can tell.
    pub fn timed_out(&self) -> bool {
        matches!(
            self,
            CallError::Retryable {
                timed_out: true,
                ..
            }
        )
    }
}

/// A failed call (after its retries), with what the failed tries were billed.
#[derive(Debug, Clone)]
pub struct CallFailure {
    pub error: CallError,
    pub usage: Usage,
    /// Tries that were sent and timed out (their tokens, if billed, are unknown).
    pub timed_out: u32,
}

/// An API key that never prints itself.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Removes the key from text that came from elsewhere (a server's error body, say).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_string();
        }
        text.replace(&self.0, "[redacted]")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}
