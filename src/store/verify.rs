//! The stored plan checked against its fingerprint, before anything works on it (a run, a
//! dry run, a merge).

use anyhow::{bail, Result};

use super::{Meta, Store};
use crate::plan::Fingerprinter;

impl Store {
    /// Refuses a store whose stored plan no longer hashes to its fingerprint (a shard store's,
    /// over its shard's items).
    pub fn verify_plan(&self, meta: &Meta) -> Result<()> {
        let fps = [
            meta.datasets.dialogues.fingerprint.as_str(),
            meta.datasets.personas.fingerprint.as_str(),
        ];
        let mut f = Fingerprinter::new(&meta.catalog, &meta.config, &fps);
        if let Some(shard) = &meta.shard {
            f = f.for_shard(shard.shard());
        }
        self.for_each_item(|item| {
            f.add(&item);
            Ok(())
        })?;
        let actual = match &meta.shard {
            Some(shard) => f.finish_shard(&shard.full_fingerprint),
            None => f.finish(),
        };
        if actual != meta.plan_fingerprint {
            bail!(
                "the plan in {} does not match its fingerprint ({} stored, {actual} computed): it was written by an incompatible dgen or altered; plan into a new --store",
                self.path().display(),
                meta.plan_fingerprint
            );
        }
        Ok(())
    }
}
