//! Writes: a plan, the run settings, and a run's batches, each in one write transaction.

use std::collections::BTreeMap;

use anyhow::Result;
use redb::ReadableTable;

use super::tables::*;
use super::types::{embedding_bytes, encode};
use super::{Batch, ItemState, Meta, RunEndpoint, RunSettings, Store, SCHEMA_VERSION};
use crate::dataset::Dialogue;
use crate::plan::{CombinationUsage, WorkItem};
use crate::quality::QualityRecord;

impl Store {
    /// Writes a new plan in one transaction, replacing any previous one.
    pub fn write_plan(
        &self,
        meta: &Meta,
        items: impl Iterator<Item = Result<WorkItem>>,
        usage: &CombinationUsage,
        persona_texts: &BTreeMap<u32, &str>,
        base_dialogues: &BTreeMap<u32, &Dialogue>,
    ) -> Result<()> {
        let txn = self.write()?;
        for table in [ITEMS, ITEM_STATE] {
            txn.delete_table(table)?;
        }
        txn.delete_table(PERSONAS)?;
        txn.delete_table(BASE_DIALOGUES)?;
        txn.delete_table(COMBINATION_USAGE)?;
        // A new plan starts its own account: the old plan's calls, tokens and rejections are
        // not this plan's.
        txn.delete_table(COUNTERS)?;
        txn.delete_table(IN_FLIGHT)?;
        // Batches of the old plan answer its items, not this plan's.
        txn.delete_table(BATCH_JOBS)?;
        txn.delete_table(BATCH_SCENARIOS)?;
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
            if let Some(shard) = &meta.shard {
                t.insert(META_SHARD, serde_json::to_string(shard)?.as_str())?;
            }
            if let Some(merge) = &meta.merge {
                t.insert(META_MERGE, serde_json::to_string(merge)?.as_str())?;
            }
        }
        {
            let mut t = txn.open_table(ITEMS)?;
            let mut states = txn.open_table(ITEM_STATE)?;
            let pending = encode(&ItemState::pending());
            let mut buf = Vec::with_capacity(256);
            for item in items {
                let item = item?;
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

    pub fn set_run_settings(&self, settings: &RunSettings) -> Result<()> {
        let txn = self.write()?;
        txn.open_table(META)?
            .insert(META_RUN, serde_json::to_string(settings)?.as_str())?;
        txn.commit()?;
        Ok(())
    }

    pub fn set_run_endpoint(&self, endpoint: &RunEndpoint) -> Result<()> {
        let txn = self.write()?;
        txn.open_table(META)?
            .insert(META_RUN_ENDPOINT, serde_json::to_string(endpoint)?.as_str())?;
        txn.commit()?;
        Ok(())
    }

    /// Records the run's `--max_cost` (or that it has none), for `dgen status`.
    pub fn set_max_cost(&self, usd: Option<f64>) -> Result<()> {
        let txn = self.write()?;
        {
            let mut meta = txn.open_table(META)?;
            match usd {
                Some(usd) => {
                    meta.insert(META_MAX_COST, serde_json::to_string(&usd)?.as_str())?;
                }
                None => {
                    meta.remove(META_MAX_COST)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Commits a run's batch in one transaction: dialogues, hashes, embeddings, quality-check
    /// results, judge scores, item states and counters land together or not at all.
    pub fn apply(&self, batch: &Batch) -> Result<()> {
        let txn = self.write()?;
        {
            let mut dialogues = txn.open_table(DIALOGUES)?;
            let mut hashes = txn.open_table(HASHES)?;
            let mut embeddings = txn.open_table(EMBEDDINGS)?;
            let mut quality = txn.open_table(QUALITY)?;
            let mut judge = txn.open_table(JUDGE)?;
            for a in &batch.accepted {
                dialogues.insert(a.seq, encode(&a.record).as_slice())?;
                hashes.insert(a.record.hash.as_slice(), a.seq)?;
                embeddings.insert(a.seq, embedding_bytes(&a.embedding).as_slice())?;
                if let Some(q) = &a.quality {
                    // The judge's score has its own table, which `dgen judge` also writes.
                    let checks = QualityRecord {
                        checks: q.checks.clone(),
                        judge: None,
                        annotation: None,
                    };
                    quality.insert(a.seq, checks.encode().as_slice())?;
                    if let Some(score) = &q.judge {
                        judge.insert(a.seq, score.encode().as_slice())?;
                    }
                    // Opened only for an annotated dialogue, so a plain store never has the table.
                    if let Some(annotation) = &q.annotation {
                        txn.open_table(ANNOTATIONS)?
                            .insert(a.seq, annotation.encode().as_slice())?;
                    }
                }
            }
            for (seq, score) in &batch.judged {
                judge.insert(*seq, score.encode().as_slice())?;
            }
            for (hash, seq) in &batch.extra_hashes {
                hashes.insert(hash.as_slice(), *seq)?;
            }
            let mut states = txn.open_table(ITEM_STATE)?;
            for (index, state) in &batch.states {
                states.insert(*index, encode(state).as_slice())?;
            }
            if !batch.in_flight.is_empty() {
                let mut series = txn.open_table(IN_FLIGHT)?;
                for p in &batch.in_flight {
                    let mut value = [0u8; 8];
                    value[..4].copy_from_slice(&p.in_flight.to_le_bytes());
                    value[4..].copy_from_slice(&p.limit.to_le_bytes());
                    series.insert(p.at_ms, value.as_slice())?;
                }
            }
            if !batch.batch_jobs.is_empty() {
                let mut jobs = txn.open_table(BATCH_JOBS)?;
                for job in &batch.batch_jobs {
                    jobs.insert(job.id, job.encode().as_slice())?;
                }
            }
            if !batch.scenarios.is_empty() {
                let mut scenarios = txn.open_table(BATCH_SCENARIOS)?;
                for (item, scenario) in &batch.scenarios {
                    match scenario {
                        Some(s) => {
                            scenarios.insert(*item, serde_json::to_vec(s)?.as_slice())?;
                        }
                        None => {
                            scenarios.remove(*item)?;
                        }
                    }
                }
            }
            if !batch.meta.is_empty() {
                let mut meta = txn.open_table(META)?;
                for (key, value) in &batch.meta {
                    meta.insert(key.as_str(), value.as_str())?;
                }
            }
            let mut counters = txn.open_table(COUNTERS)?;
            for (key, add) in &batch.counters {
                let now = counters.get(key.as_str())?.map_or(0, |v| v.value());
                counters.insert(key.as_str(), now.saturating_add(*add))?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}
