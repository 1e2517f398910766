//! Slot values a dataset's own labels use. MultiWOZ 2.2 and SGD dialogues carry per-turn
//! frames whose dialogue state lists the values said so far: `turns[].frames[].state
//! .slot_values` (`{"hotel-area": ["east"]}`) in their JSON layout, `turns.frames[].state[]
//! .slots_values` (`{slots_values_name: […], slots_values_list: [[…]]}`) in the Hugging Face
//! `multi_woz_v22` one. An annotated plan draws its goals' values from them where the dataset
//! has them (see `schema::ValuePools::observed`).
//!
//! The reader walks whatever nesting the layout has and takes every state it finds, so both
//! layouts (and dgen's own `export --multiwoz`/`--hf`) read alike without a reader per layout.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The columns (at any depth) the states live under; read only for annotated plans.
pub const FRAME_FIELDS: &[&str] = &[
    "frames",
    "state",
    "slot_values",
    "slots_values",
    "slots_values_name",
    "slots_values_list",
];

/// Values that say no value: MultiWOZ's "dontcare", its older "not mentioned", "?".
const NOT_A_VALUE: &[&str] = &["dontcare", "dont care", "do n't care", "not mentioned", "?"];

/// Slot name → value → in how many dialogues a state held it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedValues {
    pub slots: BTreeMap<String, BTreeMap<String, u64>>,
    /// Dialogues with at least one state value.
    pub dialogues: u64,
}

impl ObservedValues {
    /// Counts one dialogue's (slot, value) pairs, as [`said_in`] found them.
    pub fn add(&mut self, said: BTreeSet<(String, String)>) {
        if said.is_empty() {
            return;
        }
        self.dialogues += 1;
        for (slot, value) in said {
            *self
                .slots
                .entry(slot)
                .or_default()
                .entry(value)
                .or_default() += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// The (slot, value) pairs the states in one dialogue's `turns` hold.
pub fn said_in(turns: &Value) -> BTreeSet<(String, String)> {
    let mut said = BTreeSet::new();
    collect(turns, &mut said);
    said
}

fn collect(value: &Value, out: &mut BTreeSet<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(values)) = map.get("slot_values") {
                for (slot, said) in values {
                    keep(slot, said, out);
                }
            }
            if let Some(Value::Object(columns)) = map.get("slots_values") {
                if let (Some(Value::Array(names)), Some(Value::Array(lists))) = (
                    columns.get("slots_values_name"),
                    columns.get("slots_values_list"),
                ) {
                    for (slot, said) in names.iter().zip(lists) {
                        if let Some(slot) = slot.as_str() {
                            keep(slot, said, out);
                        }
                    }
                }
            }
            for (key, inner) in map {
                if key != "slot_values" && key != "slots_values" {
                    collect(inner, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}

/// A state's value list gives alternatives of one value ("cheap", "inexpensive"): the first
/// is the one said.
fn keep(slot: &str, said: &Value, out: &mut BTreeSet<(String, String)>) {
    let first = match said {
        Value::Array(alternatives) => alternatives.first().and_then(Value::as_str),
        Value::String(s) => Some(s.as_str()),
        _ => None,
    };
    let (Some(value), slot) = (first.map(str::trim), slot.trim()) else {
        return;
    };
    if value.is_empty() || slot.is_empty() || NOT_A_VALUE.contains(&value.to_lowercase().as_str()) {
        return;
    }
    out.insert((slot.to_string(), value.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_layouts_give_the_same_values_once_per_dialogue() {
        // MultiWOZ 2.2 / SGD JSON: a list of turns, each with a list of frames.
        let json_layout = json!([
            {"speaker": "USER", "frames": [{"service": "hotel", "state": {
                "active_intent": "find_hotel", "requested_slots": [],
                "slot_values": {"hotel-area": ["east"], "hotel-pricerange": ["cheap", "inexpensive"]}}}]},
            {"speaker": "SYSTEM", "frames": []},
            {"speaker": "USER", "frames": [{"service": "hotel", "state": {
                "active_intent": "find_hotel", "requested_slots": [],
                "slot_values": {"hotel-area": ["east"], "hotel-name": ["dontcare"]}}}]}
        ]);
        // Hugging Face multi_woz_v22: a struct of lists; frames a struct of lists per turn.
        let hf_layout = json!({
            "speaker": [0, 1, 0],
            "frames": [
                {"service": ["hotel"], "state": [{"active_intent": "find_hotel",
                    "slots_values": {"slots_values_name": ["hotel-area", "hotel-pricerange"],
                                     "slots_values_list": [["east"], ["cheap", "inexpensive"]]}}]},
                {"service": [], "state": []},
                {"service": ["hotel"], "state": [{"active_intent": "find_hotel",
                    "slots_values": {"slots_values_name": ["hotel-area", "hotel-name"],
                                     "slots_values_list": [["east"], ["dontcare"]]}}]}
            ]
        });
        let mut a = ObservedValues::default();
        a.add(said_in(&json_layout));
        a.add(said_in(&json_layout));
        let mut b = ObservedValues::default();
        b.add(said_in(&hf_layout));
        b.add(said_in(&hf_layout));
        assert_eq!(a, b);
        assert_eq!(a.dialogues, 2);
        assert_eq!(a.slots["hotel-area"]["east"], 2, "once per dialogue");
        assert_eq!(
            a.slots["hotel-pricerange"].keys().collect::<Vec<_>>(),
            ["cheap"]
        );
        assert!(!a.slots.contains_key("hotel-name"), "dontcare is no value");
    }

    #[test]
    fn dialogues_without_frames_add_nothing() {
        let mut o = ObservedValues::default();
        o.add(said_in(&json!({"speaker": [0], "utterance": ["hi"]})));
        let empty = json!([{"speaker": "USER", "frames": [{"state": {"slot_values": {}}}]}]);
        o.add(said_in(&empty));
        assert!(o.is_empty());
        assert_eq!(o.dialogues, 0);
    }
}
