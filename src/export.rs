//! `dgen export`: files materialized from the store. Every file is written to a temporary file in
//! the same folder, fsynced and renamed into place, so a failure or a kill leaves the previous
//! file intact and never a partial file under the final name. Output is streamed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::catalog::Catalog;
use crate::cli::ExportArgs;
use crate::plan::WorkItem;
use crate::store::Store;

/// A file that appears under its final name only when [`AtomicFile::commit`] succeeds.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            bail!(
                "cannot write {}: folder {} does not exist; create it or choose another path",
                target.display(),
                dir.display()
            );
        }
        let name = target
            .file_name()
            .with_context(|| format!("{} is not a file path", target.display()))?;
        let temp = dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&temp).with_context(|| {
            format!(
                "cannot write {}: {} is not writable",
                target.display(),
                dir.display()
            )
        })?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            temp,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.writer.as_mut().expect("not committed yet")
    }

    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("commit once");
        let file = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", self.temp.display()))?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", self.temp.display()))?;
        std::fs::rename(&self.temp, &self.target)
            .with_context(|| format!("cannot move the new file into {}", self.target.display()))?;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// One plan line: every field of the work item, with names resolved from the catalog.
pub fn plan_record(item: &WorkItem, catalog: &Catalog, persona: &str) -> serde_json::Value {
    let slot = &catalog.time_slots[item.time_slot as usize];
    json!({
        "index": item.index,
        "base_dialogue_index": item.base_dialogue_index,
        "base_dialogue_id": item.base_dialogue_id,
        "services": item.services,
        "primary_service": item.primary_service(),
        "scenario_category": item.category,
        "region": item.region,
        "time_slot": [slot.start(), slot.end(), slot.name()],
        "specific_time": item.specific_time_hhmm(),
        "persona_index": item.persona_index,
        "persona": persona,
        "user_emotion": item.user_emotion,
        "assistant_emotion": item.assistant_emotion,
        "resolution_status": item.resolution_status,
        "min_turns": item.min_turns,
        "max_turns": item.max_turns,
        "temperature": item.temperature,
        "top_p": item.top_p,
        "frequency_penalty": item.frequency_penalty,
        "presence_penalty": item.presence_penalty,
        "seed": item.seed,
    })
}

fn export_plan(store: &Store, path: &Path) -> Result<u64> {
    let meta = store.meta()?.context("the store holds no plan")?;
    let personas = store.personas()?;
    let mut file = AtomicFile::create(path)?;
    let mut count = 0u64;
    store.for_each_item(|item| {
        let persona = personas.get(&item.persona_index).map_or("", String::as_str);
        let w = file.writer();
        serde_json::to_writer(&mut *w, &plan_record(&item, &meta.catalog, persona))?;
        w.write_all(b"\n")?;
        count += 1;
        Ok(())
    })?;
    file.commit()?;
    Ok(count)
}

pub fn run(store_path: &Path, args: ExportArgs) -> Result<ExitCode> {
    let store = Store::open_existing(store_path)?;
    let Some(plan_file) = args.plan_file else {
        bail!("nothing to export: pass --plan_file FILE to write the plan as JSONL");
    };
    let count = export_plan(&store, &plan_file)?;
    println!("wrote {count} work items to {}", plan_file.display());
    Ok(ExitCode::SUCCESS)
}
