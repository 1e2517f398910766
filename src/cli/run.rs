//! `dgen run`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::values::{real, seconds, whole, MAX_PARALLEL, MAX_RPM, MAX_TPM};
use super::{CallArgs, EmbedArgs, LatencyBackoff, LocalServerArgs, PriceArgs};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// OpenAI-compatible API base URL.
    #[arg(
        long = "base_url",
        visible_alias = "base-url",
        env = "OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    pub base_url: String,

    /// Model name sent with every request [default: from the catalog, gpt-4o-mini].
    #[arg(long)]
    pub model: Option<String>,

    /// An OpenAI-compatible endpoint, instead of --base_url; repeat it to spread the run over
    /// several (each request goes to the one with the most free room; one that fails is taken
    /// out and probed again later). All use --model and the run's API key; --endpoints FILE
    /// sets each one's model, key variable, weight and max concurrency.
    #[arg(long, value_name = "URL", conflicts_with_all = ["endpoints", "local", "local_model"])]
    pub endpoint: Vec<String>,

    /// A TOML file of [[endpoint]] tables (url, model, key_env, weight, max_concurrency, name)
    /// for one run over several endpoints; see the README.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["local", "local_model"])]
    pub endpoints: Option<PathBuf>,

    /// Most requests in flight at once: the ceiling of the adaptive limit, which grows after
    /// successes and shrinks on 429s and on rising latency [default: 16; with a local model,
    /// its request slots].
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<usize>(1, MAX_PARALLEL))]
    pub concurrency: Option<usize>,

    /// Requests per minute the endpoint allows: dgen paces its requests below it [default:
    /// the server's x-ratelimit-limit-requests header, if it sends one].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = whole::<u32>(1, MAX_RPM))]
    pub rpm: Option<u32>,

    /// Tokens per minute the endpoint allows (prompt and completion): dgen paces its requests
    /// below it [default: the server's x-ratelimit-limit-tokens header, if it sends one].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = whole::<u64>(1, MAX_TPM))]
    pub tpm: Option<u64>,

    /// Whether rising latency shrinks the concurrency limit (for servers that queue rather than
    /// answer 429): auto is on for the llama-server dgen starts and loopback endpoints, off for
    /// others, whose latency moves with their own load.
    #[arg(long = "latency_backoff", visible_alias = "latency-backoff", value_enum, default_value_t = LatencyBackoff::Auto)]
    pub latency_backoff: LatencyBackoff,

    /// Run on a local GGUF model: dgen starts llama-server on 127.0.0.1 for the run.
    #[arg(
        long = "local_model",
        visible_alias = "local-model",
        value_name = "PATH.gguf"
    )]
    pub local_model: Option<PathBuf>,

    /// Run on the cached default local model (SmolLM2-135M-Instruct from scripts/setup-local-model.sh).
    #[arg(long, conflicts_with = "local_model")]
    pub local: bool,

    #[command(flatten)]
    pub server: LocalServerArgs,

    /// Wire format of the dialogue: tags (the original's) or json (response_format json_schema,
    /// strict) [default: json with a local model, tags otherwise].
    #[arg(long, value_enum)]
    pub structured: Option<crate::prompt::Structured>,

    /// With --structured json, the schema sent: strict (the subset OpenAI's Structured Outputs
    /// accept; turn bounds and field caps are checked after parsing) or full (bounds and caps
    /// in the schema, for a server that enforces full JSON Schema) [default: full for the
    /// llama-server dgen starts, strict otherwise].
    #[arg(long, value_enum)]
    pub schema: Option<crate::prompt::Schema>,

    /// Attempts per item (a rejected answer is retried with re-drawn persona and sampling).
    #[arg(
        long = "max_attempts",
        visible_alias = "max-attempts",
        default_value_t = 3,
        allow_negative_numbers = true,
        value_parser = whole::<u32>(1, u32::MAX)
    )]
    pub max_attempts: u32,

    /// Give items that failed (ran out of attempts) another --max_attempts attempts.
    #[arg(long = "retry_failed", visible_alias = "retry-failed")]
    pub retry_failed: bool,

    #[command(flatten)]
    pub calls: CallArgs,

    /// max_tokens of the dialogue call [default: from the catalog, 1500].
    #[arg(long = "max_tokens", visible_alias = "max-tokens", allow_negative_numbers = true, value_parser = whole::<u32>(1, u32::MAX))]
    pub max_tokens: Option<u32>,

    /// Stop the run after this many consecutive failed calls or invalid answers.
    #[arg(
        long = "max_consecutive_failures",
        visible_alias = "max-consecutive-failures",
        default_value_t = 20,
        allow_negative_numbers = true,
        value_parser = whole::<u32>(1, u32::MAX)
    )]
    pub max_consecutive_failures: u32,

    /// Quality-check actions for this run, replacing the catalog's: check=action pairs, e.g.
    /// outcome_mismatch=reject,off_topic=flag. Checks: outcome_mismatch, copied_example,
    /// copied_reference, repetitive, off_topic, placeholder, short_utterances, repeated_reply,
    /// intent_labels; actions: reject, flag, off.
    /// Applies to this run's attempts only (a resumed run uses its own flags).
    #[arg(long, value_name = "CHECK=ACTION,...", value_parser = crate::quality::CheckOverrides::parse)]
    pub checks: Option<crate::quality::CheckOverrides>,

    /// After Ctrl-C/SIGTERM, seconds to let in-flight items finish before leaving them pending
    /// (0 or more, at most a day).
    #[arg(
        long = "shutdown_timeout",
        visible_alias = "shutdown-timeout",
        default_value = "60",
        allow_negative_numbers = true,
        value_parser = seconds(true),
        value_name = "SECONDS"
    )]
    pub shutdown_timeout: Duration,

    /// Send the requests through the OpenAI Batch API (files + batches, 24 h window) at the
    /// batch price: one pass collects finished batches and submits the next ones, then exits
    /// (run it again later), or stays until the run is finished with --wait.
    #[arg(long)]
    pub batch: bool,

    /// With --batch: stay, polling the batches (with backoff), until every item is finished.
    #[arg(long, requires = "batch")]
    pub wait: bool,

    /// With --batch --wait: seconds between polls at first (growing while nothing changes).
    #[arg(
        long = "poll_interval",
        visible_alias = "poll-interval",
        default_value = "30",
        allow_negative_numbers = true,
        value_parser = seconds(false),
        value_name = "SECONDS"
    )]
    pub poll_interval: Duration,

    /// With --batch: requests per batch input file at most (the Batch API allows 50,000).
    #[arg(long = "batch_max_requests", visible_alias = "batch-max-requests", value_name = "N", default_value_t = crate::run::batch::MAX_REQUESTS, allow_negative_numbers = true, value_parser = whole::<usize>(1, crate::run::batch::MAX_REQUESTS))]
    pub batch_max_requests: usize,

    /// With --batch: megabytes per batch input file at most (the Batch API allows 200).
    #[arg(long = "batch_max_mb", visible_alias = "batch-max-mb", value_name = "MB", default_value_t = crate::run::batch::MAX_MB, allow_negative_numbers = true, value_parser = whole::<usize>(1, crate::run::batch::MAX_MB))]
    pub batch_max_mb: usize,

    /// Give up a batch in flight (its number in `dgen status`; repeatable): its results are not
    /// read, its requests are pending again. Gives up and exits; nothing is sent.
    #[arg(
        long = "batch_give_up",
        visible_alias = "batch-give-up",
        value_name = "JOB"
    )]
    pub batch_give_up: Vec<u64>,

    /// Print the exact requests of the next pending items and call nothing.
    #[arg(long = "dry_run", visible_alias = "dry-run")]
    pub dry_run: bool,

    /// With --dry_run: how many items to show.
    #[arg(long, default_value_t = 1)]
    pub limit: usize,

    /// Stop dispatching before what the store has spent (across resumes) plus what the
    /// attempts in flight may cost would pass USD; exits with code 3 when items are left.
    #[arg(long = "max_cost", visible_alias = "max-cost", value_name = "USD", allow_negative_numbers = true, value_parser = real("(0, 1000000000]", |v| v > 0.0 && v <= 1e9))]
    pub max_cost: Option<f64>,

    #[command(flatten)]
    pub prices: PriceArgs,

    /// Folder with the embedding assets from scripts/fetch-assets.sh [default: $DGEN_CACHE_DIR or ~/.cache/dgen].
    #[arg(long = "assets_dir", visible_alias = "assets-dir", value_name = "DIR")]
    pub assets_dir: Option<PathBuf>,

    #[command(flatten)]
    pub embed: EmbedArgs,

    /// Log file (INFO, or DEBUG with -v), besides stderr.
    #[arg(
        long = "log_file",
        visible_alias = "log-file",
        default_value = "dialogue_generation.log"
    )]
    pub log_file: PathBuf,

    /// Score every dialogue with the LLM judge before it is committed (see `dgen judge`).
    #[arg(long)]
    pub judge: bool,

    /// With --judge: the judge's model [default: the run's --model].
    #[arg(
        long = "judge_model",
        visible_alias = "judge-model",
        requires = "judge"
    )]
    pub judge_model: Option<String>,

    /// With --judge: the judge's OpenAI-compatible base URL [default: the run's endpoint].
    #[arg(
        long = "judge_base_url",
        visible_alias = "judge-base-url",
        requires = "judge"
    )]
    pub judge_base_url: Option<String>,

    /// With --judge_base_url: the environment variable holding the judge's API key. Without
    /// it, the judge gets the key of the run's endpoint at that URL, OPENAI_API_KEY at OpenAI
    /// or $OPENAI_BASE_URL, none at another loopback URL, and any other URL is refused.
    #[arg(
        long = "judge_key_env",
        visible_alias = "judge-key-env",
        value_name = "NAME",
        requires = "judge_base_url"
    )]
    pub judge_key_env: Option<String>,

    /// With --judge: reject a dialogue whose overall judge score is below S (1-5) as
    /// `judge_low`, and re-attempt its item like any rejection.
    #[arg(long = "min_judge_score", visible_alias = "min-judge-score", value_name = "S", requires = "judge", allow_negative_numbers = true, value_parser = whole::<u8>(1, 5))]
    pub min_judge_score: Option<u8>,
}
