//! Flag groups several subcommands flatten in: the base dialogues and personas, how calls are
//! retried and timed out, the llama-server dgen starts, and prices.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::values::{real, seconds, whole, MAX_PARALLEL};
use crate::dataset::{DEFAULT_DATASET_NAME, DEFAULT_PERSONA_PATH};
use crate::llm::local_server::ServerOptions;
use crate::llm::CallSettings;

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
