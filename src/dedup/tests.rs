//! The index against the brute-force f32 scan it must agree with: random and clustered data,
//! queries at every distance (thresholds set to an exact stored similarity included), vectors
//! inserted after the build, and the refits as the index grows.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use super::*;

type Rng8 = rand_chacha::ChaCha8Rng;

fn normalize(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn unit(rng: &mut Rng8, dim: usize) -> Vec<f32> {
    normalize((0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
}

/// `a + mix·b`, normalised: closer to `a` the smaller `mix`.
fn near(a: &[f32], b: &[f32], mix: f32) -> Vec<f32> {
    normalize(a.iter().zip(b).map(|(x, y)| x + mix * y).collect())
}

/// Vectors around `topics` random directions, at random distances from them.
fn clustered(rng: &mut Rng8, dim: usize, n: usize, topics: usize) -> Vec<Vec<f32>> {
    let centres: Vec<Vec<f32>> = (0..topics).map(|_| unit(rng, dim)).collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..topics)];
            let noise = unit(rng, dim);
            near(c, &noise, rng.random_range(0.05..1.2))
        })
        .collect()
}

fn brute(stored: &[Vec<f32>], q: &[f32], threshold: f32) -> Option<(u64, f32)> {
    stored.iter().enumerate().find_map(|(i, s)| {
        let sim = dot_f32(s, q);
        (sim >= threshold).then_some((i as u64, sim))
    })
}

fn check(index: &DedupIndex, stored: &[Vec<f32>], q: &[f32], threshold: f32) {
    let got = index
        .similar(q, threshold, |id| Ok(stored[id as usize].clone()))
        .unwrap();
    assert_eq!(got, brute(stored, q, threshold), "threshold {threshold}");
}

/// Queries of every kind against `stored`: near copies at a range of distances, unrelated
/// vectors, and thresholds equal to an exact stored similarity.
fn check_many(index: &DedupIndex, stored: &[Vec<f32>], rng: &mut Rng8, queries: usize) {
    let dim = stored[0].len();
    for k in 0..queries {
        let base = &stored[rng.random_range(0..stored.len())];
        let noise = unit(rng, dim);
        let q = match k % 4 {
            0 => unit(rng, dim),
            1 => base.clone(),
            _ => near(base, &noise, 0.04 * (k % 15) as f32),
        };
        for threshold in [0.5f32, 0.8, 0.9, 0.95, 0.99, 1.0] {
            check(index, stored, &q, threshold);
        }
        let other = &stored[rng.random_range(0..stored.len())];
        let tie = dot_f32(other, &q);
        if tie > 0.0 {
            check(index, stored, &q, tie);
        }
    }
}

#[test]
fn agrees_with_the_full_scan_on_random_vectors() {
    let mut rng = Rng8::seed_from_u64(3);
    let mut index = DedupIndex::with_min_build(384, 64);
    let stored: Vec<Vec<f32>> = (0..700).map(|_| unit(&mut rng, 384)).collect();
    for (i, v) in stored.iter().enumerate() {
        index.insert(i as u64, &[sha256(&i.to_string())], v);
        if i == 500 {
            index.finish();
        }
    }
    assert!(index.is_built(), "the index was never built");
    check_many(&index, &stored, &mut rng, 200);
    assert!(index.contains_hash(&sha256("7")));
    assert!(!index.contains_hash(&sha256("x")));
}

#[test]
fn agrees_with_the_full_scan_on_clustered_vectors() {
    let mut rng = Rng8::seed_from_u64(5);
    for topics in [1, 4, 30] {
        let stored = clustered(&mut rng, 384, 800, topics);
        let mut index = DedupIndex::with_min_build(384, 100);
        for (i, v) in stored.iter().enumerate() {
            index.insert(i as u64, &[sha256(&format!("{topics}/{i}"))], v);
            if i == 600 {
                index.finish();
            }
        }
        assert!(index.is_built());
        check_many(&index, &stored, &mut rng, 60);
    }
}

/// The first pass must prune, or the index is only a slower scan: on dialogue-like vectors
/// it leaves a small fraction of what is stored, and the second tier a small fraction of that
/// for the int8 check.
#[test]
fn the_first_pass_prunes_dialogue_like_vectors() {
    let mut rng = Rng8::seed_from_u64(11);
    let like = crate::commands::bench_fill::DialogueLike::new(1);
    let stored: Vec<Vec<f32>> = (0..3000).map(|_| like.sample(&mut rng)).collect();
    let mut index = DedupIndex::with_min_build(384, 1000);
    for (i, v) in stored.iter().enumerate() {
        index.insert(i as u64, &[], v);
    }
    index.finish();
    let (mut scanned, mut second) = (0, 0);
    for _ in 0..40 {
        let q = like.sample(&mut rng);
        let (a, b) = index.scanned(&q, 0.9);
        assert!(b <= a, "the second tier left {b} of {a}");
        scanned += a;
        second += b;
        check(&index, &stored, &q, 0.9);
    }
    assert!(
        scanned < 40 * 3000 / 20,
        "scanned {scanned} of {}",
        40 * 3000
    );
    // The second tier leaves a small part of what the first pass left.
    assert!(second * 10 <= scanned, "{second} of {scanned} left");
}

/// Vectors inserted after the build are projected with a basis not fitted to them, a batch at
/// a time, and scanned in int8 until then; the answers must not change.
#[test]
fn vectors_inserted_after_the_build_are_found() {
    let mut rng = Rng8::seed_from_u64(9);
    let stored = clustered(&mut rng, 384, 2000, 12);
    let mut index = DedupIndex::with_min_build(384, 500);
    for (i, v) in stored[..1000].iter().enumerate() {
        index.push(i as u64, &[], v);
    }
    index.finish();
    assert!(index.is_built());
    // Below the next refit (at twice the built size).
    for (i, v) in stored.iter().enumerate().skip(1000).take(999) {
        index.insert(i as u64, &[], v);
    }
    check_many(&index, &stored[..1999], &mut rng, 60);
    // Vectors unlike anything the basis was fitted to.
    let mut all = stored[..1999].to_vec();
    for i in 0..20 {
        let v = unit(&mut rng, 384);
        index.insert(all.len() as u64, &[], &v);
        all.push(v.clone());
        check(
            &index,
            &all,
            &near(&v, &unit(&mut rng, 384), 0.1 * i as f32),
            0.9,
        );
    }
}

#[test]
fn an_unbuilt_index_and_edge_cases() {
    let mut index = DedupIndex::new(4);
    assert_eq!(
        index
            .similar(&[1.0, 0.0, 0.0, 0.0], 0.9, |_| unreachable!())
            .unwrap(),
        None
    );
    let stored = vec![
        normalize(vec![1.0, 2.0, 3.0, 4.0]),
        vec![0.0, 0.0, 0.0, 0.0],
        normalize(vec![-1.0, 0.5, 0.0, 0.25]),
    ];
    for (i, v) in stored.iter().enumerate() {
        index.insert(i as u64, &[], v);
    }
    for q in &stored {
        for t in [0.1f32, 0.5, 0.9, 1.0] {
            check(&index, &stored, q, t);
        }
    }
}

/// A read failure of the stored vector is the caller's error, with what was being read.
#[test]
fn a_failed_read_is_reported() {
    let mut index = DedupIndex::new(4);
    let v = normalize(vec![1.0, 1.0, 0.0, 0.0]);
    index.insert(7, &[], &v);
    let err = index
        .similar(&v, 0.9, |_| anyhow::bail!("store gone"))
        .unwrap_err();
    assert!(format!("{err:#}").contains("stored embedding 7"), "{err:#}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Small dimensions and coarse values make near-ties and shared directions common.
    #[test]
    fn agrees_with_the_full_scan_on_small_coarse_vectors(
        seed in any::<u64>(),
        dim in 2usize..90,
        n in 1usize..400,
        min_build in 1usize..80,
        steps in 1i32..6,
        finish_at in 0usize..400,
    ) {
        let mut rng = Rng8::seed_from_u64(seed);
        let coarse = |rng: &mut Rng8| -> Vec<f32> {
            loop {
                let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-steps..=steps) as f32).collect();
                if v.iter().any(|x| *x != 0.0) {
                    return normalize(v);
                }
            }
        };
        let stored: Vec<Vec<f32>> = (0..n).map(|_| coarse(&mut rng)).collect();
        let mut index = DedupIndex::with_min_build(dim, min_build);
        for (i, v) in stored.iter().enumerate() {
            index.insert(i as u64, &[], v);
            if i == finish_at {
                index.finish();
            }
        }
        for _ in 0..30 {
            let q = coarse(&mut rng);
            for t in [0.3f32, 0.7, 0.9, 1.0] {
                check(&index, &stored, &q, t);
            }
            let tie = dot_f32(&stored[rng.random_range(0..n)], &q);
            if tie > 0.0 {
                check(&index, &stored, &q, tie);
            }
        }
    }
}
