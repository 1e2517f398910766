//! The annotated mode's answer: JSON turns, each with the user's words, the dialogue state after
//! them per service, the assistant's reply, the service call the assistant makes (or null) with
//! its results, and whether the assistant hands the case over. Parsed into the plain turns every
//! other stage reads (the intent is the primary service's active intent) and the SGD frames of
//! [`Annotation`]; spans and dialogue acts are computed here from the text, never taken from the
//! model.
//!
//! ```json
//! {"turns": [{"user": "…",
//!   "state": [{"service": "hotel", "active_intent": "book_hotel",
//!              "slot_values": [{"slot": "hotel-name", "value": "Maple Lodge"}],
//!              "requested_slots": ["hotel-phone"]}],
//!   "assistant": "…",
//!   "service_call": {"service": "hotel", "method": "book_hotel",
//!                    "parameters": [{"slot": "hotel-name", "value": "Maple Lodge"}]},
//!   "service_results": [[{"slot": "hotel-ref", "value": "7GAWK"}]],
//!   "handover": false}]}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{field, ParseError, ParsedTurn};
use crate::annotation::{
    find_span, same_value, Act, Annotation, Frame, ServiceCall, Span, State, TurnFrames,
};
use crate::schema::Schema;

/// The intent label of a turn whose services all have no active intent.
pub const NO_INTENT: &str = "NONE";

#[derive(Deserialize)]
struct Wire {
    turns: Vec<WireTurn>,
}

#[derive(Deserialize)]
struct WireTurn {
    user: String,
    #[serde(default)]
    state: Vec<WireState>,
    assistant: String,
    #[serde(default)]
    service_call: Option<WireCall>,
    #[serde(default)]
    service_results: Vec<Vec<Pair>>,
    #[serde(default)]
    handover: bool,
}

#[derive(Deserialize)]
struct WireState {
    service: String,
    active_intent: String,
    #[serde(default)]
    slot_values: Vec<Pair>,
    #[serde(default)]
    requested_slots: Vec<String>,
}

#[derive(Deserialize)]
struct Pair {
    slot: String,
    value: String,
}

#[derive(Deserialize)]
struct WireCall {
    service: String,
    method: String,
    #[serde(default)]
    parameters: Vec<Pair>,
}

/// Parses an annotated answer into plain turns and their annotation (goals and label summary
/// left for the caller). `primary` names the service whose active intent labels each turn;
/// `schema` tells which slots are categorical (no spans for those, as in SGD).
pub fn parse_annotated(
    text: &str,
    min: u32,
    max: u32,
    primary: &str,
    schema: &Schema,
) -> Result<(Vec<ParsedTurn>, Annotation), ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let wire: Wire = serde_json::from_str(super::unfenced(text)).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ParseError::InvalidJson(e.to_string())
        } else {
            ParseError::Schema(e.to_string())
        }
    })?;
    if wire.turns.is_empty() {
        return Err(ParseError::NoTurns);
    }
    let count = wire.turns.len();
    if count < min as usize || count > max as usize {
        return Err(ParseError::TurnCount { count, min, max });
    }
    let categorical = |service: &str, slot: &str| {
        schema
            .service(service)
            .and_then(|s| s.slot(slot))
            .is_some_and(|s| s.is_categorical)
    };
    let mut turns = Vec::with_capacity(count);
    let mut frames = Vec::with_capacity(count);
    let mut previous: BTreeMap<String, State> = BTreeMap::new();
    for (i, t) in wire.turns.into_iter().enumerate() {
        let n = i + 1;
        let utterance = field(&t.user, n, "User")?;
        let reply = field(&t.assistant, n, "Assistant")?;
        let mut user = Vec::new();
        for s in t.state {
            let service = s.service.trim().to_string();
            // A service listed twice: the first state is the turn's, as the frame kept.
            if user.iter().any(|f: &Frame| f.service == service) {
                continue;
            }
            let mut slot_values: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for p in s.slot_values {
                let slot = p.slot.trim();
                let mut value = p.value.trim().to_string();
                if value.is_empty() {
                    continue;
                }
                if !categorical(&service, slot) {
                    let earlier = previous
                        .get(&service)
                        .and_then(|st| st.slot_values.get(slot));
                    value = as_said(value, &utterance, earlier);
                }
                let values = slot_values.entry(slot.to_string()).or_default();
                if !values.contains(&value) {
                    values.push(value);
                }
            }
            let state = State {
                active_intent: match s.active_intent.trim() {
                    "" => NO_INTENT.to_string(),
                    intent => intent.to_string(),
                },
                requested_slots: s
                    .requested_slots
                    .iter()
                    .map(|r| r.trim().to_string())
                    .collect(),
                slot_values,
            };
            let mut frame = Frame::new(&service);
            frame.actions = user_acts(previous.get(&service), &state);
            frame.slots = spans(&utterance, &state.slot_values, |slot| {
                categorical(&service, slot)
            });
            previous.insert(service, state.clone());
            frame.state = Some(state);
            user.push(frame);
        }
        let intent = turn_intent(&user, primary);
        let mut assistant: Vec<Frame> = user.iter().map(|f| Frame::new(&f.service)).collect();
        if let Some(call) = t.service_call {
            let service = call.service.trim().to_string();
            let at = match assistant.iter().position(|f| f.service == service) {
                Some(at) => at,
                None => {
                    assistant.push(Frame::new(&service));
                    assistant.len() - 1
                }
            };
            assistant[at].service_call = Some(ServiceCall {
                method: call.method.trim().to_string(),
                // A value the state holds in another letter case is the state's.
                parameters: call
                    .parameters
                    .into_iter()
                    .map(|p| {
                        let slot = p.slot.trim().to_string();
                        let value = previous
                            .get(&service)
                            .and_then(|st| st.slot_values.get(&slot))
                            .and_then(|vs| vs.iter().find(|v| same_value(v, &p.value)))
                            .cloned()
                            .unwrap_or_else(|| p.value.trim().to_string());
                        (slot, value)
                    })
                    .collect(),
            });
            assistant[at].service_results = Some(
                t.service_results
                    .into_iter()
                    .map(|row| {
                        row.into_iter()
                            .map(|p| (p.slot.trim().to_string(), p.value.trim().to_string()))
                            .collect()
                    })
                    .collect(),
            );
        }
        for frame in &mut assistant {
            let mut known: BTreeMap<String, Vec<String>> = previous
                .get(&frame.service)
                .map(|s| s.slot_values.clone())
                .unwrap_or_default();
            for row in frame.service_results.iter().flatten() {
                for (slot, value) in row {
                    known.entry(slot.clone()).or_default().push(value.clone());
                }
            }
            let service = frame.service.clone();
            frame.slots = spans(&reply, &known, |slot| categorical(&service, slot));
        }
        turns.push(ParsedTurn {
            utterance,
            intent,
            assistant_response: reply,
        });
        frames.push(TurnFrames {
            user,
            assistant,
            handover: t.handover,
        });
    }
    let annotation = Annotation {
        goals: Vec::new(),
        turns: frames,
        labels: None,
        simulated_results: true,
    };
    Ok((turns, annotation))
}

/// A free-text value as the dialogue wrote it: the utterance's own characters where it says the
/// value (the model's `maple lodge` is the text's `Maple Lodge`, so that SGD's readers find the
/// span's text in the state), else the form an earlier state held, else the model's.
fn as_said(value: String, utterance: &str, earlier: Option<&Vec<String>>) -> String {
    if let Some((start, end)) = find_span(utterance, &value) {
        return utterance.chars().skip(start).take(end - start).collect();
    }
    earlier
        .and_then(|vs| vs.iter().find(|v| same_value(v, &value)))
        .cloned()
        .unwrap_or(value)
}

/// The primary service's active intent, else the first active one, else `none` (the plain
/// turn's intent is a snake_case label; the state keeps SGD's `NONE`).
fn turn_intent(frames: &[Frame], primary: &str) -> String {
    let active = |f: &&Frame| {
        f.state
            .as_ref()
            .is_some_and(|s| s.active_intent != NO_INTENT)
    };
    frames
        .iter()
        .filter(active)
        .find(|f| f.service == primary)
        .or_else(|| frames.iter().find(active))
        .and_then(|f| f.state.as_ref())
        .map(|s| snake_case(&s.active_intent))
        .unwrap_or_else(|| "none".to_string())
}

/// An intent as the plain turn's snake_case label: SGD's `ReserveRestaurant` is
/// `reserve_restaurant` there (the state keeps the schema's name).
fn snake_case(intent: &str) -> String {
    let mut out = String::with_capacity(intent.len() + 4);
    let mut previous_lower = false;
    for c in intent.chars() {
        if c.is_uppercase() && previous_lower {
            out.push('_');
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        out.extend(c.to_lowercase());
    }
    out
}

/// The spans of the non-categorical values found in `text`: one per slot, the first value found.
fn spans(
    text: &str,
    values: &BTreeMap<String, Vec<String>>,
    categorical: impl Fn(&str) -> bool,
) -> Vec<Span> {
    values
        .iter()
        .filter(|(slot, _)| !categorical(slot))
        .filter_map(|(slot, values)| {
            let (start, exclusive_end) = values.iter().find_map(|v| find_span(text, v))?;
            Some(Span {
                slot: slot.clone(),
                start,
                exclusive_end,
            })
        })
        .collect()
}

/// The user's dialogue acts, as far as the state shows them: `INFORM_INTENT` when the active
/// intent changes, `INFORM` for each new or changed value, `REQUEST` for each requested slot.
fn user_acts(before: Option<&State>, now: &State) -> Vec<Act> {
    let mut acts = Vec::new();
    let old_intent = before.map_or(NO_INTENT, |s| s.active_intent.as_str());
    if now.active_intent != NO_INTENT && now.active_intent != old_intent {
        acts.push(Act {
            act: "INFORM_INTENT".into(),
            slot: "intent".into(),
            values: vec![now.active_intent.clone()],
            canonical_values: vec![now.active_intent.clone()],
        });
    }
    for (slot, values) in &now.slot_values {
        if before.and_then(|b| b.slot_values.get(slot)) != Some(values) {
            acts.push(Act {
                act: "INFORM".into(),
                slot: slot.clone(),
                values: values.clone(),
                canonical_values: values.clone(),
            });
        }
    }
    for slot in &now.requested_slots {
        acts.push(Act {
            act: "REQUEST".into(),
            slot: slot.clone(),
            values: Vec::new(),
            canonical_values: Vec::new(),
        });
    }
    acts
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"{"turns": [
        {"user": "I need a room at Maple Lodge for 2 people on friday.",
         "state": [{"service": "hotel", "active_intent": "book_hotel",
                    "slot_values": [{"slot": "hotel-name", "value": "maple lodge"},
                                    {"slot": "hotel-bookpeople", "value": "2"},
                                    {"slot": "hotel-bookday", "value": "friday"}],
                    "requested_slots": []}],
         "assistant": "How many nights at Maple Lodge?", "service_call": null, "service_results": [], "handover": false},
        {"user": "Three nights. What is the phone number?",
         "state": [{"service": "hotel", "active_intent": "book_hotel",
                    "slot_values": [{"slot": "hotel-name", "value": "maple lodge"},
                                    {"slot": "hotel-bookpeople", "value": "2"},
                                    {"slot": "hotel-bookday", "value": "friday"},
                                    {"slot": "hotel-bookstay", "value": "3"}],
                    "requested_slots": ["hotel-phone"]}],
         "assistant": "Booked, reference 7GAWK; the phone is 01223 555.",
         "service_call": {"service": "hotel", "method": "book_hotel",
                          "parameters": [{"slot": "hotel-name", "value": "maple lodge"}]},
         "service_results": [[{"slot": "hotel-ref", "value": "7GAWK"}, {"slot": "hotel-phone", "value": "01223 555"}]],
         "handover": false}]}"#;

    #[test]
    fn turns_frames_spans_and_acts_come_from_the_answer_and_the_text() {
        let (turns, a) = parse_annotated(ANSWER, 1, 5, "hotel", &Schema::builtin()).unwrap();
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[0].intent, "book_hotel");
        let user = &a.turns[0].user[0];
        // hotel-name is free text: its span is where the text says it, whatever the case;
        // hotel-bookpeople is categorical: no span, as in SGD.
        assert_eq!(
            user.slots,
            vec![Span {
                slot: "hotel-name".into(),
                start: 17,
                exclusive_end: 28
            }]
        );
        assert_eq!(&turns[0].utterance[17..28], "Maple Lodge");
        // The model wrote `maple lodge`; the state and the call take the text's form, so that
        // the span's text is the state's value (SGD's readers drop a span that is not).
        let state =
            |t: usize| a.turns[t].user[0].state.as_ref().unwrap().slot_values["hotel-name"].clone();
        assert_eq!(state(0), ["Maple Lodge"]);
        assert_eq!(state(1), ["Maple Lodge"]);
        let call = a.turns[1].assistant[0].service_call.as_ref().unwrap();
        assert_eq!(call.parameters["hotel-name"], "Maple Lodge");
        let acts: Vec<&str> = user.actions.iter().map(|a| a.act.as_str()).collect();
        assert_eq!(acts, ["INFORM_INTENT", "INFORM", "INFORM", "INFORM"]);
        let second: Vec<(&str, &str)> = a.turns[1].user[0]
            .actions
            .iter()
            .map(|a| (a.act.as_str(), a.slot.as_str()))
            .collect();
        assert_eq!(
            second,
            [("INFORM", "hotel-bookstay"), ("REQUEST", "hotel-phone")]
        );
        let system = &a.turns[1].assistant[0];
        assert_eq!(system.service_call.as_ref().unwrap().method, "book_hotel");
        assert_eq!(
            system.service_results.as_ref().unwrap()[0]["hotel-ref"],
            "7GAWK"
        );
        let slots: Vec<&str> = system.slots.iter().map(|s| s.slot.as_str()).collect();
        assert_eq!(slots, ["hotel-phone", "hotel-ref"]);
        assert!(a.simulated_results);
    }

    #[test]
    fn a_schema_intent_becomes_a_snake_case_label_in_the_plain_turn() {
        assert_eq!(snake_case("ReserveRestaurant"), "reserve_restaurant");
        assert_eq!(snake_case("book_hotel"), "book_hotel");
        assert_eq!(snake_case("GetCarsAvailable2"), "get_cars_available2");
    }

    #[test]
    fn bad_answers_are_named_like_plain_ones() {
        let s = Schema::builtin();
        let e = parse_annotated("{\"turns\": [", 1, 5, "hotel", &s).unwrap_err();
        assert_eq!(e.kind(), "invalid_json");
        let e = parse_annotated(r#"{"turns": [{"user": "hi"}]}"#, 1, 5, "hotel", &s).unwrap_err();
        assert_eq!(e.kind(), "schema_violation");
        let e = parse_annotated(ANSWER, 3, 5, "hotel", &s).unwrap_err();
        assert_eq!(e.kind(), "turn_count");
        let empty = ANSWER.replacen("How many nights at Maple Lodge?", " ", 1);
        assert_eq!(
            parse_annotated(&empty, 1, 5, "hotel", &s)
                .unwrap_err()
                .kind(),
            "empty_field"
        );
    }
}
