//! `dgen plan` and `dgen extract`.

use std::path::PathBuf;

use clap::Args;

use super::values::{real, whole};
use super::{DatasetArgs, PersonaArgs, PriceArgs};

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

    /// Annotated mode: draw a user goal per item and service from the service schemas, and
    /// have `dgen run` label every turn with dialogue state and service calls (see
    /// docs/annotated.md).
    #[arg(long)]
    pub annotate: bool,

    /// Service schemas in SGD's schema.json format (a JSON list of services) replacing the
    /// built-in services of the same name and adding the others [requires --annotate].
    #[arg(
        long = "services_schema",
        visible_alias = "services-schema",
        value_name = "FILE",
        requires = "annotate"
    )]
    pub services_schema: Option<PathBuf>,

    /// Values for non-categorical slots, `{"slot": ["value", ...]}`, replacing the built-in
    /// pools slot by slot [requires --annotate].
    #[arg(
        long = "slot_values",
        visible_alias = "slot-values",
        value_name = "FILE",
        requires = "annotate"
    )]
    pub slot_values: Option<PathBuf>,

    /// Catalog file (JSON or TOML, the shape of assets/catalog.json) replacing the built-in one.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,

    /// Replace a different plan already in the store (refused once dialogues were generated).
    #[arg(long)]
    pub force: bool,

    /// Keep only shard INDEX of COUNT: the full plan's items whose index % COUNT == INDEX
    /// (indexes stay the full plan's). Without it, a Slurm job array's SLURM_ARRAY_TASK_ID or
    /// a Kubernetes Indexed Job's JOB_COMPLETION_INDEX is the index, with --shard_count (or
    /// DGEN_SHARD_COUNT) as COUNT; --shard 0/1 plans the whole plan anyway.
    #[arg(long, value_name = "INDEX/COUNT", value_parser = crate::plan::shard::parse)]
    pub shard: Option<crate::plan::Shard>,

    /// The shard's index, 0-based (with --shard_count).
    #[arg(long = "shard_index", visible_alias = "shard-index", value_name = "I", value_parser = whole::<u32>(0, u32::MAX - 1))]
    pub shard_index: Option<u32>,

    /// How many shards the plan is split into (with --shard_index, or in a scheduler's task:
    /// a Kubernetes Indexed Job's completions, a Slurm array's size) [env: DGEN_SHARD_COUNT,
    /// read in a scheduler's task].
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

    /// Show work item N of the store's plan instead (0-based): what was drawn for it, its
    /// state, and an annotated plan's user goals; reads the store (--store), not the dataset.
    #[arg(long, value_name = "N", conflicts_with_all = ["index", "dataset", "dataset_name", "split"])]
    pub item: Option<u64>,

    /// With --item: print the item, its state and goals as one JSON object.
    #[arg(long, requires = "item")]
    pub json: bool,

    #[command(flatten)]
    pub dataset: DatasetArgs,
}
