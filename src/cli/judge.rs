//! `dgen judge` and the judge-discrimination benchmark.

use std::path::PathBuf;

use clap::Args;

use super::values::{whole, MAX_PARALLEL};
use super::{CallArgs, DatasetArgs, LatencyBackoff, LocalServerArgs, PriceArgs};

/// Where the judge is reached and how it is called (`dgen judge`, `judge-discrimination`).
#[derive(Debug, Args, Clone)]
pub struct JudgeEndpointArgs {
    /// The judge's OpenAI-compatible base URL [default: the endpoint of the store's last run,
    /// else $OPENAI_BASE_URL, else https://api.openai.com/v1]. Also spelled --base_url, as
    /// `dgen run` spells its endpoint.
    #[arg(
        long = "judge_base_url",
        visible_aliases = ["judge-base-url", "base_url"],
        alias = "base-url",
        value_name = "URL"
    )]
    pub judge_base_url: Option<String>,

    /// The environment variable holding the judge's API key. Without it, the judge gets
    /// OPENAI_API_KEY at OpenAI, $OPENAI_BASE_URL or the store's run's loopback endpoint, none
    /// at another loopback URL, and any other URL is refused.
    #[arg(
        long = "judge_key_env",
        visible_alias = "judge-key-env",
        value_name = "NAME",
        conflicts_with_all = ["local", "local_model"]
    )]
    pub judge_key_env: Option<String>,

    /// The judge's model [default: the model of the store's run]. Also spelled --model, as
    /// `dgen run` spells its model.
    #[arg(long = "judge_model", visible_aliases = ["judge-model", "model"])]
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
