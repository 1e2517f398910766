//! The uniqueness index: exact duplicates by SHA-256 of the canonical conversation, near
//! duplicates by cosine similarity of L2-normalised embeddings. The scan runs over int8 copies
//! of the vectors (a quarter of the memory traffic) with a proven error bound, and only the
//! candidates the bound cannot rule out are checked in full precision, so the answer is exact.
//! The scan is compiled for AVX2 and AVX-512 as well and picked at run time: the only `unsafe`
//! in dgen is that call, made after the CPU was checked for the features.
#![allow(unsafe_code)]

use std::collections::HashSet;

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn sha256(text: &str) -> Hash {
    Sha256::digest(text.as_bytes()).into()
}

pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A vector quantized to int8 with its scale and the norm of its quantization error.
struct Quantized {
    values: Vec<i8>,
    scale: f32,
    error: f32,
    norm: f32,
}

fn quantize(v: &[f32]) -> Quantized {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let values: Vec<i8> = v
        .iter()
        .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    let mut err2 = 0.0f64;
    let mut norm2 = 0.0f64;
    for (x, q) in v.iter().zip(&values) {
        let d = f64::from(*q) * f64::from(scale);
        err2 += (f64::from(*x) - d).powi(2);
        norm2 += d * d;
    }
    // Rounded up a little so float error in these sums cannot make the bound too tight.
    Quantized {
        values,
        scale,
        error: (err2.sqrt() * 1.0001 + 1e-6) as f32,
        norm: norm2.sqrt() as f32,
    }
}

#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum()
}

fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
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

/// The int8 scan: finds stored vectors whose similarity the error bound cannot rule out.
struct Scan<'a> {
    dim: usize,
    rows: &'a [i8],
    scales: &'a [f32],
    errors: &'a [f32],
    norms: &'a [f32],
    query: &'a Quantized,
    threshold: f32,
}

impl Scan<'_> {
    #[inline(always)]
    fn next_candidate_generic(&self, from: usize) -> Option<usize> {
        let q = self.query;
        let mut i = from;
        while i < self.scales.len() {
            let row = &self.rows[i * self.dim..(i + 1) * self.dim];
            let approx = self.scales[i] * q.scale * dot_i8(row, &q.values) as f32;
            // |a.b - a'.b'| <= |a - a'| |b| + |a'| |b - b'|, with |b| = 1.
            let bound = self.errors[i] + self.norms[i] * q.error + 1e-5;
            if approx + bound >= self.threshold {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// The same loop compiled for wider vector units, picked at run time.
    fn next_candidate(&self, from: usize) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                // SAFETY: the CPU supports the features the function is compiled for.
                return unsafe { self.next_candidate_avx512(from) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                return unsafe { self.next_candidate_avx2(from) };
            }
        }
        self.next_candidate_generic(from)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn next_candidate_avx2(&self, from: usize) -> Option<usize> {
        self.next_candidate_generic(from)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn next_candidate_avx512(&self, from: usize) -> Option<usize> {
        self.next_candidate_generic(from)
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
