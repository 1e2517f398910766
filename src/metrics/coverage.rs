//! Plan coverage: for every catalog dimension, each value's share of the planned items next to
//! its share of the accepted ones (items in state done), so skew brought in by rejections shows.
//! Dialogues brought in by `dgen import` have no plan item and are not counted here.
//!
//! An annotated plan (`plan --annotate`) adds three dimensions of its user goals: the goal
//! intents, the slots the goals give (inform) and the slots they ask about (request), each named
//! `service/name` (SGD's schemas reuse intent and slot names across services). An item counts
//! once per value however many of its goals have it, so a value's planned share is the share of
//! items whose goals have it; values of the schema that no item has are listed as never planned.
//! A plain plan has none of them, and its report is what it was.
//!
//! Memory is one bit per item (which are done) and one counter per distinct value.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::annotation::UserGoal;
use crate::catalog::{Catalog, SIZE_NAMES};
use crate::plan::{combination_key, WorkItem};
use crate::schema::Schema;

/// The dimensions, in report order.
pub const DIMENSIONS: [&str; 8] = [
    "service_count",
    "combination",
    "category",
    "region",
    "time_slot",
    "user_emotion",
    "assistant_emotion",
    "outcome",
];

/// The dimensions of an annotated plan's user goals, in report order, after [`DIMENSIONS`].
pub const GOAL_DIMENSIONS: [&str; 3] = ["goal_intent", "goal_inform_slot", "goal_request_slot"];

/// A goal value's name in its dimension: `service/name`.
fn qualified(service: &str, name: &str) -> String {
    format!("{service}/{name}")
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct ValueShare {
    pub planned: u64,
    pub planned_share: f64,
    pub accepted: u64,
    pub accepted_share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deviation {
    pub value: String,
    /// Accepted share minus planned share.
    pub deviation: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct DimensionReport {
    pub values: BTreeMap<String, ValueShare>,
    /// The value whose accepted share is furthest from its planned share (none before any
    /// item is accepted).
    pub largest_deviation: Option<Deviation>,
    /// Planned values that no accepted item has.
    pub never_accepted: Vec<String>,
    /// Catalog values that no item has (listed under `values` with zero counts too).
    pub never_planned: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct CoverageReport {
    pub planned: u64,
    pub accepted: u64,
    pub dimensions: BTreeMap<&'static str, DimensionReport>,
}

pub struct Coverage {
    planned: u64,
    accepted: u64,
    /// (planned, accepted) per value, per dimension in `DIMENSIONS` order.
    counts: [BTreeMap<String, (u64, u64)>; DIMENSIONS.len()],
    /// The same per goal dimension, in [`GOAL_DIMENSIONS`] order, for an annotated plan.
    goals: Option<[BTreeMap<String, (u64, u64)>; GOAL_DIMENSIONS.len()]>,
    slot_names: Vec<String>,
}

impl Coverage {
    /// Starts with every catalog value at zero, so values never planned are listed too.
    pub fn new(catalog: &Catalog) -> Coverage {
        let zero = |names: Vec<String>| names.into_iter().map(|n| (n, (0, 0))).collect();
        let slot_names: Vec<String> = catalog.time_slots.iter().map(|s| s.name().into()).collect();
        Coverage {
            planned: 0,
            accepted: 0,
            counts: [
                zero(SIZE_NAMES.iter().map(|s| s.to_string()).collect()),
                BTreeMap::new(),
                BTreeMap::new(),
                zero(catalog.regions.clone()),
                zero(slot_names.clone()),
                zero(catalog.user_emotions.clone()),
                zero(catalog.assistant_emotions.clone()),
                zero(catalog.resolution_statuses.keys().cloned().collect()),
            ],
            goals: None,
            slot_names,
        }
    }

    /// Counts the goal dimensions too, starting with every intent and slot of `services`'
    /// schemas at zero.
    pub fn with_goals(mut self, schema: &Schema, services: &[String]) -> Coverage {
        let mut zero: [BTreeMap<String, (u64, u64)>; GOAL_DIMENSIONS.len()] = Default::default();
        for service in services.iter().filter_map(|s| schema.service(s)) {
            let name = &service.service_name;
            for intent in &service.intents {
                zero[0].insert(qualified(name, &intent.name), (0, 0));
                let informs = intent
                    .required_slots
                    .iter()
                    .chain(intent.optional_slots.keys());
                for slot in informs {
                    zero[1].insert(qualified(name, slot), (0, 0));
                }
                for slot in &intent.result_slots {
                    zero[2].insert(qualified(name, slot), (0, 0));
                }
            }
        }
        self.goals = Some(zero);
        self
    }

    /// Adds the goals of an item already [`Coverage::add`]ed (nothing unless
    /// [`Coverage::with_goals`]).
    pub fn add_goals(&mut self, goals: &[UserGoal], accepted: bool) {
        let Some(counts) = &mut self.goals else {
            return;
        };
        let mut values: [BTreeSet<String>; GOAL_DIMENSIONS.len()] = Default::default();
        for g in goals {
            values[0].insert(qualified(&g.service, &g.intent));
            values[1].extend(g.inform.iter().map(|(slot, _)| qualified(&g.service, slot)));
            values[2].extend(g.request.iter().map(|slot| qualified(&g.service, slot)));
        }
        for (counts, values) in counts.iter_mut().zip(values) {
            for value in values {
                let entry = counts.entry(value).or_default();
                entry.0 += 1;
                entry.1 += u64::from(accepted);
            }
        }
    }

    pub fn add(&mut self, item: &WorkItem, accepted: bool) {
        let size = SIZE_NAMES[item.services.len().clamp(1, 4) - 1];
        let slot = self
            .slot_names
            .get(item.time_slot as usize)
            .map_or("?", String::as_str);
        let values = [
            size,
            &combination_key(&item.services),
            &item.category,
            &item.region,
            slot,
            &item.user_emotion,
            &item.assistant_emotion,
            &item.resolution_status,
        ];
        self.planned += 1;
        self.accepted += u64::from(accepted);
        for (counts, value) in self.counts.iter_mut().zip(values) {
            let entry = counts.entry(value.to_string()).or_default();
            entry.0 += 1;
            entry.1 += u64::from(accepted);
        }
    }

    pub fn report(&self) -> CoverageReport {
        let mut dimensions: BTreeMap<&'static str, DimensionReport> = DIMENSIONS
            .iter()
            .zip(&self.counts)
            .map(|(name, counts)| (*name, self.dimension(counts)))
            .collect();
        if let Some(goals) = &self.goals {
            for (name, counts) in GOAL_DIMENSIONS.iter().zip(goals) {
                dimensions.insert(name, self.dimension(counts));
            }
        }
        CoverageReport {
            planned: self.planned,
            accepted: self.accepted,
            dimensions,
        }
    }

    fn dimension(&self, counts: &BTreeMap<String, (u64, u64)>) -> DimensionReport {
        let share = |n: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            }
        };
        let mut d = DimensionReport::default();
        for (value, (planned, accepted)) in counts {
            let v = ValueShare {
                planned: *planned,
                planned_share: share(*planned, self.planned),
                accepted: *accepted,
                accepted_share: share(*accepted, self.accepted),
            };
            if *planned == 0 {
                d.never_planned.push(value.clone());
            } else if *accepted == 0 {
                d.never_accepted.push(value.clone());
            }
            let deviation = v.accepted_share - v.planned_share;
            let larger = d
                .largest_deviation
                .as_ref()
                .is_none_or(|l| deviation.abs() > l.deviation.abs());
            if self.accepted > 0 && larger {
                d.largest_deviation = Some(Deviation {
                    value: value.clone(),
                    deviation,
                });
            }
            d.values.insert(value.clone(), v);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(services: &[&str], region: &str, status: &str) -> WorkItem {
        WorkItem {
            index: 0,
            base_dialogue_index: 0,
            base_dialogue_id: "B".into(),
            services: services.iter().map(|s| s.to_string()).collect(),
            category: "booking".into(),
            region: region.into(),
            time_slot: 0,
            specific_time: 0,
            persona_index: 0,
            user_emotion: "Calm".into(),
            assistant_emotion: "Patient".into(),
            resolution_status: status.into(),
            min_turns: 3,
            max_turns: 5,
            temperature: 0.7,
            top_p: 0.9,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 0,
        }
    }

    #[test]
    fn shares_deviation_and_never_accepted_on_a_small_plan() {
        let catalog = Catalog::builtin();
        let mut c = Coverage::new(&catalog);
        // Five planned: Oslo x3 (two accepted), Bergen x1 (accepted), Paris x1 (not).
        c.add(&item(&["taxi"], "Oslo", "Resolved"), true);
        c.add(&item(&["taxi"], "Oslo", "Resolved"), true);
        c.add(&item(&["taxi", "hotel"], "Oslo", "Resolved"), false);
        c.add(&item(&["hotel"], "Bergen", "Resolved"), true);
        c.add(&item(&["hotel"], "Paris", "Resolved"), false);
        let r = c.report();
        assert_eq!((r.planned, r.accepted), (5, 3));

        let regions = &r.dimensions["region"];
        let oslo = regions.values["Oslo"];
        assert_eq!((oslo.planned, oslo.accepted), (3, 2));
        assert_eq!((oslo.planned_share, oslo.accepted_share), (0.6, 2.0 / 3.0));
        let bergen = regions.values["Bergen"];
        assert_eq!(
            (bergen.planned_share, bergen.accepted_share),
            (0.2, 1.0 / 3.0)
        );
        let paris = regions.values["Paris"];
        assert_eq!((paris.planned, paris.accepted_share), (1, 0.0));
        // Paris moves by -0.2, Bergen by +0.133, Oslo by +0.067.
        let dev = regions.largest_deviation.as_ref().unwrap();
        assert_eq!((dev.value.as_str(), dev.deviation), ("Paris", -0.2));
        assert_eq!(regions.never_accepted, ["Paris"]);
        // Catalog regions no item has are listed apart.
        for region in &catalog.regions {
            let never = regions.never_planned.contains(region);
            assert_eq!(
                never,
                !["Oslo", "Bergen", "Paris"].contains(&region.as_str())
            );
        }

        let combos = &r.dimensions["combination"];
        assert_eq!(combos.never_accepted, ["hotel+taxi"]);
        assert_eq!(combos.values["hotel+taxi"].planned_share, 0.2);
        let sizes = &r.dimensions["service_count"];
        assert_eq!(sizes.values["double"].accepted_share, 0.0);
        assert_eq!(sizes.values["single"].accepted_share, 1.0);
        let dev = sizes.largest_deviation.as_ref().unwrap();
        // single +0.2 and double -0.2: either may win the tie.
        assert!((dev.deviation.abs() - 0.2).abs() < 1e-12, "{dev:?}");
        assert_eq!(sizes.never_accepted, ["double"]);
        assert_eq!(sizes.never_planned, ["quadruple", "triple"]);
    }

    fn goal(service: &str, intent: &str, inform: &[&str], request: &[&str]) -> UserGoal {
        UserGoal {
            service: service.into(),
            intent: intent.into(),
            inform: inform.iter().map(|s| (s.to_string(), "v".into())).collect(),
            request: request.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn goal_intents_and_slots_are_counted_per_item_next_to_the_schema() {
        let schema = Schema::builtin();
        let services = ["hotel".to_string(), "taxi".to_string()];
        let mut c = Coverage::new(&Catalog::builtin()).with_goals(&schema, &services);
        let hotel = goal("hotel", "book_hotel", &["hotel-name", "hotel-stay"], &[]);
        let taxi = goal("taxi", "book_taxi", &["taxi-destination"], &["taxi-phone"]);
        // Two goals of one item that share nothing, an item with the hotel goal only (accepted),
        // one with the same goal twice (counted once).
        c.add(&item(&["hotel", "taxi"], "Oslo", "Resolved"), false);
        c.add_goals(&[hotel.clone(), taxi.clone()], false);
        c.add(&item(&["hotel"], "Oslo", "Resolved"), true);
        c.add_goals(std::slice::from_ref(&hotel), true);
        c.add(&item(&["hotel"], "Oslo", "Resolved"), false);
        c.add_goals(&[hotel.clone(), hotel], false);
        let r = c.report();
        let intents = &r.dimensions["goal_intent"];
        let book = intents.values["hotel/book_hotel"];
        assert_eq!((book.planned, book.accepted), (3, 1));
        assert_eq!((book.planned_share, book.accepted_share), (1.0, 1.0));
        let taxi = intents.values["taxi/book_taxi"];
        assert_eq!((taxi.planned, taxi.accepted), (1, 0));
        assert_eq!(intents.never_accepted, ["taxi/book_taxi"]);
        assert!(intents
            .never_planned
            .contains(&"hotel/find_hotel".to_string()));
        assert!(
            !intents.values.keys().any(|k| k.starts_with("train/")),
            "only the given services' schemas"
        );
        let informs = &r.dimensions["goal_inform_slot"];
        assert_eq!(informs.values["hotel/hotel-name"].planned, 3);
        assert_eq!(informs.values["taxi/taxi-destination"].accepted, 0);
        let requests = &r.dimensions["goal_request_slot"];
        assert_eq!(requests.values["taxi/taxi-phone"].planned, 1);
        assert_eq!(requests.never_accepted, ["taxi/taxi-phone"]);
    }

    #[test]
    fn a_plain_plan_has_no_goal_dimensions() {
        let mut c = Coverage::new(&Catalog::builtin());
        c.add(&item(&["taxi"], "Oslo", "Resolved"), true);
        c.add_goals(&[goal("taxi", "book_taxi", &[], &[])], true);
        let r = c.report();
        assert_eq!(r.dimensions.len(), DIMENSIONS.len());
        assert!(GOAL_DIMENSIONS
            .iter()
            .all(|d| !r.dimensions.contains_key(d)));
    }

    #[test]
    fn nothing_accepted_has_no_deviation() {
        let mut c = Coverage::new(&Catalog::builtin());
        c.add(&item(&["taxi"], "Oslo", "Resolved"), false);
        let r = c.report();
        assert!(r.dimensions["region"].largest_deviation.is_none());
        assert_eq!(r.dimensions["region"].values["Oslo"].accepted_share, 0.0);
    }
}
