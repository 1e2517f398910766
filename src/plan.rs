//! The plan: N work items drawn by a ChaCha20 RNG from (catalog, configuration, dataset
//! contents, seed). It is a pure function of those inputs: no hash-map iteration, no clock, no
//! threads, and every draw goes through the integer helpers below so the result does not depend
//! on the platform's `usize` or on a library's shuffle algorithm.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, TimeSlot, SIZE_NAMES};
use crate::dataset::{Dialogue, Persona};

/// Everything the user chose that shapes the plan. Paths are left out on purpose: the plan
/// depends on what the files contain (see the dataset fingerprints), not where they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanConfig {
    pub total_generations: u64,
    pub seed: u64,
    pub similarity_threshold: f64,
    pub min_turns: [u32; 2],
    pub max_turns: [u32; 2],
    pub temperature: Vec<f64>,
    pub top_p: Vec<f64>,
    pub frequency_penalty: Vec<f64>,
    pub presence_penalty: Vec<f64>,
}

impl PlanConfig {
    /// Refuses settings the sampler or the API could not use, naming the flag.
    pub fn validate(&self) -> Result<()> {
        if self.total_generations == 0 {
            bail!("--total_generations must be at least 1");
        }
        if !(self.similarity_threshold > 0.0 && self.similarity_threshold <= 1.0) {
            bail!(
                "--similarity_threshold is {}; it must be in (0, 1] (0.9 is the default)",
                self.similarity_threshold
            );
        }
        for (flag, [lo, hi]) in [
            ("--min_turns", self.min_turns),
            ("--max_turns", self.max_turns),
        ] {
            if lo == 0 {
                bail!("{flag} {lo} {hi}: a dialogue needs at least 1 turn");
            }
            if lo > hi {
                bail!("{flag} {lo} {hi}: the range is reversed; write it low high, e.g. {flag} {hi} {lo}");
            }
        }
        if self.max_turns[1] < self.min_turns[0] {
            bail!(
                "--max_turns {} {} is below --min_turns {} {}: the maximum turn count can never reach the minimum",
                self.max_turns[0], self.max_turns[1], self.min_turns[0], self.min_turns[1]
            );
        }
        let lists: [(&str, &Vec<f64>, f64, f64); 4] = [
            ("--temperature", &self.temperature, 0.0, 2.0),
            ("--top_p", &self.top_p, 0.0, 1.0),
            ("--frequency_penalty", &self.frequency_penalty, -2.0, 2.0),
            ("--presence_penalty", &self.presence_penalty, -2.0, 2.0),
        ];
        for (flag, list, lo, hi) in lists {
            if list.is_empty() {
                bail!("{flag} needs at least one value");
            }
            for v in list {
                if !v.is_finite() || *v < lo || *v > hi {
                    bail!("{flag} value {v} is outside [{lo}, {hi}]");
                }
            }
        }
        Ok(())
    }
}

/// One unit of work: everything the run needs to make one dialogue, decided up front.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    pub index: u64,
    pub base_dialogue_index: u32,
    pub base_dialogue_id: String,
    /// In prompt order; the first is the primary service.
    pub services: Vec<String>,
    pub category: String,
    pub region: String,
    pub time_slot: u8,
    /// Minutes after midnight, on a 5-minute grid, inside the slot.
    pub specific_time: u16,
    pub persona_index: u32,
    pub user_emotion: String,
    pub assistant_emotion: String,
    pub resolution_status: String,
    pub min_turns: u32,
    pub max_turns: u32,
    pub temperature: f64,
    pub top_p: f64,
    pub frequency_penalty: f64,
    pub presence_penalty: f64,
    /// Seeds everything decided later for this item (request seed, re-draws on retry).
    pub seed: u64,
}

impl WorkItem {
    pub fn primary_service(&self) -> &str {
        &self.services[0]
    }

    pub fn specific_time_hhmm(&self) -> String {
        format!(
            "{:02}:{:02}",
            self.specific_time / 60,
            self.specific_time % 60
        )
    }
}

/// Combination usage: size name -> sorted services joined with `+` -> count.
pub type CombinationUsage = BTreeMap<String, BTreeMap<String, u64>>;

/// Uniform integer in `0..n`, the same on every platform.
fn below(rng: &mut ChaCha20Rng, n: usize) -> usize {
    debug_assert!(n > 0);
    rng.random_range(0..n as u64) as usize
}

fn pick<'a, T>(rng: &mut ChaCha20Rng, list: &'a [T]) -> &'a T {
    &list[below(rng, list.len())]
}

/// Fisher-Yates, written out so the order is pinned by this code alone.
fn shuffle<T>(rng: &mut ChaCha20Rng, list: &mut [T]) {
    for i in (1..list.len()).rev() {
        let j = below(rng, i + 1);
        list.swap(i, j);
    }
}

fn weighted(rng: &mut ChaCha20Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    // Rounding at the top end: the last bucket with weight.
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

fn inclusive(rng: &mut ChaCha20Rng, lo: u32, hi: u32) -> u32 {
    lo + below(rng, (hi - lo + 1) as usize) as u32
}

/// Base dialogue indices: each primary service of the dataset gets an equal share of the N
/// items (the remainder goes to services chosen at random), dialogues within a service are used
/// evenly, and the whole list is shuffled.
fn base_dialogues(rng: &mut ChaCha20Rng, dialogues: &[Dialogue], n: u64) -> Vec<u32> {
    let mut groups: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (i, d) in dialogues.iter().enumerate() {
        groups
            .entry(d.primary_service())
            .or_default()
            .push(i as u32);
    }
    let groups: Vec<Vec<u32>> = groups.into_values().collect();
    let g = groups.len() as u64;
    let mut order: Vec<usize> = (0..groups.len()).collect();
    shuffle(rng, &mut order);
    let mut extra = vec![false; groups.len()];
    for &gi in order.iter().take((n % g) as usize) {
        extra[gi] = true;
    }
    let mut picks = Vec::with_capacity(n as usize);
    for (gi, members) in groups.iter().enumerate() {
        let quota = n / g + u64::from(extra[gi]);
        let mut deck = members.clone();
        let mut next = deck.len();
        for _ in 0..quota {
            if next == deck.len() {
                shuffle(rng, &mut deck);
                next = 0;
            }
            picks.push(deck[next]);
            next += 1;
        }
    }
    shuffle(rng, &mut picks);
    picks
}

/// Persona choice as in the original: with labels, cluster-based or summary-based 50/50 (a
/// random group, then a random member); without labels, uniform.
struct PersonaPicker {
    clusters: Vec<Vec<u32>>,
    summaries: Vec<Vec<u32>>,
    count: usize,
}

impl PersonaPicker {
    fn new(personas: &[Persona]) -> Self {
        let mut clusters: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        let mut summaries: BTreeMap<&[String], Vec<u32>> = BTreeMap::new();
        for (i, p) in personas.iter().enumerate() {
            if let Some(c) = p.cluster_label {
                clusters.entry(c).or_default().push(i as u32);
            }
            if let Some(s) = &p.summary_key {
                summaries.entry(s.as_slice()).or_default().push(i as u32);
            }
        }
        PersonaPicker {
            clusters: clusters.into_values().collect(),
            summaries: summaries.into_values().collect(),
            count: personas.len(),
        }
    }

    fn pick(&self, rng: &mut ChaCha20Rng) -> u32 {
        let groups = match (self.clusters.is_empty(), self.summaries.is_empty()) {
            (true, true) => return below(rng, self.count) as u32,
            (false, true) => &self.clusters,
            (true, false) => &self.summaries,
            (false, false) => {
                if below(rng, 2) == 0 {
                    &self.clusters
                } else {
                    &self.summaries
                }
            }
        };
        let group = &groups[below(rng, groups.len())];
        group[below(rng, group.len())]
    }
}

/// A specific time on the 5-minute grid inside the slot, wrapping past midnight.
fn specific_time(rng: &mut ChaCha20Rng, slot: &TimeSlot) -> u16 {
    let steps = slot.minutes() / 5;
    let offset = below(rng, steps as usize) as u32 * 5;
    ((u32::from(slot.start()) * 60 + offset) % (24 * 60)) as u16
}

pub fn combination_key(services: &[String]) -> String {
    let mut sorted: Vec<&str> = services.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.join("+")
}

/// Draws the work items one at a time, so planning a million items never holds them all.
pub struct Sampler<'a> {
    rng: ChaCha20Rng,
    bases: std::vec::IntoIter<u32>,
    next_index: u64,
    catalog: &'a Catalog,
    config: &'a PlanConfig,
    dialogues: &'a [Dialogue],
    personas: PersonaPicker,
    combos: Vec<Vec<Vec<String>>>,
    usage: Vec<Vec<u64>>,
    categories: BTreeMap<&'a str, Vec<String>>,
    status_weights: Vec<f64>,
    candidates: Vec<usize>,
}

impl<'a> Sampler<'a> {
    pub fn new(
        catalog: &'a Catalog,
        config: &'a PlanConfig,
        dialogues: &'a [Dialogue],
        personas: &[Persona],
    ) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let bases = base_dialogues(&mut rng, dialogues, config.total_generations);
        let combos: Vec<Vec<Vec<String>>> = (0..4).map(|s| catalog.combinations(s)).collect();
        let usage = combos.iter().map(|c| vec![0; c.len()]).collect();
        Sampler {
            rng,
            bases: bases.into_iter(),
            next_index: 0,
            catalog,
            config,
            dialogues,
            personas: PersonaPicker::new(personas),
            combos,
            usage,
            categories: catalog
                .core_services
                .iter()
                .map(|s| (s.as_str(), catalog.categories_for(s)))
                .collect(),
            status_weights: catalog.resolution_statuses.values().copied().collect(),
            candidates: Vec::new(),
        }
    }

    /// Combination usage so far, keyed by size name then by the sorted services joined with
    /// `+` (the original tracked sorted tuples).
    pub fn usage(&self) -> CombinationUsage {
        self.usage
            .iter()
            .enumerate()
            .map(|(size, counts)| {
                let per_combo = counts
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (combination_key(&self.combos[size][i]), *c))
                    .collect();
                (SIZE_NAMES[size].to_string(), per_combo)
            })
            .collect()
    }

    /// The least-used combination of a size drawn by the weights; ties broken at random.
    fn services(&mut self) -> Vec<String> {
        let size = weighted(
            &mut self.rng,
            &self.catalog.service_count_weights.as_array(),
        );
        let counts = &mut self.usage[size];
        let least = *counts.iter().min().expect("validated non-empty");
        self.candidates.clear();
        self.candidates
            .extend((0..counts.len()).filter(|&i| counts[i] == least));
        let chosen = self.candidates[below(&mut self.rng, self.candidates.len())];
        counts[chosen] += 1;
        let mut services = self.combos[size][chosen].clone();
        shuffle(&mut self.rng, &mut services);
        services
    }
}

impl Iterator for Sampler<'_> {
    type Item = WorkItem;

    fn next(&mut self) -> Option<WorkItem> {
        let base = self.bases.next()?;
        let index = self.next_index;
        self.next_index += 1;
        let services = self.services();
        let (catalog, config) = (self.catalog, self.config);
        let rng = &mut self.rng;
        let category = pick(rng, &self.categories[services[0].as_str()]).clone();
        let region = pick(rng, &catalog.regions).clone();
        let time_slot = below(rng, catalog.time_slots.len());
        let specific_time = specific_time(rng, &catalog.time_slots[time_slot]);
        let persona_index = self.personas.pick(rng);
        let user_emotion = pick(rng, &catalog.user_emotions).clone();
        let assistant_emotion = pick(rng, &catalog.assistant_emotions).clone();
        let status = weighted(rng, &self.status_weights);
        let resolution_status = catalog
            .resolution_statuses
            .keys()
            .nth(status)
            .expect("index from the weights")
            .clone();
        let min_turns = inclusive(rng, config.min_turns[0], config.min_turns[1]);
        let max_turns = inclusive(
            rng,
            config.max_turns[0].max(min_turns),
            config.max_turns[1].max(min_turns),
        );
        Some(WorkItem {
            index,
            base_dialogue_index: base,
            base_dialogue_id: self.dialogues[base as usize].dialogue_id.clone(),
            services,
            category,
            region,
            time_slot: time_slot as u8,
            specific_time,
            persona_index,
            user_emotion,
            assistant_emotion,
            resolution_status,
            min_turns,
            max_turns,
            temperature: *pick(rng, &config.temperature),
            top_p: *pick(rng, &config.top_p),
            frequency_penalty: *pick(rng, &config.frequency_penalty),
            presence_penalty: *pick(rng, &config.presence_penalty),
            seed: rng.next_u64(),
        })
    }
}

/// blake3 over the canonical encoding of everything the plan is a function of, and the items.
pub struct Fingerprinter {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
}

impl Fingerprinter {
    pub fn new(catalog: &Catalog, config: &PlanConfig, dataset_fingerprints: &[&str]) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"dgen-plan-v1\0");
        hasher.update(catalog.canonical_json().as_bytes());
        hasher.update(b"\0");
        hasher.update(
            serde_json::to_string(config)
                .expect("serializes")
                .as_bytes(),
        );
        for fp in dataset_fingerprints {
            hasher.update(b"\0");
            hasher.update(fp.as_bytes());
        }
        Fingerprinter {
            hasher,
            buf: Vec::with_capacity(256),
        }
    }

    pub fn add(&mut self, item: &WorkItem) {
        self.buf.clear();
        bincode::serde::encode_into_std_write(item, &mut self.buf, bincode::config::standard())
            .expect("encodes");
        self.hasher.update(&self.buf);
    }

    pub fn finish(self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}

pub fn fingerprint(
    catalog: &Catalog,
    config: &PlanConfig,
    dataset_fingerprints: &[&str],
    items: impl IntoIterator<Item = WorkItem>,
) -> String {
    let mut f = Fingerprinter::new(catalog, config, dataset_fingerprints);
    for item in items {
        f.add(&item);
    }
    f.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_times_stay_inside_their_slot() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for slot in &Catalog::builtin().time_slots {
            for _ in 0..2000 {
                let t = specific_time(&mut rng, slot);
                assert_eq!(t % 5, 0);
                let hour = (t / 60) as u8;
                let inside = if slot.start() < slot.end() {
                    hour >= slot.start() && hour < slot.end()
                } else {
                    hour >= slot.start() || hour < slot.end()
                };
                assert!(inside, "{t} outside {slot:?}");
            }
        }
    }

    #[test]
    fn weighted_never_picks_zero_weight() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for _ in 0..10_000 {
            assert_ne!(weighted(&mut rng, &[0.5, 0.0, 0.5]), 1);
        }
    }
}
