//! `dgen export`: the command line turned into an [`ExportJob`], run on the store, or — when a
//! `dgen run` holds the store — asked of that run.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::Result;

use crate::cli::{ExportArgs, Only};
use crate::commands::during_run;
use crate::output::export::{self, DialogueFiles, ExportJob};
use crate::output::formats::FormatJob;
use crate::output::hf::HfJob;

/// What the flags ask for: the plan file alone, or the dialogue files (each of the three unless
/// `--only` names another, and the JSONL when asked for).
pub fn job(args: &ExportArgs) -> ExportJob {
    if let Some(plan_file) = &args.plan_file {
        return ExportJob::Plan(plan_file.clone());
    }
    if let Some(dir) = &args.hf {
        return ExportJob::Hf(HfJob {
            dir: dir.clone(),
            splits: args.splits.clone().unwrap_or_default(),
            split_seed: args.split_seed,
            codec: args.compression,
            shard_rows: args.shard_rows,
            shard_bytes: args.shard_mb.saturating_mul(1 << 20),
            embeddings: !args.no_embeddings,
            include_imported: args.include_imported,
        });
    }
    if args.sgd.is_some() || args.chat.is_some() || args.multiwoz.is_some() {
        return ExportJob::Format(FormatJob {
            sgd: args.sgd.clone(),
            chat: args.chat.clone(),
            multiwoz: args.multiwoz.clone(),
            include_imported: args.include_imported,
        });
    }
    let want = |o: Only, path: &Path| args.only.is_none_or(|x| x == o).then(|| path.to_path_buf());
    ExportJob::Dialogues(DialogueFiles {
        dialogues: want(Only::Dialogues, &args.output_file),
        hashes: want(Only::Hashes, &args.hash_file),
        embeddings: want(Only::Embeddings, &args.embedding_file),
        jsonl: args.jsonl.clone(),
        include_imported: args.include_imported,
    })
}

/// Export streams through the store once; a small page cache keeps its memory flat.
const EXPORT_CACHE: usize = 32 << 20;

pub fn run(store_path: &Path, args: ExportArgs) -> Result<ExitCode> {
    let job = job(&args);
    let never = AtomicBool::new(false);
    during_run::here_or_by_the_run(
        store_path,
        Some(EXPORT_CACHE),
        |store| export::execute(store, &job, &never),
        || during_run::export_request(&job),
    )
}
