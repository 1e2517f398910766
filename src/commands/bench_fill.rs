//! `dgen bench-fill` (hidden): writes N synthetic dialogues with random unit embeddings straight
//! into a planned store, for export benchmarks and tests that need a big store. Not a way to
//! make training data.

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
            let mut embedding: Vec<f32> =
                (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let norm = embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
            embedding.iter_mut().for_each(|x| *x /= norm);
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
