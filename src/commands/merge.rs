//! `dgen merge`: shard stores into one store (see [`crate::merge`]), with a report of the
//! cross-shard duplicates dropped.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::MergeArgs;
use crate::merge::{self, Merger};
use crate::store::State;

/// Dropped duplicates listed one by one at most; the rest are counted.
const LISTED: usize = 20;

pub fn run(args: MergeArgs) -> Result<ExitCode> {
    let shards = merge::open_shards(&args.shards)?;
    for s in &shards {
        if args.into.exists() && same_file(&s.path, &args.into) {
            anyhow::bail!(
                "--into {} is one of the shards; name a new file for the merged store",
                args.into.display()
            );
        }
    }
    let target = merge::open_target(&args.into, &shards)?;
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

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
