//! `dgen judge-discrimination` (hidden; `scripts/judge-discrimination.sh` runs it): a seeded
//! sample of real dialogues from a dataset, each judged as it is and in four corrupted forms,
//! and how often the judge ranks the original higher.
//!
//! The judge is told each dialogue's services and a planned outcome of Resolved (what a
//! MultiWOZ dialogue — a user getting the booking or information they asked for — ends with);
//! no persona, emotions or scenario, which the rubric then scores as neutral.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::cli::DiscriminationArgs;
use crate::dataset::{self, DatasetSource};
use crate::judge::corrupt::{turns_of, Case, MIN_TURNS};
use crate::judge::discrimination::{self, Original};
use crate::judge::endpoint::{self, RunDefaults};

/// Longer dialogues are left out of the sample: they add prompt tokens (a small local model's
/// time) without testing anything the shorter ones do not.
const MAX_TURNS: usize = 8;

pub fn run(args: DiscriminationArgs) -> Result<ExitCode> {
    let source = DatasetSource {
        path: args.dataset.dataset.clone(),
        name: args.dataset.dataset_name.clone(),
        split: args.dataset.split.clone(),
    };
    let path = source.resolve()?;
    let loaded = dataset::load_dialogues(&path, &source.split)?;
    let mut usable: Vec<Original> = loaded
        .dialogues
        .iter()
        .map(|d| Original {
            services: d.services.clone(),
            case: Case {
                turns: turns_of(d),
                outcome: "Resolved".into(),
            },
        })
        .filter(|o| (MIN_TURNS..=MAX_TURNS).contains(&o.case.turns.len()))
        .collect();
    if usable.len() < args.sample {
        bail!(
            "{} has {} dialogues of {MIN_TURNS} to {MAX_TURNS} turns, fewer than --sample {}; lower --sample",
            path.display(),
            usable.len(),
            args.sample
        );
    }
    usable.shuffle(&mut ChaCha20Rng::seed_from_u64(args.seed));
    usable.truncate(args.sample);
    let launched = endpoint::launch(
        &super::judge::endpoint_config(&args.endpoint),
        &RunDefaults::default(),
    )?;
    tracing::info!(
        "judging {} dialogues and 4 corruptions each with {} at {}",
        usable.len(),
        launched.judge.settings.model,
        launched.base_url
    );
    let runtime = crate::process::worker_runtime()?;
    let report = runtime.block_on(discrimination::measure(
        Arc::new(launched.judge),
        Arc::new(usable),
        args.seed,
        launched.concurrency,
    ));
    drop(launched.server);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", discrimination::render_text(&report));
    }
    Ok(ExitCode::SUCCESS)
}
