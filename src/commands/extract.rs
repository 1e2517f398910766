//! `dgen extract --index N`: one base dialogue exactly as the prompts will see it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::ExtractArgs;
use crate::dataset::{self, DatasetSource, Speaker};

pub fn run(args: ExtractArgs) -> Result<ExitCode> {
    let source = DatasetSource {
        path: args.dataset.dataset.clone(),
        name: args.dataset.dataset_name.clone(),
        split: args.dataset.split.clone(),
    };
    let path = source.resolve()?;
    let loaded = dataset::load_dialogues(&path, &source.split)?;
    let count = loaded.dialogues.len();
    let Some(d) = loaded.dialogues.get(args.index) else {
        bail!(
            "--index {} is out of range: {} has {count} usable dialogues (valid indices 0..={})",
            args.index,
            path.display(),
            count - 1
        );
    };
    let users = d
        .turns
        .iter()
        .filter(|t| t.speaker == Speaker::User)
        .count();
    let mut out = std::io::stdout().lock();
    writeln!(out, "index: {} of {count}", args.index)?;
    writeln!(out, "dialogue_id: {}", d.dialogue_id)?;
    writeln!(
        out,
        "services: {}",
        if d.services.is_empty() {
            "(none)".to_string()
        } else {
            d.services.join(", ")
        }
    )?;
    writeln!(
        out,
        "turns: {} (USER {users}, ASSISTANT {})",
        d.turns.len(),
        d.turns.len() - users
    )?;
    writeln!(out)?;
    writeln!(out, "{}", d.base_conversation())?;
    Ok(ExitCode::SUCCESS)
}
