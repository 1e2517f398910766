//! Format detection and row reading. Each supported layout becomes a list of JSON objects that
//! keep only the named columns (nested struct fields are filtered by the same names), so a
//! FinePersonas file with large embedding columns costs nothing extra after decoding.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use super::{arrow, LoadReport};

pub const DIALOGUE_FIELDS: &[&str] = &[
    "dialogue_id",
    "services",
    "turns",
    "turn_id",
    "speaker",
    "utterance",
];
pub const PERSONA_FIELDS: &[&str] = &["persona", "cluster_label", "summary_label"];

pub struct RawRows {
    pub rows: Vec<Map<String, Value>>,
    pub report: LoadReport,
}

/// Reads `path` in whichever supported layout it has. `split` picks a split of a DatasetDict or
/// of a MultiWOZ folder; `None` takes `train` when present, else the first split listed.
pub fn read_rows(path: &Path, split: Option<&str>, fields: &[&str]) -> Result<RawRows> {
    let (files, format) = locate(path, split)?;
    let mut raw = RawRows {
        rows: Vec::new(),
        report: LoadReport {
            source: path.display().to_string(),
            format: format.describe().to_string(),
            ..LoadReport::default()
        },
    };
    for file in &files {
        let before = raw.rows.len();
        match format {
            Format::Arrow => arrow::read_ipc_stream(file, fields, &mut raw.rows)?,
            Format::Parquet => arrow::read_parquet(file, fields, &mut raw.rows)?,
            Format::Json => read_json(file, fields, &mut raw)?,
            Format::Jsonl => read_jsonl(file, fields, &mut raw)?,
        }
        tracing::debug!("{}: {} rows", file.display(), raw.rows.len() - before);
    }
    raw.report.rows = raw.rows.len() as u64 + raw.report.skipped_total();
    Ok(raw)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Arrow,
    Parquet,
    Json,
    Jsonl,
}

impl Format {
    fn describe(self) -> &'static str {
        match self {
            Format::Arrow => "Hugging Face save_to_disk (Arrow IPC stream)",
            Format::Parquet => "Parquet",
            Format::Json => "JSON",
            Format::Jsonl => "JSONL",
        }
    }

    fn of_file(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "arrow" => Some(Format::Arrow),
            "parquet" => Some(Format::Parquet),
            "json" => Some(Format::Json),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

fn locate(path: &Path, split: Option<&str>) -> Result<(Vec<PathBuf>, Format)> {
    if path.is_file() {
        let format = Format::of_file(path).with_context(|| {
            format!(
                "{} has an unknown extension; dgen reads .arrow, .parquet, .json, .jsonl/.ndjson files and save_to_disk folders",
                path.display()
            )
        })?;
        return Ok((vec![path.to_path_buf()], format));
    }
    if !path.is_dir() {
        bail!("{} does not exist", path.display());
    }

    if let Some(found) = hugging_face_folder(path, split)? {
        return Ok(found);
    }
    if let Some(found) = multiwoz_folder(path, split)? {
        return Ok(found);
    }
    if let Some(found) = data_files_folder(path, split)? {
        return Ok(found);
    }
    // A Hub dataset repository (and `dgen export --hf`) keeps its files under data/, named
    // `<split>-…`: a split none is named for is refused rather than read as all of them.
    let data = path.join("data");
    if data.is_dir() {
        if let Some((files, format)) = data_files_folder(&data, None)? {
            let split_of = |p: &PathBuf| {
                let name = file_name(p);
                name.split(['-', '.'])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            };
            let Some(wanted) = split else {
                return Ok((files, format));
            };
            let chosen: Vec<PathBuf> = files
                .iter()
                .filter(|p| split_of(p) == wanted)
                .cloned()
                .collect();
            if chosen.is_empty() {
                let mut splits: Vec<String> = files.iter().map(split_of).collect();
                splits.dedup();
                bail!(
                    "{} has no split \"{wanted}\": its files are of split(s) {}; pass --split {}",
                    data.display(),
                    splits.join(", "),
                    splits[0]
                );
            }
            return Ok((chosen, format));
        }
    }
    bail!(
        "{} is not a dataset dgen can read: expected dataset_dict.json or state.json (Hugging Face save_to_disk), dialogues_*.json (MultiWOZ), or .arrow/.parquet/.json/.jsonl files (in it or in its data/ folder)",
        path.display()
    )
}

/// A save_to_disk folder: a DatasetDict (dataset_dict.json lists the splits, each a Dataset
/// folder) or a single Dataset (state.json lists its shards).
fn hugging_face_folder(path: &Path, split: Option<&str>) -> Result<Option<(Vec<PathBuf>, Format)>> {
    let dict = path.join("dataset_dict.json");
    if dict.is_file() {
        let text = std::fs::read_to_string(&dict)
            .with_context(|| format!("cannot read {}", dict.display()))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", dict.display()))?;
        let splits = strings(&value["splits"]);
        let chosen = choose_split(path, split, &splits)?;
        return hf_dataset(&path.join(chosen)).map(Some);
    }
    if path.join("state.json").is_file() {
        return hf_dataset(path).map(Some);
    }
    Ok(None)
}

/// The MultiWOZ 2.2 repository layout: <split>/dialogues_*.json, or the files directly.
fn multiwoz_folder(path: &Path, split: Option<&str>) -> Result<Option<(Vec<PathBuf>, Format)>> {
    let direct = dialogue_files(path)?;
    if !direct.is_empty() {
        return Ok(Some((direct, Format::Json)));
    }
    let mut splits = Vec::new();
    for entry in sorted_entries(path)? {
        if entry.is_dir() && !dialogue_files(&entry)?.is_empty() {
            splits.push(file_name(&entry));
        }
    }
    if splits.is_empty() {
        return Ok(None);
    }
    // MultiWOZ calls the validation split "dev".
    let wanted = split.map(|s| if s == "validation" { "dev" } else { s });
    let chosen = choose_split(path, wanted, &splits)?;
    Ok(Some((dialogue_files(&path.join(chosen))?, Format::Json)))
}

/// A folder of data files of one format (the first file's), e.g. Parquet shards; those whose
/// names start with the split when there are any.
fn data_files_folder(path: &Path, split: Option<&str>) -> Result<Option<(Vec<PathBuf>, Format)>> {
    let files: Vec<(PathBuf, Format)> = sorted_entries(path)?
        .into_iter()
        .filter(|p| p.is_file())
        .filter_map(|p| Format::of_file(&p).map(|f| (p, f)))
        .collect();
    let Some(&(_, format)) = files.first() else {
        return Ok(None);
    };
    let same: Vec<PathBuf> = files
        .into_iter()
        .filter(|(_, f)| *f == format)
        .map(|(p, _)| p)
        .collect();
    let with_split: Vec<PathBuf> = match split {
        Some(s) => same
            .iter()
            .filter(|p| file_name(p).starts_with(s))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    Ok(Some((
        if with_split.is_empty() {
            same
        } else {
            with_split
        },
        format,
    )))
}

fn choose_split<'a>(path: &Path, wanted: Option<&str>, splits: &'a [String]) -> Result<&'a str> {
    if splits.is_empty() {
        bail!("{} lists no splits", path.display());
    }
    match wanted {
        Some(w) => match splits.iter().find(|s| s.as_str() == w) {
            Some(s) => Ok(s),
            None => bail!(
                "split \"{w}\" not found in {}; the splits that exist are: {}. Pass --split {}",
                path.display(),
                splits.join(", "),
                splits[0]
            ),
        },
        None => Ok(splits
            .iter()
            .find(|s| s.as_str() == "train")
            .unwrap_or(&splits[0])),
    }
}

/// The shards of a save_to_disk Dataset, in the order state.json lists them.
fn hf_dataset(dir: &Path) -> Result<(Vec<PathBuf>, Format)> {
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("cannot read {}", state_path.display()))?;
    let state: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", state_path.display()))?;
    let files: Vec<PathBuf> = state["_data_files"]
        .as_array()
        .with_context(|| format!("{} has no _data_files list", state_path.display()))?
        .iter()
        .filter_map(|f| f["filename"].as_str())
        .map(|name| dir.join(name))
        .collect();
    if files.is_empty() {
        bail!("{} lists no data files", state_path.display());
    }
    for f in &files {
        if !f.is_file() {
            bail!(
                "{} lists {}, which is missing; the save_to_disk folder is incomplete",
                state_path.display(),
                f.display()
            );
        }
    }
    Ok((files, Format::Arrow))
}

fn dialogue_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| {
            let name = file_name(p);
            p.is_file() && name.starts_with("dialogues") && name.ends_with(".json")
        })
        .collect())
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The strings of a JSON list (other items skipped); anything but a list gives none.
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Columns whose value is a map keyed by data (MultiWOZ's `slot_values`: slot name → values),
/// kept whole when wanted rather than filtered as if its keys were field names.
const MAPS: &[&str] = &["slot_values"];

/// Keeps only the wanted keys, at every level of nesting.
fn filter_value(value: Value, fields: &[&str]) -> Value {
    match value {
        Value::Object(map) => Value::Object(filter_object(map, fields)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| filter_value(v, fields)).collect())
        }
        other => other,
    }
}

fn filter_object(map: Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    map.into_iter()
        .filter(|(k, _)| fields.contains(&k.as_str()))
        .map(|(k, v)| {
            if MAPS.contains(&k.as_str()) {
                (k, v)
            } else {
                (k, filter_value(v, fields))
            }
        })
        .collect()
}

fn push_row(value: Value, fields: &[&str], out: &mut RawRows) {
    match value {
        Value::Object(map) => out.rows.push(filter_object(map, fields)),
        _ => out.skip("record is not a JSON object"),
    }
}

impl RawRows {
    fn skip(&mut self, reason: &str) {
        *self.report.skipped.entry(reason.to_string()).or_default() += 1;
    }
}

fn read_json(path: &Path, fields: &[&str], out: &mut RawRows) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let value: Value = serde_json::from_reader(BufReader::new(file))
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    match value {
        Value::Array(items) => {
            for item in items {
                push_row(item, fields, out);
            }
        }
        // Some MultiWOZ copies map dialogue ids to dialogues.
        Value::Object(map) if map.values().all(Value::is_object) => {
            for (id, item) in map {
                let mut item = item;
                if let Value::Object(m) = &mut item {
                    m.entry("dialogue_id").or_insert(Value::String(id));
                }
                push_row(item, fields, out);
            }
        }
        _ => bail!(
            "{} holds neither a list of records nor an object of records",
            path.display()
        ),
    }
    Ok(())
}

fn read_jsonl(path: &Path, fields: &[&str], out: &mut RawRows) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line =
            line.with_context(|| format!("cannot read {} line {}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(value) => push_row(value, fields, out),
            Err(err) => {
                tracing::debug!(
                    "{} line {}: not JSON ({err}); skipped",
                    path.display(),
                    n + 1
                );
                out.skip("invalid JSON line");
            }
        }
    }
    Ok(())
}
