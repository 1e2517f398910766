//! The uniqueness rule as one function, so `dgen run`'s writer and `dgen merge` reject the
//! same dialogues for the same reasons.

use anyhow::Result;

use super::{DedupIndex, Hash};

/// Why a dialogue may not be stored beside those in the index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Duplicate {
    /// Its SHA-256 is already there.
    Exact,
    /// A stored dialogue (`other`, its id in the index: the store's sequence number) is at
    /// least the threshold similar.
    Semantic { other: u64, similarity: f32 },
}

impl Duplicate {
    /// The rejection reason, as `dgen status` counts it.
    pub fn kind(self) -> &'static str {
        match self {
            Duplicate::Exact => "duplicate_exact",
            Duplicate::Semantic { .. } => "duplicate_semantic",
        }
    }

    pub fn message(self) -> String {
        match self {
            Duplicate::Exact => "exact duplicate of a stored dialogue".to_string(),
            Duplicate::Semantic { other, similarity } => {
                format!("near-duplicate: cosine {similarity:.3} with stored dialogue #{other}")
            }
        }
    }
}

impl DedupIndex {
    /// The exact check first, then the near-duplicate scan at `threshold`; `vector(id)` reads
    /// a stored vector back in full precision (see [`DedupIndex::similar`]).
    pub fn check(
        &self,
        hashes: &[Hash],
        embedding: &[f32],
        threshold: f32,
        vector: impl FnMut(u64) -> Result<Vec<f32>>,
    ) -> Result<Option<Duplicate>> {
        if hashes.iter().any(|h| self.contains_hash(h)) {
            return Ok(Some(Duplicate::Exact));
        }
        Ok(self
            .similar(embedding, threshold, vector)?
            .map(|(other, similarity)| Duplicate::Semantic { other, similarity }))
    }
}
