//! Service schemas in the Schema-Guided Dialogue dataset's `schema.json` format (MultiWOZ 2.2
//! publishes its schema in the same format): services with their slots and intents, the data the
//! annotated mode draws user goals from, shows the model, and checks labels against. Also the
//! value pools the goals draw non-categorical values from.
//!
//! Built in: `assets/schema.json`, one service for each service of the built-in catalog (slot
//! names as in MultiWOZ 2.2 where the service exists there), and `assets/slot_values.json`. A
//! user's file replaces built-in services of the same name and adds the others, so an SGD or
//! MultiWOZ 2.2 `schema.json` loads as published.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize};

const BUILTIN_SCHEMA: &str = include_str!("../assets/schema.json");
const BUILTIN_VALUES: &str = include_str!("../assets/slot_values.json");

/// One service: `service_name`, `description`, `slots`, `intents`, as in SGD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub service_name: String,
    #[serde(default)]
    pub description: String,
    pub slots: Vec<Slot>,
    pub intents: Vec<Intent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub is_categorical: bool,
    #[serde(default)]
    pub possible_values: Vec<String>,
}

impl Slot {
    /// Whether a goal draws this slot's values from a value pool: it is not categorical, or
    /// it is but lists no possible values.
    pub fn draws_from_pool(&self) -> bool {
        !self.is_categorical || self.possible_values.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub is_transactional: bool,
    #[serde(default)]
    pub required_slots: Vec<String>,
    /// Slot → default value, as SGD writes it; MultiWOZ 2.2's list of names reads as defaults
    /// of `dontcare`.
    #[serde(default, deserialize_with = "optional_slots")]
    pub optional_slots: BTreeMap<String, String>,
    #[serde(default)]
    pub result_slots: Vec<String>,
}

fn optional_slots<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Map(BTreeMap<String, String>),
        List(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::Map(m) => m,
        Either::List(l) => l.into_iter().map(|s| (s, "dontcare".into())).collect(),
    })
}

impl Intent {
    /// Every slot the intent takes: required first, then optional.
    pub fn argument_slots(&self) -> impl Iterator<Item = &str> {
        self.required_slots
            .iter()
            .map(String::as_str)
            .chain(self.optional_slots.keys().map(String::as_str))
    }

    pub fn takes(&self, slot: &str) -> bool {
        self.argument_slots().any(|s| s == slot)
    }
}

impl Service {
    pub fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.name == name)
    }

    pub fn intent(&self, name: &str) -> Option<&Intent> {
        self.intents.iter().find(|i| i.name == name)
    }
}

/// A list of services, serialized as SGD's `schema.json` (a JSON list).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Schema {
    pub services: Vec<Service>,
}

impl Schema {
    /// The built-in schema of the built-in catalog's services.
    pub fn builtin() -> Schema {
        serde_json::from_str(BUILTIN_SCHEMA).expect("the built-in schema is SGD schema JSON")
    }

    /// A `schema.json` file (a list of services), checked.
    pub fn from_file(path: &Path) -> Result<Schema> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --services_schema {}", path.display()))?;
        let schema: Schema = serde_json::from_str(&text).with_context(|| {
            format!(
                "--services_schema {} is not a schema.json in SGD's format (a JSON list of services, each with service_name, slots and intents)",
                path.display()
            )
        })?;
        schema
            .validate()
            .with_context(|| format!("--services_schema {}", path.display()))?;
        Ok(schema)
    }

    /// `self` with `over`'s services replacing those of the same name and the others added.
    pub fn extended(mut self, over: Schema) -> Schema {
        for service in over.services {
            match self
                .services
                .iter_mut()
                .find(|s| s.service_name == service.service_name)
            {
                Some(old) => *old = service,
                None => self.services.push(service),
            }
        }
        self
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.service_name == name)
    }

    /// The services named, in that order, as a schema (for `schema.json` next to an export).
    pub fn only<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Schema {
        let wanted: BTreeSet<&str> = names.into_iter().collect();
        Schema {
            services: self
                .services
                .iter()
                .filter(|s| wanted.contains(s.service_name.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// Names unique per level, intents' slots among the service's, categorical slots with
    /// values: what the goals, the prompts and the checks rely on.
    pub fn validate(&self) -> Result<()> {
        let mut names = BTreeSet::new();
        for s in &self.services {
            let name = &s.service_name;
            if name.trim().is_empty() {
                bail!("a service has an empty service_name");
            }
            if !names.insert(name.as_str()) {
                bail!("service \"{name}\" is listed twice; keep one");
            }
            let mut slots = BTreeSet::new();
            for slot in &s.slots {
                if slot.name.trim().is_empty() {
                    bail!("service \"{name}\" has a slot with an empty name");
                }
                if !slots.insert(slot.name.as_str()) {
                    bail!("service \"{name}\" lists slot \"{}\" twice", slot.name);
                }
            }
            if s.slots.is_empty() {
                bail!("service \"{name}\" has no slots; give it at least one (a request's JSON schema lists the slots)");
            }
            if s.intents.is_empty() {
                bail!("service \"{name}\" has no intents; give it at least one");
            }
            let mut intents = BTreeSet::new();
            for intent in &s.intents {
                if !intents.insert(intent.name.as_str()) {
                    bail!("service \"{name}\" lists intent \"{}\" twice", intent.name);
                }
                let used = intent
                    .argument_slots()
                    .chain(intent.result_slots.iter().map(String::as_str));
                for slot in used {
                    if !slots.contains(slot) {
                        bail!(
                            "intent \"{}\" of service \"{name}\" names slot \"{slot}\", which the service does not list; add it to the service's slots",
                            intent.name
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

/// Values for non-categorical slots: slot name → values a goal may draw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValuePools {
    pub slots: BTreeMap<String, Vec<String>>,
}

impl ValuePools {
    pub fn builtin() -> ValuePools {
        let mut value: serde_json::Value =
            serde_json::from_str(BUILTIN_VALUES).expect("the built-in value pools are JSON");
        if let Some(map) = value.as_object_mut() {
            map.retain(|key, _| !key.starts_with('_'));
        }
        serde_json::from_value(value).expect("the built-in value pools map slots to lists")
    }

    /// A `{"slot": ["value", …]}` file.
    pub fn from_file(path: &Path) -> Result<ValuePools> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --slot_values {}", path.display()))?;
        let pools: ValuePools = serde_json::from_str(&text).with_context(|| {
            format!(
                "--slot_values {} is not a JSON object mapping slot names to lists of values",
                path.display()
            )
        })?;
        for (slot, values) in &pools.slots {
            if values.iter().any(|v| v.trim().is_empty()) {
                bail!(
                    "--slot_values {}: slot \"{slot}\" has an empty value; remove it",
                    path.display()
                );
            }
        }
        Ok(pools)
    }

    /// `self` with `over`'s lists replacing its own, slot by slot.
    pub fn extended(mut self, over: ValuePools) -> ValuePools {
        self.slots.extend(over.slots);
        self
    }

    pub fn values(&self, slot: &str) -> &[String] {
        self.slots.get(slot).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Pools from the values a dataset's frames hold (slot → value → dialogues), for the
    /// schema's slots that draw from a pool (not categorical): per slot the
    /// [`MAX_OBSERVED`] values said in most dialogues (ties by value), in that order. A slot
    /// with fewer than [`MIN_OBSERVED`] distinct values is left out, so that a small file does
    /// not narrow every goal to one value.
    pub fn observed(
        schema: &Schema,
        counts: &BTreeMap<String, BTreeMap<String, u64>>,
    ) -> ValuePools {
        let mut slots = BTreeMap::new();
        for slot in schema.services.iter().flat_map(|s| &s.slots) {
            if !slot.draws_from_pool() {
                continue;
            }
            let Some(said) = counts.get(&slot.name) else {
                continue;
            };
            if said.len() < MIN_OBSERVED {
                continue;
            }
            let mut ranked: Vec<(&String, u64)> = said.iter().map(|(v, n)| (v, *n)).collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            ranked.truncate(MAX_OBSERVED);
            slots.insert(
                slot.name.clone(),
                ranked.into_iter().map(|(v, _)| v.clone()).collect(),
            );
        }
        ValuePools { slots }
    }
}

/// The most values a slot's pool keeps from a dataset's frames: enough for MultiWOZ's venues
/// (about 100 restaurant names), small enough that the plan's stored settings stay small.
pub const MAX_OBSERVED: usize = 128;
/// The fewest distinct values a dataset must give a slot before its pool replaces the built-in.
pub const MIN_OBSERVED: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_schema_covers_the_builtin_catalog_and_its_pools_every_free_slot_goals_use() {
        let schema = Schema::builtin();
        schema.validate().unwrap();
        let pools = ValuePools::builtin();
        for service in &crate::catalog::Catalog::builtin().core_services {
            let s = schema
                .service(service)
                .unwrap_or_else(|| panic!("{service}"));
            for intent in &s.intents {
                for slot in &intent.required_slots {
                    let slot = s.slot(slot).unwrap();
                    assert!(
                        slot.is_categorical || !pools.values(&slot.name).is_empty(),
                        "{}",
                        slot.name
                    );
                }
            }
        }
    }

    #[test]
    fn multiwoz_lists_and_sgd_maps_of_optional_slots_both_load() {
        let text = r#"[{"service_name": "a", "slots": [{"name": "x", "is_categorical": false}],
            "intents": [{"name": "i", "optional_slots": ["x"]},
                        {"name": "j", "is_transactional": true, "required_slots": [], "optional_slots": {"x": "dontcare"}, "result_slots": ["x"]}]}]"#;
        let schema: Schema = serde_json::from_str(text).unwrap();
        schema.validate().unwrap();
        assert_eq!(
            schema.services[0].intents[0].optional_slots,
            schema.services[0].intents[1].optional_slots
        );
    }

    #[test]
    fn an_intent_naming_a_missing_slot_is_refused_with_the_fix() {
        let text = r#"[{"service_name": "a", "slots": [{"name": "x"}], "intents": [{"name": "i", "required_slots": ["y"]}]}]"#;
        let schema: Schema = serde_json::from_str(text).unwrap();
        let e = schema.validate().unwrap_err().to_string();
        assert!(e.contains("\"y\"") && e.contains("add it"), "{e}");
    }

    #[test]
    fn a_file_replaces_a_builtin_service_and_adds_its_own() {
        let over: Schema = serde_json::from_str(
            r#"[{"service_name": "hotel", "slots": [], "intents": [{"name": "stay"}]},
                {"service_name": "gym", "slots": [], "intents": [{"name": "join"}]}]"#,
        )
        .unwrap();
        let s = Schema::builtin().extended(over);
        assert_eq!(s.service("hotel").unwrap().intents[0].name, "stay");
        assert!(s.service("gym").is_some() && s.service("train").is_some());
    }

    #[test]
    fn observed_pools_rank_by_dialogues_and_skip_categorical_and_thin_slots() {
        let schema = Schema::builtin();
        let counts = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(v, n)| (v.to_string(), *n)).collect()
        };
        let mut observed = BTreeMap::new();
        observed.insert(
            "hotel-name".to_string(),
            counts(&[("b inn", 2), ("a inn", 2), ("c inn", 5)]),
        );
        // Categorical in the schema: its possible values stay.
        observed.insert(
            "hotel-area".to_string(),
            counts(&[("x", 1), ("y", 1), ("z", 1)]),
        );
        // Fewer than MIN_OBSERVED values: the built-in pool stays.
        observed.insert(
            "restaurant-name".to_string(),
            counts(&[("one", 9), ("two", 9)]),
        );
        // Not a slot of the schema.
        observed.insert(
            "gym-branch".to_string(),
            counts(&[("p", 1), ("q", 1), ("r", 1)]),
        );
        let many: Vec<(String, u64)> = (0..200).map(|i| (format!("t{i:03}"), 1)).collect();
        observed.insert("train-leaveat".to_string(), many.into_iter().collect());
        let pools = ValuePools::observed(&schema, &observed);
        assert_eq!(
            pools.slots.keys().collect::<Vec<_>>(),
            ["hotel-name", "train-leaveat"]
        );
        assert_eq!(pools.values("hotel-name"), ["c inn", "a inn", "b inn"]);
        assert_eq!(pools.values("train-leaveat").len(), MAX_OBSERVED);
    }
}
