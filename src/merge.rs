//! `dgen merge`: the shard stores of one plan (`dgen plan --shard I/K`) into one ordinary store.
//!
//! The shards are checked to be every shard of one full plan, once, with no provider batch still
//! in flight (a `dgen run --batch` pass that has not collected it); their items together must
//! hash to the full plan's fingerprint, and are written as that plan. Then each shard's
//! dialogues are taken in a fixed order — shard index, then item index, imported ones last —
//! through the same uniqueness rule as `dgen run`'s writer, so duplicates across shards are
//! dropped the same way every time, and their items are left pending for `dgen run` to top up.
//!
//! The plan is written under `ALL.redb.partial-<pid>` and renamed into place; then each chunk of a
//! shard is one transaction that also records how far the merge got, in the merged store's meta
//! table: a merge cut short (even by `kill -9`) goes on where it stopped when run again, and
//! merging a shard a second time adds nothing.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::dataset::Dialogue;
use crate::dedup::{self, DedupIndex, Duplicate};
use crate::embed;
use crate::plan::{CombinationUsage, Fingerprinter, WorkItem};
use crate::record;
use crate::store::{
    Accepted, Batch, ItemState, MergeMeta, Meta, ShardMeta, State, Store, StoredDialogue,
};

/// A shard store opened to read, with its plan.
pub struct ShardStore {
    pub path: PathBuf,
    pub store: Store,
    pub meta: Meta,
    pub shard: ShardMeta,
}

/// Page cache for each shard store: they are read once, front to back.
const SHARD_CACHE: usize = 16 << 20;

/// Items read from the shards at a time while the full plan is assembled.
const ITEM_CHUNK: u64 = 4096;

/// Opens the shard stores and checks that they are every shard of one full plan, once each;
/// returns them in shard order.
pub fn open_shards(paths: &[PathBuf]) -> Result<Vec<ShardStore>> {
    let mut shards = Vec::with_capacity(paths.len());
    for path in paths {
        let store = Store::open_read_only(path, Some(SHARD_CACHE))?;
        let meta = store
            .meta()?
            .with_context(|| format!("{} holds no plan", path.display()))?;
        let Some(shard) = meta.shard.clone() else {
            bail!(
                "{} is not a shard store (it was planned without --shard); dgen merge takes the stores of `dgen plan --shard I/K`",
                path.display()
            );
        };
        store.verify_plan(&meta)?;
        shards.push(ShardStore {
            path: path.clone(),
            store,
            meta,
            shard,
        });
    }
    let (first, rest) = shards.split_first().expect("clap requires a shard");
    for other in rest {
        let (a, b) = (&first.shard, &other.shard);
        if a.full_fingerprint != b.full_fingerprint {
            bail!(
                "{} and {} are shards of different plans (full plan fingerprints {} and {}): shards to merge must be planned from the same inputs with the same seed and settings",
                first.path.display(),
                other.path.display(),
                a.full_fingerprint,
                b.full_fingerprint
            );
        }
        if a.count != b.count {
            bail!(
                "{} is shard {}/{} but {} is shard {}/{}: the plan was split two ways; merge the shards of one split",
                first.path.display(),
                a.index,
                a.count,
                other.path.display(),
                b.index,
                b.count
            );
        }
    }
    let count = first.shard.count;
    shards.sort_by_key(|s| s.shard.index);
    for pair in shards.windows(2) {
        if pair[0].shard.index == pair[1].shard.index {
            bail!(
                "{} and {} are both shard {}/{}: pass each shard once",
                pair[0].path.display(),
                pair[1].path.display(),
                pair[0].shard.index,
                pair[0].shard.count
            );
        }
    }
    if shards.len() as u64 != u64::from(count) {
        let missing: Vec<String> = (0..count)
            .filter(|i| !shards.iter().any(|s| s.shard.index == *i))
            .map(|i| format!("{i}/{count}"))
            .collect();
        bail!(
            "shard {} missing: a merge needs all {count} shards of the plan (a shard whose job failed can be finished with `dgen run --store SHARD.redb`)",
            missing.join(", ")
        );
    }
    let mut settings = None;
    for s in &shards {
        let Some(run) = s.store.run_settings()? else {
            continue;
        };
        match &settings {
            None => settings = Some((s.path.clone(), run)),
            Some((path, first)) if *first != run => bail!(
                "{} was generated with {first:?} but {} with {run:?}: the shards must share model, prompts and embedding to be merged",
                path.display(),
                s.path.display()
            ),
            Some(_) => {}
        }
    }
    refuse_batches_in_flight(&shards)?;
    Ok(shards)
}

/// A shard whose `dgen run --batch` ended a pass with provider batches still running (a Job
/// without `--wait` completes after one pass) holds their items as pending: merged now, the
/// top-up run would buy them online while the provider still answers the batches, and their
/// answers would never be collected. Every such shard is named, with the way out.
fn refuse_batches_in_flight(shards: &[ShardStore]) -> Result<()> {
    let mut named = Vec::new();
    for s in shards {
        let open: Vec<_> = s
            .store
            .batch_jobs()?
            .into_iter()
            .filter(|j| !j.collected)
            .collect();
        if open.is_empty() {
            continue;
        }
        let requests: usize = open.iter().map(|j| j.requests.len()).sum();
        let jobs: Vec<String> = open
            .iter()
            .map(|j| {
                let id = j
                    .batch_id
                    .as_deref()
                    .map_or(String::new(), |b| format!(" {b}"));
                format!("#{} {}{id} {}", j.id, j.stage.name(), j.phase())
            })
            .collect();
        named.push(format!(
            "shard {}/{} ({}): {requests} requests in {} in flight ({})",
            s.shard.index,
            s.shard.count,
            s.path.display(),
            match open.len() {
                1 => "1 batch".to_string(),
                n => format!("{n} batches"),
            },
            jobs.join(", ")
        ));
    }
    if named.is_empty() {
        return Ok(());
    }
    bail!(
        "not merged: provider batches are in flight in these shards, and a merge would leave their items pending for the top-up run to buy again online:\n  {}\nCollect them first: run `dgen --store SHARD.redb run --batch --wait` (with the shard's other run flags) on each shard named, or wait until its own runs have collected them; then merge again",
        named.join("\n  ")
    );
}

/// The full plan's items in index order, read from the shards a chunk at a time.
struct UnionItems<'a> {
    shards: &'a [ShardStore],
    total: u64,
    next: u64,
    buf: VecDeque<WorkItem>,
}

impl UnionItems<'_> {
    fn fill(&mut self) -> Result<()> {
        let (lo, hi) = (self.next, (self.next + ITEM_CHUNK).min(self.total));
        let mut items = Vec::with_capacity((hi - lo) as usize);
        for s in self.shards {
            for item in s.store.items_in(lo..hi)? {
                if !s.shard.shard().holds(item.index) {
                    bail!(
                        "{} holds item {}, which is not shard {}/{}'s; the store is damaged",
                        s.path.display(),
                        item.index,
                        s.shard.index,
                        s.shard.count
                    );
                }
                items.push(item);
            }
        }
        items.sort_by_key(|i| i.index);
        for (want, item) in (lo..hi).zip(&items) {
            if item.index != want {
                bail!("item {want} of the plan is in none of the shard stores; a shard store is damaged");
            }
        }
        if items.len() as u64 != hi - lo {
            bail!(
                "items {lo}..{hi} of the plan are not all in the shard stores; a shard store is damaged"
            );
        }
        self.next = hi;
        self.buf.extend(items);
        Ok(())
    }
}

impl Iterator for UnionItems<'_> {
    type Item = Result<WorkItem>;

    fn next(&mut self) -> Option<Result<WorkItem>> {
        if self.buf.is_empty() && self.next < self.total {
            if let Err(e) = self.fill() {
                self.next = self.total;
                return Some(Err(e));
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

fn union_items(shards: &[ShardStore]) -> UnionItems<'_> {
    UnionItems {
        shards,
        total: shards[0].meta.config.total_generations,
        next: 0,
        buf: VecDeque::new(),
    }
}

/// The merged store: created with the full plan, or the one an earlier merge of these shards
/// left (checked not to have been changed since).
pub fn open_target(into: &Path, shards: &[ShardStore]) -> Result<Store> {
    let full = &shards[0].shard.full_fingerprint;
    if let Some(existing) = Store::inspect_for_plan(into)? {
        if let Some(meta) = existing.meta()? {
            if meta.merge.is_none() || meta.plan_fingerprint != *full {
                bail!(
                    "{} already holds a plan that is not a merge of these shards (fingerprint {}); pass a new --into",
                    into.display(),
                    meta.plan_fingerprint
                );
            }
            drop(existing);
            let store = Store::open_existing(into)?;
            check_unchanged(&store, shards)?;
            copy_run_meta(&store, shards)?;
            return Ok(store);
        }
    }
    let first = &shards[0].meta;
    let fps = [
        first.datasets.dialogues.fingerprint.as_str(),
        first.datasets.personas.fingerprint.as_str(),
    ];
    let mut f = Fingerprinter::new(&first.catalog, &first.config, &fps);
    for item in union_items(shards) {
        f.add(&item?);
    }
    let actual = f.finish();
    if actual != *full {
        bail!(
            "the shards' items together hash to {actual}, not to the full plan's fingerprint {full}: a shard store was altered or written by an incompatible dgen"
        );
    }
    let meta = Meta {
        dgen_version: env!("CARGO_PKG_VERSION").to_string(),
        plan_fingerprint: full.clone(),
        shard: None,
        merge: Some(MergeMeta {
            shard_count: shards[0].shard.count,
        }),
        ..first.clone()
    };
    let mut personas: BTreeMap<u32, String> = BTreeMap::new();
    let mut bases: BTreeMap<u32, Dialogue> = BTreeMap::new();
    for s in shards {
        personas.extend(s.store.personas()?);
        bases.extend(s.store.base_dialogues()?);
    }
    let persona_refs: BTreeMap<u32, &str> =
        personas.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let base_refs: BTreeMap<u32, &Dialogue> = bases.iter().map(|(k, v)| (*k, v)).collect();
    let mut usage = CombinationUsage::new();
    for (key, count) in shards[0].store.combination_usage()? {
        let (size, combo) = key.split_once('/').unwrap_or((key.as_str(), ""));
        usage
            .entry(size.to_string())
            .or_default()
            .insert(combo.to_string(), count);
    }
    // Made under another name and renamed into place once it holds the plan: a merge killed
    // while redb creates the file leaves no half-made store where the next merge looks.
    Store::create_in_place(into, |store| {
        store.write_plan(
            &meta,
            union_items(shards),
            &usage,
            &persona_refs,
            &base_refs,
        )?;
        copy_run_meta(store, shards)
    })
}

/// The shards' run settings (checked to agree) and the first one's endpoint, so a run on the
/// merged store is checked against what made its dialogues and `dgen judge` finds the
/// endpoint. Set after the plan when missing, so a merge cut short in between still sets them.
fn copy_run_meta(store: &Store, shards: &[ShardStore]) -> Result<()> {
    if store.run_settings()?.is_none() {
        for s in shards {
            if let Some(settings) = s.store.run_settings()? {
                store.set_run_settings(&settings)?;
                break;
            }
        }
    }
    if store.run_endpoint()?.is_none() {
        for s in shards {
            if let Some(endpoint) = s.store.run_endpoint()? {
                store.set_run_endpoint(&endpoint)?;
                break;
            }
        }
    }
    Ok(())
}

/// A merged store continued must hold exactly what the merge put there: a `dgen run` on a
/// half-merged store would have made dialogues the rest of the merge knows nothing of.
fn check_unchanged(store: &Store, shards: &[ShardStore]) -> Result<()> {
    let mut kept = 0;
    for s in shards {
        kept += progress(store, s.shard.index)?.kept;
    }
    let stored = store.dialogue_count()?;
    if stored != kept {
        bail!(
            "{} holds {stored} dialogues but the merge put {kept} there: it was changed (by `dgen run`?) before the merge finished; merge into a new --into",
            store.path().display()
        );
    }
    Ok(())
}

/// How far the merge of one shard got, kept in the merged store's meta table.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Progress {
    /// Position in the shard's dialogue order up to which it is merged.
    pub next: u64,
    /// Dialogues the shard held when its merge began: a shard that changes before its merge
    /// is finished cannot go on where it stopped.
    pub of: u64,
    pub done: bool,
    /// Dialogues read from the shard so far.
    pub dialogues: u64,
    pub kept: u64,
    pub exact: u64,
    pub semantic: u64,
}

fn progress_key(shard: u32) -> String {
    format!("merge/shard/{shard}")
}

fn progress(store: &Store, shard: u32) -> Result<Progress> {
    match store.meta_entry(&progress_key(shard))? {
        None => Ok(Progress::default()),
        Some(json) => serde_json::from_str(&json).with_context(|| {
            format!(
                "the merge progress of shard {shard} is not valid JSON; merge into a new --into"
            )
        }),
    }
}

/// A cross-shard duplicate the merge dropped.
#[derive(Debug, Clone)]
pub struct Dropped {
    pub shard: u32,
    /// Its item, left pending; `None` for an imported dialogue.
    pub item: Option<u64>,
    pub duplicate: Duplicate,
}

/// What merging one shard did (this time: a shard merged before reports `already`).
pub struct ShardMerged {
    pub progress: Progress,
    pub already: bool,
    pub dropped: Vec<Dropped>,
}

/// Dialogues merged before the dedup index fits its projection: up to then each check is a
/// full int8 scan, which over the first 65,536 (the default) was most of a big merge's time
/// (4 × 25,000: 56 s, 17 s with this).
const FIT_AT: usize = 4096;

/// The merge of every shard's dialogues into `target`, in shard order.
pub struct Merger<'a> {
    pub target: &'a Store,
    pub index: DedupIndex,
    pub next_seq: u64,
    pub threshold: f32,
    /// Dialogues per transaction.
    pub chunk: usize,
}

impl<'a> Merger<'a> {
    pub fn new(target: &'a Store, chunk: usize) -> Result<Merger<'a>> {
        let meta = target.meta()?.context("the merged store holds no plan")?;
        let mut index = target.load_index(embed::DIM)?;
        index.set_min_build(FIT_AT);
        Ok(Merger {
            target,
            index,
            next_seq: target.next_seq()?,
            threshold: meta.config.similarity_threshold as f32,
            chunk: chunk.max(1),
        })
    }

    pub fn merge_shard(&mut self, s: &ShardStore) -> Result<ShardMerged> {
        let index = s.shard.index;
        let mut progress = progress(self.target, index)?;
        if progress.done {
            let now = s.store.dialogue_count()?;
            if now != progress.of {
                tracing::warn!(
                    "{} holds {now} dialogues now, {} when it was merged; the difference is not in {}: merge the shards into a new --into to take it",
                    s.path.display(),
                    progress.of,
                    self.target.path().display()
                );
            }
            return Ok(ShardMerged {
                progress,
                already: true,
                dropped: Vec::new(),
            });
        }
        let order = s.store.dialogue_order()?;
        if progress.next == 0 {
            progress.of = order.len() as u64;
        } else if progress.of != order.len() as u64 {
            bail!(
                "{} holds {} dialogues now but {} when its merge into {} began: it changed (a run?) since; merge the shards into a new --into",
                s.path.display(),
                order.len(),
                progress.of,
                self.target.path().display()
            );
        }
        let states: BTreeMap<u64, ItemState> = s.store.states()?.into_iter().collect();
        let mut dropped = Vec::new();
        let mut pos = progress.next as usize;
        loop {
            let end = (pos + self.chunk).min(order.len());
            let mut batch = Batch::default();
            if pos == 0 {
                // Items without a dialogue keep their state (pending, failed, …) from the
                // shard; an item's dialogue brings its own state below.
                for (item, state) in &states {
                    if state.state != State::Done {
                        batch.states.push((*item, state.clone()));
                    }
                }
            }
            let seqs: Vec<u64> = order[pos..end].iter().map(|&(_, seq)| seq).collect();
            for stored in s.store.dialogues_at(&seqs)? {
                self.take(s, &states, stored, &mut batch, &mut progress, &mut dropped)?;
            }
            progress.next = end as u64;
            if end == order.len() {
                progress.done = true;
                // What the shard accepted and imported counts as what the merge kept (below).
                for (key, value) in s.store.counters()? {
                    if key != "accepted" && key != "imported" {
                        batch.count(key, value);
                    }
                }
                batch.in_flight = s.store.in_flight_series()?;
            }
            batch
                .meta
                .push((progress_key(index), serde_json::to_string(&progress)?));
            self.target.apply(&batch).with_context(|| {
                format!(
                    "committing shard {index}'s dialogues to {} failed; what was committed is kept: run the same dgen merge again to go on",
                    self.target.path().display()
                )
            })?;
            if progress.done {
                break;
            }
            pos = end;
        }
        Ok(ShardMerged {
            progress,
            already: false,
            dropped,
        })
    }

    /// One dialogue: kept with its item done, or dropped as a duplicate with its item pending.
    fn take(
        &mut self,
        s: &ShardStore,
        states: &BTreeMap<u64, ItemState>,
        stored: StoredDialogue,
        batch: &mut Batch,
        progress: &mut Progress,
        dropped: &mut Vec<Dropped>,
    ) -> Result<()> {
        let StoredDialogue {
            record,
            embedding,
            checks,
            judge,
            ..
        } = stored;
        let item = record.item_index;
        if let Some(i) = item {
            if !s.shard.shard().holds(i) {
                bail!(
                    "{} holds a dialogue of item {i}, which is not shard {}/{}'s; the store is damaged",
                    s.path.display(),
                    s.shard.index,
                    s.shard.count
                );
            }
        }
        let attempts = item
            .and_then(|i| states.get(&i))
            .map_or(0, |state| state.attempts);
        progress.dialogues += 1;
        let canonical = dedup::sha256(&record::canonical_text(&record.turns));
        let mut hashes = vec![record.hash];
        if canonical != record.hash {
            hashes.push(canonical);
        }
        // Full-precision vectors come from this chunk (not committed yet) or the target.
        let target = self.target;
        let duplicate = self
            .index
            .check(&hashes, &embedding, self.threshold, |seq| {
                match batch.accepted.iter().find(|a| a.seq == seq) {
                    Some(a) => Ok(a.embedding.clone()),
                    None => target.embedding(seq),
                }
            })?;
        if let Some(duplicate) = duplicate {
            match duplicate {
                Duplicate::Exact => progress.exact += 1,
                Duplicate::Semantic { .. } => progress.semantic += 1,
            }
            batch.count(format!("merge/{}", duplicate.kind()), 1);
            if let Some(i) = item {
                batch.states.push((
                    i,
                    ItemState {
                        state: State::Pending,
                        attempts,
                        last_error: Some(format!(
                            "dropped by dgen merge (shard {}): {}",
                            s.shard.index,
                            duplicate.message()
                        )),
                        reason: Some(duplicate.kind().to_string()),
                    },
                ));
            }
            dropped.push(Dropped {
                shard: s.shard.index,
                item,
                duplicate,
            });
            return Ok(());
        }
        let seq = self.next_seq;
        self.index.insert(seq, &hashes, &embedding);
        self.next_seq += 1;
        progress.kept += 1;
        batch.count(
            if item.is_some() {
                "accepted"
            } else {
                "imported"
            },
            1,
        );
        if canonical != record.hash {
            batch.extra_hashes.push((canonical, seq));
        }
        if let Some(i) = item {
            batch.states.push((
                i,
                ItemState {
                    state: State::Done,
                    attempts: attempts.max(1),
                    last_error: None,
                    reason: None,
                },
            ));
        }
        // An annotation travels in `checks` (read from the shard's annotations table).
        let quality = match (checks, judge) {
            (None, None) => None,
            (checks, judge) => Some(crate::quality::QualityRecord {
                judge,
                ..checks.unwrap_or_default()
            }),
        };
        batch.accepted.push(Accepted {
            seq,
            record,
            embedding,
            quality,
        });
        Ok(())
    }
}
