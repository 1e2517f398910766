//! `dgen export --hf DIR`: the store as a dataset folder in the Hugging Face Hub's layout —
//! `data/<split>-00000-of-0000N.parquet` with typed, nested columns, and a `README.md` dataset
//! card whose YAML header the Hub and `datasets.load_dataset(DIR)` read.
//!
//! Streamed: each split gathers at most one row group of rows before writing it, so memory
//! does not grow with the store. Deterministic: the same store and flags give byte-identical
//! files (no timestamps; the split of a dialogue is a seeded hash of its id).

mod card;
pub mod columns;
pub mod multiwoz;
mod shards;
pub mod splits;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use arrow_schema::SchemaRef;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::output::atomic_file::AtomicFile;
use crate::quality::QualityRecord;
use crate::record::GeneratedDialogue;
use crate::store::{DialogueSink, Store};
use columns::{Columns, Layout};
use shards::{ShardLimits, SplitShards};
use splits::SplitSpec;

/// Rows per Parquet row group (and per record batch): small enough that a split's pending rows
/// stay a few MB, large enough for good compression and for the Hub's viewer, which reads
/// row groups one at a time.
pub const ROWS_PER_GROUP: usize = 1_000;

/// Parquet compression codec of the shards.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum Codec {
    Snappy,
    Zstd,
}

/// What `dgen export --hf` was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct HfJob {
    pub dir: PathBuf,
    pub splits: SplitSpec,
    pub split_seed: u64,
    pub codec: Codec,
    pub shard_rows: u64,
    pub shard_bytes: u64,
    pub embeddings: bool,
    pub include_imported: bool,
}

/// What the dataset holds, gathered while the rows stream by, for the card.
#[derive(Debug, Default)]
pub struct Tally {
    pub rows_per_split: Vec<u64>,
    pub shards_per_split: Vec<usize>,
    pub imported: u64,
    pub turns: u64,
    pub models: BTreeMap<String, u64>,
    pub service_count: BTreeMap<usize, u64>,
    pub services: BTreeMap<String, u64>,
    pub resolution_statuses: BTreeMap<String, u64>,
    pub categories: BTreeMap<String, u64>,
    pub time_slots: BTreeMap<String, u64>,
    pub user_emotions: BTreeMap<String, u64>,
    pub assistant_emotions: BTreeMap<String, u64>,
    pub flagged: BTreeMap<String, u64>,
    pub judged: u64,
    pub judge_overall: [u64; 5],
    /// Dialogues the label checks ran on, and of those grounded, goal-realized and both.
    pub labelled: u64,
    pub grounded: u64,
    pub goal_realized: u64,
    pub grounded_and_realized: u64,
    /// A hash of every shard's name and bytes: the card carries it so that `datasets`, which
    /// keys its cache of a local folder on the folder's name and the card (not on the files),
    /// loads a re-export, or another export to a folder of the same name, afresh.
    pub data_fingerprint: String,
}

impl Tally {
    pub fn rows(&self) -> u64 {
        self.rows_per_split.iter().sum()
    }

    fn add(&mut self, d: &GeneratedDialogue, quality: &QualityRecord) {
        let bump = |map: &mut BTreeMap<String, u64>, key: &str| {
            *map.entry(key.to_string()).or_default() += 1;
        };
        bump(&mut self.models, &d.model);
        for s in &d.services {
            bump(&mut self.services, s);
        }
        bump(&mut self.resolution_statuses, &d.resolution_status);
        bump(&mut self.categories, &d.scenario_category);
        bump(&mut self.time_slots, &d.time_slot.2);
        bump(&mut self.user_emotions, &d.user_emotion);
        bump(&mut self.assistant_emotions, &d.assistant_emotion);
        for finding in &quality.checks {
            bump(&mut self.flagged, finding.check.name());
        }
        *self.service_count.entry(d.services.len()).or_default() += 1;
        self.turns += d.turns.len() as u64;
        self.imported += u64::from(d.item_index.is_none());
        if let Some(labels) = quality.annotation.as_ref().and_then(|a| a.labels) {
            self.labelled += 1;
            self.grounded += u64::from(labels.grounded);
            self.goal_realized += u64::from(labels.goal_realized);
            self.grounded_and_realized += u64::from(labels.grounded && labels.goal_realized);
        }
        if let Some(score) = &quality.judge {
            self.judged += 1;
            self.judge_overall[usize::from(score.overall.clamp(1, 5)) - 1] += 1;
        }
    }
}

struct Sink<'a> {
    job: &'a HfJob,
    cancel: &'a AtomicBool,
    /// The plan is annotated: the `multiwoz` layout.
    annotated: bool,
    data: PathBuf,
    /// Set in `begin`, from the snapshot the rows come from: whether there is a judge column.
    schema: Option<SchemaRef>,
    pending: Vec<Columns>,
    shards: Vec<SplitShards>,
    tally: Tally,
}

impl Sink<'_> {
    fn flush(&mut self, split: usize) -> Result<()> {
        if self.pending[split].rows() > 0 {
            let batch = self.pending[split].finish()?;
            self.shards[split].write(&batch)?;
        }
        Ok(())
    }
}

impl DialogueSink for Sink<'_> {
    fn begin(&mut self, judged: u64) -> Result<()> {
        let layout = Layout {
            embeddings: self.job.embeddings,
            judge: judged > 0,
            multiwoz: self.annotated,
        };
        let schema = columns::schema(layout);
        let props = properties(self.job.codec)?;
        let limits = ShardLimits {
            rows: self.job.shard_rows,
            bytes: self.job.shard_bytes,
        };
        self.pending = self
            .job
            .splits
            .names()
            .map(|_| Columns::new(layout))
            .collect();
        self.shards = self
            .job
            .splits
            .names()
            .map(|name| SplitShards::new(name, &self.data, schema.clone(), props.clone(), limits))
            .collect();
        self.schema = Some(schema);
        Ok(())
    }

    fn dialogue(
        &mut self,
        _seq: u64,
        record: GeneratedDialogue,
        embedding: &[u8],
        quality: QualityRecord,
    ) -> Result<()> {
        if record.item_index.is_none() && !self.job.include_imported {
            return Ok(());
        }
        if self.cancel.load(Ordering::Relaxed) {
            bail!(
                "export cancelled: the process that asked for it went away; no files were replaced"
            );
        }
        let split = self
            .job
            .splits
            .assign(self.job.split_seed, &record.dialogue_id);
        self.pending[split].push(&record, embedding, &quality);
        self.tally.add(&record, &quality);
        // A row group never spans two shards.
        let group = (ROWS_PER_GROUP as u64).min(self.shards[split].room());
        if self.pending[split].rows() as u64 >= group {
            self.flush(split)?;
        }
        Ok(())
    }
}

fn properties(codec: Codec) -> Result<WriterProperties> {
    let compression = match codec {
        Codec::Snappy => Compression::SNAPPY,
        Codec::Zstd => Compression::ZSTD(ZstdLevel::try_new(3)?),
    };
    Ok(WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .set_created_by(format!("dgen {}", env!("CARGO_PKG_VERSION")))
        .build())
}

/// Writes the dataset folder from one snapshot of the store; returns what to print.
pub fn export(store: &Store, job: &HfJob, cancel: &AtomicBool) -> Result<String> {
    let meta = store.meta()?.context("the store holds no plan")?;
    if job.dir.exists() && !job.dir.is_dir() {
        bail!(
            "--hf {} is a file; name a folder (it is created if missing)",
            job.dir.display()
        );
    }
    let data = job.dir.join("data");
    std::fs::create_dir_all(&data).with_context(|| {
        format!(
            "cannot create {}; choose a writable folder for --hf",
            data.display()
        )
    })?;
    shards::remove_dead_temps(&data);
    let mut sink = Sink {
        job,
        cancel,
        annotated: meta.config.annotate.is_some(),
        data: data.clone(),
        schema: None,
        pending: Vec::new(),
        shards: Vec::new(),
        tally: Tally::default(),
    };
    store.for_each_dialogue(&mut sink)?;
    for split in 0..sink.shards.len() {
        sink.flush(split)?;
    }
    let Sink {
        shards,
        mut tally,
        schema,
        ..
    } = sink;
    let schema = schema.context("the store gave no snapshot to export")?;
    let mut finished = Vec::new();
    let mut fingerprint = blake3::Hasher::new();
    // An empty split is left out, unless every split is (an empty store): then each keeps an
    // empty file, which holds the columns.
    let keep_empty = shards.iter().all(|s| s.rows == 0);
    for split in shards {
        tally.rows_per_split.push(split.rows);
        let files = split.finish(keep_empty)?;
        tally.shards_per_split.push(files.len());
        for (file, name, hash) in files {
            fingerprint.update(name.as_bytes());
            fingerprint.update(&[0]);
            fingerprint.update(hash.as_bytes());
            finished.push((file, name));
        }
    }
    tally.data_fingerprint = fingerprint.finalize().to_hex()[..32].to_string();
    if cancel.load(Ordering::Relaxed) {
        bail!("export cancelled: the process that asked for it went away; no files were replaced");
    }
    let card = card::render(store, &meta, job, &schema, &tally)?;
    publish(&data, finished)?;
    let mut readme = AtomicFile::create(&job.dir.join("README.md"))?;
    std::io::Write::write_all(readme.writer(), card.as_bytes())?;
    readme.commit()?;
    let per_split: Vec<String> = job
        .splits
        .names()
        .zip(&tally.rows_per_split)
        .zip(&tally.shards_per_split)
        .map(|((name, rows), shards)| match shards {
            0 => format!("{name} 0 (left out: no rows, and datasets cannot load an empty split)"),
            _ => format!("{name} {rows} ({shards} shard{})", plural(*shards)),
        })
        .collect();
    Ok(format!(
        "exported {} dialogues to the dataset folder {}: {}\n",
        tally.rows(),
        job.dir.display(),
        per_split.join(", ")
    ))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Moves the new shards into place, then removes an earlier export's shards that the new one
/// did not replace (fewer shards, or a split no longer asked for). Other files are left alone.
fn publish(
    data: &Path,
    finished: Vec<(crate::output::atomic_file::Finished, String)>,
) -> Result<()> {
    let mut old: Vec<PathBuf> = Vec::new();
    for entry in
        std::fs::read_dir(data).with_context(|| format!("cannot read {}", data.display()))?
    {
        let entry = entry?;
        if shards::is_shard_name(&entry.file_name().to_string_lossy()) {
            old.push(entry.path());
        }
    }
    let mut new = Vec::new();
    for (file, name) in finished {
        let target = data.join(&name);
        file.publish(&target)?;
        new.push(target);
    }
    for path in old.into_iter().filter(|p| !new.contains(p)) {
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove the earlier shard {}", path.display()))?;
    }
    Ok(())
}
