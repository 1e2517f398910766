//! The Batch API's faults that cost money when a client mishandles them, and what the mock
//! bills: a create that takes effect and is then answered late, 502 or cut off; result files
//! that come late, cut at a line boundary, lost (404), or that repeat an answered request in
//! the error file, or padded past any size its answers can have; input files over a size
//! limit or gone before the create.
//!
//! Billing is counted per request (`custom_id`), as a provider bills: a batch's executed
//! requests once it ran, or, for a batch no client reads (so the mock never runs it), the
//! requests its end will execute — a provider runs a batch whether anyone polls it or not.

use std::time::Duration;

use super::{Batch, BatchEnd, BatchState};

/// How a create misbehaves after the batch exists.
#[derive(Debug, Clone)]
pub enum CreateFault {
    /// Answered 200 after this long (longer than the client's timeout).
    Late(Duration),
    /// Answered 502, as a gateway that lost the upstream's answer.
    BadGateway,
    /// Answered 200 with the body cut off after its first bytes.
    CutBody,
    /// Its input file is deleted just before the create is handled: 404, no batch.
    FileGone,
}

/// One-shot faults of the result files and uploads.
#[derive(Debug, Default)]
pub struct ResultFaults {
    /// The n-th download (1-based) holds only its first k lines: a download cut at a line
    /// boundary.
    pub short_download: Option<(usize, usize)>,
    /// Every download holds only its first k lines while set.
    pub short_every_download: Option<usize>,
    /// The next this many batches to finish report their end without an output file at the
    /// first read; it appears at the next.
    pub late_output: usize,
    /// The next this many batches to finish name an output file that answers 404.
    pub lost_output: usize,
    /// The next this many batches to finish with failed requests name an error file that
    /// answers 404.
    pub lost_errors: usize,
    /// The next this many batches to finish also put their first answered request in the
    /// error file, as a failure.
    pub error_line_for_answer: usize,
    /// The n-th download (1-based) is padded with this many bytes of blank lines: longer than
    /// any answers to its requests can be.
    pub padded_download: Option<(usize, usize)>,
    /// Uploads larger than this are refused (413, as a provider's size limit).
    pub max_file_bytes: Option<usize>,
    /// The next this many `GET /batches` listings are refused (404, as by a provider or a
    /// proxy without the listing).
    pub refused_listings: usize,
    /// While set, `GET /batches/{id}` answers 404 for every batch although the listing shows
    /// them (a proxy that passes the listing but not the batch).
    pub unreadable_batches: bool,
}

impl BatchState {
    /// The custom_ids billed, one entry per request executed (or that will be, for a batch
    /// not yet run): a custom_id twice was paid twice.
    pub fn billed(&self) -> Vec<String> {
        let mut billed = Vec::new();
        for b in &self.batches {
            match &b.billed {
                Some(ids) => billed.extend(ids.iter().cloned()),
                None => {
                    let n = match b.end {
                        BatchEnd::Completed => b.ids.len(),
                        BatchEnd::Expired { answered } | BatchEnd::Cancelled { answered } => {
                            answered.min(b.ids.len())
                        }
                        BatchEnd::Failed { .. } => 0,
                    };
                    billed.extend(b.ids[..n].iter().cloned());
                }
            }
        }
        billed
    }

    /// The custom_ids billed more than once.
    pub fn billed_twice(&self) -> Vec<String> {
        let mut seen = std::collections::HashMap::new();
        for id in self.billed() {
            *seen.entry(id).or_insert(0usize) += 1;
        }
        let mut twice: Vec<String> = seen
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, _)| id)
            .collect();
        twice.sort();
        twice
    }

    /// Finished batches of other users of the account, created after everything so far: a
    /// listing shows them first.
    pub fn add_foreign_batches(&mut self, n: usize) {
        for _ in 0..n {
            let id = self.id("batch");
            let input = self.id("file");
            self.batches.push(Batch {
                id,
                input_file_id: input,
                status: "completed".into(),
                end: BatchEnd::Completed,
                output_file_id: None,
                error_file_id: None,
                completed: 0,
                failed: 0,
                total: 0,
                errors: Vec::new(),
                metadata: serde_json::Value::Null,
                created_at: super::now_s(),
                ids: Vec::new(),
                billed: Some(Vec::new()),
                output_late: false,
            });
        }
    }
}
