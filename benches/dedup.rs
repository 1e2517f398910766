//! The near-duplicate check at 100,000 and 1,000,000 stored embeddings (`cargo bench --bench
//! dedup`, or `-- 100000` for one size): time to build the index, its memory, and the time per
//! check of new dialogues (queries drawn like the stored ones, so nearly all are misses, the
//! common case), against the full int8 scan the index replaced.
//!
//! Embeddings come from `DialogueLike` (`dgen bench-fill`'s): a Gaussian fitted to real
//! all-MiniLM-L6-v2 embeddings of dialogues. Random unit vectors are measured too, as the worst
//! case: in 384 dimensions they are all nearly orthogonal, so no bound prunes anything.
//!
//! `cargo bench --bench dedup -- --store PATH` times opening a real store and loading its
//! index instead (`scripts/bench-run-filled.sh` makes one with `dgen bench-fill`).

use std::time::Instant;

use dgen::commands::bench_fill::DialogueLike;
use dgen::dedup::{dot_f32, DedupIndex};
use dgen::embed::DIM;
use rand::{Rng, SeedableRng};

const THRESHOLD: f32 = 0.9;

#[path = "common/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

fn random_unit(rng: &mut impl Rng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// `-- --store PATH`: opens a store as `dgen run` does (e.g. one `dgen bench-fill` filled) and
/// times loading its index: the open, the read of every hash and embedding, the build.
fn load_store(path: &str) {
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let store = dgen::store::Store::open_existing(std::path::Path::new(path)).expect("the store");
    let index = store.load_index(DIM).expect("the index");
    println!(
        "opened {path} and built the index of {} dialogues in {:.2} s ({:.2} s CPU), index {:.0} MB",
        index.len(),
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
        index.memory_bytes() as f64 / 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--store") {
        return load_store(args.get(at + 1).expect("--store PATH"));
    }
    let sizes: Vec<usize> = match std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        Some(n) => vec![n.parse().expect("a size")],
        None => vec![100_000, 1_000_000],
    };
    let like = DialogueLike::new(1);
    let kinds: &[&str] = if std::env::args().any(|a| a == "--dialogue-like") {
        &["dialogue-like"]
    } else {
        &["dialogue-like", "random unit"]
    };
    for size in sizes {
        for kind in kinds {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(size as u64);
            let draw = |rng: &mut rand_chacha::ChaCha8Rng| match *kind {
                "dialogue-like" => like.sample(rng),
                _ => random_unit(rng),
            };
            let mut stored: Vec<f32> = Vec::with_capacity(size * DIM);
            for _ in 0..size {
                stored.extend(draw(&mut rng));
            }
            let queries: Vec<Vec<f32>> = (0..300).map(|_| draw(&mut rng)).collect();
            let vector = |id: u64| Ok(stored[id as usize * DIM..(id as usize + 1) * DIM].to_vec());

            let started = Instant::now();
            let mut index = DedupIndex::new(DIM);
            index.reserve(size);
            for (i, v) in stored.chunks_exact(DIM).enumerate() {
                index.push(i as u64, &[], v);
                if (i + 1).is_multiple_of(65_536) {
                    index.finish();
                }
            }
            index.finish();
            let build = started.elapsed().as_secs_f64();
            let memory = index.memory_bytes() as f64 / 1e6;

            let check = |index: &DedupIndex, queries: &[Vec<f32>]| {
                for q in queries.iter().take(10) {
                    std::hint::black_box(index.similar(q, THRESHOLD, vector).unwrap());
                }
                let (started, cpu) = (Instant::now(), cpu_seconds());
                let mut hits = 0;
                for q in queries {
                    hits += usize::from(index.similar(q, THRESHOLD, vector).unwrap().is_some());
                }
                let n = queries.len() as f64;
                let cpu = (cpu_seconds() - cpu) / n * 1e3;
                (started.elapsed().as_secs_f64() / n * 1e3, cpu, hits)
            };
            let (ms, cpu, hits) = check(&index, &queries);
            let (mut first_left, mut second_left) = (0, 0);
            for q in &queries {
                let (a, b) = index.scanned(q, THRESHOLD);
                first_left += a;
                second_left += b;
            }
            let share = |n: usize| 100.0 * n as f64 / (queries.len() * size) as f64;
            let (scanned, second) = (share(first_left), share(second_left));
            // The best similarity in full precision, as a sanity check of what the data is like.
            let best: f64 = queries
                .iter()
                .take(20)
                .map(|q| {
                    stored
                        .chunks_exact(DIM)
                        .map(|s| dot_f32(s, q))
                        .fold(f32::MIN, f32::max) as f64
                })
                .sum::<f64>()
                / 20.0;
            println!(
                "near-duplicate check, {size} stored, {kind}: {ms:.3} ms/check, {cpu:.2} ms CPU ({hits}/{} hits, {scanned:.2} % left by it, {second:.3} % by the second tier, mean best cosine {best:.3}); index {memory:.0} MB, built in {build:.2} s",
                queries.len(),
            );
            drop(index);
            // The full int8 scan that the index replaced, for comparison.
            let mut flat = DedupIndex::with_min_build(DIM, usize::MAX);
            for (i, v) in stored.chunks_exact(DIM).enumerate() {
                flat.push(i as u64, &[], v);
            }
            let (ms, _, _) = check(&flat, &queries[..60]);
            println!("  the full int8 scan: {ms:.3} ms/check");
        }
    }
}
