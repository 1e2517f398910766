//! `dgen export --sgd DIR`: annotated dialogues as a split of the Schema-Guided Dialogue
//! dataset — `dialogues_001.json`, `dialogues_002.json`, … ([`DIALOGUES_PER_FILE`] each, a JSON
//! array) and `schema.json` with the services they use. A dgen turn becomes SGD's USER turn
//! (frames with `state`) and SYSTEM turn (frames with `service_call` and `service_results` when
//! the assistant called a service). Every file is written under a temporary name and all are
//! renamed into place at the end, so a failure leaves the folder as it was; files of an earlier
//! export that the new one does not replace are removed.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::annotation::{Act, Annotation, Frame, Span};
use crate::output::atomic_file::{AtomicFile, Finished};
use crate::output::formats::{self, Format, Seen};
use crate::quality::QualityRecord;
use crate::record::GeneratedDialogue;
use crate::schema::Schema;

/// Dialogues per `dialogues_NNN.json`, as SGD's own files hold (128 or fewer).
pub const DIALOGUES_PER_FILE: usize = 128;

/// SGD's spans: `{exclusive_end, slot, start}`.
pub fn span(s: &Span) -> Value {
    json!({"exclusive_end": s.exclusive_end, "slot": s.slot, "start": s.start})
}

fn act(a: &Act) -> Value {
    json!({
        "act": a.act,
        "canonical_values": a.canonical_values,
        "slot": a.slot,
        "values": a.values,
    })
}

/// One frame in SGD's layout (keys in its alphabetical order): a user frame always has a
/// `state` (NONE when the annotation has none), an assistant frame never.
fn frame(f: &Frame, user: bool) -> Value {
    let mut out = Map::new();
    out.insert("actions".into(), f.actions.iter().map(act).collect());
    out.insert("service".into(), json!(f.service));
    if !user {
        if let Some(call) = &f.service_call {
            out.insert(
                "service_call".into(),
                json!({"method": call.method, "parameters": call.parameters}),
            );
        }
        if let Some(results) = &f.service_results {
            out.insert("service_results".into(), json!(results));
        }
    }
    out.insert("slots".into(), f.slots.iter().map(span).collect());
    if user {
        let state = f.state.clone().unwrap_or_else(|| crate::annotation::State {
            active_intent: "NONE".into(),
            ..Default::default()
        });
        out.insert(
            "state".into(),
            json!({
                "active_intent": state.active_intent,
                "requested_slots": state.requested_slots,
                "slot_values": state.slot_values,
            }),
        );
    }
    Value::Object(out)
}

/// One dialogue in SGD's layout.
pub fn dialogue(d: &GeneratedDialogue, a: &Annotation) -> Value {
    let mut turns = Vec::with_capacity(2 * d.turns.len());
    for (t, frames) in d.turns.iter().zip(&a.turns) {
        turns.push(json!({
            "frames": frames.user.iter().map(|f| frame(f, true)).collect::<Vec<_>>(),
            "speaker": "USER",
            "utterance": t.utterance,
        }));
        turns.push(json!({
            "frames": frames.assistant.iter().map(|f| frame(f, false)).collect::<Vec<_>>(),
            "speaker": "SYSTEM",
            "utterance": t.assistant_response,
        }));
    }
    json!({"dialogue_id": d.dialogue_id, "services": d.services, "turns": turns})
}

fn file_name(n: usize) -> String {
    format!("dialogues_{n:03}.json")
}

fn is_dialogue_file(name: &str) -> bool {
    name.strip_prefix("dialogues_")
        .and_then(|rest| rest.strip_suffix(".json"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The open file and the ones written.
struct Files {
    dir: PathBuf,
    open: Option<AtomicFile>,
    in_open: usize,
    done: Vec<(Finished, String)>,
}

impl Files {
    fn add(&mut self, dialogue: &Value) -> Result<()> {
        if self.open.is_none() {
            let name = file_name(self.done.len() + 1);
            let mut f = AtomicFile::create(&self.dir.join(&name))?;
            f.writer().write_all(b"[\n")?;
            self.open = Some(f);
            self.in_open = 0;
        }
        let f = self.open.as_mut().expect("opened above");
        let w = f.writer();
        if self.in_open > 0 {
            w.write_all(b",\n")?;
        }
        serde_json::to_writer_pretty(&mut *w, dialogue)?;
        self.in_open += 1;
        if self.in_open == DIALOGUES_PER_FILE {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some(mut f) = self.open.take() {
            f.writer().write_all(b"\n]\n")?;
            let name = file_name(self.done.len() + 1);
            self.done.push((f.finish()?, name));
        }
        Ok(())
    }
}

/// The folder being written: dialogues go into files under temporary names, and
/// [`Writer::finish`] adds `schema.json` and renames them all into place.
pub struct Writer {
    files: Files,
    seen: Seen,
    written: u64,
}

impl Writer {
    pub fn create(dir: &Path) -> Result<Writer> {
        if dir.exists() && !dir.is_dir() {
            bail!(
                "--sgd {} is a file; name a folder (it is created if missing)",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create {}; choose a writable folder for --sgd",
                dir.display()
            )
        })?;
        Ok(Writer {
            files: Files {
                dir: dir.to_path_buf(),
                open: None,
                in_open: 0,
                done: Vec::new(),
            },
            seen: Seen::default(),
            written: 0,
        })
    }

    /// Adds one dialogue; a plain one is refused.
    pub fn add(&mut self, record: &GeneratedDialogue, quality: &QualityRecord) -> Result<()> {
        let a = formats::annotation(record, quality, Format::Sgd)?;
        self.seen.add(&formats::frames(a).collect::<Vec<_>>());
        self.files.add(&dialogue(record, a))?;
        self.written += 1;
        Ok(())
    }

    /// Writes `schema.json` (the services met: `plan`'s, else inferred) and moves every file
    /// into place; returns what to print.
    pub fn finish(mut self, plan: &Schema) -> Result<String> {
        self.files.close()?;
        let dir = self.files.dir.clone();
        let schema = Schema {
            services: self.seen.services(plan),
        };
        let mut schema_file = AtomicFile::create(&dir.join("schema.json"))?;
        serde_json::to_writer_pretty(schema_file.writer(), &schema)?;
        schema_file.writer().write_all(b"\n")?;
        let schema_file = schema_file.finish()?;
        let count = self.files.done.len();
        publish(&dir, self.files.done)?;
        schema_file.publish(&dir.join("schema.json"))?;
        Ok(format!(
            "exported {} dialogues to the SGD folder {}: {count} dialogues_*.json file{} and schema.json ({} services)\n",
            self.written,
            dir.display(),
            if count == 1 { "" } else { "s" },
            schema.services.len()
        ))
    }
}

/// Moves the new files into place, then removes an earlier export's `dialogues_NNN.json` that
/// the new one did not replace.
fn publish(dir: &Path, done: Vec<(Finished, String)>) -> Result<()> {
    let mut old = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        if is_dialogue_file(&entry.file_name().to_string_lossy()) {
            old.push(entry.path());
        }
    }
    let mut new = Vec::new();
    for (file, name) in done {
        let target = dir.join(&name);
        file.publish(&target)?;
        new.push(target);
    }
    for path in old.into_iter().filter(|p| !new.contains(p)) {
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove the earlier file {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numbered_dialogue_files_are_an_earlier_exports() {
        assert!(is_dialogue_file("dialogues_001.json"));
        assert!(is_dialogue_file("dialogues_1000.json"));
        assert!(!is_dialogue_file("dialogues_.json"));
        assert!(!is_dialogue_file("dialogues_001.json.bak"));
        assert!(!is_dialogue_file("schema.json"));
        assert_eq!(file_name(7), "dialogues_007.json");
    }
}
