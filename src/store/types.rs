//! The values the store keeps and the batches a run commits, and their encodings.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::dataset::LoadReport;
use crate::plan::PlanConfig;
use crate::quality::QualityRecord;
use crate::record::judge::JudgeScore;
use crate::record::GeneratedDialogue;

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
    /// The kind of the last rejection (`api_error`, `duplicate_exact`, …), so failures by reason
    /// come from the items themselves; `None` in stores written before it was recorded.
    pub reason: Option<String>,
}

/// An item state as dgen 0.1 wrote it (no `reason`): still read, never written. bincode is not
/// self-describing, so the longer encoding is tried first and must use every byte.
#[derive(Deserialize)]
struct ItemStateV1 {
    state: State,
    attempts: u32,
    last_error: Option<String>,
}

impl ItemState {
    pub fn pending() -> Self {
        ItemState {
            state: State::Pending,
            attempts: 0,
            last_error: None,
            reason: None,
        }
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<ItemState> {
        let config = bincode::config::standard();
        if let Ok((state, used)) = bincode::serde::decode_from_slice::<ItemState, _>(bytes, config)
        {
            if used == bytes.len() {
                return Ok(state);
            }
        }
        let old: ItemStateV1 = decode(bytes, "item state")?;
        Ok(ItemState {
            state: old.state,
            attempts: old.attempts,
            last_error: old.last_error,
            reason: None,
        })
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
    /// The fingerprint of what this store holds: the full plan's, or a shard's.
    pub plan_fingerprint: String,
    /// Set when the store holds one shard of the full plan (`dgen plan --shard`).
    pub shard: Option<ShardMeta>,
    /// Set when `dgen merge` made the store from the full plan's shards.
    pub merge: Option<MergeMeta>,
}

/// Which shard of which full plan a shard store holds. The full plan's item count is the
/// configuration's `total_generations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub index: u32,
    pub count: u32,
    pub full_fingerprint: String,
}

impl ShardMeta {
    pub fn shard(&self) -> crate::plan::Shard {
        crate::plan::Shard {
            index: self.index,
            count: self.count,
        }
    }
}

/// A store made by `dgen merge`: how many shards the full plan was split into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeMeta {
    pub shard_count: u32,
}

/// What a run was started with; a later run must match where it matters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub prompt_version: String,
    pub embedding: String,
    pub model: String,
}

/// Where the last run called (for `dgen judge`'s defaults): its base URL, or the local model
/// it started llama-server with. Never a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEndpoint {
    pub base_url: Option<String>,
    pub local_model: Option<std::path::PathBuf>,
    /// The model called at `base_url`, when a run over several endpoints recorded the first
    /// one's (the store's run model is then the set of their models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Receives the stored dialogues from [`Store::for_each_dialogue`].
pub trait DialogueSink {
    /// Called once before the first dialogue, from the same snapshot: how many of the
    /// dialogues about to come carry a judge score.
    fn begin(&mut self, judged: u64) -> Result<()> {
        let _ = judged;
        Ok(())
    }

    fn dialogue(
        &mut self,
        seq: u64,
        record: GeneratedDialogue,
        embedding: &[u8],
        quality: QualityRecord,
    ) -> Result<()>;
}

/// One stored dialogue with what is kept beside it (for `dgen merge`).
pub struct StoredDialogue {
    pub seq: u64,
    pub record: GeneratedDialogue,
    pub embedding: Vec<f32>,
    /// Its quality-check results, when it has an entry.
    pub checks: Option<QualityRecord>,
    pub judge: Option<JudgeScore>,
}

/// One accepted dialogue ready to commit.
pub struct Accepted {
    pub seq: u64,
    pub record: GeneratedDialogue,
    pub embedding: Vec<f32>,
    /// Its quality-check results (`None`: not checked, nothing is stored).
    pub quality: Option<QualityRecord>,
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
    /// Judge scores of stored dialogues, by sequence number (`dgen judge`), replacing any
    /// earlier score.
    pub judged: Vec<(u64, JudgeScore)>,
    /// Points of the run's in-flight time series.
    pub in_flight: Vec<crate::llm::limiter::Sample>,
    /// `dgen run --batch`: batch jobs written (replacing their earlier phase).
    pub batch_jobs: Vec<super::BatchJob>,
    /// `dgen run --batch`: scenarios stored (`Some`) or removed (`None`), by item.
    pub scenarios: Vec<(u64, Option<super::StoredScenario>)>,
    /// Meta entries to set with the rest (`dgen merge` records its progress so).
    pub meta: Vec<(String, String)>,
}

impl Batch {
    pub fn count(&mut self, key: impl Into<String>, n: u64) {
        if n > 0 {
            let count = self.counters.entry(key.into()).or_default();
            *count = count.saturating_add(n);
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

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes")
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .with_context(|| format!("the store holds a {what} this dgen cannot decode"))
}
