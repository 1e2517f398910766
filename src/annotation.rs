//! What the annotated mode keeps beside a dialogue: the user goals its item was planned with and,
//! per turn, the frames of the Schema-Guided Dialogue dataset — the user's dialogue state per
//! service (active intent, slot values, requested slots) with the spans of the values said, and
//! the assistant's service call with its results. Spans are character offsets (Unicode scalar
//! values, as Python indexes strings) that dgen computes from the text, never the model's.
//!
//! Stored as JSON in its own table, so a plain store has none and later versions can add fields.
//! A leaf (like `record`), below the parser that builds it and the store that keeps it.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What the simulated user wants from one service: the intent, the slot values it will give
/// (in the order drawn) and the slots it will ask about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserGoal {
    pub service: String,
    pub intent: String,
    pub inform: Vec<(String, String)>,
    pub request: Vec<String>,
}

/// A value's place in an utterance: `start..exclusive_end` in characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub slot: String,
    pub start: usize,
    pub exclusive_end: usize,
}

/// One dialogue act, as SGD writes them (`INFORM`, `REQUEST`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Act {
    pub act: String,
    #[serde(default)]
    pub slot: String,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub canonical_values: Vec<String>,
}

/// The user's dialogue state for one service after a user turn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// `NONE` when the user wants nothing of the service yet.
    pub active_intent: String,
    pub requested_slots: Vec<String>,
    pub slot_values: BTreeMap<String, Vec<String>>,
}

/// The assistant's call of a service's intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCall {
    pub method: String,
    pub parameters: BTreeMap<String, String>,
}

/// One service's frame of one utterance, the fields SGD gives it: a user frame has `state`, an
/// assistant frame may have `service_call` and `service_results` (an empty list: the call
/// found nothing or failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub service: String,
    #[serde(default)]
    pub slots: Vec<Span>,
    #[serde(default)]
    pub actions: Vec<Act>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_call: Option<ServiceCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_results: Option<Vec<BTreeMap<String, String>>>,
}

impl Frame {
    pub fn new(service: &str) -> Frame {
        Frame {
            service: service.to_string(),
            slots: Vec::new(),
            actions: Vec::new(),
            state: None,
            service_call: None,
            service_results: None,
        }
    }
}

/// One turn's frames: the user utterance's and the assistant reply's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnFrames {
    pub user: Vec<Frame>,
    pub assistant: Vec<Frame>,
    /// The assistant hands the case over to a person in this turn.
    #[serde(default)]
    pub handover: bool,
}

/// The label checks' summary, for `status` and the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSummary {
    /// Every non-categorical value in a state or call was said in the dialogue by then.
    pub grounded: bool,
    /// Every goal slot's value is in the final state of its service.
    pub goal_realized: bool,
}

/// Everything annotated about one dialogue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// The planned goals (none for imported dialogues).
    #[serde(default)]
    pub goals: Vec<UserGoal>,
    /// One entry per turn of the dialogue.
    pub turns: Vec<TurnFrames>,
    /// `None` for imported dialogues, which were not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelSummary>,
    /// The service results were written by the model (true for generated dialogues): they are
    /// plausible, not the answers of a real system.
    #[serde(default)]
    pub simulated_results: bool,
}

impl Annotation {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an annotation serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Annotation> {
        serde_json::from_slice(bytes)
            .context("the store holds an annotation this dgen cannot decode")
    }
}

/// Every place `value` occurs in `text`, case-insensitively, as character offsets: the first
/// whole-word occurrence if there is one, else the first occurrence at all.
pub fn find_span(text: &str, value: &str) -> Option<(usize, usize)> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let hay: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let needle: Vec<char> = value.chars().flat_map(char::to_lowercase).collect();
    // Lower-casing may change the length of a character (rare: 'İ'); offsets are only exact
    // when it does not, so such texts fall back to no span rather than a wrong one.
    if hay.len() != text.chars().count() || needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    let word = |i: Option<&char>| i.is_none_or(|c| !c.is_alphanumeric());
    let mut first = None;
    for start in 0..=hay.len() - needle.len() {
        if hay[start..start + needle.len()] != needle[..] {
            continue;
        }
        let end = start + needle.len();
        let before = start.checked_sub(1).and_then(|i| hay.get(i));
        if word(before) && word(hay.get(end)) {
            return Some((start, end));
        }
        first.get_or_insert((start, end));
    }
    first
}

/// Whether `value` was said in `text` (case-insensitively).
pub fn mentions(text: &str, value: &str) -> bool {
    let value = value.trim().to_lowercase();
    !value.is_empty() && text.to_lowercase().contains(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_character_offsets_found_case_insensitively_preferring_whole_words() {
        assert_eq!(
            find_span("A table at LA PIAZZA, please", "la piazza"),
            Some((11, 20))
        );
        // "é" is one character: offsets count characters, not bytes.
        assert_eq!(find_span("Café Rouge at 19:15", "19:15"), Some((14, 19)));
        assert_eq!(
            find_span("the italianate one, italian", "italian"),
            Some((20, 27))
        );
        assert_eq!(find_span("the italianate one", "italian"), Some((4, 11)));
        assert_eq!(find_span("nothing here", "paris"), None);
        assert_eq!(find_span("anything", " "), None);
    }

    #[test]
    fn an_annotation_round_trips_through_its_stored_encoding() {
        let mut frame = Frame::new("hotel");
        frame.state = Some(State {
            active_intent: "book_hotel".into(),
            requested_slots: vec!["hotel-phone".into()],
            slot_values: BTreeMap::from([("hotel-name".into(), vec!["Maple Lodge".into()])]),
        });
        let a = Annotation {
            goals: vec![UserGoal {
                service: "hotel".into(),
                intent: "book_hotel".into(),
                inform: vec![("hotel-name".into(), "Maple Lodge".into())],
                request: vec![],
            }],
            turns: vec![TurnFrames {
                user: vec![frame],
                assistant: vec![],
                handover: false,
            }],
            labels: Some(LabelSummary {
                grounded: true,
                goal_realized: false,
            }),
            simulated_results: true,
        };
        assert_eq!(Annotation::decode(&a.encode()).unwrap(), a);
    }
}
