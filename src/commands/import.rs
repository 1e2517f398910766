//! `dgen import`: earlier results into the store's dedup index (see [`crate::output::import`]).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::ImportArgs;
use crate::embed;
use crate::output::import::{self, ImportFiles};
use crate::store::Store;

pub fn run(store_path: &Path, args: ImportArgs) -> Result<ExitCode> {
    let store = Store::open_existing(store_path)?;
    let assets = embed::assets_dir(args.assets_dir.as_deref());
    let files = ImportFiles {
        records: &args.output_file,
        hashes: args.hash_file.as_deref(),
        embeddings: args.embedding_file.as_deref(),
        assets: &assets,
        parallelism: args.embed.parallelism(),
    };
    let done = import::import(&store, &files)?;
    if !done.refused.is_empty() {
        eprintln!(
            "refused {} dialogue{} that dgen cannot store (the others are imported):",
            done.refused.len(),
            if done.refused.len() == 1 { "" } else { "s" }
        );
        for why in &done.refused {
            eprintln!("  {why}");
        }
    }
    if done.imported == 0 && done.skipped == 0 && !done.refused.is_empty() {
        eprintln!(
            "nothing imported from {}: every dialogue was refused",
            files.records.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if done.imported == 0 && done.skipped == 0 {
        println!(
            "{} holds no records; nothing imported",
            files.records.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "imported {} dialogues from {} into {}{}",
        done.imported,
        files.records.display(),
        store.path().display(),
        if done.skipped > 0 {
            format!(" ({} already there, skipped)", done.skipped)
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
