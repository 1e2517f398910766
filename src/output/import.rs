//! `dgen import`: earlier results — dgen's exports or the original script's files — brought into
//! the store so that new generation never repeats them. Everything is validated first (record
//! shape, row counts across the three files, hash format, NPY dtype and shape), naming the file
//! and row; nothing is imported from a rejected set. The JSON files are read one element at a
//! time, so memory holds the parsed dialogues (and their embeddings) but never a whole file's
//! text or JSON tree.
//!
//! SGD and MultiWOZ 2.2 dialogue files (a JSON array, or a folder of `dialogues_*.json`) are
//! recognised by their content and imported with their frames ([`crate::output::import_sgd`]);
//! a dialogue of theirs that does not fit is refused with its reason, and the others import.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::de::{self, Deserializer as _, SeqAccess, Visitor};
use serde::Deserialize as _;
use serde_json::Value;

use crate::annotation::Annotation;
use crate::dedup::{self, Hash};
use crate::embed;
use crate::llm::Usage;
use crate::output::{import_sgd, npy};
use crate::parse::ParsedTurn;
use crate::quality::QualityRecord;
use crate::record::{self, GeneratedDialogue};
use crate::store::{Accepted, Batch, Store};

/// Hands each record to `each` with its row (counting from 0): a JSON array element by
/// element, or JSONL line by line when the file does not start with `[`. Only one record's
/// JSON is held at a time, so a file of any size imports in the memory of what it holds.
fn for_each_record(path: &Path, each: impl FnMut(usize, Value) -> Result<()>) -> Result<()> {
    let mut reader = open(path)?;
    if starts_with_bracket(&mut reader, path)? {
        return for_each_element(reader, path, "record", each);
    }
    let mut each = each;
    let mut row = 0;
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(&line)
            .with_context(|| format!("{} line {} is not valid JSON", path.display(), n + 1))?;
        each(row, value)?;
        row += 1;
    }
    Ok(())
}

/// Hands each dialogue of `path` to `each` with the file it is in and its row there: a file
/// as [`for_each_record`] reads it, or a folder's `dialogues_*.json` (SGD's and MultiWOZ 2.2's
/// layout of a split) in name order, each a JSON array.
fn for_each_input(
    path: &Path,
    mut each: impl FnMut(&Path, usize, Value) -> Result<()>,
) -> Result<()> {
    if !path.is_dir() {
        return for_each_record(path, |row, v| each(path, row, v));
    }
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?
    {
        let entry = entry.with_context(|| format!("cannot read {}", path.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("dialogues_") && name.ends_with(".json") {
            files.push(entry.path());
        }
    }
    if files.is_empty() {
        bail!(
            "{} is a folder without dialogues_*.json files; name a dialogue file, or a folder of SGD or MultiWOZ 2.2 dialogues_*.json",
            path.display()
        );
    }
    files.sort();
    for file in &files {
        let mut reader = open(file)?;
        if !starts_with_bracket(&mut reader, file)? {
            bail!(
                "{} is not a JSON array of dialogues, as SGD's and MultiWOZ 2.2's dialogues_*.json are",
                file.display()
            );
        }
        for_each_element(reader, file, "dialogue", |row, v| each(file, row, v))?;
    }
    Ok(())
}

fn open(path: &Path) -> Result<BufReader<File>> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(BufReader::with_capacity(1 << 16, file))
}

/// Whether the first character that is not white space is `[` (nothing is consumed but the
/// white space).
fn starts_with_bracket(reader: &mut BufReader<File>, path: &Path) -> Result<bool> {
    loop {
        let buffer = reader
            .fill_buf()
            .with_context(|| format!("cannot read {}", path.display()))?;
        let Some(&first) = buffer.first() else {
            return Ok(false);
        };
        if first.is_ascii_whitespace() {
            reader.consume(1);
            continue;
        }
        return Ok(first == b'[');
    }
}

/// The elements of a top-level JSON array, one at a time; an element that is not JSON is
/// named by its index (`what` `row`).
fn for_each_element(
    reader: impl Read,
    path: &Path,
    what: &str,
    each: impl FnMut(usize, Value) -> Result<()>,
) -> Result<()> {
    let mut visitor = Elements {
        each,
        failed: None,
        path,
        what,
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let parsed = de.deserialize_seq(&mut visitor).and_then(|()| de.end());
    if let Some(e) = visitor.failed {
        return Err(e);
    }
    parsed.with_context(|| format!("{} is not a valid JSON array", path.display()))
}

/// Visits a JSON array's elements; the first error (the element's or `each`'s) is kept in
/// `failed`, since a visitor can only return the deserializer's own error type.
struct Elements<'a, F> {
    each: F,
    failed: Option<anyhow::Error>,
    path: &'a Path,
    what: &'a str,
}

impl<'de, F: FnMut(usize, Value) -> Result<()>> Visitor<'de> for &mut Elements<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut row = 0;
        loop {
            let value = match seq.next_element::<Value>() {
                Ok(Some(value)) => value,
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.failed = Some(anyhow::anyhow!(
                        "{} {} {row} is not valid JSON: {e}",
                        self.path.display(),
                        self.what
                    ));
                    return Err(e);
                }
            };
            if let Err(e) = (self.each)(row, value) {
                self.failed = Some(e);
                return Err(de::Error::custom("stopped"));
            }
            row += 1;
        }
    }
}

fn string(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// One record of dgen's export schema or the original script's (whose turns lack emotions and
/// which has no provenance fields).
fn record_from_json(v: &Value, row: usize, file: &Path) -> Result<GeneratedDialogue> {
    let bad = |what: &str| anyhow::anyhow!("{} record {row}: {what}", file.display());
    if !v.is_object() {
        return Err(bad("is not a JSON object"));
    }
    let dialogue_id = v["dialogue_id"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| bad("has no dialogue_id"))?
        .to_string();
    let turns_json = v["turns"]
        .as_array()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("has no turns"))?;
    let mut turns = Vec::with_capacity(turns_json.len());
    for (i, t) in turns_json.iter().enumerate() {
        let field = |name: &str| -> Result<String> {
            t[name]
                .as_str()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
                .ok_or_else(|| bad(&format!("turn {} has no {name}", i + 1)))
        };
        turns.push(ParsedTurn {
            utterance: field("utterance")?,
            intent: field("intent")?,
            assistant_response: field("assistant_response")?,
        });
    }
    let first_of = |list: &str, turn_field: &str| {
        v[list][0]
            .as_str()
            .or_else(|| turns_json[0][turn_field].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let strings = |key: &str| crate::dataset::rows::strings(&v[key]);
    let slot = &v["time_slot"];
    let hour = |i: usize| slot[i].as_u64().unwrap_or(0).min(23) as u8;
    Ok(GeneratedDialogue {
        item_index: None,
        attempt: v["attempt"].as_u64().unwrap_or(0) as u32,
        dialogue_id,
        services: strings("services"),
        turns,
        user_emotion: first_of("user_emotions", "user_emotion"),
        assistant_emotion: first_of("assistant_emotions", "assistant_emotion"),
        scenario_category: string(&v["scenario_category"]),
        generated_scenario: string(&v["generated_scenario"]),
        time_slot: (hour(0), hour(1), string(&slot[2])),
        regions: strings("regions"),
        resolution_status: string(&v["resolution_status"]),
        persona: string(&v["persona"]),
        specific_time: string(&v["specific_time"]),
        base_dialogue_id: string(&v["base_dialogue_id"]),
        model: string(&v["model"]),
        temperature: v["temperature"].as_f64().unwrap_or(0.0),
        top_p: v["top_p"].as_f64().unwrap_or(0.0),
        frequency_penalty: v["frequency_penalty"].as_f64().unwrap_or(0.0),
        presence_penalty: v["presence_penalty"].as_f64().unwrap_or(0.0),
        seed: v["seed"].as_u64().unwrap_or(0),
        usage: Usage {
            calls: v["usage"]["calls"].as_u64().unwrap_or(0),
            prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
            cached_tokens: 0,
        },
        hash: [0; 32],
    })
}

fn read_hashes(path: &Path, expected: usize, records: &Path) -> Result<Vec<Hash>> {
    let mut hashes = Vec::with_capacity(expected);
    // The count is checked first: a file of another set is named as that, not as its first
    // row that fails to parse.
    let mut first_bad = None;
    let mut rows = 0;
    let reader = open(path)?;
    for_each_element(reader, path, "row", |row, v| {
        rows += 1;
        match parse_hex(v.as_str().unwrap_or_default()) {
            Some(hash) => hashes.push(hash),
            None if first_bad.is_none() => first_bad = Some((row, v)),
            None => {}
        }
        Ok(())
    })
    .with_context(|| format!("{} is not a JSON array of hashes", path.display()))?;
    if rows != expected {
        bail!(
            "{} has {rows} hashes but {} has {expected} records; the files must have one row per dialogue, in the same order",
            path.display(),
            records.display()
        );
    }
    if let Some((row, v)) = first_bad {
        bail!(
            "{} row {row}: {v} is not a 64-digit hex SHA-256",
            path.display()
        );
    }
    Ok(hashes)
}

fn parse_hex(hex: &str) -> Option<Hash> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The files of one import: the dialogues, and optionally their hashes and embeddings.
pub struct ImportFiles<'a> {
    pub records: &'a Path,
    pub hashes: Option<&'a Path>,
    pub embeddings: Option<&'a Path>,
    /// Where the embedding model is, for embeddings that must be computed, and how many
    /// sessions compute them.
    pub assets: &'a Path,
    pub parallelism: embed::Parallelism,
}

/// What an import did.
pub struct Imported {
    pub imported: u64,
    /// Already in the store (or twice in the files).
    pub skipped: u64,
    /// SGD or MultiWOZ 2.2 dialogues left out, each with where it is and why.
    pub refused: Vec<String>,
}

/// Reads and checks the whole set, then commits it in one transaction.
pub fn import(store: &Store, files: &ImportFiles) -> Result<Imported> {
    let mut records = Vec::new();
    let mut qualities = Vec::new();
    // The input row of each record kept: hash and embedding files have a row for every
    // dialogue of the input, refused ones included.
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    let mut rows = 0;
    for_each_input(files.records, |file, row, v| {
        rows += 1;
        if import_sgd::is_sgd(&v) {
            match import_sgd::dialogue(&v) {
                Ok((record, annotation)) => {
                    records.push(record);
                    qualities.push(Some(QualityRecord {
                        annotation: Some(Box::new(annotation)),
                        ..QualityRecord::default()
                    }));
                    kept.push(rows - 1);
                }
                Err(why) => refused.push(format!(
                    "{} dialogue {row} ({}): {why}",
                    file.display(),
                    v["dialogue_id"].as_str().unwrap_or("no id")
                )),
            }
            return Ok(());
        }
        let record = record_from_json(&v, row, file)?;
        qualities.push(with_annotation(
            quality_from_json(&v, row, file)?,
            &v,
            record.turns.len(),
            row,
            file,
        )?);
        records.push(record);
        kept.push(rows - 1);
        Ok(())
    })?;
    if records.is_empty() {
        return Ok(Imported {
            imported: 0,
            skipped: 0,
            refused,
        });
    }
    let given_hashes = match files.hashes {
        Some(h) => Some(pick(read_hashes(h, rows, files.records)?, &kept)),
        None => None,
    };
    let embeddings = embeddings(files, &records, rows, &kept)?;
    let mut done = commit(store, records, qualities, given_hashes, embeddings)?;
    done.refused = refused;
    Ok(done)
}

/// The rows of `all` at `kept` (ascending).
fn pick<T>(all: Vec<T>, kept: &[usize]) -> Vec<T> {
    let mut kept = kept.iter().peekable();
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| kept.next_if(|k| **k == *i).is_some())
        .map(|(_, x)| x)
        .collect()
}

/// A dgen record's `quality` (its flagged checks), kept so an export of the import matches the
/// original; `None` for records without one.
fn quality_from_json(v: &Value, row: usize, file: &Path) -> Result<Option<QualityRecord>> {
    let Some(quality) = v.get("quality") else {
        return Ok(None);
    };
    QualityRecord::deserialize(quality).map(Some).with_context(|| {
        format!(
            "{} record {row}: \"quality\" is not {{\"checks\": [{{\"check\", \"detail\"}}]}} with known check names; fix or remove it",
            file.display()
        )
    })
}

/// `quality` with the record's `annotation` (an annotated dialogue's labels, which dgen's
/// export writes beside `quality`), checked to have one entry per turn.
fn with_annotation(
    quality: Option<QualityRecord>,
    v: &Value,
    turns: usize,
    row: usize,
    file: &Path,
) -> Result<Option<QualityRecord>> {
    let Some(json) = v.get("annotation").filter(|a| !a.is_null()) else {
        return Ok(quality);
    };
    let annotation = Annotation::deserialize(json).with_context(|| {
        format!(
            "{} record {row}: \"annotation\" is not the annotation dgen's export writes; fix or remove it",
            file.display()
        )
    })?;
    if annotation.turns.len() != turns {
        bail!(
            "{} record {row}: \"annotation\" has {} turns but the record {turns}; fix or remove it",
            file.display(),
            annotation.turns.len()
        );
    }
    let mut quality = quality.unwrap_or_default();
    quality.annotation = Some(Box::new(annotation));
    Ok(Some(quality))
}

/// The given embeddings, checked to be unit vectors, or computed from the turns.
fn embeddings(
    files: &ImportFiles,
    records: &[GeneratedDialogue],
    rows: usize,
    kept: &[usize],
) -> Result<Vec<Vec<f32>>> {
    let Some(path) = files.embeddings else {
        let texts: Vec<String> = records
            .iter()
            .map(|r| record::embedding_text(&r.turns))
            .collect();
        tracing::info!("computing {} embeddings", texts.len());
        return embed::embed_all(files.assets, files.parallelism, &texts);
    };
    let embeddings = pick(npy::read(path, rows, files.records)?, kept);
    for (row, v) in embeddings.iter().enumerate() {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if !(0.98..=1.02).contains(&norm) {
            bail!(
                "{} row {}: the embedding has norm {norm:.3}; dgen needs L2-normalised all-MiniLM-L6-v2 vectors (omit --embedding_file to compute them)",
                path.display(),
                kept[row]
            );
        }
    }
    Ok(embeddings)
}

/// Skips what the store (or the set itself) already has; commits the rest at once.
fn commit(
    store: &Store,
    records: Vec<GeneratedDialogue>,
    qualities: Vec<Option<QualityRecord>>,
    given_hashes: Option<Vec<Hash>>,
    embeddings: Vec<Vec<f32>>,
) -> Result<Imported> {
    let index = store.load_index(embed::DIM)?;
    let mut seq = store.next_seq()?;
    let mut batch = Batch::default();
    let mut skipped = 0u64;
    let mut seen = std::collections::HashSet::new();
    let rows = records.into_iter().zip(embeddings).zip(qualities);
    for (row, ((mut record, embedding), quality)) in rows.enumerate() {
        let canonical = dedup::sha256(&record::canonical_text(&record.turns));
        record.hash = given_hashes.as_ref().map_or(canonical, |h| h[row]);
        if index.contains_hash(&record.hash)
            || index.contains_hash(&canonical)
            || !seen.insert(record.hash)
        {
            skipped += 1;
            continue;
        }
        if record.hash != canonical {
            batch.extra_hashes.push((canonical, seq));
        }
        batch.accepted.push(Accepted {
            seq,
            record,
            embedding,
            quality,
        });
        seq += 1;
    }
    let flags: Vec<String> = batch
        .accepted
        .iter()
        .flat_map(|a| a.quality.iter().flat_map(|q| &q.checks))
        .map(|found| format!("flagged/{}", found.check))
        .collect();
    for key in flags {
        batch.count(key, 1);
    }
    let imported = batch.accepted.len() as u64;
    batch.count("imported", imported);
    store.apply(&batch)?;
    Ok(Imported {
        imported,
        skipped,
        refused: Vec::new(),
    })
}
