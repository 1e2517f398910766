//! The store's tables and meta keys, in one place.

use anyhow::Result;
use redb::TableDefinition;

pub(super) const FORMAT: &str = "dgen-store";

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
/// Quality-check results of each dialogue by sequence number (a JSON [`QualityRecord`]: the
/// flagged findings); a dialogue without an entry (stored before the checks existed, or
/// imported without them) reads as having none.
///
/// [`QualityRecord`]: crate::quality::QualityRecord
pub const QUALITY: TableDefinition<u64, &[u8]> = TableDefinition::new("quality");
/// LLM-judge scores of each dialogue by sequence number (a JSON [`JudgeScore`]); a dialogue
/// without an entry has not been judged.
///
/// [`JudgeScore`]: crate::record::judge::JudgeScore
pub const JUDGE: TableDefinition<u64, &[u8]> = TableDefinition::new("judge");
/// The annotated mode's labels of each dialogue by sequence number (a JSON [`Annotation`]:
/// goals, per-turn frames); absent from plain stores.
///
/// [`Annotation`]: crate::annotation::Annotation
pub const ANNOTATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("annotations");
/// Run counters: tokens, calls, acceptances, rejections and failures by reason, run time.
pub const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Counters of each endpoint: `endpoint/NAME/calls`, `…/errors`, `…/latency_ms`,
/// `…/prompt_tokens`, `…/completion_tokens`, `…/outs` (see `dgen status`).
pub const ENDPOINT_PREFIX: &str = "endpoint/";
/// The requests in flight over time, by Unix milliseconds: the most in flight since the
/// previous sample and the adaptive limit then, two little-endian u32 (`dgen run` records one a
/// second, sparser on long runs).
pub const IN_FLIGHT: TableDefinition<u64, &[u8]> = TableDefinition::new("in_flight");
/// `dgen run --batch`: each provider batch by dgen's number (a JSON [`BatchJob`]).
///
/// [`BatchJob`]: crate::store::BatchJob
pub const BATCH_JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("batch_jobs");
/// `dgen run --batch`: the scenario a batch returned for an item, by item index (a JSON
/// [`StoredScenario`]), until its dialogue request is answered.
///
/// [`StoredScenario`]: crate::store::StoredScenario
pub const BATCH_SCENARIOS: TableDefinition<u64, &[u8]> = TableDefinition::new("batch_scenarios");
/// Combination usage counters, keyed `size/service+service`.
pub const COMBINATION_USAGE: TableDefinition<&str, u64> = TableDefinition::new("combination_usage");

pub(super) const META_FORMAT: &str = "format";
pub(super) const META_SCHEMA: &str = "schema_version";
pub(super) const META_DGEN_VERSION: &str = "dgen_version";
pub(super) const META_CONFIG: &str = "config";
pub(super) const META_CATALOG: &str = "catalog";
pub(super) const META_DATASETS: &str = "datasets";
pub(super) const META_FINGERPRINT: &str = "plan_fingerprint";
pub(super) const META_RUN: &str = "run";
pub(super) const META_RUN_ENDPOINT: &str = "run_endpoint";
/// The shard a shard store holds (JSON [`ShardMeta`](super::ShardMeta)).
pub(super) const META_SHARD: &str = "shard";
/// Set on a store `dgen merge` made (JSON [`MergeMeta`](super::MergeMeta)).
pub(super) const META_MERGE: &str = "merge";
/// The last run's `--max_cost` in USD (JSON number), absent when it had none.
pub(super) const META_MAX_COST: &str = "max_cost";
/// A random tag (JSON string) in the names of the batch input files this store uploads, so
/// that its own unused uploads can be told from every other file at the provider.
pub(super) const META_BATCH_TAG: &str = "batch_tag";

/// A table that may not exist yet (a store planned before any run has no dialogues table).
pub(super) fn optional<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>> {
    match txn.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
