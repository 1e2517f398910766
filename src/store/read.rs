//! Queries: each reads one snapshot (a read transaction) of the store.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use redb::{ReadableTable, ReadableTableMetadata};

use super::tables::*;
use super::types::{decode, embedding_from_bytes};
use super::{
    DialogueSink, ItemState, Meta, RunEndpoint, RunSettings, State, Store, StoredDialogue,
};
use crate::dataset::Dialogue;
use crate::dedup::DedupIndex;
use crate::llm::limiter::Sample;
use crate::plan::WorkItem;
use crate::quality::QualityRecord;
use crate::record::judge::JudgeScore;
use crate::record::GeneratedDialogue;

/// An in-flight sample as stored: in flight then limit, little-endian u32 each. A value of
/// another length is not ours to read: `None`, never a panic.
fn sample(at_ms: u64, value: &[u8]) -> Option<Sample> {
    let bytes = <[u8; 8]>::try_from(value).ok()?;
    Some(Sample {
        at_ms,
        in_flight: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        limit: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    })
}

/// Vectors loaded between projections of the dedup index (100 MB of them in full precision).
const LOAD_BATCH: usize = 65_536;
/// Embeddings handed to the index builder at a time (6 MB).
const LOAD_CHUNK: usize = 4096;

/// What the store's reader hands the index builder.
enum Chunk {
    Hashes(Vec<[u8; 32]>),
    /// Sequence numbers, and their embeddings one after the other.
    Rows(Vec<u64>, Vec<f32>),
}

/// Reads every hash, then every embedding, checking that each embedding has a hash and the
/// dimension `dim`, and sends them on in chunks. A send fails only if the builder is gone.
fn read_for_index(
    hashes: &redb::ReadOnlyTable<&'static [u8], u64>,
    embeddings: &redb::ReadOnlyTable<u64, &'static [u8]>,
    dim: usize,
    tx: &std::sync::mpsc::SyncSender<Chunk>,
) -> Result<()> {
    let gone = || anyhow::anyhow!("the dedup index builder stopped");
    // The index needs the set of hashes, and for each embedding only that it has one.
    let mut hashed: Vec<u64> = Vec::with_capacity(usize::try_from(hashes.len()?).unwrap_or(0));
    let mut chunk = Vec::with_capacity(LOAD_CHUNK);
    for entry in hashes.iter()? {
        let (k, v) = entry?;
        let hash: [u8; 32] = k
            .value()
            .try_into()
            .context("the store holds a hash that is not 32 bytes")?;
        chunk.push(hash);
        if chunk.len() == LOAD_CHUNK {
            tx.send(Chunk::Hashes(std::mem::take(&mut chunk)))
                .map_err(|_| gone())?;
        }
        hashed.push(v.value());
    }
    tx.send(Chunk::Hashes(chunk)).map_err(|_| gone())?;
    hashed.sort_unstable();
    let mut hashed = hashed.into_iter().peekable();
    let (mut ids, mut rows) = (Vec::new(), Vec::new());
    for entry in embeddings.iter()? {
        let (k, v) = entry?;
        let seq = k.value();
        while hashed.next_if(|s| *s < seq).is_some() {}
        if hashed.peek() != Some(&seq) {
            bail!("dialogue {seq} has an embedding but no hash");
        }
        let bytes = v.value();
        if bytes.len() != 4 * dim {
            bail!(
                "dialogue {seq} has a {}-dimensional embedding, expected {dim}",
                bytes.len() / 4
            );
        }
        ids.push(seq);
        rows.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        if ids.len() == LOAD_CHUNK {
            tx.send(Chunk::Rows(
                std::mem::take(&mut ids),
                std::mem::take(&mut rows),
            ))
            .map_err(|_| gone())?;
        }
    }
    tx.send(Chunk::Rows(ids, rows)).map_err(|_| gone())
}

impl Store {
    /// The meta of the stored plan, or `None` for a new store.
    pub fn meta(&self) -> Result<Option<Meta>> {
        let txn = self.read()?;
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
        let optional_json = |key: &str| -> Result<Option<serde_json::Value>> {
            match table.get(key)? {
                None => Ok(None),
                Some(v) => serde_json::from_str(v.value()).map(Some).with_context(|| {
                    format!("store meta `{key}` is not valid JSON; the store is damaged")
                }),
            }
        };
        Ok(Some(Meta {
            shard: optional_json(META_SHARD)?
                .map(serde_json::from_value)
                .transpose()?,
            merge: optional_json(META_MERGE)?
                .map(serde_json::from_value)
                .transpose()?,
            dgen_version: get(META_DGEN_VERSION)?,
            config: serde_json::from_value(json(META_CONFIG)?)?,
            catalog: serde_json::from_value(json(META_CATALOG)?)?,
            datasets: serde_json::from_value(json(META_DATASETS)?)?,
            plan_fingerprint: get(META_FINGERPRINT)?,
        }))
    }

    /// A meta entry, if set (for entries only one command reads, such as `dgen merge`'s).
    pub fn meta_entry(&self, key: &str) -> Result<Option<String>> {
        let txn = self.read()?;
        let Some(table) = optional(&txn, META)? else {
            return Ok(None);
        };
        let value = table.get(key)?.map(|v| v.value().to_string());
        Ok(value)
    }

    /// The work items with indexes in `range`, in index order.
    pub fn items_in(&self, range: std::ops::Range<u64>) -> Result<Vec<WorkItem>> {
        let txn = self.read()?;
        let table = txn.open_table(ITEMS)?;
        let mut out = Vec::new();
        for entry in table.range(range)? {
            let (_, v) = entry?;
            out.push(decode(v.value(), "work item")?);
        }
        Ok(out)
    }

    /// How many items are in each state.
    pub fn state_counts(&self) -> Result<BTreeMap<State, u64>> {
        let txn = self.read()?;
        let mut counts: BTreeMap<State, u64> = State::ALL.iter().map(|s| (*s, 0)).collect();
        let Some(table) = optional(&txn, ITEM_STATE)? else {
            return Ok(counts);
        };
        for entry in table.iter()? {
            let (_, v) = entry?;
            let state = ItemState::decode(v.value())?;
            *counts.entry(state.state).or_default() += 1;
        }
        Ok(counts)
    }

    /// Calls `f` for every work item in index order, without loading them all.
    pub fn for_each_item(&self, mut f: impl FnMut(WorkItem) -> Result<()>) -> Result<()> {
        let txn = self.read()?;
        let table = txn.open_table(ITEMS)?;
        for entry in table.iter()? {
            let (_, v) = entry?;
            f(decode(v.value(), "work item")?)?;
        }
        Ok(())
    }

    /// One persona of the plan, by its index in the persona dataset.
    pub fn persona(&self, index: u32) -> Result<Option<String>> {
        let txn = self.read()?;
        let table = txn.open_table(PERSONAS)?;
        let persona = table.get(index)?.map(|v| v.value().to_string());
        Ok(persona)
    }

    pub fn personas(&self) -> Result<BTreeMap<u32, String>> {
        let txn = self.read()?;
        let table = txn.open_table(PERSONAS)?;
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.insert(k.value(), v.value().to_string());
        }
        Ok(out)
    }

    pub fn combination_usage(&self) -> Result<BTreeMap<String, u64>> {
        let txn = self.read()?;
        let table = txn.open_table(COMBINATION_USAGE)?;
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.insert(k.value().to_string(), v.value());
        }
        Ok(out)
    }

    pub fn run_settings(&self) -> Result<Option<RunSettings>> {
        let txn = self.read()?;
        let meta = txn.open_table(META)?;
        let Some(v) = meta.get(META_RUN)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_str(v.value())?))
    }

    pub fn run_endpoint(&self) -> Result<Option<RunEndpoint>> {
        let txn = self.read()?;
        let meta = txn.open_table(META)?;
        let Some(v) = meta.get(META_RUN_ENDPOINT)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_str(v.value())?))
    }

    /// The last run's `--max_cost`, if it had one.
    pub fn max_cost(&self) -> Result<Option<f64>> {
        let txn = self.read()?;
        let meta = txn.open_table(META)?;
        let Some(v) = meta.get(META_MAX_COST)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_str(v.value())?))
    }

    /// The dialogue stored under `seq`.
    pub fn dialogue(&self, seq: u64) -> Result<GeneratedDialogue> {
        let txn = self.read()?;
        let table = txn.open_table(DIALOGUES)?;
        let v = table
            .get(seq)?
            .with_context(|| format!("dialogue {seq} is missing from the store"))?;
        decode(v.value(), "dialogue")
    }

    /// For `dgen judge`: how many dialogues the store holds, and the sequence numbers of those
    /// without a score (with `rescore`, also those scored by another model or rubric version),
    /// in commit order. One snapshot; only the numbers are kept.
    pub fn judge_todo(
        &self,
        model: &str,
        prompt_version: &str,
        rescore: bool,
    ) -> Result<(u64, Vec<u64>)> {
        let txn = self.read()?;
        let Some(dialogues) = optional(&txn, DIALOGUES)? else {
            return Ok((0, Vec::new()));
        };
        let judge = optional(&txn, JUDGE)?;
        let (mut total, mut todo) = (0u64, Vec::new());
        for entry in dialogues.iter()? {
            let seq = entry?.0.value();
            total += 1;
            let stored = match &judge {
                Some(t) => t
                    .get(seq)?
                    .map(|v| JudgeScore::decode(v.value()))
                    .transpose()?,
                None => None,
            };
            let wanted = match stored {
                None => true,
                Some(score) => rescore && !score.is_by(model, prompt_version),
            };
            if wanted {
                todo.push(seq);
            }
        }
        Ok((total, todo))
    }

    pub fn item(&self, index: u64) -> Result<WorkItem> {
        let txn = self.read()?;
        let table = txn.open_table(ITEMS)?;
        let v = table
            .get(index)?
            .with_context(|| format!("work item {index} is missing from the store"))?;
        decode(v.value(), "work item")
    }

    pub fn base_dialogues(&self) -> Result<BTreeMap<u32, Dialogue>> {
        let txn = self.read()?;
        let table = txn.open_table(BASE_DIALOGUES)?;
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.insert(k.value(), decode(v.value(), "base dialogue")?);
        }
        Ok(out)
    }

    /// One item's state; `None` when the store has none for it.
    pub fn item_state(&self, index: u64) -> Result<Option<ItemState>> {
        let txn = self.read()?;
        let Some(table) = optional(&txn, ITEM_STATE)? else {
            return Ok(None);
        };
        let state = table.get(index)?;
        state.map(|v| ItemState::decode(v.value())).transpose()
    }

    /// Every item's state, in index order.
    pub fn states(&self) -> Result<Vec<(u64, ItemState)>> {
        let txn = self.read()?;
        let table = txn.open_table(ITEM_STATE)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((k.value(), ItemState::decode(v.value())?));
        }
        Ok(out)
    }

    /// Calls `f` for every item's state in index order, without loading them all.
    pub fn for_each_state(&self, mut f: impl FnMut(u64, ItemState)) -> Result<()> {
        let txn = self.read()?;
        let Some(table) = optional(&txn, ITEM_STATE)? else {
            return Ok(());
        };
        for entry in table.iter()? {
            let (k, v) = entry?;
            f(k.value(), ItemState::decode(v.value())?);
        }
        Ok(())
    }

    /// Failed items by the kind of their last rejection.
    pub fn failure_reasons(&self) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        self.for_each_state(|_, state| {
            if state.state == State::Failed {
                let reason = state.reason.unwrap_or_else(|| "unrecorded".into());
                *out.entry(reason).or_default() += 1;
            }
        })?;
        Ok(out)
    }

    pub fn counters(&self) -> Result<BTreeMap<String, u64>> {
        let txn = self.read()?;
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

    /// The in-flight time series of every run so far, in time order (empty before a run).
    /// The latest in-flight sample, if any run recorded one.
    pub fn last_in_flight(&self) -> Result<Option<Sample>> {
        let txn = self.read()?;
        let Some(table) = optional(&txn, IN_FLIGHT)? else {
            return Ok(None);
        };
        let Some((k, v)) = table.last()? else {
            return Ok(None);
        };
        Ok(sample(k.value(), v.value()))
    }

    pub fn in_flight_series(&self) -> Result<Vec<Sample>> {
        let txn = self.read()?;
        let Some(table) = optional(&txn, IN_FLIGHT)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.extend(sample(k.value(), v.value()));
        }
        Ok(out)
    }

    pub fn dialogue_count(&self) -> Result<u64> {
        let txn = self.read()?;
        match optional(&txn, DIALOGUES)? {
            Some(t) => Ok(t.len()?),
            None => Ok(0),
        }
    }

    /// The next free sequence number.
    pub fn next_seq(&self) -> Result<u64> {
        let txn = self.read()?;
        match optional(&txn, DIALOGUES)? {
            Some(t) => Ok(t.last()?.map_or(0, |(k, _)| k.value() + 1)),
            None => Ok(0),
        }
    }

    /// One stored dialogue's embedding, for the dedup check's full-precision comparison.
    pub fn embedding(&self, seq: u64) -> Result<Vec<f32>> {
        let txn = self.read()?;
        let table = txn.open_table(EMBEDDINGS)?;
        let bytes = table
            .get(seq)?
            .with_context(|| format!("dialogue {seq} has no stored embedding"))?;
        Ok(embedding_from_bytes(bytes.value()))
    }

    /// The dedup index of every stored dialogue, keyed by sequence number. The tables are read
    /// here while another thread builds the index from what was read, a chunk at a time.
    pub fn load_index(&self, dim: usize) -> Result<DedupIndex> {
        let txn = self.read()?;
        let mut index = DedupIndex::new(dim);
        let (hashes, embeddings) = match (txn.open_table(HASHES), txn.open_table(EMBEDDINGS)) {
            (Ok(h), Ok(e)) => (h, e),
            _ => return Ok(index),
        };
        index.reserve(usize::try_from(embeddings.len()?).unwrap_or(0));
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
        std::thread::scope(|s| {
            let builder = s.spawn(move || {
                for chunk in rx {
                    match chunk {
                        Chunk::Hashes(hashes) => hashes.into_iter().for_each(|h| index.add_hash(h)),
                        Chunk::Rows(ids, rows) => {
                            for (id, v) in ids.iter().zip(rows.chunks_exact(dim)) {
                                index.push(*id, &[], v);
                                // Projected a batch at a time, so full-precision copies never
                                // pile up.
                                if index.len().is_multiple_of(LOAD_BATCH) {
                                    index.finish();
                                }
                            }
                        }
                    }
                }
                index.finish();
                index
            });
            let read = read_for_index(&hashes, &embeddings, dim, &tx);
            drop(tx);
            let index = builder.join().expect("building the dedup index");
            read.map(|()| index)
        })
    }

    /// Every dialogue's (item index, sequence number), ordered by item index, then sequence
    /// number, with the dialogues of no item (imported) last: the order `dgen merge` takes a
    /// shard's dialogues in.
    pub fn dialogue_order(&self) -> Result<Vec<(Option<u64>, u64)>> {
        let txn = self.read()?;
        let Some(table) = optional(&txn, DIALOGUES)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let record: GeneratedDialogue = decode(v.value(), "dialogue")?;
            out.push((record.item_index, k.value()));
        }
        out.sort_by_key(|&(item, seq)| (item.unwrap_or(u64::MAX), seq));
        Ok(out)
    }

    /// The dialogues under `seqs`, in that order, with everything stored beside them.
    pub fn dialogues_at(&self, seqs: &[u64]) -> Result<Vec<StoredDialogue>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.read()?;
        let dialogues = txn.open_table(DIALOGUES)?;
        let embeddings = txn.open_table(EMBEDDINGS)?;
        let quality = optional(&txn, QUALITY)?;
        let judge = optional(&txn, JUDGE)?;
        let annotations = optional(&txn, ANNOTATIONS)?;
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            let missing =
                || format!("dialogue {seq} is missing from the store; the store is damaged");
            let record = decode(
                dialogues.get(seq)?.with_context(missing)?.value(),
                "dialogue",
            )?;
            let embedding = embedding_from_bytes(
                embeddings
                    .get(seq)?
                    .with_context(|| {
                        format!("dialogue {seq} has no embedding; the store is damaged")
                    })?
                    .value(),
            );
            let mut checks = match &quality {
                Some(t) => t
                    .get(seq)?
                    .map(|v| QualityRecord::decode(v.value()))
                    .transpose()?,
                None => None,
            };
            if let Some(annotation) = annotation_at(annotations.as_ref(), seq)? {
                checks.get_or_insert_with(QualityRecord::default).annotation = Some(annotation);
            }
            let score = match &judge {
                Some(t) => t
                    .get(seq)?
                    .map(|v| JudgeScore::decode(v.value()))
                    .transpose()?,
                None => None,
            };
            out.push(StoredDialogue {
                seq,
                record,
                embedding,
                checks,
                judge: score,
            });
        }
        Ok(out)
    }

    /// Feeds `sink` from one consistent snapshot: every dialogue in commit order with its
    /// embedding bytes and its quality-check results (none where the store has no entry, as in
    /// stores written before the checks) with its judge score when it has one. (No count up front: a sink that needs one counts
    /// what it writes.)
    pub fn for_each_dialogue(&self, sink: &mut impl DialogueSink) -> Result<()> {
        let txn = self.read()?;
        let judge = optional(&txn, JUDGE)?;
        sink.begin(match &judge {
            Some(t) => t.len()?,
            None => 0,
        })?;
        let (dialogues, embeddings) = match (txn.open_table(DIALOGUES), txn.open_table(EMBEDDINGS))
        {
            (Ok(d), Ok(e)) => (d, e),
            _ => return Ok(()),
        };
        let quality = optional(&txn, QUALITY)?;
        let annotations = optional(&txn, ANNOTATIONS)?;
        for (d, e) in dialogues.iter()?.zip(embeddings.iter()?) {
            let (seq, record) = d?;
            let (eseq, embedding) = e?;
            if seq.value() != eseq.value() {
                bail!(
                    "the store's dialogues and embeddings disagree at {}",
                    seq.value()
                );
            }
            let checks = match &quality {
                Some(t) => t
                    .get(seq.value())?
                    .map(|v| QualityRecord::decode(v.value())),
                None => None,
            };
            let mut checks = checks.transpose()?.unwrap_or_default();
            checks.annotation = annotation_at(annotations.as_ref(), seq.value())?;
            if let Some(t) = &judge {
                if let Some(v) = t.get(seq.value())? {
                    checks.judge = Some(JudgeScore::decode(v.value())?);
                }
            }
            sink.dialogue(
                seq.value(),
                decode(record.value(), "dialogue")?,
                embedding.value(),
                checks,
            )?;
        }
        Ok(())
    }
}

/// The annotation stored for dialogue `seq`, if the store has the table and the entry.
fn annotation_at(
    table: Option<&redb::ReadOnlyTable<u64, &[u8]>>,
    seq: u64,
) -> Result<Option<Box<crate::annotation::Annotation>>> {
    let Some(table) = table else {
        return Ok(None);
    };
    table
        .get(seq)?
        .map(|v| crate::annotation::Annotation::decode(v.value()).map(Box::new))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Usage;
    use crate::quality::{Check, Finding};
    use crate::record::GeneratedDialogue;
    use crate::store::{Accepted, Batch};

    fn record(n: u8) -> GeneratedDialogue {
        GeneratedDialogue {
            item_index: Some(u64::from(n)),
            attempt: 0,
            dialogue_id: format!("d{n}"),
            services: vec!["taxi".into()],
            turns: Vec::new(),
            user_emotion: "Calm".into(),
            assistant_emotion: "Patient".into(),
            scenario_category: "ride_booking".into(),
            generated_scenario: String::new(),
            time_slot: (5, 9, "Early Morning".into()),
            regions: vec!["Oslo".into()],
            resolution_status: "Resolved".into(),
            persona: String::new(),
            specific_time: "06:00".into(),
            base_dialogue_id: "B".into(),
            model: "m".into(),
            temperature: 0.7,
            top_p: 0.9,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: u64::from(n),
            usage: Usage::default(),
            hash: [n; 32],
        }
    }

    struct Collect(Vec<(u64, QualityRecord)>);

    impl DialogueSink for Collect {
        fn dialogue(
            &mut self,
            seq: u64,
            _record: GeneratedDialogue,
            _embedding: &[u8],
            quality: QualityRecord,
        ) -> Result<()> {
            self.0.push((seq, quality));
            Ok(())
        }
    }

    fn read_back(store: &Store) -> Vec<(u64, QualityRecord)> {
        let mut sink = Collect(Vec::new());
        store.for_each_dialogue(&mut sink).unwrap();
        sink.0
    }

    #[test]
    fn quality_findings_read_back_and_a_store_without_the_table_reads_as_unflagged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create_or_open(&dir.path().join("s.redb")).unwrap();
        let flagged = QualityRecord {
            checks: vec![Finding {
                check: Check::OffTopic,
                detail: "none of the item's services (taxi) is mentioned".into(),
            }],
            judge: None,
            annotation: None,
        };
        let mut batch = Batch::default();
        for (seq, quality) in [(0, Some(flagged.clone())), (1, None)] {
            batch.accepted.push(Accepted {
                seq,
                record: record(seq as u8),
                embedding: vec![0.0; 4],
                quality,
            });
        }
        store.apply(&batch).unwrap();
        let none = QualityRecord::default();
        assert_eq!(read_back(&store), vec![(0, flagged), (1, none.clone())]);
        // A store written before the checks existed has no quality table at all.
        let txn = store.write().unwrap();
        txn.delete_table(QUALITY).unwrap();
        txn.commit().unwrap();
        assert_eq!(read_back(&store), vec![(0, none.clone()), (1, none)]);
    }

    /// The index is read on one thread and built on another, in chunks: every dialogue arrives,
    /// in order, and a store that does not fit is refused with what is wrong, not a hang.
    #[test]
    fn the_index_loads_across_chunks_and_a_bad_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create_or_open(&dir.path().join("s.redb")).unwrap();
        let n = LOAD_CHUNK as u64 * 2 + 5;
        // Random unit vectors in 16 dimensions: no two of them are nearly alike.
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
        let vectors: Vec<Vec<f32>> = (0..n)
            .map(|_| {
                let v: Vec<f32> = (0..16)
                    .map(|_| rand::Rng::random_range(&mut rng, -1.0f32..1.0))
                    .collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect();
        let mut batch = Batch::default();
        for (seq, v) in (0..n).zip(&vectors) {
            let mut record = record(0);
            record.hash = crate::dedup::sha256(&seq.to_string());
            batch.accepted.push(Accepted {
                seq,
                record,
                embedding: v.clone(),
                quality: None,
            });
        }
        store.apply(&batch).unwrap();
        let index = store.load_index(16).unwrap();
        assert_eq!(index.len() as u64, n);
        for seq in [0, LOAD_CHUNK as u64, n - 1] {
            assert!(index.contains_hash(&crate::dedup::sha256(&seq.to_string())));
            let found = index
                .similar(&vectors[seq as usize], 0.99, |id| store.embedding(id))
                .unwrap();
            assert_eq!(found.map(|f| f.0), Some(seq));
        }

        let Err(err) = store.load_index(8) else {
            panic!("a store of 16-dimensional embeddings loaded as 8")
        };
        assert!(
            format!("{err:#}").contains("dialogue 0 has a 16-dimensional embedding, expected 8"),
            "{err:#}"
        );
        let txn = store.write().unwrap();
        {
            let mut hashes = txn.open_table(HASHES).unwrap();
            hashes
                .remove(crate::dedup::sha256(&(LOAD_CHUNK + 1).to_string()).as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
        let Err(err) = store.load_index(16) else {
            panic!("an embedding without its hash was loaded")
        };
        assert!(
            format!("{err:#}").contains(&format!(
                "dialogue {} has an embedding but no hash",
                LOAD_CHUNK + 1
            )),
            "{err:#}"
        );
    }
}
