//! Command-line flags. Flag names keep the original script's snake_case spellings
//! (`--total_generations`); kebab-case aliases are accepted too.

mod embed;
mod values;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use embed::EmbedArgs;
pub use values::MAX_PARALLEL;
use values::{real, seconds, whole, MAX_RPM, MAX_TPM};

use crate::dataset::{DEFAULT_DATASET_NAME, DEFAULT_PERSONA_PATH};
use crate::llm::local_server::ServerOptions;
use crate::llm::CallSettings;
pub use crate::llm::LatencyBackoff;

#[derive(Debug, Parser)]
#[command(
    name = "dgen",
    version,
    about = "Manufacture synthetic task-oriented dialogues (customer <-> assistant)",
    long_about = "dgen plans a reproducible set of work items from MultiWOZ dialogues, personas and a \
                  catalog of services, generates them through any OpenAI-compatible endpoint or a local \
                  model with exact and semantic dedup, keeps everything in one embedded redb store \
                  (resumable after Ctrl-C or kill -9), and exports the documented files.\n\n\
                  Typical use:\n  dgen plan --total_generations 1000 --dataset DATA --persona_dataset PERSONAS\n  \
                  OPENAI_API_KEY=... dgen run        (or: dgen run --local)\n  \
                  dgen status\n  dgen export\n  dgen report"
)]
pub struct Cli {
    /// The dgen store (a redb file) every command works on.
    #[arg(long, global = true, default_value = "dgen.redb", value_name = "FILE")]
    pub store: PathBuf,

    /// Log more (DEBUG). RUST_LOG, when set, wins.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Draw a seeded plan of N work items and commit it to the store.
    Plan(Box<PlanArgs>),
    /// Print one base dialogue as the prompts will use it (the original's --test_extraction).
    Extract(ExtractArgs),
    /// Generate the planned dialogues through an OpenAI-compatible endpoint (resumable).
    Run(Box<RunArgs>),
    /// Bring earlier results (dgen's or the original script's files) into the dedup index.
    Import(ImportArgs),
    /// Merge the shard stores of one plan into one store, dropping cross-shard duplicates.
    Merge(MergeArgs),
    /// Write synthetic dialogues straight into a store (benchmarks only).
    #[command(hide = true, name = "bench-fill")]
    BenchFill(BenchFillArgs),
    /// Score the stored dialogues with an LLM judge (resumable; skips what is scored).
    Judge(Box<JudgeArgs>),
    /// How often the judge ranks real dialogues above corrupted copies (a benchmark).
    #[command(hide = true, name = "judge-discrimination")]
    JudgeDiscrimination(Box<DiscriminationArgs>),
    /// Show progress, failures and the plan's distributions.
    Status(StatusArgs),
    /// Write the dialogues, hashes and embeddings (or the plan) from the store.
    Export(ExportArgs),
    /// Write report.html (charts and a dialogue browser, one file that opens offline) and
    /// report.json (every number in it).
    Report(ReportArgs),
}

#[derive(Debug, Args, Clone)]
pub struct DatasetArgs {
    /// Base dialogues: a Hugging Face save_to_disk folder (DatasetDict or Dataset), MultiWOZ 2.2
    /// JSON (a file with a list of dialogues or a folder of dialogues_*.json), JSONL or Parquet.
    /// Without it, --dataset_name decides.
    #[arg(long, value_name = "PATH")]
    pub dataset: Option<PathBuf>,

    /// Dataset name used when --dataset is absent: maps to ./local_datasets/<last part of the name>.
    #[arg(long = "dataset_name", visible_alias = "dataset-name", default_value = DEFAULT_DATASET_NAME)]
    pub dataset_name: String,

    /// Split of the dataset to use (MultiWOZ folders call validation "dev").
    #[arg(long, default_value = "train")]
    pub split: String,
}

#[derive(Debug, Args, Clone)]
pub struct PersonaArgs {
    /// Personas: save_to_disk folder, JSONL or Parquet with a `persona` column and optional
    /// `cluster_label` / `summary_label`.
    #[arg(long = "persona_dataset", visible_alias = "persona-dataset", default_value = DEFAULT_PERSONA_PATH, value_name = "PATH")]
    pub persona_dataset: PathBuf,

    /// Split of the persona dataset [default: train when present, else the first split].
    #[arg(long = "persona_split", visible_alias = "persona-split")]
    pub persona_split: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Number of dialogues (work items) to plan.
    #[arg(
        long = "total_generations",
        visible_alias = "total-generations",
        value_name = "N",
        value_parser = whole::<u64>(1, u64::MAX)
    )]
    pub total_generations: u64,

    /// Seed of the ChaCha20 RNG: same inputs and seed give a byte-identical plan.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Cosine similarity at or above which a dialogue counts as a near-duplicate, in (0, 1]
    /// [default: from the catalog, 0.9].
    #[arg(long = "similarity_threshold", visible_alias = "similarity-threshold", value_parser = real("(0, 1]", |v| v > 0.0 && v <= 1.0))]
    pub similarity_threshold: Option<f64>,

    /// Range the minimum turn count is drawn from [default: from the catalog, 5 10].
    #[arg(long = "min_turns", visible_alias = "min-turns", num_args = 2, value_names = ["LOW", "HIGH"], allow_negative_numbers = true, value_parser = whole::<u32>(1, u32::MAX))]
    pub min_turns: Option<Vec<u32>>,

    /// Range the maximum turn count is drawn from, never below the item's minimum
    /// [default: from the catalog, 7 20].
    #[arg(long = "max_turns", visible_alias = "max-turns", num_args = 2, value_names = ["LOW", "HIGH"], allow_negative_numbers = true, value_parser = whole::<u32>(1, u32::MAX))]
    pub max_turns: Option<Vec<u32>>,

    /// Temperatures to draw from [default: from the catalog, 0.7 0.8 0.9 1.0].
    #[arg(long, num_args = 1.., value_name = "T", allow_negative_numbers = true, value_parser = real("[0, 2]", |v| (0.0..=2.0).contains(&v)))]
    pub temperature: Option<Vec<f64>>,

    /// top_p values to draw from [default: from the catalog, 0.8 0.85 0.9 0.95 1.0].
    #[arg(long = "top_p", visible_alias = "top-p", num_args = 1.., value_name = "P", allow_negative_numbers = true, value_parser = real("[0, 1]", |v| (0.0..=1.0).contains(&v)))]
    pub top_p: Option<Vec<f64>>,

    /// Frequency penalties to draw from [default: from the catalog, 0.0 0.2 0.4 0.6 0.7].
    #[arg(long = "frequency_penalty", visible_alias = "frequency-penalty", num_args = 1.., value_name = "X", allow_negative_numbers = true, value_parser = real("[-2, 2]", |v| (-2.0..=2.0).contains(&v)))]
    pub frequency_penalty: Option<Vec<f64>>,

    /// Presence penalties to draw from [default: from the catalog, 0.0 0.2 0.4 0.6 0.7].
    #[arg(long = "presence_penalty", visible_alias = "presence-penalty", num_args = 1.., value_name = "X", allow_negative_numbers = true, value_parser = real("[-2, 2]", |v| (-2.0..=2.0).contains(&v)))]
    pub presence_penalty: Option<Vec<f64>>,

    /// Catalog file (JSON or TOML, the shape of assets/catalog.json) replacing the built-in one.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,

    /// Replace a different plan already in the store (refused once dialogues were generated).
    #[arg(long)]
    pub force: bool,

    /// Keep only shard INDEX of COUNT: the full plan's items whose index % COUNT == INDEX
    /// (indexes stay the full plan's). Without it, a Slurm job array's SLURM_ARRAY_TASK_ID /
    /// SLURM_ARRAY_TASK_COUNT or a Kubernetes Indexed Job's JOB_COMPLETION_INDEX (with
    /// --shard_count) decide; --shard 0/1 plans the whole plan anyway.
    #[arg(long, value_name = "INDEX/COUNT", value_parser = crate::plan::shard::parse)]
    pub shard: Option<crate::plan::Shard>,

    /// The shard's index, 0-based (with --shard_count).
    #[arg(long = "shard_index", visible_alias = "shard-index", value_name = "I", value_parser = whole::<u32>(0, u32::MAX - 1))]
    pub shard_index: Option<u32>,

    /// How many shards the plan is split into (with --shard_index, or with a Kubernetes
    /// Indexed Job's JOB_COMPLETION_INDEX: the Job's completions).
    #[arg(long = "shard_count", visible_alias = "shard-count", value_name = "K", value_parser = whole::<u32>(1, u32::MAX))]
    pub shard_count: Option<u32>,

    /// The model the cost estimate counts tokens and prices for [default: from the catalog,
    /// gpt-4o-mini]; `dgen run --model` chooses the one called.
    #[arg(long)]
    pub model: Option<String>,

    #[command(flatten)]
    pub prices: PriceArgs,

    #[command(flatten)]
    pub dataset: DatasetArgs,

    #[command(flatten)]
    pub personas: PersonaArgs,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Index of the dialogue among the dataset's usable dialogues (0-based).
    #[arg(long, visible_alias = "extraction_index", default_value_t = 0)]
    pub index: usize,

    #[command(flatten)]
    pub dataset: DatasetArgs,
}

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
    /// copied_reference, repetitive, off_topic, placeholder; actions: reject, flag, off.
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

    /// With --judge: reject a dialogue whose overall judge score is below S (1-5) as
    /// `judge_low`, and re-attempt its item like any rejection.
    #[arg(long = "min_judge_score", visible_alias = "min-judge-score", value_name = "S", requires = "judge", allow_negative_numbers = true, value_parser = whole::<u8>(1, 5))]
    pub min_judge_score: Option<u8>,
}

/// Where the judge is reached and how it is called (`dgen judge`, `judge-discrimination`).
#[derive(Debug, Args, Clone)]
pub struct JudgeEndpointArgs {
    /// The judge's OpenAI-compatible base URL [default: the endpoint of the store's last run,
    /// else $OPENAI_BASE_URL, else https://api.openai.com/v1].
    #[arg(
        long = "judge_base_url",
        visible_alias = "judge-base-url",
        value_name = "URL"
    )]
    pub judge_base_url: Option<String>,

    /// The judge's model [default: the model of the store's run].
    #[arg(long = "judge_model", visible_alias = "judge-model")]
    pub judge_model: Option<String>,

    /// Judge with the cached default local model: dgen starts llama-server like `run --local`.
    #[arg(long, conflicts_with_all = ["local_model", "judge_base_url"])]
    pub local: bool,

    /// Judge with a local GGUF model: dgen starts llama-server on 127.0.0.1.
    #[arg(
        long = "local_model",
        visible_alias = "local-model",
        value_name = "PATH.gguf",
        conflicts_with = "judge_base_url"
    )]
    pub local_model: Option<PathBuf>,

    #[command(flatten)]
    pub server: LocalServerArgs,

    /// Judge calls in flight at once [default: 8; with a local model, its request slots].
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<usize>(1, MAX_PARALLEL))]
    pub concurrency: Option<usize>,

    /// Whether rising latency shrinks the judge's concurrency limit, as `dgen run
    /// --latency_backoff`: auto is on for a local model and loopback endpoints only.
    #[arg(long = "latency_backoff", visible_alias = "latency-backoff", value_enum, default_value_t = LatencyBackoff::Auto)]
    pub latency_backoff: LatencyBackoff,

    #[command(flatten)]
    pub calls: CallArgs,

    /// max_tokens of a judge call.
    #[arg(long = "max_tokens", visible_alias = "max-tokens", default_value_t = 400, allow_negative_numbers = true, value_parser = whole::<u32>(1, u32::MAX))]
    pub max_tokens: u32,

    /// Folder with the local model from scripts/setup-local-model.sh [default: $DGEN_CACHE_DIR or ~/.cache/dgen].
    #[arg(long = "assets_dir", visible_alias = "assets-dir", value_name = "DIR")]
    pub assets_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct JudgeArgs {
    #[command(flatten)]
    pub endpoint: JudgeEndpointArgs,

    /// Judge at most N dialogues this time.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = whole::<u64>(1, u64::MAX))]
    pub limit: Option<u64>,

    /// Score again the dialogues judged by another model or rubric version.
    #[arg(long)]
    pub rescore: bool,

    /// Stop after this many consecutive dialogues the judge could not score.
    #[arg(long = "max_consecutive_failures", visible_alias = "max-consecutive-failures", default_value_t = 20, allow_negative_numbers = true, value_parser = whole::<u32>(1, u32::MAX))]
    pub max_consecutive_failures: u32,

    /// The judge model's price: its calls are added to the store's spent amount, which
    /// `dgen run --max_cost` holds against.
    #[command(flatten)]
    pub prices: PriceArgs,
}

#[derive(Debug, Args)]
pub struct DiscriminationArgs {
    #[command(flatten)]
    pub endpoint: JudgeEndpointArgs,

    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// How many real dialogues to corrupt and judge (each costs five judge calls).
    #[arg(long, default_value_t = 20, allow_negative_numbers = true, value_parser = whole::<usize>(1, 100_000))]
    pub sample: usize,

    /// Seed of the sample and of the shuffles.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How each call is retried and timed out (`run`, `judge`).
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// Retries per call for 429, 5xx, timeouts and connection errors.
    #[arg(
        long = "max_retries",
        visible_alias = "max-retries",
        default_value_t = 3,
        allow_negative_numbers = true,
        value_parser = whole::<u32>(0, u32::MAX)
    )]
    pub max_retries: u32,

    /// First backoff delay in milliseconds (doubles each retry, with jitter, capped at 60 s).
    #[arg(
        long = "retry_base_ms",
        visible_alias = "retry-base-ms",
        default_value_t = 1000,
        allow_negative_numbers = true,
        value_parser = whole::<u64>(0, u64::MAX)
    )]
    pub retry_base_ms: u64,

    /// Seconds before a call times out (more than 0, at most a day).
    #[arg(
        long = "request_timeout",
        visible_alias = "request-timeout",
        default_value = "120",
        allow_negative_numbers = true,
        value_parser = seconds(false),
        value_name = "SECONDS"
    )]
    pub request_timeout: Duration,
}

impl CallArgs {
    pub fn settings(&self) -> CallSettings {
        CallSettings {
            retry: crate::llm::RetryPolicy {
                max_retries: self.max_retries,
                base: Duration::from_millis(self.retry_base_ms),
                cap: Duration::from_secs(60),
            },
            timeout: self.request_timeout,
        }
    }
}

/// The llama-server dgen starts for a local model (`run`, `judge`).
#[derive(Debug, Clone, Args)]
pub struct LocalServerArgs {
    /// The llama-server binary for a local model [default: the one scripts/setup-local-model.sh built].
    #[arg(
        long = "llama_server",
        visible_alias = "llama-server",
        env = "DGEN_LLAMA_SERVER",
        value_name = "PATH"
    )]
    pub llama_server: Option<PathBuf>,

    /// Context size per request slot of the local server.
    #[arg(long, default_value_t = 4096, allow_negative_numbers = true, value_parser = whole::<u32>(1, u32::MAX))]
    pub ctx: u32,

    /// CPU threads of the local server [default: all cores].
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<usize>(1, MAX_PARALLEL))]
    pub threads: Option<usize>,

    /// Request slots of the local server (parallel sequences).
    #[arg(long, default_value_t = 2, allow_negative_numbers = true, value_parser = whole::<usize>(1, MAX_PARALLEL))]
    pub slots: usize,
}

impl LocalServerArgs {
    pub fn options(&self) -> ServerOptions {
        ServerOptions {
            binary: self.llama_server.clone(),
            ctx: self.ctx,
            threads: self.threads,
            slots: self.slots,
        }
    }
}

/// Prices for the cost figures: the built-in dated table (assets/prices.json), `--prices FILE`
/// over it, and single prices over both.
#[derive(Debug, Clone, Default, Args)]
pub struct PriceArgs {
    /// Price table (JSON shaped like assets/prices.json: model -> input, cached_input, output
    /// in USD per 1M tokens, batch_factor); its models replace or add to the built-in ones.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,

    /// USD per million prompt tokens [default: the price table's, for known models].
    #[arg(long = "price_input", visible_alias = "price-input", value_name = "USD", allow_negative_numbers = true, value_parser = real("[0, 1000000]", |v| (0.0..=1e6).contains(&v)))]
    pub price_input: Option<f64>,

    /// USD per million prompt tokens served from the provider's cache [default: the price
    /// table's; the input price for a model the table lacks].
    #[arg(long = "price_cached_input", visible_alias = "price-cached-input", value_name = "USD", allow_negative_numbers = true, value_parser = real("[0, 1000000]", |v| (0.0..=1e6).contains(&v)))]
    pub price_cached_input: Option<f64>,

    /// USD per million completion tokens [default: the price table's, for known models].
    #[arg(long = "price_output", visible_alias = "price-output", value_name = "USD", allow_negative_numbers = true, value_parser = real("[0, 1000000]", |v| (0.0..=1e6).contains(&v)))]
    pub price_output: Option<f64>,
}

impl PriceArgs {
    pub fn overrides(&self) -> crate::cost::PriceOverrides {
        crate::cost::PriceOverrides {
            prices_file: self.prices.clone(),
            input: self.price_input,
            cached_input: self.price_cached_input,
            output: self.price_output,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub prices: PriceArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The dialogues as a JSON array (the original pipeline's schema plus provenance).
    #[arg(
        long = "output_file",
        visible_alias = "output-file",
        default_value = "generated_dialogues.json",
        value_name = "FILE"
    )]
    pub output_file: PathBuf,

    /// The dialogues' SHA-256 hashes as a JSON array, in the same order.
    #[arg(
        long = "hash_file",
        visible_alias = "hash-file",
        default_value = "dialogue_hashes.json",
        value_name = "FILE"
    )]
    pub hash_file: PathBuf,

    /// The embeddings as NPY (float32, N x 384), row i for dialogue i.
    #[arg(
        long = "embedding_file",
        visible_alias = "embedding-file",
        default_value = "dialogue_embeddings.npy",
        value_name = "FILE"
    )]
    pub embedding_file: PathBuf,

    /// Also write the dialogues as JSONL (one record a line) to this file.
    #[arg(long, value_name = "FILE")]
    pub jsonl: Option<PathBuf>,

    /// Write only one of the three files.
    #[arg(long, value_enum)]
    pub only: Option<Only>,

    /// Also export dialogues brought in with `dgen import`.
    #[arg(long = "include_imported", visible_alias = "include-imported")]
    pub include_imported: bool,

    /// Write the plan as JSONL (one work item a line) to this file, and nothing else.
    #[arg(long = "plan_file", visible_alias = "plan-file", value_name = "FILE")]
    pub plan_file: Option<PathBuf>,

    /// Write a Hugging Face dataset folder to DIR, and nothing else: data/<split>-*.parquet and
    /// a README.md dataset card that `datasets.load_dataset(DIR)` and the Hub read.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["plan_file", "only", "jsonl"])]
    pub hf: Option<PathBuf>,

    /// With --hf: the splits and their fractions; a dialogue's split is a seeded hash of its id,
    /// so it keeps its split when the dataset grows [default: train=1].
    #[arg(long, value_name = "NAME=FRACTION,...", value_parser = crate::output::hf::splits::SplitSpec::parse, requires = "hf")]
    pub splits: Option<crate::output::hf::splits::SplitSpec>,

    /// With --hf: the seed of the split hash.
    #[arg(
        long = "split_seed",
        visible_alias = "split-seed",
        default_value_t = 0,
        requires = "hf"
    )]
    pub split_seed: u64,

    /// With --hf: the Parquet compression.
    #[arg(long, value_enum, default_value = "snappy", requires = "hf")]
    pub compression: crate::output::hf::Codec,

    /// With --hf: at most this many rows per Parquet file.
    #[arg(long = "shard_rows", visible_alias = "shard-rows", default_value_t = 100_000, allow_negative_numbers = true, value_parser = whole::<u64>(1, u64::MAX), requires = "hf")]
    pub shard_rows: u64,

    /// With --hf: a Parquet file is closed once it reaches this many megabytes.
    #[arg(long = "shard_mb", visible_alias = "shard-mb", default_value_t = 500, allow_negative_numbers = true, value_parser = whole::<u64>(1, 1 << 30), requires = "hf")]
    pub shard_mb: u64,

    /// With --hf: leave out the `embedding` column.
    #[arg(
        long = "no_embeddings",
        visible_alias = "no-embeddings",
        requires = "hf"
    )]
    pub no_embeddings: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The page: one self-contained HTML file (inline charts, no network).
    #[arg(long, default_value = "report.html", value_name = "FILE")]
    pub out: PathBuf,

    /// Every number the page shows, as JSON (`dgen status --json`'s plus the report's own).
    #[arg(long, default_value = "report.json", value_name = "FILE")]
    pub json: PathBuf,

    #[command(flatten)]
    pub prices: PriceArgs,
}

#[derive(Debug, Args)]
pub struct BenchFillArgs {
    /// How many dialogues to write.
    #[arg(long)]
    pub dialogues: u64,
    /// Seeds the texts and the draws of the embeddings (all from one fixed, dialogue-like
    /// distribution, whatever the seed).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Dialogues: a JSON array or JSONL in dgen's or the original script's schema.
    #[arg(
        long = "output_file",
        visible_alias = "output-file",
        value_name = "FILE"
    )]
    pub output_file: PathBuf,

    /// Their SHA-256 hashes (JSON array, same order) [default: computed from the turns].
    #[arg(long = "hash_file", visible_alias = "hash-file", value_name = "FILE")]
    pub hash_file: Option<PathBuf>,

    /// Their embeddings (NPY float32, N x 384, same order) [default: computed].
    #[arg(
        long = "embedding_file",
        visible_alias = "embedding-file",
        value_name = "FILE"
    )]
    pub embedding_file: Option<PathBuf>,

    /// Folder with the embedding assets [default: $DGEN_CACHE_DIR or ~/.cache/dgen].
    #[arg(long = "assets_dir", visible_alias = "assets-dir", value_name = "DIR")]
    pub assets_dir: Option<PathBuf>,

    #[command(flatten)]
    pub embed: EmbedArgs,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shard stores (`dgen plan --shard I/K`), every shard of the plan once.
    #[arg(required = true, value_name = "SHARD.redb")]
    pub shards: Vec<PathBuf>,

    /// The merged store: created, or continued when an earlier merge of the same shards was
    /// cut short (merging again adds nothing twice).
    #[arg(long, value_name = "ALL.redb")]
    pub into: PathBuf,

    /// Dialogues committed per transaction.
    #[arg(long, hide = true, default_value_t = 512, value_parser = whole::<usize>(1, 1 << 20))]
    pub chunk: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    Dialogues,
    Hashes,
    Embeddings,
}

/// Accepts the original script's spelling `--test_extraction [--extraction_index N]` by turning
/// it into `extract [--index N]`.
pub fn normalize_legacy_args(args: Vec<OsString>) -> Vec<OsString> {
    let Some(pos) = args.iter().position(|a| a == "--test_extraction") else {
        return args;
    };
    let mut out: Vec<OsString> = Vec::with_capacity(args.len());
    out.push(args[0].clone());
    out.push("extract".into());
    for (i, arg) in args.into_iter().enumerate().skip(1) {
        if i != pos {
            out.push(arg);
        }
    }
    out
}
