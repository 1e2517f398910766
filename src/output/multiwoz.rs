//! `dgen export --multiwoz FILE`: the dialogues in MultiWOZ 2.2's original JSON layout, a list
//! of `{dialogue_id, services, turns}` with turns `{turn_id, speaker, utterance, frames}`. A
//! USER frame is `{service, state, slots}`, a SYSTEM frame `{service, slots}`; each span carries
//! its `value` (the text at its offsets). What MultiWOZ 2.2's layout has no place for is left
//! out: dialogue acts (its own acts are a separate file), service calls and their results.
//! Plain dialogues have no frames. `dgen plan --dataset FILE` reads the file as base dialogues.

use std::io::Write;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use serde_json::{json, Value};

use crate::annotation::{Annotation, Frame};
use crate::output::atomic_file::AtomicFile;
use crate::output::formats::{self, FormatJob};
use crate::record::GeneratedDialogue;
use crate::store::Store;

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

/// Writes the JSON file from one snapshot of the store; returns what to print.
pub fn export(store: &Store, job: &FormatJob, cancel: &AtomicBool) -> Result<String> {
    let mut file = AtomicFile::create(&job.path)?;
    file.writer().write_all(b"[")?;
    let mut written = 0u64;
    formats::for_each(store, job, cancel, |record, quality| {
        let annotation = match &quality.annotation {
            Some(a) => Some(formats::checked(&record, a)?),
            None => None,
        };
        let w = file.writer();
        w.write_all(if written == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer_pretty(&mut *w, &dialogue(&record, annotation))?;
        written += 1;
        Ok(())
    })?;
    file.writer()
        .write_all(if written == 0 { b"]\n" } else { b"\n]\n" })?;
    file.commit()?;
    Ok(format!(
        "exported {written} dialogues to {} in MultiWOZ 2.2's layout\n",
        job.path.display()
    ))
}
