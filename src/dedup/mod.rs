//! The uniqueness index: exact duplicates by SHA-256 of the canonical conversation, near
//! duplicates by cosine similarity of L2-normalised embeddings. The answer is exact; two proven
//! bounds only decide which stored vectors need a closer look:
//!
//! 1. A first pass over each vector's projection on the few dozen directions stored vectors vary
//!    most along (`project`): 32 bytes a vector plus three bound terms. It rules out nearly
//!    everything, reading a ninth of what a full scan reads, split over the CPUs. Vectors
//!    inserted since the last projection (up to `FLUSH`) are scanned in int8 instead.
//! 2. The same bound on the next few dozen directions, one cache line a vector, for the ones
//!    the first pass left.
//! 3. The int8 bound (`scan`) on the full vectors the second tier left.
//!
//! The few candidates left are compared in full precision against the vectors where they are
//! kept (the store): the index itself holds only the int8 forms, a quarter of the memory.

use std::collections::HashSet;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

mod check;
mod project;
mod scan;

pub use check::Duplicate;
use project::Projection;
use scan::{quantize, Quantized, Rows, Scan};

pub use scan::dot_f32;

pub type Hash = [u8; 32];

pub fn sha256(text: &str) -> Hash {
    Sha256::digest(text.as_bytes()).into()
}

pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Below this many vectors the full int8 scan takes about a millisecond, and fitting and
/// projecting would only delay the start (seconds in a debug build); the projection is fitted
/// to the first this many (stored dialogues of one plan all look alike). Until then they wait
/// in full precision too (100 MB at most).
const MIN_BUILD: usize = 65_536;
/// Vectors inserted since the last projection wait in full precision and are scanned in int8
/// until there are this many, then projected together.
const FLUSH: usize = 1024;
/// Vectors per thread below which a first pass stays on one thread.
const PER_THREAD: usize = 65_536;

pub struct DedupIndex {
    dim: usize,
    hashes: HashSet<Hash>,
    /// The int8 forms in insertion order, struct-of-arrays.
    values: Vec<i8>,
    scales: Vec<f32>,
    errors: Vec<f32>,
    norms: Vec<f32>,
    ids: Vec<u64>,
    projection: Option<Projection>,
    /// The full-precision vectors not projected yet: rows `len - pending.len() / dim..`.
    pending: Vec<f32>,
    min_build: usize,
    threads: usize,
}

impl DedupIndex {
    pub fn new(dim: usize) -> DedupIndex {
        DedupIndex {
            dim,
            hashes: HashSet::new(),
            values: Vec::new(),
            scales: Vec::new(),
            errors: Vec::new(),
            norms: Vec::new(),
            ids: Vec::new(),
            projection: None,
            pending: Vec::new(),
            min_build: MIN_BUILD,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// An index whose projection is fitted at `min_build` vectors (`usize::MAX`: never, a full
    /// int8 scan), so tests exercise it on small sets and benchmarks can time the full scan.
    pub fn with_min_build(dim: usize, min_build: usize) -> DedupIndex {
        DedupIndex {
            min_build: min_build.max(1),
            ..DedupIndex::new(dim)
        }
    }

    /// Fits the projection once there are `min_build` vectors (at the next insert or build if
    /// there are already), instead of at `MIN_BUILD`: for a merge, which checks tens of
    /// thousands of dialogues in one go, where a run's first 65,536 checks are spread over
    /// hours. No effect once fitted, or on an index built `with_min_build(_, usize::MAX)`.
    pub fn set_min_build(&mut self, min_build: usize) {
        if self.min_build != usize::MAX {
            self.min_build = min_build.max(1);
        }
    }

    /// Threads a first pass over a large index is split over (default: the CPUs available).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Room for `n` more vectors before any is inserted, so loading does not reallocate.
    pub fn reserve(&mut self, n: usize) {
        self.hashes.reserve(n);
        self.values.reserve(n * self.dim);
        self.scales.reserve(n);
        self.errors.reserve(n);
        self.norms.reserve(n);
        self.ids.reserve(n);
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether the projection has been fitted (the first pass is in use).
    pub fn is_built(&self) -> bool {
        self.projection.is_some()
    }

    /// Heap bytes held by the index (vectors, bounds, ids and the hash set), for benchmarks.
    pub fn memory_bytes(&self) -> usize {
        let hashes = self.hashes.capacity() * (std::mem::size_of::<Hash>() + 1);
        hashes
            + self.values.capacity()
            + 4 * (self.scales.capacity() + self.errors.capacity() + self.norms.capacity())
            + 8 * self.ids.capacity()
            + 4 * self.pending.capacity()
            + self.projection.as_ref().map_or(0, Projection::bytes)
    }

    /// Adds a hash key alone (its dialogue's embedding is pushed on its own).
    pub fn add_hash(&mut self, hash: Hash) {
        self.hashes.insert(hash);
    }

    pub fn contains_hash(&self, hash: &Hash) -> bool {
        self.hashes.contains(hash)
    }

    /// Adds one dialogue: its hash keys (usually one) and its embedding, under `id` (the
    /// store's sequence number), the key [`DedupIndex::similar`] fetches it back by.
    pub fn insert(&mut self, id: u64, hashes: &[Hash], vector: &[f32]) {
        self.push(id, hashes, vector);
        self.build();
    }

    /// [`DedupIndex::insert`] with the projection put off: for loading many, then
    /// [`DedupIndex::build`].
    pub fn push(&mut self, id: u64, hashes: &[Hash], vector: &[f32]) {
        assert_eq!(vector.len(), self.dim);
        self.hashes.extend(hashes.iter().copied());
        let at = self.values.len();
        self.values.resize(at + self.dim, 0);
        let (scale, error, norm) = scan::quantize_into(vector, &mut self.values[at..]);
        self.scales.push(scale);
        self.errors.push(error);
        self.norms.push(norm);
        self.ids.push(id);
        if self.min_build != usize::MAX {
            self.pending.extend_from_slice(vector);
        }
    }

    /// Projects what waits: fits the projection first once there are enough vectors, projects
    /// the waiting ones once there are enough of them (or `force`).
    fn project(&mut self, force: bool) {
        let waiting = self.pending.len() / self.dim;
        if self.projection.is_none() && self.len() >= self.min_build {
            self.projection = Some(Projection::fit(self.dim, &self.pending));
        }
        if let Some(p) = &mut self.projection {
            if waiting >= FLUSH || (force && waiting > 0) {
                p.extend(&self.pending, self.threads);
                self.pending = Vec::new();
            }
        }
    }

    /// Fits the projection once there are enough vectors, and projects the waiting ones once a
    /// batch of them has gathered.
    pub fn build(&mut self) {
        self.project(false);
    }

    /// [`DedupIndex::build`], projecting whatever waits however few.
    pub fn finish(&mut self) {
        self.project(true);
    }

    /// The stored vector with the smallest id whose cosine similarity with `v` is at least
    /// `threshold`, with that similarity, exactly as a full scan in f32 would find it. Vectors
    /// are unit length, so cosine is the dot product. `vector(id)` returns a stored vector in
    /// full precision; it is asked only for the few the bounds cannot rule out.
    pub fn similar(
        &self,
        v: &[f32],
        threshold: f32,
        mut vector: impl FnMut(u64) -> Result<Vec<f32>>,
    ) -> Result<Option<(u64, f32)>> {
        let left = self.survivors(v, threshold, Stage::Int8);
        let mut candidates: Vec<u64> = left.iter().map(|i| self.ids[*i as usize]).collect();
        candidates.sort_unstable();
        for id in candidates {
            let stored = vector(id)
                .with_context(|| format!("reading stored embedding {id} for the dedup check"))?;
            let exact = dot_f32(&stored, v);
            if exact >= threshold {
                return Ok(Some((id, exact)));
            }
        }
        Ok(None)
    }

    /// How many stored vectors the first pass leaves, and how many of those the second tier
    /// leaves for the int8 check: what each prunes.
    pub fn scanned(&self, v: &[f32], threshold: f32) -> (usize, usize) {
        (
            self.survivors(v, threshold, Stage::First).len(),
            self.survivors(v, threshold, Stage::Second).len(),
        )
    }

    fn rows(&self) -> Rows<'_> {
        self.rows_from(0)
    }

    fn rows_from(&self, from: usize) -> Rows<'_> {
        Rows {
            dim: self.dim,
            values: &self.values[from * self.dim..],
            scales: &self.scales[from..],
            errors: &self.errors[from..],
            norms: &self.norms[from..],
        }
    }

    /// Positions the bounds up to `stage` cannot rule out, ascending: projected rows by the
    /// projection's tiers, then (at `Stage::Int8`) the int8 bound on the same thread; the rest
    /// (all of them before the projection is fitted) by the int8 bound.
    fn survivors(&self, v: &[f32], threshold: f32, stage: Stage) -> Vec<u32> {
        let mut out = Vec::new();
        let q: Quantized = quantize(v);
        let projected = self.projection.as_ref().map_or(0, Projection::len);
        if let Some(p) = &self.projection {
            let query = p.query(v);
            let all = self.rows();
            let pass = |from: usize, to: usize| -> Vec<u32> {
                let mut left = Vec::new();
                scan::prescan(&p.rows(from, to), &query, threshold, from as u32, &mut left);
                if stage > Stage::First && p.has_second() {
                    scan::retain_second(p.lines(), &query, threshold, &mut left);
                }
                let mut part: Vec<u32> = left.iter().map(|l| l.at).collect();
                if stage == Stage::Int8 {
                    scan::retain_reaching(&all, &q, threshold, &mut part);
                }
                part
            };
            let threads = self.threads.min(projected / PER_THREAD).max(1);
            if threads == 1 {
                out = pass(0, projected);
            } else {
                let chunk = projected.div_ceil(threads);
                std::thread::scope(|s| {
                    let parts: Vec<_> = (0..projected)
                        .step_by(chunk)
                        .map(|from| {
                            let pass = &pass;
                            s.spawn(move || pass(from, (from + chunk).min(projected)))
                        })
                        .collect();
                    for part in parts {
                        out.extend(part.join().expect("the first pass"));
                    }
                });
            }
        }
        let rest = self.rows_from(projected);
        let scan = Scan {
            rows: rest,
            query: &q,
            threshold,
        };
        let mut at = 0;
        while let Some(i) = scan.next_candidate(at) {
            out.push((projected + i) as u32);
            at = i + 1;
        }
        out
    }
}

/// How far [`DedupIndex::survivors`] sifts the projected rows.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Stage {
    First,
    Second,
    Int8,
}

#[cfg(test)]
mod tests;
