//! The input files this store uploads, and the unused ones it deletes.
//!
//! A file's name carries the plan's fingerprint and the store's random batch tag
//! (`dgen-<fingerprint>-<tag>-<job>-<stage>.jsonl`), so dgen can tell its own uploads from
//! every other file of the account. A process killed after an upload was answered but before
//! its file id was committed uploads the job again on resume, and the first file stays at the
//! provider: on re-attaching, the files of purpose `batch` that carry this store's prefix and
//! that no batch job of the store and no batch at the provider uses are deleted. Nothing else
//! is ever deleted: not a user's files, not another store's, not an input file a batch uses.

use std::collections::HashSet;

use anyhow::Result;

use super::api::FileObject;
use super::Driver;
use crate::store::BatchStage;

/// How the names of a store's input files begin: the plan's fingerprint (12 characters) and
/// the store's batch tag.
pub(super) fn file_prefix(fingerprint: &str, tag: &str) -> String {
    format!("dgen-{}-{tag}-", &fingerprint[..fingerprint.len().min(12)])
}

/// The name of a job's input file.
pub(super) fn file_name(prefix: &str, job: u64, stage: BatchStage) -> String {
    format!("{prefix}{job}-{}.jsonl", stage.name())
}

/// `name` is one of this store's input files: the prefix, a job number, a stage.
fn is_own(name: &str, prefix: &str) -> bool {
    let Some((job, stage)) = name
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(".jsonl"))
        .and_then(|rest| rest.split_once('-'))
    else {
        return false;
    };
    !job.is_empty()
        && job.bytes().all(|b| b.is_ascii_digit())
        && [BatchStage::Scenario, BatchStage::Dialogue]
            .iter()
            .any(|s| s.name() == stage)
}

impl Driver {
    /// Deletes this store's uploads that no batch uses. Never fatal: a provider that cannot
    /// list or delete files leaves them, with a warning.
    pub(super) async fn delete_unused_uploads(&self) {
        let unused = match self.unused_uploads().await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!("unused batch input files were not looked for: {e:#}");
                return;
            }
        };
        let mut deleted = 0;
        for file in &unused {
            match self.api.delete_file(&file.id).await {
                Ok(()) => deleted += 1,
                Err(e) => tracing::warn!(
                    "the unused input file {} ({}) was not deleted: {e:#}",
                    file.id,
                    file.filename
                ),
            }
        }
        if deleted > 0 {
            tracing::warn!(
                "deleted {deleted} input files an earlier, interrupted run uploaded and no batch uses"
            );
        }
    }

    /// This store's input files at the provider that neither a job of the store nor a batch
    /// at the provider names.
    async fn unused_uploads(&self) -> Result<Vec<FileObject>> {
        let files = self.api.input_files().await?;
        let known: HashSet<String> = self
            .store
            .batch_jobs()?
            .into_iter()
            .filter_map(|j| j.file_id)
            .collect();
        let mut unused: Vec<FileObject> = files
            .into_iter()
            .filter(|f| is_own(&f.filename, &self.file_prefix) && !known.contains(&f.id))
            .collect();
        if !unused.is_empty() {
            let inputs = self.api.batch_inputs().await?;
            unused.retain(|f| !inputs.contains(&f.id));
        }
        Ok(unused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_stores_names_are_its_own() {
        let prefix = file_prefix("0123456789abcdef", "a1b2c3d4e5f6");
        assert_eq!(prefix, "dgen-0123456789ab-a1b2c3d4e5f6-");
        let name = file_name(&prefix, 7, BatchStage::Dialogue);
        assert!(is_own(&name, &prefix));
        for other in [
            "dgen-0123456789ab-ffffffffffff-7-dialogue.jsonl",
            "dgen-0123456789ab-7-dialogue.jsonl",
            "dgen-0123456789ab-a1b2c3d4e5f6-7-dialogue.jsonl.bak",
            "dgen-0123456789ab-a1b2c3d4e5f6-x-dialogue.jsonl",
            "dgen-0123456789ab-a1b2c3d4e5f6-7-judge.jsonl",
            "my-data.jsonl",
        ] {
            assert!(!is_own(other, &prefix), "{other}");
        }
    }
}
