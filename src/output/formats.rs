//! `dgen export --sgd DIR`, `--chat FILE` and `--multiwoz FILE`: the dialogues in other
//! datasets' layouts, each format in its own file ([`crate::output::sgd`],
//! [`crate::output::chat`], [`crate::output::multiwoz`]). Here: the job, the walk over one
//! snapshot of the store, and the service schemas the formats describe the dialogues with —
//! the plan's (`dgen plan --annotate`) and, for services it lacks (imported dialogues), one
//! inferred from the dialogues themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Result};

use crate::annotation::{Annotation, Frame};
use crate::output::{atomic_file, chat, multiwoz, sgd};
use crate::quality::QualityRecord;
use crate::record::GeneratedDialogue;
use crate::schema::{Intent, Schema, Service, Slot};
use crate::store::{DialogueSink, Store};

/// The layouts `dgen export` writes besides its own, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SGD's folder: `dialogues_NNN.json` and `schema.json`.
    Sgd,
    /// OpenAI's chat fine-tuning JSONL.
    Chat,
    /// MultiWOZ 2.2's dialogue JSON (one file).
    Multiwoz,
}

impl Format {
    pub fn flag(self) -> &'static str {
        match self {
            Format::Sgd => "--sgd",
            Format::Chat => "--chat",
            Format::Multiwoz => "--multiwoz",
        }
    }
}

/// What `dgen export --sgd/--chat/--multiwoz` was asked for: any of the three, written from one
/// pass over one snapshot, all or none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FormatJob {
    /// The SGD folder.
    pub sgd: Option<PathBuf>,
    pub chat: Option<PathBuf>,
    pub multiwoz: Option<PathBuf>,
    pub include_imported: bool,
}

/// Writes the exports from one snapshot of the store; returns what to print. A dialogue a
/// format refuses (a plain one for `--sgd`) stops them all before any file is replaced.
pub fn export(store: &Store, job: &FormatJob, cancel: &AtomicBool) -> Result<String> {
    let files: Vec<(&str, &std::path::Path)> =
        [(Format::Chat, &job.chat), (Format::Multiwoz, &job.multiwoz)]
            .into_iter()
            .filter_map(|(f, p)| Some((f.flag(), p.as_deref()?)))
            .collect();
    atomic_file::refuse_overlaps(store.path(), &files)?;
    let plan = store
        .meta()?
        .and_then(|m| m.config.annotate)
        .map(|a| a.schema)
        .unwrap_or_default();
    let mut sgd = job.sgd.as_deref().map(sgd::Writer::create).transpose()?;
    let mut chat = job.chat.as_deref().map(chat::Writer::create).transpose()?;
    let mut multiwoz = job
        .multiwoz
        .as_deref()
        .map(multiwoz::Writer::create)
        .transpose()?;
    let left_out = for_each(store, job, cancel, |record, quality| {
        if let Some(w) = sgd.as_mut() {
            w.add(&record, &quality)?;
        }
        if let Some(w) = chat.as_mut() {
            w.add(&record, &quality, &plan)?;
        }
        if let Some(w) = multiwoz.as_mut() {
            w.add(&record, &quality)?;
        }
        Ok(())
    })?;
    if cancel.load(Ordering::Relaxed) {
        bail!("export cancelled: the process that asked for it went away; no files were replaced");
    }
    let mut said = String::new();
    if left_out > 0 {
        said += &format!(
            "left out {left_out} imported dialogues (add --include_imported to export them)\n"
        );
    }
    if let Some(w) = sgd {
        said += &w.finish(&plan)?;
    }
    if let Some(w) = chat {
        said += &w.finish()?;
    }
    if let Some(w) = multiwoz {
        said += &w.finish()?;
    }
    Ok(said)
}

/// Hands `each` every dialogue the job exports (imported ones only with `--include_imported`),
/// from one snapshot; stops when `cancel` is set. Returns how many imported dialogues were
/// left out.
pub fn for_each(
    store: &Store,
    job: &FormatJob,
    cancel: &AtomicBool,
    each: impl FnMut(GeneratedDialogue, QualityRecord) -> Result<()>,
) -> Result<u64> {
    struct Each<'a, F> {
        each: F,
        include_imported: bool,
        left_out: u64,
        cancel: &'a AtomicBool,
    }
    impl<F: FnMut(GeneratedDialogue, QualityRecord) -> Result<()>> DialogueSink for Each<'_, F> {
        fn dialogue(
            &mut self,
            _seq: u64,
            record: GeneratedDialogue,
            _embedding: &[u8],
            quality: QualityRecord,
        ) -> Result<()> {
            if record.item_index.is_none() && !self.include_imported {
                self.left_out += 1;
                return Ok(());
            }
            if self.cancel.load(Ordering::Relaxed) {
                bail!("export cancelled: the process that asked for it went away; no files were replaced");
            }
            (self.each)(record, quality)
        }
    }
    let mut sink = Each {
        each,
        include_imported: job.include_imported,
        left_out: 0,
        cancel,
    };
    store.for_each_dialogue(&mut sink)?;
    Ok(sink.left_out)
}

/// The dialogue's annotation, checked to have one entry per turn; a plain dialogue is refused,
/// since the format is made of frames.
pub fn annotation<'a>(
    record: &GeneratedDialogue,
    quality: &'a QualityRecord,
    format: Format,
) -> Result<&'a Annotation> {
    let Some(annotation) = &quality.annotation else {
        bail!(
            "dialogue {} has no annotation (it comes from a plain plan or a plain import): {} writes dialogue states and service calls, which only annotated dialogues have. Export annotated stores (`dgen plan --annotate`, or SGD or MultiWOZ 2.2 files brought in with `dgen import`), or this one with --output_file, --hf or --chat; no files were replaced",
            record.dialogue_id,
            format.flag()
        );
    };
    checked(record, annotation)
}

/// `annotation`, refused when its turns are not the dialogue's.
pub fn checked<'a>(
    record: &GeneratedDialogue,
    annotation: &'a Annotation,
) -> Result<&'a Annotation> {
    if annotation.turns.len() != record.turns.len() {
        bail!(
            "dialogue {} has {} turns but its annotation {}; the store is inconsistent, no files were replaced",
            record.dialogue_id,
            record.turns.len(),
            annotation.turns.len()
        );
    }
    Ok(annotation)
}

/// Every frame of an annotation, user's and assistant's, in order.
pub fn frames(annotation: &Annotation) -> impl Iterator<Item = &Frame> {
    annotation
        .turns
        .iter()
        .flat_map(|t| t.user.iter().chain(&t.assistant))
}

/// What the dialogues say of services a schema lacks, gathered to describe them in SGD's
/// schema format: each slot with whether it was ever given a span (non-categorical) and the
/// values it took, each intent with the parameters it was called with.
#[derive(Debug, Default)]
pub struct Seen {
    /// Services in the order first met.
    order: Vec<String>,
    slots: BTreeMap<String, BTreeMap<String, (bool, BTreeSet<String>)>>,
    intents: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Seen {
    pub fn add(&mut self, frames: &[&Frame]) {
        for f in frames {
            if !self.order.contains(&f.service) {
                self.order.push(f.service.clone());
            }
            let slots = self.slots.entry(f.service.clone()).or_default();
            let intents = self.intents.entry(f.service.clone()).or_default();
            let mut value = |slot: &str, v: &str| {
                let entry = slots.entry(slot.to_string()).or_default();
                if !v.is_empty() && v != "dontcare" {
                    entry.1.insert(v.to_string());
                }
            };
            for span in &f.slots {
                value(&span.slot, "");
            }
            if let Some(state) = &f.state {
                for (slot, values) in &state.slot_values {
                    values.iter().for_each(|v| value(slot, v));
                }
                for slot in &state.requested_slots {
                    value(slot, "");
                }
                if state.active_intent != "NONE" && !state.active_intent.is_empty() {
                    intents.entry(state.active_intent.clone()).or_default();
                }
            }
            for act in &f.actions {
                if !act.slot.is_empty() && act.slot != "intent" && act.slot != "count" {
                    act.values.iter().for_each(|v| value(&act.slot, v));
                    if act.values.is_empty() {
                        value(&act.slot, "");
                    }
                }
            }
            if let Some(call) = &f.service_call {
                let params = intents.entry(call.method.clone()).or_default();
                for (slot, v) in &call.parameters {
                    params.insert(slot.clone());
                    value(slot, v);
                }
            }
            for result in f.service_results.iter().flatten() {
                for (slot, v) in result {
                    value(slot, v);
                }
            }
            for span in &f.slots {
                slots.entry(span.slot.clone()).or_default().0 = true;
            }
        }
    }

    /// The services met, in order: the plan schema's where it has them, else inferred.
    pub fn services(&self, plan: &Schema) -> Vec<Service> {
        self.order
            .iter()
            .map(|name| {
                plan.service(name)
                    .cloned()
                    .unwrap_or_else(|| self.inferred(name))
            })
            .collect()
    }

    /// A service as the dialogues show it: a slot never given a span is categorical, with the
    /// values it took; an intent takes, as optional slots, the parameters it was called with.
    fn inferred(&self, name: &str) -> Service {
        let slots = self.slots.get(name).into_iter().flatten();
        let intents = self.intents.get(name).into_iter().flatten();
        Service {
            service_name: name.to_string(),
            description: "inferred by dgen from the exported dialogues".into(),
            slots: slots
                .map(|(slot, (spanned, values))| Slot {
                    name: slot.clone(),
                    description: String::new(),
                    is_categorical: !spanned,
                    possible_values: if *spanned {
                        Vec::new()
                    } else {
                        values.iter().cloned().collect()
                    },
                })
                .collect(),
            intents: intents
                .map(|(intent, params)| Intent {
                    name: intent.clone(),
                    description: String::new(),
                    is_transactional: false,
                    required_slots: Vec::new(),
                    optional_slots: params
                        .iter()
                        .map(|p| (p.clone(), "dontcare".to_string()))
                        .collect(),
                    result_slots: Vec::new(),
                })
                .collect(),
        }
    }
}
