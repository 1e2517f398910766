//! The uniqueness index: exact duplicates by SHA-256 of the canonical conversation, near
//! duplicates by cosine similarity of L2-normalised embeddings. The scan runs over int8 copies
//! of the vectors (a quarter of the memory traffic) with a proven error bound, and only the
//! candidates the bound cannot rule out are checked in full precision, so the answer is exact.
//! The scan (`scan`) is compiled for AVX2 and AVX-512 as well and picked at run time.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

mod check;
mod scan;

pub use check::Duplicate;
use scan::{dot_f32, quantize, Scan};

pub type Hash = [u8; 32];

pub fn sha256(text: &str) -> Hash {
    Sha256::digest(text.as_bytes()).into()
}

pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct DedupIndex {
    dim: usize,
    hashes: HashSet<Hash>,
    vectors: Vec<f32>,
    quantized: Vec<i8>,
    scales: Vec<f32>,
    errors: Vec<f32>,
    norms: Vec<f32>,
}

impl DedupIndex {
    pub fn new(dim: usize) -> DedupIndex {
        DedupIndex {
            dim,
            hashes: HashSet::new(),
            vectors: Vec::new(),
            quantized: Vec::new(),
            scales: Vec::new(),
            errors: Vec::new(),
            norms: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    pub fn contains_hash(&self, hash: &Hash) -> bool {
        self.hashes.contains(hash)
    }

    /// Adds one dialogue: its hash keys (usually one) and its embedding.
    pub fn insert(&mut self, hashes: &[Hash], vector: &[f32]) {
        assert_eq!(vector.len(), self.dim);
        self.hashes.extend(hashes.iter().copied());
        let q = quantize(vector);
        self.vectors.extend_from_slice(vector);
        self.quantized.extend_from_slice(&q.values);
        self.scales.push(q.scale);
        self.errors.push(q.error);
        self.norms.push(q.norm);
    }

    /// The first stored vector (in insertion order) whose cosine similarity with `v` is at least
    /// `threshold`, with that similarity. Vectors are unit length, so cosine is the dot product.
    pub fn similar(&self, v: &[f32], threshold: f32) -> Option<(usize, f32)> {
        let q = quantize(v);
        let scan = Scan {
            dim: self.dim,
            rows: &self.quantized,
            scales: &self.scales,
            errors: &self.errors,
            norms: &self.norms,
            query: &q,
            threshold,
        };
        let mut from = 0;
        while let Some(i) = scan.next_candidate(from) {
            let exact = dot_f32(&self.vectors[i * self.dim..(i + 1) * self.dim], v);
            if exact >= threshold {
                return Some((i, exact));
            }
            from = i + 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn unit(rng: &mut rand_chacha::ChaCha8Rng, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn quantized_scan_agrees_with_the_exact_answer() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut index = DedupIndex::new(384);
        let stored: Vec<Vec<f32>> = (0..500).map(|_| unit(&mut rng, 384)).collect();
        for (i, v) in stored.iter().enumerate() {
            index.insert(&[sha256(&i.to_string())], v);
        }
        for k in 0..200 {
            // Queries near stored vectors, at a range of similarities.
            let base = &stored[k % stored.len()];
            let noise = unit(&mut rng, 384);
            let mix = 0.05 * (k % 12) as f32;
            let q: Vec<f32> = base.iter().zip(&noise).map(|(a, b)| a + mix * b).collect();
            let n = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            let q: Vec<f32> = q.into_iter().map(|x| x / n).collect();
            for threshold in [0.8f32, 0.9, 0.95, 0.99] {
                let exact_hit = stored.iter().any(|s| dot_f32(s, &q) >= threshold);
                assert_eq!(
                    index.similar(&q, threshold).is_some(),
                    exact_hit,
                    "k={k} t={threshold}"
                );
            }
        }
        assert!(index.contains_hash(&sha256("7")));
        assert!(!index.contains_hash(&sha256("x")));
    }
}
