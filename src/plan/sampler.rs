//! The sampler: one work item per draw, in index order, from the catalog's weights and rules.

use std::collections::BTreeMap;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::draw::{below, inclusive, pick, shuffle, weighted};
use super::{CombinationUsage, PlanConfig, WorkItem};
use crate::catalog::{Catalog, TimeSlot, SIZE_NAMES};
use crate::dataset::{Dialogue, Persona};

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
            time_slot: u8::try_from(time_slot)
                .expect("the catalog holds at most MAX_TIME_SLOTS time slots"),
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
}
