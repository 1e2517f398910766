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

impl std::fmt::Display for UserGoal {
    /// `hotel: book_hotel (hotel-name=Maple Lodge, hotel-bookday=friday), asks for hotel-phone`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gives: Vec<String> = self
            .inform
            .iter()
            .map(|(slot, value)| format!("{slot}={value}"))
            .collect();
        write!(
            f,
            "{}: {} ({})",
            self.service,
            self.intent,
            gives.join(", ")
        )?;
        if !self.request.is_empty() {
            write!(f, ", asks for {}", self.request.join(", "))?;
        }
        Ok(())
    }
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

/// One character as values are compared: lower case (where that is one character), typographic
/// quotes and dashes as their ASCII forms, any space as a space. One character for one, so
/// offsets into the folded text are offsets into the original.
fn fold(c: char) -> char {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{2032}' | '`' | '\u{00B4}' => '\'',
        '\u{201C}' | '\u{201D}' | '\u{201F}' | '\u{2033}' => '"',
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        c if c.is_whitespace() => ' ',
        c => {
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(l), None) => l,
                _ => c,
            }
        }
    }
}

fn folded(text: &str) -> Vec<char> {
    text.chars().map(fold).collect()
}

/// Whether two values are the same value: equal once folded (letter case, quotes, dashes).
pub fn same_value(a: &str, b: &str) -> bool {
    a.trim().chars().map(fold).eq(b.trim().chars().map(fold))
}

/// Every place `value` occurs in `text`, compared folded (letter case, typographic quotes and
/// dashes aside), as character offsets: the first whole-word occurrence if there is one, else
/// the first occurrence at all. Text is compared as written, not Unicode-normalized: a value
/// in composed form is not found in decomposed text.
pub fn find_span(text: &str, value: &str) -> Option<(usize, usize)> {
    let hay = folded(text);
    let needle = folded(value.trim());
    if needle.is_empty() || needle.len() > hay.len() {
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

/// Whether `value` was said in `text` (compared folded, as [`find_span`] does).
pub fn mentions(text: &str, value: &str) -> bool {
    find_span(text, value).is_some()
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
        // Typographic quotes and dashes are the ASCII ones; a character whose lower case is
        // longer ('İ') keeps every other span of the text.
        assert_eq!(
            find_span("Off to King\u{2019}s College", "king's college"),
            Some((7, 21))
        );
        assert_eq!(
            find_span("the Maple\u{2011}Lodge", "maple-lodge"),
            Some((4, 15))
        );
        assert_eq!(find_span("İstiklal then Taksim", "taksim"), Some((14, 20)));
        assert!(same_value("ZÜRICH", "zürich") && !same_value("Zurich", "Zürich"));
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
