//! `dgen merge`: shard stores into one store (see [`crate::merge`]), with a report of the
//! cross-shard duplicates dropped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cli::{MergeArgs, DEFAULT_STORE};
use crate::merge::{self, Merger};
use crate::output::atomic_file;
use crate::store::State;

/// Dropped duplicates listed one by one at most; the rest are counted.
const LISTED: usize = 20;

/// The merged store: `--into`, else the global `--store` (the store every command works on, so
/// `dgen --store ALL.redb merge ...` then `dgen --store ALL.redb run` name one file), else
/// dgen.redb. Both, naming two files, is refused rather than one of them ignored.
fn target_path(store: Option<&Path>, into: Option<&Path>) -> Result<PathBuf> {
    match (store, into) {
        (Some(store), Some(into)) if absolute(store)? != absolute(into)? => bail!(
            "--store {} and --into {} name two different merged stores; pass one of them",
            store.display(),
            into.display()
        ),
        (_, Some(path)) | (Some(path), None) => Ok(path.to_path_buf()),
        (None, None) => Ok(PathBuf::from(DEFAULT_STORE)),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// `store` is the global `--store`, when given.
pub fn run(store: Option<&Path>, args: MergeArgs) -> Result<ExitCode> {
    let into = target_path(store, args.into.as_deref())?;
    let shards = merge::open_shards(&args.shards)?;
    for s in &shards {
        if into.exists() && atomic_file::same_file(&s.path, &into) {
            bail!(
                "the merged store {} is one of the shards; name a new file for it with --into",
                into.display()
            );
        }
    }
    let target = merge::open_target(&into, &shards)?;
    let mut merger = Merger::new(&target, args.chunk)?;
    let (mut kept, mut exact, mut semantic) = (0u64, 0u64, 0u64);
    let mut listed = 0usize;
    let count = shards[0].shard.count;
    for s in &shards {
        let merged = merger.merge_shard(s)?;
        let p = &merged.progress;
        kept += p.kept;
        exact += p.exact;
        semantic += p.semantic;
        let name = format!("shard {}/{count} ({})", s.shard.index, s.path.display());
        if merged.already {
            println!("{name}: merged before ({} dialogues kept); skipped", p.kept);
            continue;
        }
        let dropped = p.exact + p.semantic;
        print!("{name}: {} dialogues, {} kept", p.dialogues, p.kept);
        if dropped > 0 {
            print!(
                ", {dropped} dropped as duplicates of other shards' ({} exact, {} near)",
                p.exact, p.semantic
            );
        }
        println!();
        for d in &merged.dropped {
            if listed == LISTED {
                println!("  … (the rest are counted, not listed)");
            }
            listed += 1;
            if listed > LISTED {
                continue;
            }
            let what = d.item.map_or_else(
                || "an imported dialogue".to_string(),
                |i| format!("item {i}"),
            );
            println!("  {what}: {}", d.duplicate.message());
        }
    }
    let pending = target.state_counts()?;
    let open = pending[&State::Pending] + pending[&State::InFlight] + pending[&State::Rejected];
    println!(
        "merged {} shards into {}: {kept} dialogues; {} cross-shard duplicates dropped ({exact} exact, {semantic} near)",
        shards.len(),
        target.path().display(),
        exact + semantic
    );
    if open > 0 {
        println!(
            "{open} items are still to generate: `dgen run --store {}` tops the store up",
            target.path().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
