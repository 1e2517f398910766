//! The plan fingerprint: blake3 over the canonical encoding of everything the plan is a function
//! of — catalog, configuration, dataset contents — and every item.

use super::{PlanConfig, Shard, WorkItem};
use crate::catalog::Catalog;

/// blake3 over the canonical encoding of everything the plan is a function of, and the items.
pub struct Fingerprinter {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
    /// An annotated plan's goals are fingerprinted with their items.
    annotate: Option<super::Annotate>,
}

impl Fingerprinter {
    pub fn new(catalog: &Catalog, config: &PlanConfig, dataset_fingerprints: &[&str]) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"dgen-plan-v1\0");
        hasher.update(catalog.canonical_json().as_bytes());
        hasher.update(b"\0");
        hasher.update(
            serde_json::to_string(config)
                .expect("serializes")
                .as_bytes(),
        );
        for fp in dataset_fingerprints {
            hasher.update(b"\0");
            hasher.update(fp.as_bytes());
        }
        Fingerprinter {
            hasher,
            buf: Vec::with_capacity(256),
            annotate: config.annotate.clone(),
        }
    }

    /// Makes this a shard's fingerprint: over the shard's items only, bound to the shard and
    /// (see [`Fingerprinter::finish_shard`]) to the full plan's fingerprint, so a shard store is
    /// checked before a run like any plan.
    pub fn for_shard(mut self, shard: Shard) -> Self {
        self.hasher.update(b"\0dgen-shard-v1\0");
        self.hasher.update(shard.to_string().as_bytes());
        self
    }

    /// A shard's fingerprint, bound to the full plan's; the full plan is drawn in the same pass
    /// as the shard's items, so its fingerprint comes last.
    pub fn finish_shard(mut self, full_fingerprint: &str) -> String {
        self.hasher.update(b"\0");
        self.hasher.update(full_fingerprint.as_bytes());
        self.finish()
    }

    pub fn add(&mut self, item: &WorkItem) {
        self.buf.clear();
        bincode::serde::encode_into_std_write(item, &mut self.buf, bincode::config::standard())
            .expect("encodes");
        if let Some(annotate) = &self.annotate {
            let goals = annotate.goals(item);
            bincode::serde::encode_into_std_write(
                &goals,
                &mut self.buf,
                bincode::config::standard(),
            )
            .expect("encodes");
        }
        self.hasher.update(&self.buf);
    }

    pub fn finish(self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}

pub fn fingerprint(
    catalog: &Catalog,
    config: &PlanConfig,
    dataset_fingerprints: &[&str],
    items: impl IntoIterator<Item = WorkItem>,
) -> String {
    let mut f = Fingerprinter::new(catalog, config, dataset_fingerprints);
    for item in items {
        f.add(&item);
    }
    f.finish()
}
