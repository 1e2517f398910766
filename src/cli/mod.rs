//! Command-line flags, one file per subcommand (`shared` holds the groups several flatten in).
//! Flag names keep the original script's snake_case spellings (`--total_generations`);
//! kebab-case aliases are accepted too. These types stop at `commands/`: each command turns
//! them into the configuration its stage owns.

mod embed;
mod judge;
mod output;
mod plan;
mod run;
mod shared;
mod values;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use embed::EmbedArgs;
pub use judge::{DiscriminationArgs, JudgeArgs, JudgeEndpointArgs};
pub use output::{BenchFillArgs, ExportArgs, ImportArgs, MergeArgs, Only, ReportArgs, StatusArgs};
pub use plan::{ExtractArgs, PlanArgs};
pub use run::RunArgs;
pub use shared::{CallArgs, DatasetArgs, LocalServerArgs, PersonaArgs, PriceArgs};
pub use values::MAX_PARALLEL;

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
    /// The dgen store (a redb file) every command works on [default: dgen.redb]; for `dgen
    /// merge`, the merged store (as --into).
    #[arg(long, global = true, value_name = "FILE")]
    pub store: Option<PathBuf>,

    /// Log more (DEBUG). RUST_LOG, when set, wins.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The store of a command run without `--store`.
pub const DEFAULT_STORE: &str = "dgen.redb";

impl Cli {
    /// `--store`, or [`DEFAULT_STORE`].
    pub fn store(&self) -> PathBuf {
        self.store
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE))
    }
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
