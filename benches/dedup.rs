//! Near-duplicate check cost at 10k and 100k stored embeddings (`cargo bench --bench dedup`).
//! Vectors are random unit vectors; queries are near some stored vectors, so the exact
//! re-check path is exercised as in real use.

use std::time::Instant;

use dgen::dedup::{sha256, DedupIndex};
use rand::{Rng, SeedableRng};

fn unit(rng: &mut rand_chacha::ChaCha8Rng) -> Vec<f32> {
    let v: Vec<f32> = (0..384).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn main() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for size in [10_000usize, 100_000] {
        let mut index = DedupIndex::new(384);
        let mut stored = Vec::with_capacity(size);
        for i in 0..size {
            let v = unit(&mut rng);
            index.insert(&[sha256(&i.to_string())], &v);
            stored.push(v);
        }
        let queries: Vec<Vec<f32>> = (0..200).map(|_| unit(&mut rng)).collect();
        // Warm up, then time misses (the common case: a new dialogue is unique).
        for q in queries.iter().take(10) {
            std::hint::black_box(index.similar(q, 0.9));
        }
        let started = Instant::now();
        let mut hits = 0;
        for q in &queries {
            hits += usize::from(index.similar(q, 0.9).is_some());
        }
        let per_query = started.elapsed().as_secs_f64() / queries.len() as f64;
        // Naive full-precision scan for comparison.
        let started = Instant::now();
        for q in queries.iter().take(50) {
            let best = stored
                .iter()
                .map(|s| s.iter().zip(q).map(|(a, b)| a * b).sum::<f32>())
                .fold(f32::MIN, f32::max);
            std::hint::black_box(best);
        }
        let naive = started.elapsed().as_secs_f64() / 50.0;
        println!(
            "near-duplicate check, {size} stored: {:.3} ms/query (int8 scan + exact re-check; {hits} hits), naive f32 scan {:.3} ms/query",
            per_query * 1000.0,
            naive * 1000.0
        );
    }
}
