//! The store: one redb file holding the plan, the state of every item and (from `dgen run` on)
//! the results. All table definitions live here. A meta table identifies the file as a dgen
//! store and records the schema version, the configuration, the catalog, the dataset
//! fingerprints and the plan fingerprint, so a later command never mixes incompatible data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::dataset::{Dialogue, LoadReport};
use crate::dedup::DedupIndex;
use crate::plan::{CombinationUsage, PlanConfig, WorkItem};
use crate::record::GeneratedDialogue;

pub const SCHEMA_VERSION: u32 = 1;
const FORMAT: &str = "dgen-store";

/// Meta entries, JSON-encoded values keyed by name (see the `META_*` keys).
pub const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Work items by index, bincode-encoded [`WorkItem`]s.
pub const ITEMS: TableDefinition<u64, &[u8]> = TableDefinition::new("items");
/// Item states by index, bincode-encoded [`ItemState`]s.
pub const ITEM_STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("item_state");
/// Persona texts by persona index, for the personas the plan uses.
pub const PERSONAS: TableDefinition<u32, &str> = TableDefinition::new("personas");
/// The base dialogues the plan uses, by dataset index (bincode `Dialogue`), so a run does not
/// need the dataset again.
pub const BASE_DIALOGUES: TableDefinition<u32, &[u8]> = TableDefinition::new("base_dialogues");
/// Accepted dialogues by commit sequence number (bincode `GeneratedDialogue`); export order.
pub const DIALOGUES: TableDefinition<u64, &[u8]> = TableDefinition::new("dialogues");
/// SHA-256 of each stored dialogue's canonical text -> its sequence number.
pub const HASHES: TableDefinition<&[u8], u64> = TableDefinition::new("hashes");
/// Embedding of each stored dialogue by sequence number: 384 little-endian f32.
pub const EMBEDDINGS: TableDefinition<u64, &[u8]> = TableDefinition::new("embeddings");
/// Run counters: tokens, calls, acceptances, rejections and failures by reason, run time.
pub const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Combination usage counters, keyed `size/service+service`.
pub const COMBINATION_USAGE: TableDefinition<&str, u64> = TableDefinition::new("combination_usage");

const META_FORMAT: &str = "format";
const META_SCHEMA: &str = "schema_version";
const META_DGEN_VERSION: &str = "dgen_version";
const META_CONFIG: &str = "config";
const META_CATALOG: &str = "catalog";
const META_DATASETS: &str = "datasets";
const META_FINGERPRINT: &str = "plan_fingerprint";
const META_RUN: &str = "run";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum State {
    Pending,
    InFlight,
    Done,
    Rejected,
    Failed,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Pending,
        State::InFlight,
        State::Done,
        State::Rejected,
        State::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::InFlight => "in-flight",
            State::Done => "done",
            State::Rejected => "rejected",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemState {
    pub state: State,
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl ItemState {
    pub fn pending() -> Self {
        ItemState {
            state: State::Pending,
            attempts: 0,
            last_error: None,
        }
    }
}

/// Where the plan's inputs came from and what they contained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetsMeta {
    pub split: String,
    pub dialogues: LoadReport,
    pub personas: LoadReport,
}

#[derive(Debug, Clone)]
pub struct Meta {
    pub dgen_version: String,
    pub config: PlanConfig,
    pub catalog: Catalog,
    pub datasets: DatasetsMeta,
    pub plan_fingerprint: String,
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes")
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .with_context(|| format!("the store holds a {what} this dgen cannot decode"))
}

/// The store is held by another process (redb allows one); a running `dgen run` can still
/// answer export and status requests (see `remote`).
#[derive(Debug, thiserror::Error)]
#[error("store {} is in use by another dgen process; wait for it to finish or pass another --store", .0.display())]
pub struct StoreInUse(pub PathBuf);

/// A table that may not exist yet (a store planned before any run has no dialogues table).
fn optional<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>> {
    match txn.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn open_error(path: &Path, err: redb::DatabaseError) -> anyhow::Error {
    match err {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreInUse(path.to_path_buf()).into(),
        redb::DatabaseError::UpgradeRequired(v) => anyhow::anyhow!(
            "store {} uses redb file format {v}, which this dgen cannot read; use the dgen version that wrote it",
            path.display()
        ),
        other => anyhow::Error::new(other).context(format!(
            "{} is not a dgen store (not a redb database it can open); refusing to touch it: pass another --store",
            path.display()
        )),
    }
}

impl Store {
    /// Opens the store for planning, creating the file when it does not exist. A file that is
    /// not a dgen store is refused, never overwritten.
    pub fn create_or_open(path: &Path) -> Result<Store> {
        if path.is_dir() {
            bail!(
                "--store {} is a folder; name a file such as dgen.redb",
                path.display()
            );
        }
        let db = Database::create(path).map_err(|e| open_error(path, e))?;
        let store = Store {
            db,
            path: path.to_path_buf(),
        };
        store.check_identity(true)?;
        Ok(store)
    }

    /// Opens an existing store (status, export, run).
    pub fn open_existing(path: &Path) -> Result<Store> {
        Store::open_with_cache(path, None)
    }

    /// Opens an existing store with a page cache of at most `cache` bytes: commands that stream
    /// through a big store once (export) need little cache, and it bounds their memory.
    pub fn open_with_cache(path: &Path, cache: Option<usize>) -> Result<Store> {
        if !path.is_file() {
            bail!(
                "no store at {}; create one with `dgen plan --total_generations N` (or pass --store PATH)",
                path.display()
            );
        }
        let mut builder = Database::builder();
        if let Some(bytes) = cache {
            builder.set_cache_size(bytes);
        }
        let db = builder.open(path).map_err(|e| open_error(path, e))?;
        let store = Store {
            db,
            path: path.to_path_buf(),
        };
        store.check_identity(false)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An empty redb file is acceptable when planning; anything else must carry our meta.
    fn check_identity(&self, allow_empty: bool) -> Result<()> {
        let txn = self.db.begin_read()?;
        let tables: Vec<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
        if tables.is_empty() && allow_empty {
            return Ok(());
        }
        let foreign = || {
            anyhow::anyhow!(
                "{} is a redb database but not a dgen store; refusing to touch it: pass another --store",
                self.path.display()
            )
        };
        if !tables.iter().any(|t| t == META.name()) {
            if tables.is_empty() {
                bail!(
                    "store {} holds no plan yet; run `dgen plan --total_generations N` first",
                    self.path.display()
                );
            }
            return Err(foreign());
        }
        let meta = txn.open_table(META)?;
        match meta.get(META_FORMAT)? {
            Some(v) if v.value() == FORMAT => {}
            _ => return Err(foreign()),
        }
        let version: u32 = match meta.get(META_SCHEMA)? {
            Some(v) => v.value().parse().map_err(|_| foreign())?,
            None => return Err(foreign()),
        };
        if version > SCHEMA_VERSION {
            bail!(
                "store {} was written by a newer dgen (schema {version}); this dgen reads schema {SCHEMA_VERSION}: upgrade dgen",
                self.path.display()
            );
        }
        if version < SCHEMA_VERSION {
            bail!(
                "store {} has schema {version}, older than this dgen's {SCHEMA_VERSION}; finish it with the dgen that wrote it, or plan into a new --store",
                self.path.display()
            );
        }
        Ok(())
    }

    /// The meta of the stored plan, or `None` for a new store.
    pub fn meta(&self) -> Result<Option<Meta>> {
        let txn = self.db.begin_read()?;
        let Some(table) = optional(&txn, META)? else {
            return Ok(None);
        };
        let get = |key: &str| -> Result<String> {
            Ok(table
                .get(key)?
                .with_context(|| format!("store meta lacks `{key}`; the store is damaged"))?
                .value()
                .to_string())
        };
        let json = |key: &str| -> Result<serde_json::Value> {
            serde_json::from_str(&get(key)?).with_context(|| {
                format!("store meta `{key}` is not valid JSON; the store is damaged")
            })
        };
        Ok(Some(Meta {
            dgen_version: get(META_DGEN_VERSION)?,
            config: serde_json::from_value(json(META_CONFIG)?)?,
            catalog: serde_json::from_value(json(META_CATALOG)?)?,
            datasets: serde_json::from_value(json(META_DATASETS)?)?,
            plan_fingerprint: get(META_FINGERPRINT)?,
        }))
    }

    /// How many items are in each state.
    pub fn state_counts(&self) -> Result<BTreeMap<State, u64>> {
        let txn = self.db.begin_read()?;
        let mut counts: BTreeMap<State, u64> = State::ALL.iter().map(|s| (*s, 0)).collect();
        let Some(table) = optional(&txn, ITEM_STATE)? else {
            return Ok(counts);
        };
        for entry in table.iter()? {
            let (_, v) = entry?;
            let state: ItemState = decode(v.value(), "item state")?;
            *counts.entry(state.state).or_default() += 1;
        }
        Ok(counts)
    }

    /// Writes a new plan in one transaction, replacing any previous one.
    pub fn write_plan(
        &self,
        meta: &Meta,
        items: impl Iterator<Item = WorkItem>,
        usage: &CombinationUsage,
        persona_texts: &BTreeMap<u32, &str>,
        base_dialogues: &BTreeMap<u32, &Dialogue>,
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        for table in [ITEMS, ITEM_STATE] {
            txn.delete_table(table)?;
        }
        txn.delete_table(PERSONAS)?;
        txn.delete_table(BASE_DIALOGUES)?;
        txn.delete_table(COMBINATION_USAGE)?;
        txn.delete_table(META)?;
        {
            let mut t = txn.open_table(META)?;
            let config = serde_json::to_string(&meta.config)?;
            let catalog = meta.catalog.canonical_json();
            let datasets = serde_json::to_string(&meta.datasets)?;
            let schema = SCHEMA_VERSION.to_string();
            for (k, v) in [
                (META_FORMAT, FORMAT),
                (META_SCHEMA, schema.as_str()),
                (META_DGEN_VERSION, env!("CARGO_PKG_VERSION")),
                (META_CONFIG, config.as_str()),
                (META_CATALOG, catalog.as_str()),
                (META_DATASETS, datasets.as_str()),
                (META_FINGERPRINT, meta.plan_fingerprint.as_str()),
            ] {
                t.insert(k, v)?;
            }
        }
        {
            let mut t = txn.open_table(ITEMS)?;
            let mut states = txn.open_table(ITEM_STATE)?;
            let pending = encode(&ItemState::pending());
            let mut buf = Vec::with_capacity(256);
            for item in items {
                buf.clear();
                bincode::serde::encode_into_std_write(&item, &mut buf, bincode::config::standard())
                    .expect("encodes");
                t.insert(item.index, buf.as_slice())?;
                states.insert(item.index, pending.as_slice())?;
            }
        }
        {
            let mut t = txn.open_table(PERSONAS)?;
            for (i, text) in persona_texts {
                t.insert(*i, *text)?;
            }
        }
        {
            let mut t = txn.open_table(BASE_DIALOGUES)?;
            for (i, d) in base_dialogues {
                t.insert(*i, encode(d).as_slice())?;
            }
        }
        {
            let mut t = txn.open_table(COMBINATION_USAGE)?;
            for (size, combos) in usage {
                for (combo, count) in combos {
                    t.insert(format!("{size}/{combo}").as_str(), *count)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Calls `f` for every work item in index order, without loading them all.
    pub fn for_each_item(&self, mut f: impl FnMut(WorkItem) -> Result<()>) -> Result<()> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ITEMS)?;
        for entry in table.iter()? {
            let (_, v) = entry?;
            f(decode(v.value(), "work item")?)?;
        }
        Ok(())
    }

    pub fn personas(&self) -> Result<BTreeMap<u32, String>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PERSONAS)?;
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.insert(k.value(), v.value().to_string());
        }
        Ok(out)
    }

    pub fn combination_usage(&self) -> Result<BTreeMap<String, u64>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(COMBINATION_USAGE)?;
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.insert(k.value().to_string(), v.value());
        }
        Ok(out)
    }
}

/// What a run was started with; a later run must match where it matters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub prompt_version: String,
    pub embedding: String,
    pub model: String,
}

/// Receives the stored dialogues from [`Store::for_each_dialogue`].
pub trait DialogueSink {
    fn dialogue(&mut self, seq: u64, record: GeneratedDialogue, embedding: &[u8]) -> Result<()>;
}

/// One accepted dialogue ready to commit.
pub struct Accepted {
    pub seq: u64,
    pub record: GeneratedDialogue,
    pub embedding: Vec<f32>,
}

/// Everything one write transaction of a run commits.
#[derive(Default)]
pub struct Batch {
    pub accepted: Vec<Accepted>,
    /// More hash keys for accepted dialogues (an imported file's own hash besides dgen's).
    pub extra_hashes: Vec<([u8; 32], u64)>,
    pub states: Vec<(u64, ItemState)>,
    /// Increments.
    pub counters: BTreeMap<String, u64>,
}

impl Batch {
    pub fn count(&mut self, key: impl Into<String>, n: u64) {
        if n > 0 {
            *self.counters.entry(key.into()).or_default() += n;
        }
    }
}

pub fn embedding_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn embedding_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Store {
    pub fn run_settings(&self) -> Result<Option<RunSettings>> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let Some(v) = meta.get(META_RUN)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_str(v.value())?))
    }

    pub fn set_run_settings(&self, settings: &RunSettings) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert(META_RUN, serde_json::to_string(settings)?.as_str())?;
        txn.commit()?;
        Ok(())
    }

    pub fn item(&self, index: u64) -> Result<WorkItem> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ITEMS)?;
        let v = table
            .get(index)?
            .with_context(|| format!("work item {index} is missing from the store"))?;
        decode(v.value(), "work item")
    }

    pub fn base_dialogues(&self) -> Result<BTreeMap<u32, Dialogue>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BASE_DIALOGUES)?;
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.insert(k.value(), decode(v.value(), "base dialogue")?);
        }
        Ok(out)
    }

    /// Every item's state, in index order.
    pub fn states(&self) -> Result<Vec<(u64, ItemState)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ITEM_STATE)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((k.value(), decode(v.value(), "item state")?));
        }
        Ok(out)
    }

    pub fn counters(&self) -> Result<BTreeMap<String, u64>> {
        let txn = self.db.begin_read()?;
        let mut out = BTreeMap::new();
        let Some(table) = optional(&txn, COUNTERS)? else {
            return Ok(out);
        };
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.insert(k.value().to_string(), v.value());
        }
        Ok(out)
    }

    pub fn dialogue_count(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        match optional(&txn, DIALOGUES)? {
            Some(t) => Ok(redb::ReadableTableMetadata::len(&t)?),
            None => Ok(0),
        }
    }

    /// The next free sequence number.
    pub fn next_seq(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        match optional(&txn, DIALOGUES)? {
            Some(t) => Ok(t.last()?.map_or(0, |(k, _)| k.value() + 1)),
            None => Ok(0),
        }
    }

    /// The dedup index of every stored dialogue.
    pub fn load_index(&self, dim: usize) -> Result<DedupIndex> {
        let txn = self.db.begin_read()?;
        let mut index = DedupIndex::new(dim);
        let (hashes, embeddings) = match (txn.open_table(HASHES), txn.open_table(EMBEDDINGS)) {
            (Ok(h), Ok(e)) => (h, e),
            _ => return Ok(index),
        };
        let mut by_seq: BTreeMap<u64, Vec<[u8; 32]>> = BTreeMap::new();
        for entry in hashes.iter()? {
            let (k, v) = entry?;
            let hash: [u8; 32] = k
                .value()
                .try_into()
                .context("the store holds a hash that is not 32 bytes")?;
            by_seq.entry(v.value()).or_default().push(hash);
        }
        for entry in embeddings.iter()? {
            let (k, v) = entry?;
            let hashes = by_seq
                .remove(&k.value())
                .with_context(|| format!("dialogue {} has an embedding but no hash", k.value()))?;
            let vector = embedding_from_bytes(v.value());
            if vector.len() != dim {
                bail!(
                    "dialogue {} has a {}-dimensional embedding, expected {dim}",
                    k.value(),
                    vector.len()
                );
            }
            index.insert(&hashes, &vector);
        }
        Ok(index)
    }

    /// Commits a run's batch in one transaction: dialogues, hashes, embeddings, item states and
    /// counters land together or not at all.
    pub fn apply(&self, batch: &Batch) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut dialogues = txn.open_table(DIALOGUES)?;
            let mut hashes = txn.open_table(HASHES)?;
            let mut embeddings = txn.open_table(EMBEDDINGS)?;
            for a in &batch.accepted {
                dialogues.insert(a.seq, encode(&a.record).as_slice())?;
                hashes.insert(a.record.hash.as_slice(), a.seq)?;
                embeddings.insert(a.seq, embedding_bytes(&a.embedding).as_slice())?;
            }
            for (hash, seq) in &batch.extra_hashes {
                hashes.insert(hash.as_slice(), *seq)?;
            }
            let mut states = txn.open_table(ITEM_STATE)?;
            for (index, state) in &batch.states {
                states.insert(*index, encode(state).as_slice())?;
            }
            let mut counters = txn.open_table(COUNTERS)?;
            for (key, add) in &batch.counters {
                let now = counters.get(key.as_str())?.map_or(0, |v| v.value());
                counters.insert(key.as_str(), now + add)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Feeds `sink` from one consistent snapshot: every dialogue in commit order with its
    /// embedding bytes. (No count up front: a sink that needs one counts what it writes.)
    pub fn for_each_dialogue(&self, sink: &mut impl DialogueSink) -> Result<()> {
        let txn = self.db.begin_read()?;
        let (dialogues, embeddings) = match (txn.open_table(DIALOGUES), txn.open_table(EMBEDDINGS))
        {
            (Ok(d), Ok(e)) => (d, e),
            _ => return Ok(()),
        };
        for (d, e) in dialogues.iter()?.zip(embeddings.iter()?) {
            let (seq, record) = d?;
            let (eseq, embedding) = e?;
            if seq.value() != eseq.value() {
                bail!(
                    "the store's dialogues and embeddings disagree at {}",
                    seq.value()
                );
            }
            sink.dialogue(
                seq.value(),
                decode(record.value(), "dialogue")?,
                embedding.value(),
            )?;
        }
        Ok(())
    }
}
