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
use crate::cli::{ExportArgs, Only};
use crate::dedup;
use crate::embed;
use crate::ipc::{self as remote, Request};
use crate::plan::WorkItem;
use crate::record::GeneratedDialogue;
use crate::store::{DialogueSink, Store, StoreInUse};

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
        let prefix = format!(".{}.tmp-", name.to_string_lossy());
        remove_stale_temps(&dir, &prefix);
        let temp = dir.join(format!("{prefix}{}", std::process::id()));
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

/// Temporary files left by a killed export: `<prefix><pid>` whose process is gone.
fn remove_stale_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix) else {
            continue;
        };
        let alive = Path::new("/proc").join(pid).exists();
        if pid.parse::<u32>().is_ok() && !alive {
            let _ = std::fs::remove_file(entry.path());
        }
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

/// One dialogue in the original pipeline's schema, plus the provenance it lost.
pub fn dialogue_record(d: &GeneratedDialogue) -> serde_json::Value {
    let turns: Vec<serde_json::Value> = d
        .turns
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "turn_number": i + 1,
                "utterance": t.utterance,
                "intent": t.intent,
                "assistant_response": t.assistant_response,
                "user_emotion": d.user_emotion,
                "assistant_emotion": d.assistant_emotion,
            })
        })
        .collect();
    json!({
        "dialogue_id": d.dialogue_id,
        "services": d.services,
        "turns": turns,
        "num_lines": d.turns.len(),
        "user_emotions": [d.user_emotion],
        "assistant_emotions": [d.assistant_emotion],
        "scenario_category": d.scenario_category,
        "generated_scenario": d.generated_scenario,
        "time_slot": [d.time_slot.0, d.time_slot.1, d.time_slot.2],
        "regions": d.regions,
        "resolution_status": d.resolution_status,
        "persona": d.persona,
        "specific_time": d.specific_time,
        "base_dialogue_id": d.base_dialogue_id,
        "model": d.model,
        "temperature": d.temperature,
        "top_p": d.top_p,
        "frequency_penalty": d.frequency_penalty,
        "presence_penalty": d.presence_penalty,
        "seed": d.seed,
        "attempt": d.attempt,
        "usage": {
            "calls": d.usage.calls,
            "prompt_tokens": d.usage.prompt_tokens,
            "completion_tokens": d.usage.completion_tokens,
        },
    })
}

/// The NPY v1.0 header of a C-order little-endian float32 matrix, padded to 64 bytes.
pub fn npy_header(rows: u64, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let mut header = Vec::with_capacity(unpadded + pad);
    header.extend_from_slice(b"\x93NUMPY\x01\x00");
    header.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header.extend(std::iter::repeat_n(b' ', pad));
    header.push(b'\n');
    header
}

/// The export's open files; each is committed (renamed into place) only when all are written.
struct Outputs {
    include_imported: bool,
    json: Option<AtomicFile>,
    hashes: Option<AtomicFile>,
    npy: Option<AtomicFile>,
    jsonl: Option<AtomicFile>,
    written: u64,
}

impl DialogueSink for Outputs {
    fn begin(&mut self, count: u64) -> Result<()> {
        for f in [self.json.as_mut(), self.hashes.as_mut()]
            .into_iter()
            .flatten()
        {
            f.writer().write_all(b"[")?;
        }
        if let Some(f) = self.npy.as_mut() {
            f.writer().write_all(&npy_header(count, embed::DIM))?;
        }
        Ok(())
    }

    fn dialogue(&mut self, _seq: u64, record: GeneratedDialogue, embedding: &[u8]) -> Result<()> {
        if record.item_index.is_none() && !self.include_imported {
            return Ok(());
        }
        let sep: &[u8] = if self.written == 0 { b"\n" } else { b",\n" };
        if let Some(f) = self.json.as_mut() {
            let w = f.writer();
            w.write_all(sep)?;
            serde_json::to_writer_pretty(&mut *w, &dialogue_record(&record))?;
        }
        if let Some(f) = self.hashes.as_mut() {
            let w = f.writer();
            w.write_all(sep)?;
            write!(w, "  \"{}\"", dedup::hex(&record.hash))?;
        }
        if let Some(f) = self.npy.as_mut() {
            f.writer().write_all(embedding)?;
        }
        if let Some(f) = self.jsonl.as_mut() {
            let w = f.writer();
            serde_json::to_writer(&mut *w, &dialogue_record(&record))?;
            w.write_all(b"\n")?;
        }
        self.written += 1;
        Ok(())
    }
}

/// The files an export writes: dialogues JSON, hashes, NPY (each unless `--only` names
/// another), and the JSONL when asked for.
fn selected(args: &ExportArgs) -> [Option<&Path>; 4] {
    let want = |o: Only| args.only.is_none_or(|x| x == o);
    [
        want(Only::Dialogues).then_some(args.output_file.as_path()),
        want(Only::Hashes).then_some(args.hash_file.as_path()),
        want(Only::Embeddings).then_some(args.embedding_file.as_path()),
        args.jsonl.as_deref(),
    ]
}

/// Writes the selected files from one snapshot of the store; returns how many dialogues.
pub fn export_dialogues(store: &Store, args: &ExportArgs) -> Result<u64> {
    let [json, hashes, npy, jsonl] = selected(args);
    let open = |path: Option<&Path>| path.map(AtomicFile::create).transpose();
    let mut out = Outputs {
        include_imported: args.include_imported,
        json: open(json)?,
        hashes: open(hashes)?,
        npy: open(npy)?,
        jsonl: open(jsonl)?,
        written: 0,
    };
    store.for_each_dialogue(&mut out)?;
    let close: &[u8] = if out.written == 0 { b"]\n" } else { b"\n]\n" };
    for file in [out.json.as_mut(), out.hashes.as_mut()]
        .into_iter()
        .flatten()
    {
        file.writer().write_all(close)?;
    }
    for file in [out.json, out.hashes, out.npy, out.jsonl]
        .into_iter()
        .flatten()
    {
        file.commit()?;
    }
    Ok(out.written)
}

/// Runs an export on an open store and returns what to print.
pub fn execute(store: &Store, args: &ExportArgs) -> Result<String> {
    if let Some(plan_file) = &args.plan_file {
        let count = export_plan(store, plan_file)?;
        return Ok(format!(
            "wrote {count} work items to {}\n",
            plan_file.display()
        ));
    }
    if store.dialogue_count()? == 0 {
        return Ok(format!(
            "nothing to export yet: {} has no dialogues (run `dgen run` first); no files written\n",
            store.path().display()
        ));
    }
    let written = export_dialogues(store, args)?;
    let files: Vec<String> = selected(args)
        .into_iter()
        .flatten()
        .map(|p| p.display().to_string())
        .collect();
    Ok(format!(
        "exported {written} dialogues to {}\n",
        files.join(", ")
    ))
}

/// Export streams through the store once; a small page cache keeps its memory flat.
const EXPORT_CACHE: usize = 32 << 20;

pub fn run(store_path: &Path, args: ExportArgs) -> Result<ExitCode> {
    match Store::open_with_cache(store_path, Some(EXPORT_CACHE)) {
        Ok(store) => {
            print!("{}", execute(&store, &args)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is::<StoreInUse>() => remote::print_answer(store_path, Request::Export(args)),
        Err(e) => Err(e),
    }
}
