//! Giving a batch job up: it is closed as `given_up`, with the reason in `dgen status`, and its
//! requests are pending again (the next batch carries them, re-split at the limits then in
//! force; an online run is no longer refused for them).
//!
//! A job the provider refuses for good would otherwise be sent again, the same requests in the
//! same file, at every run, and keep online runs off the store: its input file refused (too
//! large, malformed), its file gone before the create, a result file that answers 404. dgen
//! gives such a job up by itself. What only the user can judge (a batch whose results never
//! add up, one that runs too long) is given up with `dgen run --batch_give_up JOB`.

use anyhow::{bail, Result};

use crate::store::{Batch, BatchJob, Store};

use super::api::Refused;
use super::{Driver, Halt};

/// The status of a job given up.
pub const GIVEN_UP: &str = "given_up";

impl Driver {
    /// The provider refused a request about this job. About the key or the endpoint: the run
    /// stops, the job kept. About the job itself: it is given up; a second such refusal in a
    /// row stops the run (the requests would only be refused again). Other errors are passed
    /// on.
    pub(super) fn refused_job(
        &mut self,
        job: &mut BatchJob,
        what: &str,
        e: anyhow::Error,
    ) -> Result<()> {
        let Some(r) = e.downcast_ref::<Refused>() else {
            return Err(e);
        };
        let uploading = job.file_id.is_none();
        // 404 on an upload: no Batch API there; on a create: the input file is gone.
        if matches!(r.status, 401 | 403) || (r.status == 404 && uploading) {
            return Err(Halt(r.message.clone()).into());
        }
        let reason = format!("{what} was refused: {}", r.message);
        self.give_up(job, &reason)?;
        self.refusals += 1;
        if self.refusals >= 2 {
            let hint = if uploading {
                "If the file is too large for this provider, lower --batch_max_mb or --batch_max_requests; else check --model and --base_url"
            } else {
                "Check --model and --base_url"
            };
            return Err(Halt(format!(
                "the provider refused two batches in a row (the last: {reason}); their requests are pending again. {hint}"
            ))
            .into());
        }
        Ok(())
    }

    /// Closes a job as given up, in one transaction; its requests go into the next batch.
    pub(super) fn give_up(&mut self, job: &mut BatchJob, reason: &str) -> Result<()> {
        tracing::warn!(
            "batch #{} given up: {reason}; its {} requests go into the next batch",
            job.id,
            job.requests.len()
        );
        close(job, reason);
        let mut write = Batch::default();
        write.batch_jobs.push(job.clone());
        write.count("batch/given_up", 1);
        self.writer.commit(write, 0)?;
        if let Some(slot) = self.jobs.iter_mut().find(|j| j.id == job.id) {
            *slot = job.clone();
        }
        Ok(())
    }
}

fn close(job: &mut BatchJob, reason: &str) {
    job.collected = true;
    job.status = GIVEN_UP.into();
    job.note = Some(format!(
        "given up: {reason}; its {} requests went back to pending",
        job.requests.len()
    ));
}

/// `dgen run --batch_give_up JOB...`: gives up the named jobs in flight, in one transaction.
/// Their results are not read, and a batch still running at the provider is not cancelled.
pub fn give_up_jobs(store: &Store, ids: &[u64]) -> Result<()> {
    let jobs = store.batch_jobs()?;
    let mut write = Batch::default();
    for &id in ids {
        let Some(job) = jobs.iter().find(|j| j.id == id) else {
            bail!("--batch_give_up {id}: this store has no batch #{id}; `dgen status` lists its batches");
        };
        if job.collected {
            bail!(
                "--batch_give_up {id}: batch #{id} is not in flight (it is {}); nothing to give up, nothing was changed",
                job.phase()
            );
        }
        let mut job = job.clone();
        let was = match &job.batch_id {
            Some(b) => format!("{b}, {}", job.status),
            None => job.status.clone(),
        };
        let reason = format!("by the user (--batch_give_up), it was {was}");
        close(&mut job, &reason);
        write.batch_jobs.push(job.clone());
        write.count("batch/given_up", 1);
        eprintln!(
            "batch #{id} given up ({was}): its {} requests are pending again; `dgen run --batch` sends them in a new batch, `dgen run` online",
            job.requests.len()
        );
        match (&job.batch_id, &job.file_id) {
            (Some(batch), _) => eprintln!(
                "  if {batch} still runs at the provider, cancel it there: its answers are billed and will not be read"
            ),
            // Uploaded, with no batch id recorded: a create cut off by a kill may have made one.
            (None, Some(file)) => eprintln!(
                "  its create may have gone through before the batch id reached dgen: if the provider lists a batch over input file {file}, cancel it there (its answers would be billed and not read)"
            ),
            (None, None) => {}
        }
    }
    store.apply(&write)
}
