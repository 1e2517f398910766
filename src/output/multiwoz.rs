//! `dgen export --multiwoz FILE`: the dialogues in MultiWOZ 2.2's original JSON layout, a list
//! of `{dialogue_id, services, turns}` with turns `{turn_id, speaker, utterance, frames}`. A
//! USER frame is `{service, state, slots}`, a SYSTEM frame `{service, slots}`; each span carries
//! its `value` (the text at its offsets). What MultiWOZ 2.2's layout has no place for is left
//! out: dialogue acts (its own acts are a separate file), service calls and their results.
//! Plain dialogues have no frames. `dgen plan --dataset FILE` reads the file as base dialogues.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{json, Value};

use crate::annotation::{Annotation, Frame};
use crate::output::atomic_file::AtomicFile;
use crate::output::formats;
use crate::quality::QualityRecord;
use crate::record::GeneratedDialogue;

fn frame(f: &Frame, utterance: &[char], user: bool) -> Value {
    let slots: Vec<Value> = f
        .slots
        .iter()
        .map(|s| {
            let value: String = utterance
                .get(s.start..s.exclusive_end)
                .map(|c| c.iter().collect())
                .unwrap_or_default();
            json!({"slot": s.slot, "value": value, "start": s.start, "exclusive_end": s.exclusive_end})
        })
        .collect();
    if !user {
        return json!({"service": f.service, "slots": slots});
    }
    let state = f.state.clone().unwrap_or_default();
    json!({
        "service": f.service,
        "state": {
            "active_intent": if state.active_intent.is_empty() { "NONE" } else { &state.active_intent },
            "requested_slots": state.requested_slots,
            "slot_values": state.slot_values,
        },
        "slots": slots,
    })
}

/// One dialogue in MultiWOZ 2.2's layout.
pub fn dialogue(d: &GeneratedDialogue, a: Option<&Annotation>) -> Value {
    let mut turns = Vec::with_capacity(2 * d.turns.len());
    for (n, t) in d.turns.iter().enumerate() {
        let frames = a.map(|a| &a.turns[n]);
        for (k, (utterance, user)) in [(&t.utterance, true), (&t.assistant_response, false)]
            .into_iter()
            .enumerate()
        {
            let chars: Vec<char> = utterance.chars().collect();
            let list = frames.map_or(&[][..], |f| if user { &f.user } else { &f.assistant });
            turns.push(json!({
                "turn_id": (2 * n + k).to_string(),
                "speaker": if user { "USER" } else { "SYSTEM" },
                "utterance": utterance,
                "frames": list.iter().map(|f| frame(f, &chars, user)).collect::<Vec<_>>(),
            }));
        }
    }
    json!({"dialogue_id": d.dialogue_id, "services": d.services, "turns": turns})
}

/// The JSON file being written.
pub struct Writer {
    file: AtomicFile,
    path: PathBuf,
    written: u64,
}

impl Writer {
    pub fn create(path: &Path) -> Result<Writer> {
        let mut file = AtomicFile::create(path)?;
        file.writer().write_all(b"[")?;
        Ok(Writer {
            file,
            path: path.to_path_buf(),
            written: 0,
        })
    }

    pub fn add(&mut self, record: &GeneratedDialogue, quality: &QualityRecord) -> Result<()> {
        let annotation = match &quality.annotation {
            Some(a) => Some(formats::checked(record, a)?),
            None => None,
        };
        let w = self.file.writer();
        w.write_all(if self.written == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer_pretty(&mut *w, &dialogue(record, annotation))?;
        self.written += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<String> {
        let end: &[u8] = if self.written == 0 { b"]\n" } else { b"\n]\n" };
        self.file.writer().write_all(end)?;
        self.file.commit()?;
        Ok(format!(
            "exported {} dialogues to {} in MultiWOZ 2.2's layout\n",
            self.written,
            self.path.display()
        ))
    }
}
