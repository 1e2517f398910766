//! Exports: files materialized from one read snapshot of the store — the dialogues (JSON array
//! and JSONL), their hashes, their embeddings (NPY) and the plan (JSONL). Every file is an
//! [`AtomicFile`], so a failure or a kill leaves the previous file intact and never a partial
//! file under the final name. Output is streamed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::catalog::Catalog;
use crate::dedup;
use crate::embed;
use crate::output::atomic_file::{self, AtomicFile};
use crate::output::npy::NpyWriter;
use crate::plan::WorkItem;
use crate::quality::QualityRecord;
use crate::record::GeneratedDialogue;
use crate::store::{DialogueSink, Store};

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

fn export_plan(store: &Store, path: &Path, cancel: &AtomicBool) -> Result<u64> {
    let meta = store.meta()?.context("the store holds no plan")?;
    let personas = store.personas()?;
    let mut file = AtomicFile::create(path)?;
    let mut count = 0u64;
    store.for_each_item(|item| {
        check(cancel)?;
        let persona = personas.get(&item.persona_index).map_or("", String::as_str);
        let w = file.writer();
        let mut record = plan_record(&item, &meta.catalog, persona);
        if let Some(annotate) = &meta.config.annotate {
            record["goals"] = json!(annotate.goals(&item));
        }
        serde_json::to_writer(&mut *w, &record)?;
        w.write_all(b"\n")?;
        count += 1;
        Ok(())
    })?;
    file.commit()?;
    Ok(count)
}

/// One dialogue in the original pipeline's schema, plus the provenance it lost and its
/// quality-check results.
pub fn dialogue_record(d: &GeneratedDialogue, quality: &QualityRecord) -> serde_json::Value {
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
    // An annotated dialogue's labels go beside its quality record, not inside it.
    let labels = quality.annotation.as_ref();
    let quality = QualityRecord {
        annotation: None,
        ..quality.clone()
    };
    let mut record = json!({
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
        "quality": quality,
    });
    if let (Some(labels), Some(map)) = (labels, record.as_object_mut()) {
        map.insert("annotation".into(), json!(labels));
    }
    record
}

/// What an export writes.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportJob {
    /// The dialogues into the files named.
    Dialogues(DialogueFiles),
    /// The plan as JSONL, one work item a line, and nothing else.
    Plan(PathBuf),
    /// A Hugging Face dataset folder, and nothing else.
    Hf(crate::output::hf::HfJob),
    /// Another dataset's layout (SGD, chat fine-tuning, MultiWOZ 2.2), and nothing else.
    Format(crate::output::formats::FormatJob),
}

/// The dialogue files of an export; `None` is not written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DialogueFiles {
    /// A JSON array, the original pipeline's schema plus provenance.
    pub dialogues: Option<PathBuf>,
    /// The dialogues' SHA-256 hashes as a JSON array, in the same order.
    pub hashes: Option<PathBuf>,
    /// The embeddings as NPY (float32, N x 384), row i for dialogue i.
    pub embeddings: Option<PathBuf>,
    /// The dialogues as JSONL.
    pub jsonl: Option<PathBuf>,
    /// Also the dialogues brought in with `dgen import`.
    pub include_imported: bool,
}

impl DialogueFiles {
    /// Each file with the flag that names it, for messages.
    fn flagged(&self) -> Vec<(&'static str, &Path)> {
        [
            ("--output_file", &self.dialogues),
            ("--hash_file", &self.hashes),
            ("--embedding_file", &self.embeddings),
            ("--jsonl", &self.jsonl),
        ]
        .into_iter()
        .filter_map(|(flag, path)| Some((flag, path.as_deref()?)))
        .collect()
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        [&self.dialogues, &self.hashes, &self.embeddings, &self.jsonl]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

/// Fails once `cancel` is set: whoever asked for the export went away.
fn check(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        bail!("export cancelled: the process that asked for it went away; no files were replaced");
    }
    Ok(())
}

/// The export's open files; each is committed (renamed into place) only when all are written.
struct Outputs<'a> {
    include_imported: bool,
    cancel: &'a AtomicBool,
    json: Option<AtomicFile>,
    hashes: Option<AtomicFile>,
    npy: Option<NpyWriter>,
    jsonl: Option<AtomicFile>,
    written: u64,
}

impl Outputs<'_> {
    fn json_arrays(&mut self) -> impl Iterator<Item = &mut AtomicFile> {
        [self.json.as_mut(), self.hashes.as_mut()]
            .into_iter()
            .flatten()
    }
}

impl DialogueSink for Outputs<'_> {
    fn dialogue(
        &mut self,
        _seq: u64,
        record: GeneratedDialogue,
        embedding: &[u8],
        quality: QualityRecord,
    ) -> Result<()> {
        if record.item_index.is_none() && !self.include_imported {
            return Ok(());
        }
        check(self.cancel)?;
        let sep: &[u8] = if self.written == 0 { b"\n" } else { b",\n" };
        if let Some(f) = self.json.as_mut() {
            let w = f.writer();
            w.write_all(sep)?;
            serde_json::to_writer_pretty(&mut *w, &dialogue_record(&record, &quality))?;
        }
        if let Some(f) = self.hashes.as_mut() {
            let w = f.writer();
            w.write_all(sep)?;
            write!(w, "  \"{}\"", dedup::hex(&record.hash))?;
        }
        if let Some(npy) = self.npy.as_mut() {
            npy.row(embedding)?;
        }
        if let Some(f) = self.jsonl.as_mut() {
            let w = f.writer();
            serde_json::to_writer(&mut *w, &dialogue_record(&record, &quality))?;
            w.write_all(b"\n")?;
        }
        self.written += 1;
        Ok(())
    }
}

/// Writes the dialogue files from one snapshot of the store; returns how many dialogues.
pub fn export_dialogues(store: &Store, files: &DialogueFiles, cancel: &AtomicBool) -> Result<u64> {
    let open = |path: &Option<PathBuf>| path.as_deref().map(AtomicFile::create).transpose();
    let mut out = Outputs {
        include_imported: files.include_imported,
        cancel,
        json: open(&files.dialogues)?,
        hashes: open(&files.hashes)?,
        npy: open(&files.embeddings)?
            .map(|f| NpyWriter::new(f, embed::DIM))
            .transpose()?,
        jsonl: open(&files.jsonl)?,
        written: 0,
    };
    for f in out.json_arrays() {
        f.writer().write_all(b"[")?;
    }
    store.for_each_dialogue(&mut out)?;
    let close: &[u8] = if out.written == 0 { b"]\n" } else { b"\n]\n" };
    for f in out.json_arrays() {
        f.writer().write_all(close)?;
    }
    let npy = out.npy.map(NpyWriter::finish).transpose()?;
    for file in [out.json, out.hashes, npy, out.jsonl].into_iter().flatten() {
        file.commit()?;
    }
    Ok(out.written)
}

/// Runs an export on an open store and returns what to print. Setting `cancel` stops it, and
/// then no file is replaced.
pub fn execute(store: &Store, job: &ExportJob, cancel: &AtomicBool) -> Result<String> {
    let files = match job {
        ExportJob::Plan(plan_file) => {
            atomic_file::refuse_overlaps(store.path(), &[("--plan_file", plan_file)])?;
            let count = export_plan(store, plan_file, cancel)?;
            return Ok(format!(
                "wrote {count} work items to {}\n",
                plan_file.display()
            ));
        }
        ExportJob::Hf(_) | ExportJob::Format(_) if store.dialogue_count()? == 0 => {
            return Ok(format!(
                "nothing to export yet: {} has no dialogues (run `dgen run` first); no files written\n",
                store.path().display()
            ));
        }
        ExportJob::Format(job) => return crate::output::formats::export(store, job, cancel),
        ExportJob::Hf(job) => return crate::output::hf::export(store, job, cancel),
        ExportJob::Dialogues(files) => files,
    };
    atomic_file::refuse_overlaps(store.path(), &files.flagged())?;
    if store.dialogue_count()? == 0 {
        return Ok(format!(
            "nothing to export yet: {} has no dialogues (run `dgen run` first); no files written\n",
            store.path().display()
        ));
    }
    let written = export_dialogues(store, files, cancel)?;
    let names: Vec<String> = files.paths().map(|p| p.display().to_string()).collect();
    Ok(format!(
        "exported {written} dialogues to {}\n",
        names.join(", ")
    ))
}
