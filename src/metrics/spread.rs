//! Semantic spread of the accepted dialogues: for each dialogue its highest cosine similarity to
//! any other, and the mean similarity over all pairs.
//!
//! Both are quadratic in the number of dialogues, so they are computed over at most
//! `SAMPLE_CAP` embeddings: all of them up to the cap, above it a uniform sample drawn by
//! reservoir sampling seeded by the plan's seed (so the same store gives the same numbers). In a
//! sample, "any other" means any other sampled dialogue. Only the sample is kept in memory
//! (`SAMPLE_CAP` × 384 floats, 3 MB).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::store::embedding_from_bytes;

/// The most embeddings compared pairwise (2 million pairs).
pub const SAMPLE_CAP: usize = 2_000;

pub struct Spread {
    cap: usize,
    seen: u64,
    sample: Vec<Vec<f32>>,
    rng: ChaCha8Rng,
}

#[derive(Debug, Serialize)]
pub struct SpreadReport {
    /// Dialogues with an embedding.
    pub dialogues: u64,
    /// Whether the figures come from a sample rather than from every dialogue.
    pub sampled: bool,
    pub sample_size: u64,
    /// The distribution of each (sampled) dialogue's highest cosine similarity to any other.
    pub nearest_similarity: Option<FloatSummary>,
    /// The mean cosine similarity over all pairs of (sampled) dialogues.
    pub mean_pairwise_similarity: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FloatSummary {
    pub mean: f64,
    pub min: f32,
    pub p10: f32,
    pub p50: f32,
    pub p90: f32,
    pub p99: f32,
    pub max: f32,
}

impl Spread {
    pub fn new(seed: u64, cap: usize) -> Spread {
        Spread {
            cap,
            seen: 0,
            sample: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Offers one embedding (little-endian f32 bytes); it is decoded only if it is kept.
    pub fn add(&mut self, embedding: &[u8]) {
        let i = self.seen;
        self.seen += 1;
        if self.sample.len() < self.cap {
            self.sample.push(embedding_from_bytes(embedding));
        } else {
            let j = self.rng.random_range(0..=i);
            if (j as usize) < self.cap {
                self.sample[j as usize] = embedding_from_bytes(embedding);
            }
        }
    }

    pub fn report(&self) -> SpreadReport {
        let (nearest, mean) = nearest_and_mean(&self.sample);
        SpreadReport {
            dialogues: self.seen,
            sampled: self.seen > self.sample.len() as u64,
            sample_size: self.sample.len() as u64,
            nearest_similarity: summarize(nearest),
            mean_pairwise_similarity: mean,
        }
    }
}

/// Eight independent sums, so the compiler can vectorise the loop.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Each vector's highest dot product with any other, and the mean over all pairs (`None` with
/// fewer than two vectors). Vectors are unit length, so the dot product is the cosine.
fn nearest_and_mean(vectors: &[Vec<f32>]) -> (Vec<f32>, Option<f64>) {
    let n = vectors.len();
    if n < 2 {
        return (Vec::new(), None);
    }
    let mut nearest = vec![f32::NEG_INFINITY; n];
    let mut sum = 0f64;
    for i in 0..n {
        let mut row = 0f64;
        for j in i + 1..n {
            let s = dot(&vectors[i], &vectors[j]);
            row += f64::from(s);
            nearest[i] = nearest[i].max(s);
            nearest[j] = nearest[j].max(s);
        }
        sum += row;
    }
    let pairs = (n * (n - 1) / 2) as f64;
    (nearest, Some(sum / pairs))
}

fn summarize(mut values: Vec<f32>) -> Option<FloatSummary> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f32::total_cmp);
    let at =
        |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    Some(FloatSummary {
        mean: values.iter().map(|v| f64::from(*v)).sum::<f64>() / values.len() as f64,
        min: values[0],
        p10: at(0.10),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: values[values.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedding_bytes;

    fn unit(angle: f32) -> Vec<u8> {
        let mut v = vec![0f32; 10];
        (v[0], v[1]) = (angle.cos(), angle.sin());
        embedding_bytes(&v)
    }

    #[test]
    fn nearest_and_mean_pairwise_are_exact_under_the_cap() {
        let mut s = Spread::new(7, 10);
        // Angles 0, 60 and 180 degrees: cosines 0.5 (0-60), -1 (0-180), -0.5 (60-180).
        for deg in [0f32, 60.0, 180.0] {
            s.add(&unit(deg.to_radians()));
        }
        let r = s.report();
        assert!(!r.sampled);
        assert_eq!(r.sample_size, 3);
        let n = r.nearest_similarity.unwrap();
        // Nearest: 0 -> 0.5, 60 -> 0.5, 180 -> -0.5.
        assert!((n.max - 0.5).abs() < 1e-6 && (n.min + 0.5).abs() < 1e-6);
        assert!((n.mean - 0.5 / 3.0).abs() < 1e-6);
        assert!((r.mean_pairwise_similarity.unwrap() + 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn above_the_cap_a_seeded_sample_of_cap_size_is_kept() {
        let run = |seed| {
            let mut s = Spread::new(seed, 4);
            for i in 0..50 {
                s.add(&unit(i as f32 * 0.1));
            }
            s
        };
        let (a, b) = (run(1), run(1));
        let r = a.report();
        assert!(r.sampled);
        assert_eq!((r.dialogues, r.sample_size), (50, 4));
        assert_eq!(a.sample, b.sample, "the same seed draws the same sample");
        assert_ne!(a.sample, run(2).sample);
    }

    #[test]
    fn fewer_than_two_dialogues_have_no_spread() {
        let mut s = Spread::new(0, 10);
        s.add(&unit(0.0));
        let r = s.report();
        assert_eq!(r.nearest_similarity, None);
        assert_eq!(r.mean_pairwise_similarity, None);
    }

    #[test]
    fn dot_matches_the_plain_sum_on_odd_lengths() {
        let a: Vec<f32> = (0..13).map(|i| i as f32).collect();
        let plain: f32 = a.iter().map(|x| x * x).sum();
        assert_eq!(dot(&a, &a), plain);
    }
}
