//! The annotated mode's user goals: per item and per planned service, the intent the user wants
//! (transactional for the primary service where the service has one), the slots it will give
//! with their values and the slots it will ask about. Drawn from a ChaCha20 stream of its own,
//! seeded by the item's seed, with the same integer helpers as the rest of the plan: a goal is a
//! pure function of the stored item and the plan's schema and pools, and the unannotated draws
//! are untouched.

use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::draw::{below, inclusive, pick, shuffle};
use super::WorkItem;
use crate::annotation::UserGoal;
use crate::schema::{Schema, Service, ValuePools};

/// Separates the goal stream from every other stream seeded by the item's seed.
const GOAL_SALT: u64 = 0x676f_616c_7374_7265;

/// The most optional slots a goal gives, beside the required ones.
const MAX_OPTIONAL: u32 = 3;
/// The most slots a goal asks about.
const MAX_REQUESTED: u32 = 2;

/// `plan --annotate`: the schema and the value pools goals are drawn from. Part of the plan's
/// configuration (and so of its fingerprint and its store), so a run needs neither file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotate {
    pub schema: Schema,
    pub values: ValuePools,
}

impl Annotate {
    /// Every catalog service has a schema, and every required slot a value to draw.
    pub fn validate(&self, services: &[String]) -> Result<()> {
        self.schema.validate()?;
        for name in services {
            let Some(service) = self.schema.service(name) else {
                bail!(
                    "the catalog's service \"{name}\" has no schema; add a service named \"{name}\" to --services_schema (the built-in schema covers the built-in catalog's services)"
                );
            };
            for intent in &service.intents {
                for slot in &intent.required_slots {
                    if self.drawable(service, slot).is_empty() {
                        bail!(
                            "required slot \"{slot}\" of intent \"{}\" (service \"{name}\") has no values to draw: it is not categorical and --slot_values gives no list for it; add one, e.g. {{\"{slot}\": [\"…\"]}}",
                            intent.name
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The values a goal may give a slot: a categorical slot's possible values, else the pool's.
    fn drawable<'a>(&'a self, service: &'a Service, slot: &str) -> &'a [String] {
        match service.slot(slot) {
            Some(s) if !s.draws_from_pool() => &s.possible_values,
            Some(_) => self.values.values(slot),
            None => &[],
        }
    }

    /// The item's goals, one per planned service, in the item's service order.
    pub fn goals(&self, item: &WorkItem) -> Vec<UserGoal> {
        let mut rng = ChaCha20Rng::seed_from_u64(item.seed ^ GOAL_SALT);
        item.services
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let service = self.schema.service(name)?;
                Some(self.goal(&mut rng, service, i == 0))
            })
            .collect()
    }

    fn goal(&self, rng: &mut ChaCha20Rng, service: &Service, primary: bool) -> UserGoal {
        let transactional: Vec<_> = service
            .intents
            .iter()
            .filter(|i| i.is_transactional)
            .collect();
        let intent = if primary && !transactional.is_empty() {
            *pick(rng, &transactional)
        } else {
            pick(rng, &service.intents)
        };
        let mut inform = Vec::new();
        for slot in &intent.required_slots {
            let values = self.drawable(service, slot);
            inform.push((slot.clone(), pick(rng, values).clone()));
        }
        let mut optional: Vec<&String> = intent
            .optional_slots
            .keys()
            .filter(|s| !self.drawable(service, s).is_empty())
            .collect();
        shuffle(rng, &mut optional);
        let lo = u32::from(intent.required_slots.is_empty() && !optional.is_empty());
        let hi = MAX_OPTIONAL.min(optional.len() as u32);
        let n = inclusive(rng, lo, hi.max(lo)) as usize;
        for slot in optional.into_iter().take(n) {
            let values = self.drawable(service, slot);
            inform.push((slot.clone(), values[below(rng, values.len())].clone()));
        }
        let mut askable: Vec<&String> = intent
            .result_slots
            .iter()
            .filter(|s| !inform.iter().any(|(i, _)| i == *s))
            .collect();
        shuffle(rng, &mut askable);
        let n = inclusive(rng, 0, MAX_REQUESTED.min(askable.len() as u32)) as usize;
        let request = askable.into_iter().take(n).cloned().collect();
        UserGoal {
            service: service.service_name.clone(),
            intent: intent.name.clone(),
            inform,
            request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seed: u64, services: &[&str]) -> WorkItem {
        WorkItem {
            index: 0,
            base_dialogue_index: 0,
            base_dialogue_id: "b".into(),
            services: services.iter().map(|s| s.to_string()).collect(),
            category: "general".into(),
            region: "Tokyo".into(),
            time_slot: 0,
            specific_time: 600,
            persona_index: 0,
            user_emotion: "calm".into(),
            assistant_emotion: "kind".into(),
            resolution_status: "Resolved".into(),
            min_turns: 3,
            max_turns: 5,
            temperature: 0.7,
            top_p: 0.9,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed,
        }
    }

    fn builtin() -> Annotate {
        Annotate {
            schema: Schema::builtin(),
            values: ValuePools::builtin(),
        }
    }

    #[test]
    fn goals_are_a_pure_function_of_the_item_and_follow_the_schema() {
        let a = builtin();
        a.validate(&crate::catalog::Catalog::builtin().core_services)
            .unwrap();
        let mut intents = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let it = item(seed, &["hotel", "taxi", "attraction"]);
            let goals = a.goals(&it);
            assert_eq!(goals, a.goals(&it));
            assert_eq!(goals.len(), 3);
            let hotel = a.schema.service("hotel").unwrap();
            let intent = hotel.intent(&goals[0].intent).unwrap();
            assert!(intent.is_transactional, "the primary service's goal books");
            for slot in &intent.required_slots {
                assert!(goals[0].inform.iter().any(|(s, _)| s == slot), "{slot}");
            }
            for (slot, value) in &goals[0].inform {
                let s = hotel.slot(slot).unwrap();
                if s.is_categorical {
                    assert!(s.possible_values.contains(value), "{slot}={value}");
                }
                assert!(intent.takes(slot));
            }
            for slot in &goals[0].request {
                assert!(intent.result_slots.contains(slot));
            }
            intents.insert(goals[2].intent.clone());
        }
        assert!(!intents.is_empty());
    }

    #[test]
    fn a_service_without_schema_and_a_required_slot_without_values_are_named() {
        let a = builtin();
        let e = a.validate(&["gym".to_string()]).unwrap_err().to_string();
        assert!(
            e.contains("\"gym\"") && e.contains("--services_schema"),
            "{e}"
        );
        let mut a = builtin();
        a.values.slots.remove("train-departure");
        let e = a.validate(&["train".to_string()]).unwrap_err().to_string();
        assert!(
            e.contains("train-departure") && e.contains("--slot_values"),
            "{e}"
        );
    }
}
