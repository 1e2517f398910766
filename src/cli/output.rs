//! The commands that read a store or bring results into one: `status`, `export`, `report`,
//! `import`, `merge` and `bench-fill`.

use std::path::PathBuf;

use clap::Args;

use super::values::whole;
use super::{EmbedArgs, PriceArgs};

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

    /// Write the annotated dialogues as a Schema-Guided Dialogue split to DIR: dialogues_001.json,
    /// … (128 dialogues each) and schema.json. --sgd, --chat and --multiwoz combine, and
    /// exclude the other files.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["plan_file", "only", "jsonl", "hf"])]
    pub sgd: Option<PathBuf>,

    /// Write the dialogues as OpenAI chat fine-tuning JSONL to FILE: one {"messages", "tools"}
    /// a line, service calls as tool calls.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["plan_file", "only", "jsonl", "hf"])]
    pub chat: Option<PathBuf>,

    /// Write the dialogues in MultiWOZ 2.2's JSON layout to FILE (a file `dgen plan --dataset`
    /// reads).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["plan_file", "only", "jsonl", "hf"])]
    pub multiwoz: Option<PathBuf>,

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
    /// Dialogues: a JSON array or JSONL in dgen's or the original script's schema, or SGD or
    /// MultiWOZ 2.2 dialogues (a JSON array, or a folder of dialogues_*.json), kept with their
    /// frames.
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
    /// cut short (merging again adds nothing twice) [default: --store, else dgen.redb].
    #[arg(long, value_name = "ALL.redb")]
    pub into: Option<PathBuf>,

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
