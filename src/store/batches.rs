//! What `dgen run --batch` keeps in the store: each provider batch it prepared (with the
//! requests it carries, committed before the upload, so a process killed at any moment finds
//! its batches again), and each scenario a batch returned, until its item's dialogue request
//! has an answer.

use anyhow::Result;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::tables::{optional, BATCH_JOBS, BATCH_SCENARIOS, META, META_BATCH_TAG};
use super::Store;

/// Which of an item's two calls a batch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStage {
    Scenario,
    Dialogue,
}

impl BatchStage {
    pub fn name(self) -> &'static str {
        match self {
            BatchStage::Scenario => "scenario",
            BatchStage::Dialogue => "dialogue",
        }
    }
}

/// One provider batch, from the moment dgen decided to send it.
///
/// Phases: prepared (committed, not uploaded) → uploaded (`file_id`) → submitted (`batch_id`,
/// `status` as the provider says) → collected (its results committed, or it failed and its
/// requests went back to the pool; status `given_up` when the provider refused it for good or
/// the user gave it up, the reason in `note`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchJob {
    /// dgen's own number, in submission order.
    pub id: u64,
    pub stage: BatchStage,
    /// (item, attempt) of each request; its custom_id is derived from them.
    pub requests: Vec<(u64, u32)>,
    /// Unix milliseconds when it was prepared.
    pub created_ms: u64,
    pub file_id: Option<String>,
    pub batch_id: Option<String>,
    /// The provider's status (`validating`, `in_progress`, `completed`, `expired`, ...), or
    /// dgen's phase before it was submitted (`prepared`, `uploaded`).
    pub status: String,
    /// Request counts as the provider last reported them.
    pub completed: u64,
    pub failed: u64,
    /// Results committed (or the batch given up): its requests are no longer in flight.
    pub collected: bool,
    /// What became of it, in words, once collected (e.g. "expired: 40 of 100 answered").
    pub note: Option<String>,
}

impl BatchJob {
    pub fn phase(&self) -> &str {
        if self.collected {
            "collected"
        } else {
            &self.status
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a batch job serializes")
    }
}

/// A scenario a batch returned for an item's attempt, waiting for the dialogue request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredScenario {
    pub attempt: u32,
    pub text: String,
    /// The scenario call's tokens, which the dialogue's record adds to its own.
    #[serde(default)]
    pub usage: crate::llm::Usage,
}

impl Store {
    /// Every batch job, by id.
    pub fn batch_jobs(&self) -> Result<Vec<BatchJob>> {
        let txn = self.read()?;
        let Some(table) = optional(&txn, BATCH_JOBS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// The scenarios waiting for their dialogue request, by item.
    pub fn batch_scenarios(&self) -> Result<std::collections::BTreeMap<u64, StoredScenario>> {
        let txn = self.read()?;
        let mut out = std::collections::BTreeMap::new();
        let Some(table) = optional(&txn, BATCH_SCENARIOS)? else {
            return Ok(out);
        };
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.insert(k.value(), serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// The tag in the names of the batch input files this store uploads: drawn at random the
    /// first time (stores from before it get one then), kept from then on.
    pub fn batch_tag(&self) -> Result<String> {
        {
            let txn = self.read()?;
            let meta = txn.open_table(META)?;
            if let Some(v) = meta.get(META_BATCH_TAG)? {
                return Ok(serde_json::from_str(v.value())?);
            }
        }
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let txn = self.write()?;
        txn.open_table(META)?
            .insert(META_BATCH_TAG, serde_json::to_string(&tag)?.as_str())?;
        txn.commit()?;
        Ok(tag)
    }

    /// Records one batch job's new phase in a transaction of its own.
    pub fn put_batch_job(&self, job: &BatchJob) -> Result<()> {
        let txn = self.write()?;
        txn.open_table(BATCH_JOBS)?
            .insert(job.id, job.encode().as_slice())?;
        txn.commit()?;
        Ok(())
    }
}
