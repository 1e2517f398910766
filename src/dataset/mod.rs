//! Input data: base dialogues (MultiWOZ 2.2) and personas (FinePersonas-like), read from a
//! Hugging Face `save_to_disk` folder, the original MultiWOZ JSON layout, JSONL or Parquet.
//!
//! Every format is first turned into plain rows (`serde_json` objects holding only the columns
//! dgen uses, see [`rows`]); one normaliser per kind of data then checks them. Malformed rows are
//! skipped and counted, never fatal; a file that cannot be read at all is an error.

mod arrow;
pub mod frames;
pub mod rows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who speaks a turn of a base dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Speaker {
    User,
    Assistant,
}

impl Speaker {
    pub fn label(self) -> &'static str {
        match self {
            Speaker::User => "USER",
            Speaker::Assistant => "ASSISTANT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub speaker: Speaker,
    pub utterance: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dialogue {
    pub dialogue_id: String,
    pub services: Vec<String>,
    pub turns: Vec<Turn>,
}

impl Dialogue {
    /// The base conversation as the prompts use it: one `USER: …` / `ASSISTANT: …` line a turn.
    pub fn base_conversation(&self) -> String {
        let mut out = String::new();
        for turn in &self.turns {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(turn.speaker.label());
            out.push_str(": ");
            out.push_str(&turn.utterance);
        }
        out
    }

    /// The service that groups this dialogue for base-dialogue quotas.
    pub fn primary_service(&self) -> &str {
        self.services.first().map(String::as_str).unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Persona {
    pub text: String,
    pub cluster_label: Option<i64>,
    /// The `summary_label` list, sorted (the original keyed it as a sorted tuple).
    pub summary_key: Option<Vec<String>>,
}

/// What was read from one source, with what was skipped and why.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    pub source: String,
    pub format: String,
    pub rows: u64,
    pub skipped: BTreeMap<String, u64>,
    /// blake3 over the canonical encoding of what was kept: the plan depends on contents, not paths.
    pub fingerprint: String,
}

impl LoadReport {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

pub struct Dialogues {
    pub dialogues: Vec<Dialogue>,
    pub report: LoadReport,
    /// The slot values of the dialogues' frames, read by [`load_dialogues_and_values`] (empty
    /// otherwise, and for datasets without frames).
    pub observed: frames::ObservedValues,
}

pub struct Personas {
    pub personas: Vec<Persona>,
    pub report: LoadReport,
}

/// Where base dialogues come from, as the user said it.
#[derive(Debug, Clone)]
pub struct DatasetSource {
    pub path: Option<PathBuf>,
    pub name: String,
    pub split: String,
}

pub const DEFAULT_DATASET_NAME: &str = "pfb30/multi_woz_v22";
pub const DEFAULT_PERSONA_PATH: &str = "./local_datasets/FinePersonas-v0.1-clustering-100k";

impl DatasetSource {
    /// `--dataset` when given; otherwise `--dataset_name` maps to `./local_datasets/<last part>`
    /// as in the original script.
    pub fn resolve(&self) -> Result<PathBuf> {
        if let Some(path) = &self.path {
            if !path.exists() {
                bail!(
                    "dataset {} does not exist; pass --dataset with a Hugging Face save_to_disk folder, a MultiWOZ JSON file or folder, JSONL or Parquet",
                    path.display()
                );
            }
            return Ok(path.clone());
        }
        let short = self.name.rsplit('/').next().unwrap_or(&self.name);
        let path = PathBuf::from("./local_datasets").join(short);
        if !path.exists() {
            bail!(
                "dataset {name} is not available locally: {path} does not exist.\n\
                 Create it once with Python (on a machine that can reach the Hugging Face hub):\n  \
                 python -c \"from datasets import load_dataset; load_dataset('{name}').save_to_disk('{path}')\"\n\
                 or pass --dataset PATH (a save_to_disk folder, MultiWOZ JSON, JSONL or Parquet; the bundled sample is fixtures/multiwoz_hf)",
                name = self.name,
                path = path.display()
            );
        }
        Ok(path)
    }
}

pub fn load_dialogues(path: &Path, split: &str) -> Result<Dialogues> {
    load(path, split, false)
}

/// [`load_dialogues`], also counting the slot values of the dialogues' frames (MultiWOZ 2.2,
/// SGD): an annotated plan draws its goals' values from them.
pub fn load_dialogues_and_values(path: &Path, split: &str) -> Result<Dialogues> {
    load(path, split, true)
}

fn load(path: &Path, split: &str, values: bool) -> Result<Dialogues> {
    let fields = if values {
        [rows::DIALOGUE_FIELDS, frames::FRAME_FIELDS].concat()
    } else {
        rows::DIALOGUE_FIELDS.to_vec()
    };
    let raw = rows::read_rows(path, Some(split), &fields)
        .with_context(|| format!("cannot read dialogues from {}", path.display()))?;
    let mut report = raw.report;
    let mut hasher = blake3::Hasher::new();
    let mut dialogues = Vec::with_capacity(raw.rows.len());
    let mut observed = frames::ObservedValues::default();
    for row in raw.rows {
        let said = match row.get("turns") {
            Some(turns) if values => frames::said_in(turns),
            _ => Default::default(),
        };
        match normalize_dialogue(row) {
            Ok(d) => {
                hasher.update(&encode(&d));
                dialogues.push(d);
                observed.add(said);
            }
            Err(reason) => *report.skipped.entry(reason.to_string()).or_default() += 1,
        }
    }
    report.fingerprint = hasher.finalize().to_hex().to_string();
    if dialogues.is_empty() {
        bail!(
            "{} has no usable dialogues ({} rows, all skipped: {:?}); each needs dialogue_id and turns with speaker and utterance",
            path.display(),
            report.rows,
            report.skipped
        );
    }
    log_skips("dialogues", &report);
    if values && !observed.is_empty() {
        tracing::info!(
            "{}: {} slots have values in the frames of {} dialogues",
            report.source,
            observed.slots.len(),
            observed.dialogues
        );
    }
    Ok(Dialogues {
        dialogues,
        report,
        observed,
    })
}

pub fn load_personas(path: &Path, split: Option<&str>) -> Result<Personas> {
    if !path.exists() {
        bail!(
            "persona dataset {} does not exist; pass --persona_dataset PATH (a save_to_disk folder, JSONL or Parquet with a `persona` column; the bundled sample is fixtures/personas_hf)",
            path.display()
        );
    }
    let raw = rows::read_rows(path, split, rows::PERSONA_FIELDS)
        .with_context(|| format!("cannot read personas from {}", path.display()))?;
    let mut report = raw.report;
    let mut hasher = blake3::Hasher::new();
    let mut personas = Vec::with_capacity(raw.rows.len());
    for row in raw.rows {
        match normalize_persona(row) {
            Ok(p) => {
                hasher.update(&encode(&p));
                personas.push(p);
            }
            Err(reason) => *report.skipped.entry(reason.to_string()).or_default() += 1,
        }
    }
    report.fingerprint = hasher.finalize().to_hex().to_string();
    if personas.is_empty() {
        bail!(
            "{} has no usable personas ({} rows); each row needs a non-empty `persona` text",
            path.display(),
            report.rows
        );
    }
    log_skips("personas", &report);
    Ok(Personas { personas, report })
}

fn log_skips(what: &str, report: &LoadReport) {
    let skipped = report.skipped_total();
    if skipped > 0 {
        tracing::warn!(
            "{}: skipped {skipped} malformed {what} of {} ({:?})",
            report.source,
            report.rows,
            report.skipped
        );
    }
    tracing::info!(
        "{}: {} {what} read ({})",
        report.source,
        report.rows - skipped,
        report.format
    );
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes")
}

fn normalize_dialogue(mut row: Map<String, Value>) -> std::result::Result<Dialogue, &'static str> {
    let dialogue_id = match row.remove("dialogue_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("missing dialogue_id"),
    };
    let services = match row.remove("services") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_lowercase()),
                _ => None,
            })
            .collect(),
        Some(_) => return Err("services is not a list"),
    };
    let pairs: Vec<(Value, Value)> = match row.remove("turns") {
        // A struct of lists: {speaker: [...], utterance: [...], turn_id: [...]}.
        Some(Value::Object(mut columns)) => {
            let speakers = match columns.remove("speaker") {
                Some(Value::Array(a)) => a,
                _ => return Err("turns without speaker list"),
            };
            let utterances = match columns.remove("utterance") {
                Some(Value::Array(a)) => a,
                _ => return Err("turns without utterance list"),
            };
            if speakers.len() != utterances.len() {
                return Err("turns lists of different lengths");
            }
            speakers.into_iter().zip(utterances).collect()
        }
        // A list of structs: [{speaker, utterance, turn_id}, ...].
        Some(Value::Array(items)) => {
            let mut pairs = Vec::with_capacity(items.len());
            for item in items {
                let Value::Object(mut t) = item else {
                    return Err("turn is not an object");
                };
                pairs.push((
                    t.remove("speaker").unwrap_or(Value::Null),
                    t.remove("utterance").unwrap_or(Value::Null),
                ));
            }
            pairs
        }
        _ => return Err("no turns"),
    };
    if pairs.is_empty() {
        return Err("no turns");
    }
    let mut turns = Vec::with_capacity(pairs.len());
    for (speaker, utterance) in pairs {
        let speaker = parse_speaker(&speaker).ok_or("unknown speaker")?;
        let utterance = match utterance {
            Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => return Err("empty utterance"),
        };
        turns.push(Turn { speaker, utterance });
    }
    Ok(Dialogue {
        dialogue_id,
        services,
        turns,
    })
}

fn parse_speaker(value: &Value) -> Option<Speaker> {
    match value {
        Value::Number(n) => match n.as_i64()? {
            0 => Some(Speaker::User),
            1 => Some(Speaker::Assistant),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_uppercase().as_str() {
            "USER" | "0" => Some(Speaker::User),
            "SYSTEM" | "ASSISTANT" | "1" => Some(Speaker::Assistant),
            _ => None,
        },
        _ => None,
    }
}

fn normalize_persona(mut row: Map<String, Value>) -> std::result::Result<Persona, &'static str> {
    let text = match row.remove("persona") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => return Err("missing or empty persona"),
    };
    let cluster_label = match row.remove("cluster_label") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let summary_key = match row.remove("summary_label") {
        Some(Value::String(s)) => summary_key(&s),
        Some(Value::Array(items)) => {
            let labels: Vec<String> = items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            sorted_key(labels)
        }
        _ => None,
    };
    Ok(Persona {
        text,
        cluster_label,
        summary_key,
    })
}

/// `summary_label` is a JSON-list string such as `["Education", "Science"]`; a plain string
/// counts as one label (the original's `safe_eval` fell back the same way).
fn summary_key(raw: &str) -> Option<Vec<String>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let labels = match serde_json::from_str::<Vec<String>>(raw) {
        Ok(list) => list,
        // Python reprs use single quotes.
        Err(_) => match serde_json::from_str::<Vec<String>>(&raw.replace('\'', "\"")) {
            Ok(list) => list,
            Err(_) => vec![raw.to_string()],
        },
    };
    sorted_key(labels)
}

fn sorted_key(mut labels: Vec<String>) -> Option<Vec<String>> {
    labels.retain(|l| !l.trim().is_empty());
    if labels.is_empty() {
        return None;
    }
    labels.sort();
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn struct_of_lists_and_list_of_structs_agree() {
        let a = normalize_dialogue(obj(json!({
            "dialogue_id": "X1", "services": ["hotel"],
            "turns": {"turn_id": ["0", "1"], "speaker": [0, 1], "utterance": ["hi", "hello"]}
        })))
        .unwrap();
        let b = normalize_dialogue(obj(json!({
            "dialogue_id": "X1", "services": ["hotel"],
            "turns": [{"turn_id": 0, "speaker": "USER", "utterance": "hi"},
                      {"turn_id": 1, "speaker": "SYSTEM", "utterance": "hello"}]
        })))
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.base_conversation(), "USER: hi\nASSISTANT: hello");
    }

    #[test]
    fn malformed_rows_name_their_reason() {
        let r = normalize_dialogue(obj(json!({"dialogue_id": "a", "turns": []})));
        assert_eq!(r.unwrap_err(), "no turns");
        let r = normalize_dialogue(obj(json!({"dialogue_id": "a",
            "turns": [{"speaker": 7, "utterance": "x"}]})));
        assert_eq!(r.unwrap_err(), "unknown speaker");
        let r = normalize_dialogue(obj(json!({"dialogue_id": "a",
            "turns": [{"speaker": 0, "utterance": "  "}]})));
        assert_eq!(r.unwrap_err(), "empty utterance");
    }

    #[test]
    fn summary_labels_are_sorted_tuples() {
        assert_eq!(
            summary_key(r#"["Science", "Education"]"#),
            Some(vec!["Education".to_string(), "Science".to_string()])
        );
        assert_eq!(
            summary_key("['B', 'A']"),
            Some(vec!["A".to_string(), "B".to_string()])
        );
        assert_eq!(summary_key("Travel"), Some(vec!["Travel".to_string()]));
    }
}
