//! `dgen bench-fill` (hidden): writes N synthetic dialogues with dialogue-like embeddings
//! ([`DialogueLike`]) straight into a planned store, for the benchmarks and tests that need a
//! big store. Not a way to make training data.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use rand::{Rng, SeedableRng};

use crate::cli::BenchFillArgs;
use crate::dedup;
use crate::embed::DIM;
use crate::llm::Usage;
use crate::parse::ParsedTurn;
use crate::record::{self, GeneratedDialogue};
use crate::store::{Accepted, Batch, Store};

pub fn run(store_path: &Path, args: BenchFillArgs) -> Result<ExitCode> {
    let store = Store::open_existing(store_path)?;
    // In a shard store the n-th dialogue belongs to the shard's n-th item, as `dgen merge`
    // expects of a shard.
    let (stride, offset) = match store.meta()?.and_then(|m| m.shard) {
        Some(s) => (u64::from(s.count), u64::from(s.index)),
        None => (1, 0),
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    // One distribution for every fill, as one embedding model gives, whatever the seed: shards
    // filled with different seeds then look like one plan's dialogues, as in real use.
    let embeddings = DialogueLike::new(1);
    let mut seq = store.next_seq()?;
    let mut left = args.dialogues;
    while left > 0 {
        let n = left.min(2000);
        let mut batch = Batch::default();
        for _ in 0..n {
            let turns: Vec<ParsedTurn> = (0..5)
                .map(|t| ParsedTurn {
                    utterance: format!(
                        "Synthetic request {seq}-{t}: could you check booking {} for {} people?",
                        rng.random_range(1000..9999),
                        rng.random_range(1..9)
                    ),
                    intent: "check_booking".into(),
                    assistant_response: format!(
                        "Booking {seq}-{t} is confirmed for {} o'clock; reference BF{:06}.",
                        rng.random_range(1..12),
                        rng.random_range(0..999_999)
                    ),
                })
                .collect();
            let embedding = embeddings.sample(&mut rng);
            let hash = dedup::sha256(&record::canonical_text(&turns));
            let record = GeneratedDialogue {
                item_index: Some(seq * stride + offset),
                attempt: 0,
                dialogue_id: format!("BENCH{seq:07}_generated_synthetic"),
                services: vec!["hotel".into(), "taxi".into()],
                turns,
                user_emotion: "Hopeful".into(),
                assistant_emotion: "Patient".into(),
                scenario_category: "room_reservation".into(),
                generated_scenario: "A synthetic scenario for benchmarks.".into(),
                time_slot: (9, 12, "Late Morning".into()),
                regions: vec!["Lima".into()],
                resolution_status: "Resolved".into(),
                persona: "A synthetic persona.".into(),
                specific_time: "10:05".into(),
                base_dialogue_id: "BENCH".into(),
                model: "synthetic".into(),
                temperature: 0.7,
                top_p: 0.9,
                frequency_penalty: 0.0,
                presence_penalty: 0.0,
                seed: rng.random(),
                usage: Usage::default(),
                hash,
            };
            batch.accepted.push(Accepted {
                seq,
                record,
                embedding,
                quality: None,
            });
            seq += 1;
        }
        store.apply(&batch)?;
        left -= n;
    }
    println!(
        "wrote {} synthetic dialogues into {}",
        args.dialogues,
        store.path().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The variance of real embeddings along their principal axes, by rank (log-linear between
/// these points): all-MiniLM-L6-v2 over the 1,000 MultiWOZ 2.2 dev dialogues (BENCHMARKS.md).
const SPECTRUM: [(f64, f64); 12] = [
    (1.0, 6.3e-2),
    (2.0, 3.67e-2),
    (3.0, 2.56e-2),
    (4.0, 2.32e-2),
    (5.0, 1.05e-2),
    (10.0, 6.7e-3),
    (20.0, 3.72e-3),
    (50.0, 1.52e-3),
    (100.0, 6.41e-4),
    (200.0, 1.61e-4),
    (300.0, 3.0e-5),
    (384.0, 5e-6),
];
/// The norm of the same embeddings' mean: they share a direction (mean pairwise cosine 0.59).
const MEAN_NORM: f32 = 0.7695;
/// Principal axes drawn; the variance of the rest is spread over every dimension.
const AXES: usize = 128;

/// Unit vectors distributed like real dialogue embeddings: a Gaussian with the mean norm and
/// the principal-axis variances measured on real ones, in a random orientation (the index does
/// not care about the orientation, but int8 quantization needs the values spread over the
/// coordinates as real ones are), normalised. Random unit vectors are no stand-in: real
/// embeddings of dialogues crowd into a cone (mean pairwise cosine 0.59, not 0), which decides
/// how much a near-duplicate index can prune. A Gaussian has no topic clusters, which real
/// embeddings do, so it is the harder case.
pub struct DialogueLike {
    mean: Vec<f32>,
    /// `AXES` rows of `DIM`, each scaled by its standard deviation.
    axes: Vec<f32>,
    noise: f32,
}

impl DialogueLike {
    pub fn new(seed: u64) -> DialogueLike {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xd1a1_0601);
        // Gram-Schmidt on Gaussian vectors: a random orthonormal set.
        let mut basis: Vec<Vec<f64>> = Vec::with_capacity(AXES + 1);
        while basis.len() <= AXES {
            let mut v: Vec<f64> = (0..DIM).map(|_| gaussian(&mut rng)).collect();
            for b in &basis {
                let d: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
                v.iter_mut().zip(b).for_each(|(x, y)| *x -= d * y);
            }
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            basis.push(v.into_iter().map(|x| x / n).collect());
        }
        let variance = |rank: f64| -> f64 {
            let at = SPECTRUM
                .windows(2)
                .find(|w| rank <= w[1].0)
                .unwrap_or(&SPECTRUM[SPECTRUM.len() - 2..]);
            let (r0, v0, r1, v1) = (at[0].0, at[0].1, at[1].0, at[1].1);
            let f = (rank.ln() - r0.ln()) / (r1.ln() - r0.ln());
            (v0.ln() + f * (v1.ln() - v0.ln())).exp()
        };
        let rest: f64 = (AXES + 1..=DIM).map(|r| variance(r as f64)).sum();
        let mean = basis[0].iter().map(|x| *x as f32 * MEAN_NORM).collect();
        let axes = basis[1..]
            .iter()
            .enumerate()
            .flat_map(|(r, b)| {
                let sd = variance((r + 1) as f64).sqrt();
                b.iter().map(move |x| (x * sd) as f32)
            })
            .collect();
        DialogueLike {
            mean,
            axes,
            noise: (rest / DIM as f64).sqrt() as f32,
        }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> Vec<f32> {
        let mut v: Vec<f32> = self
            .mean
            .iter()
            .map(|m| m + self.noise * gaussian(rng) as f32)
            .collect();
        for axis in self.axes.chunks_exact(DIM) {
            let g = gaussian(rng) as f32;
            v.iter_mut().zip(axis).for_each(|(x, a)| *x += g * a);
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut impl Rng) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}
