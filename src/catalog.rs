//! The catalog: every list and weight the plan samples from (services, their logical
//! combinations, scenario categories, regions, time slots, emotions, resolution statuses and
//! generation defaults). It is data, compiled in from `assets/catalog.json` and replaceable with
//! `--catalog FILE` (JSON or TOML of the same shape). Validation happens once, here, so the
//! sampler can index freely.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::quality::QualityConfig;

const DEFAULT_CATALOG: &str = include_str!("../assets/catalog.json");

/// The name under which general (service-independent) categories are listed.
pub const GENERAL: &str = "general";

/// Service-count buckets in sampling order; `service_count_weights` and `logical_combinations`
/// are keyed by these names.
pub const SIZE_NAMES: [&str; 4] = ["single", "double", "triple", "quadruple"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceCountWeights {
    pub single: f64,
    pub double: f64,
    pub triple: f64,
    pub quadruple: f64,
}

impl ServiceCountWeights {
    pub fn as_array(&self) -> [f64; 4] {
        [self.single, self.double, self.triple, self.quadruple]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogicalCombinations {
    pub double: Vec<Vec<String>>,
    pub triple: Vec<Vec<String>>,
    pub quadruple: Vec<Vec<String>>,
}

/// The most time slots a catalog may list: a work item stores its slot's index as a `u8`.
pub const MAX_TIME_SLOTS: usize = u8::MAX as usize + 1;

/// `[start_hour, end_hour, name]`; the end is exclusive and a slot whose end is not after its
/// start wraps past midnight.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TimeSlot(pub u8, pub u8, pub String);

impl TimeSlot {
    pub fn start(&self) -> u8 {
        self.0
    }
    pub fn end(&self) -> u8 {
        self.1
    }
    pub fn name(&self) -> &str {
        &self.2
    }
    /// Length of the slot in minutes, wrapping past midnight.
    pub fn minutes(&self) -> u32 {
        let hours = (u32::from(self.1) + 24 - u32::from(self.0)) % 24;
        hours * 60
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScenarioCall {
    pub max_tokens: u32,
    pub temperature: f64,
    pub top_p: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DialogueCall {
    pub max_tokens: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GenerationDefaults {
    pub min_turns: [u32; 2],
    pub max_turns: [u32; 2],
    pub temperature: Vec<f64>,
    pub top_p: Vec<f64>,
    pub frequency_penalty: Vec<f64>,
    pub presence_penalty: Vec<f64>,
    pub similarity_threshold: f64,
    pub model: String,
    pub scenario_call: ScenarioCall,
    pub dialogue_call: DialogueCall,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub core_services: Vec<String>,
    pub service_count_weights: ServiceCountWeights,
    pub logical_combinations: LogicalCombinations,
    /// `general` plus one list per service; a BTreeMap so the canonical encoding is ordered.
    pub scenario_categories: BTreeMap<String, Vec<String>>,
    pub regions: Vec<String>,
    pub time_slots: Vec<TimeSlot>,
    pub user_emotions: Vec<String>,
    pub assistant_emotions: Vec<String>,
    /// Sampled in key order (a BTreeMap), so JSON and TOML spellings plan identically.
    pub resolution_statuses: BTreeMap<String, f64>,
    pub generation_defaults: GenerationDefaults,
    /// Overrides of the built-in quality-check data (actions, outcome cues, service keywords).
    /// Absent from the built-in catalog and skipped when absent, so the canonical encoding —
    /// and every plan fingerprint made before the section existed — stays the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityConfig>,
}

impl Catalog {
    /// The built-in catalog of the original pipeline.
    pub fn builtin() -> Catalog {
        let catalog: Catalog =
            serde_json::from_str(DEFAULT_CATALOG).expect("the built-in catalog parses");
        catalog
            .validate()
            .expect("the built-in catalog is consistent");
        catalog
    }

    /// Reads a catalog file (`.toml` as TOML, anything else as JSON) and validates it.
    pub fn from_file(path: &Path) -> Result<Catalog> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read catalog file {}", path.display()))?;
        let is_toml = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("toml"));
        let catalog: Catalog = if is_toml {
            toml::from_str(&text).with_context(|| {
                format!(
                    "catalog {} is not valid TOML of the catalog shape (see assets/catalog.json)",
                    path.display()
                )
            })?
        } else {
            let mut value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("catalog {} is not valid JSON", path.display()))?;
            // Comment-like keys (`_about`, ...) are allowed at the top level.
            if let Some(map) = value.as_object_mut() {
                map.retain(|key, _| !key.starts_with('_') && !key.ends_with("_note"));
            }
            serde_json::from_value(value).with_context(|| {
                format!(
                    "catalog {} does not have the catalog shape (see assets/catalog.json)",
                    path.display()
                )
            })?
        };
        catalog
            .validate()
            .with_context(|| format!("catalog {} is inconsistent", path.display()))?;
        Ok(catalog)
    }

    /// Loads `--catalog` when given, the built-in catalog otherwise.
    pub fn load(path: Option<&Path>) -> Result<Catalog> {
        match path {
            Some(path) => Catalog::from_file(path),
            None => Ok(Catalog::builtin()),
        }
    }

    /// Combinations of one size: singles are the core services themselves.
    pub fn combinations(&self, size_index: usize) -> Vec<Vec<String>> {
        match size_index {
            0 => self.core_services.iter().map(|s| vec![s.clone()]).collect(),
            1 => self.logical_combinations.double.clone(),
            2 => self.logical_combinations.triple.clone(),
            _ => self.logical_combinations.quadruple.clone(),
        }
    }

    /// General categories followed by the service's own, without repeats.
    pub fn categories_for(&self, service: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.scenario_categories
            .get(GENERAL)
            .into_iter()
            .flatten()
            .chain(self.scenario_categories.get(service).into_iter().flatten())
            .filter(|c| seen.insert(c.as_str()))
            .cloned()
            .collect()
    }

    /// The quality-check data: the built-in defaults with this catalog's `quality` section
    /// over them.
    pub fn quality(&self) -> QualityConfig {
        let builtin = QualityConfig::builtin();
        match &self.quality {
            Some(over) => builtin.merged(over),
            None => builtin,
        }
    }

    /// The canonical encoding used in fingerprints and stored in the store's meta table.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a catalog serializes")
    }

    /// Refuses a catalog the sampler could not use, naming the entry and the fix.
    pub fn validate(&self) -> Result<()> {
        let services = self.validate_services()?;
        self.validate_combinations(&services)?;
        self.validate_categories(&services)?;
        non_empty("regions", &self.regions)?;
        self.validate_time_slots()?;
        non_empty("user_emotions", &self.user_emotions)?;
        non_empty("assistant_emotions", &self.assistant_emotions)?;
        if self.resolution_statuses.is_empty() {
            bail!("resolution_statuses is an empty list; give at least one status with a weight");
        }
        check_weights(
            "resolution_statuses",
            self.resolution_statuses
                .iter()
                .map(|(k, v)| (k.as_str(), *v)),
        )?;
        let d = &self.generation_defaults;
        for (name, list) in [
            ("temperature", &d.temperature),
            ("top_p", &d.top_p),
            ("frequency_penalty", &d.frequency_penalty),
            ("presence_penalty", &d.presence_penalty),
        ] {
            non_empty(&format!("generation_defaults.{name}"), list)?;
        }
        if let Some(quality) = &self.quality {
            quality.validate(&self.core_services)?;
        }
        Ok(())
    }

    /// The core services, each named once.
    fn validate_services(&self) -> Result<BTreeSet<&str>> {
        non_empty("core_services", &self.core_services)?;
        let services: BTreeSet<&str> = self.core_services.iter().map(String::as_str).collect();
        if services.len() != self.core_services.len() {
            bail!("core_services lists a service twice; each service must appear once");
        }
        for (i, s) in self.core_services.iter().enumerate() {
            if s.trim().is_empty() {
                bail!("core_services[{i}] is empty; give every service a name");
            }
        }
        Ok(services)
    }

    /// Size weights, and combinations of the right size made of distinct known services.
    fn validate_combinations(&self, services: &BTreeSet<&str>) -> Result<()> {
        let weights = self.service_count_weights.as_array();
        check_weights(
            "service_count_weights",
            SIZE_NAMES.iter().copied().zip(weights.iter().copied()),
        )?;
        for (size_index, name) in SIZE_NAMES.iter().enumerate().skip(1) {
            let combos = self.combinations(size_index);
            if combos.is_empty() && weights[size_index] > 0.0 {
                bail!(
                    "logical_combinations.{name} is an empty list but service_count_weights.{name} is {}; add combinations or set the weight to 0",
                    weights[size_index]
                );
            }
            for (i, combo) in combos.iter().enumerate() {
                let want = size_index + 1;
                if combo.len() != want {
                    bail!(
                        "logical_combinations.{name}[{i}] has {} services ({}); a {name} combination has exactly {want}",
                        combo.len(),
                        combo.join(", ")
                    );
                }
                for service in combo {
                    if !services.contains(service.as_str()) {
                        bail!(
                            "logical_combinations.{name}[{i}] names unknown service \"{service}\"; add it to core_services or fix the combination"
                        );
                    }
                }
                let distinct: BTreeSet<&String> = combo.iter().collect();
                if distinct.len() != combo.len() {
                    bail!(
                        "logical_combinations.{name}[{i}] repeats a service ({}); list each service once",
                        combo.join(", ")
                    );
                }
            }
        }
        Ok(())
    }

    /// A general list, and per-service lists for known services only, none empty.
    fn validate_categories(&self, services: &BTreeSet<&str>) -> Result<()> {
        match self.scenario_categories.get(GENERAL) {
            Some(general) => non_empty("scenario_categories.general", general)?,
            None => bail!("scenario_categories has no \"general\" list; add the service-independent categories under \"general\""),
        }
        for (key, list) in &self.scenario_categories {
            if key != GENERAL && !services.contains(key.as_str()) {
                bail!(
                    "scenario_categories.{key} names unknown service \"{key}\"; add it to core_services or remove the list"
                );
            }
            non_empty(&format!("scenario_categories.{key}"), list)?;
        }
        Ok(())
    }

    /// Hours within 0-23, at least one hour a slot, and no more slots than a work item's
    /// `time_slot` (a `u8`) can number.
    fn validate_time_slots(&self) -> Result<()> {
        non_empty("time_slots", &self.time_slots)?;
        if self.time_slots.len() > MAX_TIME_SLOTS {
            bail!(
                "time_slots has {} entries, more than the {MAX_TIME_SLOTS} a plan can number; merge or remove slots",
                self.time_slots.len()
            );
        }
        for (i, slot) in self.time_slots.iter().enumerate() {
            for (what, hour) in [("start", slot.start()), ("end", slot.end())] {
                if hour > 23 {
                    bail!(
                        "time_slots[{i}] (\"{}\") has {what} hour {hour}, outside 0-23",
                        slot.name()
                    );
                }
            }
            if slot.start() == slot.end() {
                bail!(
                    "time_slots[{i}] (\"{}\") starts and ends at hour {}; a slot needs at least one hour",
                    slot.name(),
                    slot.start()
                );
            }
        }
        Ok(())
    }
}

fn non_empty<T>(name: &str, list: &[T]) -> Result<()> {
    if list.is_empty() {
        bail!("{name} is an empty list; it needs at least one entry");
    }
    Ok(())
}

fn check_weights<'a>(name: &str, weights: impl Iterator<Item = (&'a str, f64)>) -> Result<()> {
    let mut total = 0.0;
    for (key, weight) in weights {
        if !weight.is_finite() || weight < 0.0 {
            bail!("{name}.{key} is {weight}; weights must be finite and not negative");
        }
        total += weight;
    }
    if total <= 0.0 {
        bail!("{name} weights sum to 0; give at least one a positive weight");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_matches_the_original_counts() {
        let c = Catalog::builtin();
        assert_eq!(c.core_services.len(), 8);
        assert_eq!(c.logical_combinations.double.len(), 17);
        assert_eq!(c.logical_combinations.triple.len(), 15);
        assert_eq!(c.logical_combinations.quadruple.len(), 9);
        assert_eq!(c.regions.len(), 54);
        assert_eq!(c.time_slots.len(), 6);
        assert_eq!(c.user_emotions.len(), 20);
        assert_eq!(c.assistant_emotions.len(), 20);
        assert_eq!(c.resolution_statuses["Resolved"], 0.4);
    }

    #[test]
    fn the_builtin_catalog_has_no_quality_section_in_its_canonical_encoding() {
        let c = Catalog::builtin();
        assert!(c.quality.is_none());
        assert!(!c.canonical_json().contains("quality"));
        assert!(!c.quality().outcome_cues.is_empty());
    }

    #[test]
    fn a_catalog_quality_section_is_read_and_checked() {
        let mut value: serde_json::Value = serde_json::from_str(DEFAULT_CATALOG).unwrap();
        value["quality"] = serde_json::json!({"service_keywords": {"taxi": ["cab"]}});
        let c: Catalog = serde_json::from_value(value.clone()).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.quality().service_keywords["taxi"],
            vec!["cab".to_string()]
        );
        assert!(c.canonical_json().contains("\"quality\""));
        value["quality"] = serde_json::json!({"service_keywords": {"boat": ["ferry"]}});
        let c: Catalog = serde_json::from_value(value).unwrap();
        let e = format!("{:#}", c.validate().unwrap_err());
        assert!(e.contains("unknown service \"boat\""), "{e}");
    }

    #[test]
    fn a_toml_catalog_carries_the_quality_section_too() {
        use crate::quality::{Action, Check, QualityConfig};
        let mut c = Catalog::builtin();
        c.quality = Some(QualityConfig {
            actions: [(Check::OffTopic, Action::Reject)].into(),
            ..QualityConfig::default()
        });
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("[quality.actions]"), "{text}");
        let back: Catalog = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.quality().action(Check::OffTopic), Action::Reject);
    }

    #[test]
    fn every_slot_index_fits_a_work_item() {
        let mut c = Catalog::builtin();
        c.time_slots = (0..MAX_TIME_SLOTS)
            .map(|i| TimeSlot(0, 1, format!("slot {i}")))
            .collect();
        c.validate().unwrap();
        c.time_slots.push(TimeSlot(0, 1, "one too many".into()));
        let e = format!("{:#}", c.validate().unwrap_err());
        assert!(e.contains("time_slots has 257 entries"), "{e}");
        assert!(e.contains("256"), "{e}");
    }

    #[test]
    fn overnight_slot_wraps_midnight() {
        let slot = TimeSlot(23, 5, "Overnight".into());
        assert_eq!(slot.minutes(), 6 * 60);
    }

    #[test]
    fn categories_include_general_then_service() {
        let c = Catalog::builtin();
        let cats = c.categories_for("taxi");
        assert_eq!(cats[0], "account_management");
        assert!(cats.contains(&"ride_booking".to_string()));
        assert!(!cats.contains(&"flight_booking".to_string()));
    }
}
