//! What `dgen run` was asked to do, checked and owned by the run: `commands::run` builds it
//! from the command line once, and everything in `run/` borrows it; no flag type reaches here.

use std::path::PathBuf;
use std::time::Duration;

use crate::cost::PriceOverrides;
use crate::embed::Parallelism;
use crate::llm::local_server::ServerOptions;
use crate::llm::{CallSettings, LatencyBackoff};
use crate::prompt::{Schema, Structured};
use crate::quality::CheckOverrides;

/// One run's settings. Options left to a default that depends on what the run finds (the
/// store's catalog, a local model) stay `None` here and are settled where that is known.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The endpoint when neither `endpoint` nor `endpoints` names others.
    pub base_url: String,
    /// The model sent [default: the catalog's].
    pub model: Option<String>,
    /// Endpoints to spread the run over (each with `model` and the run's key).
    pub endpoint: Vec<String>,
    /// A TOML file of `[[endpoint]]` tables.
    pub endpoints: Option<PathBuf>,
    /// Ceiling of the adaptive concurrency limit [default: 16, or the local server's slots].
    pub concurrency: Option<usize>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub latency_backoff: LatencyBackoff,
    /// A local GGUF model: the run starts llama-server for it.
    pub local_model: Option<PathBuf>,
    /// The cached default local model.
    pub local: bool,
    pub server: ServerOptions,
    pub structured: Option<Structured>,
    pub schema: Option<Schema>,
    pub max_attempts: u32,
    pub retry_failed: bool,
    pub calls: CallSettings,
    /// max_tokens of the dialogue call [default: the catalog's].
    pub max_tokens: Option<u32>,
    pub max_consecutive_failures: u32,
    /// Quality-check actions replacing the catalog's, for this run's attempts.
    pub checks: Option<CheckOverrides>,
    /// After Ctrl-C, how long in-flight items may finish.
    pub shutdown_timeout: Duration,
    pub batch: BatchConfig,
    /// Print the next `limit` items' requests and call nothing.
    pub dry_run: bool,
    pub limit: usize,
    pub max_cost: Option<f64>,
    pub prices: PriceOverrides,
    pub assets_dir: Option<PathBuf>,
    pub embed: Parallelism,
    pub log_file: PathBuf,
    pub judge: JudgeConfig,
}

/// `--batch` and its settings.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Send the requests through the Batch API.
    pub enabled: bool,
    /// Stay until every item is finished.
    pub wait: bool,
    pub poll_interval: Duration,
    pub max_requests: usize,
    pub max_mb: usize,
    /// Batch jobs to give up (their requests pending again) instead of running.
    pub give_up: Vec<u64>,
}

/// `--judge` and its settings: score each dialogue before it is committed.
#[derive(Debug, Clone, Default)]
pub struct JudgeConfig {
    pub enabled: bool,
    pub model: Option<String>,
    pub base_url: Option<String>,
    /// `--judge_key_env`: the variable holding the key of the judge at `base_url`.
    pub key_env: Option<String>,
    pub min_score: Option<u8>,
}
